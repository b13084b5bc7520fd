"""CycleGAN / VR-Goggles training: loss functions on known inputs, learning, exact resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sim2real_goggles.models.checkpoint import load_checkpoint, save_checkpoint
from sim2real_goggles.models.networks import SegmenterNet
from sim2real_goggles.training.translator import (
    ImagePool,
    TranslatorConfig,
    TranslatorTrainer,
    layout_maps,
    lsgan_loss,
    semantic_loss,
    shift_loss,
)

TINY = dict(
    image_size=32,
    frames=24,
    ngf=4,
    n_blocks=1,
    ndf=8,
    batch_size=4,
    pool_size=6,
    checkpoint_every=1000,
    sample_every=1000,
)


def assert_resume_equals_uninterrupted(cfg, tmp_path, stop_after, modules, straight=None):
    """Train ``cfg`` in one go (unless a finished ``straight`` trainer is given) and in two parts
    (stopped after ``stop_after`` iterations, restored from the checkpoint); the named networks
    must end bit-identical."""
    if straight is None:
        straight = TranslatorTrainer(cfg, tmp_path / "straight.pt")
        straight.train(progress=False)
    first = TranslatorTrainer(cfg, tmp_path / "parts.pt")
    first.train(progress=False, stop_after=stop_after)
    assert first.iteration == stop_after
    resumed = TranslatorTrainer(cfg, tmp_path / "parts.pt")
    resumed.restore(tmp_path / "parts.pt")
    resumed.train(progress=False)
    assert resumed.iteration == cfg.iterations
    for module in modules:
        for name, tensor in getattr(straight, module).state_dict().items():
            assert torch.equal(tensor, getattr(resumed, module).state_dict()[name]), (module, name)


def test_shift_loss_is_zero_for_a_shift_equivariant_map_and_not_otherwise():
    x = torch.rand(2, 3, 32, 32)
    conv = nn.Conv2d(3, 3, 1)  # 1x1 convolution: commutes with shifts
    assert shift_loss(conv, x, 3, -2).item() == pytest.approx(0.0, abs=1e-6)

    class PositionDependent(nn.Module):
        def forward(self, t):
            ramp = torch.linspace(0, 1, t.shape[-1]).view(1, 1, 1, -1)
            return t * ramp

    assert shift_loss(PositionDependent(), x, 0, 4).item() > 0.01


def test_semantic_loss_zero_when_predictions_agree_and_masked_pixels_ignored():
    labels = torch.randint(0, 4, (2, 8, 8))
    logits = torch.nn.functional.one_hot(labels, 4).permute(0, 3, 1, 2).float() * 50.0
    w = torch.tensor([1.0, 1.0, 5.0, 10.0])
    assert semantic_loss(logits, labels, w).item() == pytest.approx(0.0, abs=1e-6)
    wrong = (labels + 1) % 4
    assert semantic_loss(logits, wrong, w).item() > 10.0
    nothing = torch.zeros_like(labels, dtype=torch.bool)
    assert semantic_loss(logits, wrong, w, nothing).item() == 0.0


def test_lsgan_loss_targets():
    assert lsgan_loss(torch.ones(4), True).item() == 0.0
    assert lsgan_loss(torch.zeros(4), False).item() == 0.0
    assert lsgan_loss(torch.zeros(4), True).item() == 1.0


def test_image_pool_fills_then_mixes_history():
    pool = ImagePool(4)
    gen = torch.Generator().manual_seed(0)
    first = torch.arange(4.0).view(4, 1, 1, 1)
    assert torch.equal(pool.query(first, gen), first)  # filling: returns the new images
    mixed = torch.cat([pool.query(torch.full((4, 1, 1, 1), 10.0 + k), gen) for k in range(10)])
    from_history = (mixed < 10).sum().item()
    assert 0 < from_history < len(mixed)  # some old images came back, not all
    assert len(pool.images) == 4


def test_cyclegan_iterations_reduce_cycle_loss_and_change_weights(tmp_path):
    # A higher, constant learning rate than the recipe's so that 30 tiny iterations show learning.
    cfg = TranslatorConfig(method="cyclegan", iterations=30, lr=2e-3, decay_start=1.0, **TINY)
    trainer = TranslatorTrainer(cfg, tmp_path / "cg.pt")
    before = {k: v.clone() for k, v in trainer.G_rs.state_dict().items()}
    result = trainer.train(progress=False)
    first = sum(h["cycle_real"] + h["cycle_sim"] for h in trainer.history[:5])
    last = sum(h["cycle_real"] + h["cycle_sim"] for h in trainer.history[-5:])
    assert last < 0.7 * first  # measured: 0.42
    after = trainer.G_rs.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    ckpt = load_checkpoint(result["checkpoint"])
    assert ckpt.metadata["method"] == "cyclegan" and ckpt.metadata["iterations"] == 30 and ckpt.metadata["complete"]
    assert ckpt.build() is not None


def test_ema_checkpoint_ships_the_weight_average_without_changing_training(tmp_path):
    decay = 0.8
    plain = TranslatorTrainer(TranslatorConfig(method="cyclegan", iterations=6, **TINY), tmp_path / "plain.pt")
    plain.train(progress=False)
    cfg = TranslatorConfig(method="cyclegan", iterations=6, ema_decay=decay, **TINY)
    trainer = TranslatorTrainer(cfg, tmp_path / "ema.pt")
    expected = {k: v.clone() for k, v in trainer.G_rs.state_dict().items()}
    step = trainer.step

    def step_and_average():
        log = step()
        d = min(decay, (1 + trainer.iteration) / (10 + trainer.iteration))
        for k, v in trainer.G_rs.state_dict().items():
            expected[k] = d * expected[k] + (1 - d) * v
        return log

    trainer.step = step_and_average
    result = trainer.train(progress=False)
    # training is the same run: the average only watches
    for k, v in plain.G_rs.state_dict().items():
        assert torch.equal(v, trainer.G_rs.state_dict()[k]), k
    shipped = load_checkpoint(result["checkpoint"]).state_dict
    for k, v in shipped.items():
        torch.testing.assert_close(v, expected[k], rtol=1e-5, atol=1e-6)
    assert any(not torch.equal(v, trainer.G_rs.state_dict()[k]) for k, v in shipped.items())
    # resume restores the average (the checkpoint's network) and the trained generator
    assert_resume_equals_uninterrupted(cfg, tmp_path, 3, ("G_rs", "G_rs_ema"), straight=trainer)
    # the same run resumed without the average would start from the average: refused
    other = TranslatorTrainer(TranslatorConfig(method="cyclegan", iterations=6, **TINY), tmp_path / "other.pt")
    with pytest.raises(ValueError, match="ema.pt: holds training state for G_rs"):
        other.restore(tmp_path / "ema.pt")
    # and a run saved without it, resumed with it, would ship the trained G_rs as the average
    averaging = TranslatorTrainer(cfg, tmp_path / "averaging.pt")
    before = {k: v.clone() for k, v in averaging.G_rs_ema.state_dict().items()}
    with pytest.raises(ValueError, match="plain.pt: training state lacks 'G_rs'"):
        averaging.restore(tmp_path / "plain.pt")
    assert averaging.iteration == 0  # refused before anything was loaded
    for k, v in averaging.G_rs_ema.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_learning_rate_decays_linearly_to_zero(tmp_path):
    trainer = TranslatorTrainer(
        TranslatorConfig(method="cyclegan", iterations=8, decay_start=0.5, **TINY), tmp_path / "lr.pt"
    )
    lrs = []
    for _ in range(8):
        trainer.step()
        lrs.append(trainer.opt_G.param_groups[0]["lr"])
    assert lrs[:3] == [2e-4] * 3
    assert lrs[3] > lrs[4] > lrs[5] > lrs[6] > lrs[7] == 0.0


@pytest.mark.parametrize("noise", [0.0, 0.3])
def test_resume_equals_uninterrupted(tmp_path, noise):
    cfg = TranslatorConfig(method="cyclegan", iterations=6, cycle_noise_std=noise, **TINY)
    assert_resume_equals_uninterrupted(cfg, tmp_path, 3, ("G_rs", "D_sim"))


def test_vr_goggles_adds_semantic_and_shift_terms(tmp_path):
    seg = save_checkpoint(tmp_path / "seg.pt", SegmenterNet(base=8), "segmenter", {"base": 8})
    cfg = TranslatorConfig(
        method="vr_goggles", segmenter=str(seg), iterations=3, semantic_reliability=0.0, semantic_confidence=0.0, **TINY
    )
    trainer = TranslatorTrainer(cfg, tmp_path / "vr.pt")
    log = trainer.step()
    for key in ("sem_cycle", "sem_pseudo", "shift", "cycle_real", "D_sim"):
        assert key in log and log[key] >= 0.0
    assert log["sem_cycle"] > 0.0
    # The pseudo-label term stays off while the segmenter is unreliable on real images.
    strict = TranslatorTrainer(
        TranslatorConfig(method="vr_goggles", segmenter=str(seg), iterations=3, semantic_reliability=1.01, **TINY),
        tmp_path / "vr2.pt",
    )
    assert "sem_pseudo" not in strict.step()


@pytest.mark.parametrize("noise", [0.0, 0.5])
def test_cycle_noise_reaches_the_reconstructing_generator_only(tmp_path, noise):
    trainer = TranslatorTrainer(
        TranslatorConfig(method="cyclegan", iterations=2, cycle_noise_std=noise, **TINY), tmp_path / "n.pt"
    )
    outputs, inputs, judged = [], [], []
    trainer.G_rs.register_forward_hook(lambda m, args, out: outputs.append(out.detach().clone()))
    trainer.G_sr.register_forward_pre_hook(lambda m, args: inputs.append(args[0].detach().clone()))
    trainer.D_sim.register_forward_pre_hook(lambda m, args: judged.append(args[0].detach().clone()))
    trainer.step()
    # G_sr runs on x_s (translation), on G_rs(x_r) (the cycle), then on x_r (identity)
    fake_s, cycle_input = outputs[0], inputs[1]
    residual = (cycle_input - fake_s).std().item()
    assert residual == pytest.approx(noise, rel=0.1, abs=1e-7)
    # the generator's adversarial term judges the clean translation
    assert torch.equal(judged[0], fake_s)


def test_frame_stride_reaches_both_domains(tmp_path):
    """The recipe key reaches the frames of both domains (the same views from more rooms)."""
    from sim2real_goggles.training.base import load_domain_tensors

    cfg = TranslatorConfig(method="cyclegan", iterations=1, **(TINY | {"frames": 8}), frame_stride=4)
    trainer = TranslatorTrainer(cfg, tmp_path / "rooms.pt")
    assert torch.equal(trainer.x_real, load_domain_tensors(cfg.real, 8, 32, cfg.seed, 4)[0])
    assert torch.equal(trainer.x_sim, load_domain_tensors(cfg.sim, 8, 32, cfg.seed + 1, 4)[0])
    assert not torch.equal(trainer.x_real, load_domain_tensors(cfg.real, 8, 32, cfg.seed)[0])


def test_config_errors():
    with pytest.raises(ValueError, match="unknown method"):
        TranslatorConfig(method="pix2pix")
    with pytest.raises(ValueError, match="--segmenter"):
        TranslatorConfig(method="vr_goggles")
    with pytest.raises(ValueError, match="cycle_noise_std must be >= 0"):
        TranslatorConfig(cycle_noise_std=-0.1)
    with pytest.raises(ValueError, match="lambda_semantic_adv must be >= 0"):
        TranslatorConfig(method="vr_goggles", segmenter="s.pt", lambda_semantic_adv=-1.0)
    with pytest.raises(ValueError, match="lambda_semantic_adv needs the sim segmenter"):
        TranslatorConfig(method="cyclegan", lambda_semantic_adv=1.0)
    for decay in (-0.1, 1.0):
        with pytest.raises(ValueError, match="ema_decay must be in"):
            TranslatorConfig(ema_decay=decay)


def test_semantic_adversary_judges_segmentation_maps_after_the_warmup_and_resumes(tmp_path):
    torch.manual_seed(0)
    seg = save_checkpoint(tmp_path / "seg.pt", SegmenterNet(base=8), "segmenter", {"base": 8})
    cfg = TranslatorConfig(
        method="vr_goggles", segmenter=str(seg), iterations=6, semantic_warmup=2, lambda_semantic_adv=0.5, **TINY
    )
    trainer = TranslatorTrainer(cfg, tmp_path / "a.pt")
    off = TranslatorConfig(method="vr_goggles", segmenter=str(seg), iterations=6, **TINY)
    assert TranslatorTrainer(off, tmp_path / "off.pt").D_sem is None  # off by default
    seen = []  # (maps, whether they carry a gradient path back to the generator)
    trainer.D_sem.register_forward_pre_hook(lambda m, args: seen.append((args[0].detach(), args[0].requires_grad)))
    before = {k: v.clone() for k, v in trainer.D_sem.state_dict().items()}
    logs = [trainer.step() for _ in range(2)]
    assert not seen and all("G_sem" not in log and "D_sem" not in log for log in logs)
    assert all(torch.equal(before[k], v) for k, v in trainer.D_sem.state_dict().items())
    log = trainer.step()
    assert log["G_sem"] > 0.0 and log["D_sem"] > 0.0
    assert any(not torch.equal(before[k], v) for k, v in trainer.D_sem.state_dict().items())
    # generator pass: S's maps of the translation, differentiable back to G_rs; then the
    # discriminator pass: maps of sim frames and of pooled translations, without a gradient
    assert [grad for _, grad in seen] == [True, False, False]
    for maps, _ in seen:
        assert maps.shape == (TINY["batch_size"], 4, 32, 32)
        assert torch.allclose(maps.sum(1), torch.ones(1), atol=1e-5)
        assert torch.equal(maps.round(), maps.round().clamp(0, 1)) and (maps - maps.round()).abs().max() < 1e-5
    # the adversary's weights are part of the training state: resume equals uninterrupted
    trainer.train(progress=False)
    assert_resume_equals_uninterrupted(cfg, tmp_path, 4, ("G_rs", "D_sem"), straight=trainer)


def test_layout_maps_are_one_hot_with_the_softmax_gradient():
    logits = torch.randn(2, 4, 5, 5, requires_grad=True)
    maps = layout_maps(logits)
    assert torch.allclose(maps.detach(), F.one_hot(logits.argmax(1), 4).permute(0, 3, 1, 2).float(), atol=1e-6)
    weight = torch.randn(2, 4, 5, 5)
    (maps * weight).sum().backward()
    soft = logits.detach().clone().requires_grad_(True)
    (soft.softmax(1) * weight).sum().backward()
    assert torch.allclose(logits.grad, soft.grad)


def test_pseudo_labels_come_from_the_labeller_after_the_warmup(tmp_path):
    torch.manual_seed(0)
    seg = save_checkpoint(tmp_path / "seg.pt", SegmenterNet(base=8), "segmenter", {"base": 8})
    torch.manual_seed(1)
    lab = save_checkpoint(tmp_path / "lab.pt", SegmenterNet(base=4), "segmenter", {"base": 4})
    cfg = TranslatorConfig(
        method="vr_goggles",
        segmenter=str(seg),
        labeller=str(lab),
        iterations=4,
        semantic_warmup=2,
        semantic_reliability=0.0,
        semantic_confidence=0.0,
        **TINY,
    )
    trainer = TranslatorTrainer(cfg, tmp_path / "vr.pt")
    assert trainer.labeller is not trainer.segmenter and not trainer.labeller.training
    logs = [trainer.step() for _ in range(4)]
    assert ["sem_pseudo" in log for log in logs] == [False, False, True, True]
    assert all("labeller_confidence_real" in log for log in logs)
    # the labeller's predictions, not the segmenter's, are the targets
    calls = []
    trainer.labeller.register_forward_hook(lambda *a: calls.append(1))
    trainer.step()
    assert calls == [1]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_amp_on_cuda_trains_with_loss_scaling(tmp_path):
    cfg = TranslatorConfig(method="cyclegan", iterations=4, amp=True, **TINY)
    trainer = TranslatorTrainer(cfg, tmp_path / "amp.pt", device="cuda")
    assert trainer.amp
    before = {k: v.clone() for k, v in trainer.G_rs.state_dict().items()}
    trainer.train(progress=False)
    assert set(trainer.scalers) == {"G", "D"} and trainer.scalers["G"].get_scale() > 0
    assert all(np.isfinite(h["G_total"]) for h in trainer.history)
    assert any(not torch.equal(before[k], v) for k, v in trainer.G_rs.state_dict().items())
    assert next(trainer.G_rs.parameters()).dtype == torch.float32  # fp32 master weights


def test_adaptive_labeller_learns_from_sim_to_real_translations_and_resumes(tmp_path):
    torch.manual_seed(0)  # fixed initial labeller, whatever ran before
    seg = save_checkpoint(tmp_path / "seg.pt", SegmenterNet(base=8), "segmenter", {"base": 8})
    lab = save_checkpoint(tmp_path / "lab.pt", SegmenterNet(base=4), "segmenter", {"base": 4})
    cfg = TranslatorConfig(
        method="vr_goggles",
        segmenter=str(seg),
        labeller=str(lab),
        labeller_adapt_lr=1e-2,
        semantic_warmup=2,
        iterations=8,
        **TINY,
    )
    trainer = TranslatorTrainer(cfg, tmp_path / "a.pt")
    initial = {k: v.clone() for k, v in trainer.labeller.state_dict().items()}
    # With G_sr the identity, the labeller's inputs are the sim images themselves, which carry
    # their classes; an untrained G_sr's near-constant output would leave nothing to learn.
    trainer.G_sr = nn.Identity()
    logs = [trainer.step() for _ in range(24)]
    assert ["labeller" in log for log in logs[:4]] == [False, False, True, True]
    first, last = logs[2:6], logs[-4:]
    assert sum(log["labeller"] for log in last) < 0.8 * sum(log["labeller"] for log in first)
    assert any(not torch.equal(initial[k], v) for k, v in trainer.labeller.state_dict().items())
    assert all(not p.requires_grad for p in trainer.segmenter.parameters())  # S stays frozen
    # resume restores the adapted labeller too
    assert_resume_equals_uninterrupted(cfg, tmp_path, 5, ("G_rs", "labeller"))
