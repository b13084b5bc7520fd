"""PPO (stable-baselines3) with the project's policy network: the weights map both ways, a tiny
run on two env processes writes a checkpoint the policy runtime loads, and --resume continues."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sim2real_goggles.models.checkpoint import load_checkpoint, save_checkpoint
from sim2real_goggles.models.networks import PolicyNet
from sim2real_goggles.policy import ImagePolicy
from sim2real_goggles.training.ppo import PPOConfig, PPOTrainer, load_ppo_recipe, to_policy_net

TINY = dict(n_envs=2, n_steps=32, batch_size=32, n_epochs=1, total_timesteps=64, checkpoint_every=10**9)


@pytest.fixture(scope="module")
def bc_checkpoint(tmp_path_factory):
    torch.manual_seed(3)
    return save_checkpoint(
        tmp_path_factory.mktemp("init") / "bc.pt", PolicyNet(width=8), "policy_cnn", {"frames": 1, "width": 8}
    )


def test_init_weights_give_the_same_actions_in_sb3_and_the_runtime(bc_checkpoint, tmp_path):
    trainer = PPOTrainer(PPOConfig(init=str(bc_checkpoint), **(TINY | {"n_envs": 1})), tmp_path / "p.pt")
    try:
        # The recipe's width gives way to the init checkpoint's (as with pretrained:policy, width 32).
        assert PPOConfig().width == 16 and trainer.cfg.width == 8
        frames = np.random.default_rng(0).integers(0, 256, size=(4, 64, 64, 3), dtype=np.uint8)
        obs = torch.from_numpy(frames).permute(0, 3, 1, 2).float()  # what SB3 feeds after VecTransposeImage
        with torch.no_grad():
            dist = trainer.model.policy.get_distribution(trainer.model.policy.obs_to_tensor(obs.numpy())[0])
            sb3_logits = dist.distribution.logits
            net = PolicyNet(width=8)
            net.load_state_dict(load_checkpoint(bc_checkpoint).state_dict)
            ref = net(obs / 127.5 - 1.0)
        assert torch.allclose(sb3_logits, torch.log_softmax(ref, 1), atol=1e-4)
        back = to_policy_net(trainer.model.policy, 8)
        for name, tensor in net.state_dict().items():
            assert torch.equal(tensor, back.state_dict()[name]), name
    finally:
        trainer.env.close()


@pytest.mark.slow
def test_tiny_run_changes_the_weights_writes_a_policy_checkpoint_and_resumes(bc_checkpoint, tmp_path):
    out = tmp_path / "ppo.pt"
    trainer = PPOTrainer(PPOConfig(init=str(bc_checkpoint), **TINY), out)
    result = trainer.train(progress=False)
    assert result["timesteps"] >= 64
    ckpt = load_checkpoint(out)
    assert ckpt.arch == "policy_cnn" and ckpt.metadata["method"] == "ppo" and ckpt.metadata["complete"]
    init = load_checkpoint(bc_checkpoint).state_dict
    assert any(not torch.equal(init[k], v) for k, v in ckpt.state_dict.items())
    policy = ImagePolicy.load(out, device="cpu")
    assert policy.act(np.zeros((64, 64, 3), np.uint8)) in (0, 1, 2)

    resumed = PPOTrainer(PPOConfig(init=str(bc_checkpoint), **(TINY | {"total_timesteps": 128})), out)
    resumed.restore(out)
    assert resumed.timesteps == result["timesteps"]
    assert resumed.train(progress=False)["timesteps"] >= 128


def test_recipe_errors():
    with pytest.raises(ValueError, match="unknown ppo recipe key 'rounds'"):
        load_ppo_recipe({"rounds": 3})
    with pytest.raises(ValueError, match="must be at least batch_size"):
        PPOConfig(n_envs=1, n_steps=16, batch_size=64)
    assert load_ppo_recipe({"total_timesteps": "500"}).total_timesteps == 500


def test_init_from_a_recurrent_policy_or_an_ensemble_is_refused(tmp_path):
    # SB3's PPO has no memory: warm-starting it from a recurrent policy would drop the GRU
    memory = save_checkpoint(tmp_path / "gru.pt", PolicyNet(width=16, memory=8), "policy_cnn", {"memory": 8})
    with pytest.raises(ValueError, match="without memory"):
        PPOTrainer(PPOConfig(init=str(memory), **(TINY | {"n_envs": 1})), tmp_path / "p.pt")
    # nor from an ensemble: PPO trains one network
    from sim2real_goggles.training.policy import write_ensemble

    one = save_checkpoint(tmp_path / "one.pt", PolicyNet(width=16), "policy_cnn", {"width": 16})
    ensemble = write_ensemble([one, one], tmp_path / "ens.pt")
    with pytest.raises(ValueError, match="ens.pt: an ensemble of policies.*one.pt"):
        PPOTrainer(PPOConfig(init=str(ensemble), **(TINY | {"n_envs": 1})), tmp_path / "p.pt")
