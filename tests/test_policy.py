"""Image policy: network, runtime, behaviour cloning with DAgger, resume, evaluation."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from sim2real_goggles.evaluation.policy_eval import make_policy, run_episodes, summarize
from sim2real_goggles.models.checkpoint import CheckpointError, save_checkpoint
from sim2real_goggles.models.networks import PolicyNet, build_model
from sim2real_goggles.policy import ImagePolicy
from sim2real_goggles.training.policy import PolicyTrainer, load_policy_recipe

TINY = dict(expert_episodes=12, rounds=1, episodes_per_round=6, max_steps=120, eval_episodes=0, epochs=25.0, width=8)


def test_policy_net_batch_and_any_size():
    net = PolicyNet(frames=2, width=8)
    x = torch.zeros(5, 6, 64, 64)
    assert net(x).shape == (5, 3)
    assert net.value(x).shape == (5,)
    assert net(torch.zeros(1, 6, 96, 128)).shape == (1, 3)  # adaptive pooling: any camera size
    assert isinstance(build_model("policy_cnn", frames=1), PolicyNet)


def _policy_checkpoint(path, frames=1, seed=0):
    torch.manual_seed(seed)
    net = PolicyNet(frames=frames, width=8)
    return save_checkpoint(path, net, "policy_cnn", {"frames": frames, "width": 8}, {"image_size": 64})


def test_image_policy_acts_resizes_and_is_seeded(tmp_path):
    path = _policy_checkpoint(tmp_path / "p.pt", frames=2)
    frames = np.random.default_rng(0).integers(0, 256, (20, 48, 80, 3), dtype=np.uint8)  # not 64x64
    runs = []
    for _ in range(2):
        policy = ImagePolicy.load(path, device="cpu", seed=3)
        runs.append([policy.act(f) for f in frames])
        assert policy.network_input().shape == (64, 64, 6)  # two stacked frames at training size
    assert runs[0] == runs[1]
    assert set(runs[0]) <= {0, 1, 2}
    greedy = ImagePolicy.load(path, device="cpu", sample=False)
    probs = greedy.probabilities(frames[0])
    assert probs.shape == (3,) and abs(probs.sum() - 1) < 1e-5
    greedy.reset()
    assert greedy.act(frames[0]) == int(np.argmax(probs))
    with pytest.raises(ValueError, match="uint8 RGB"):
        greedy.act(np.zeros((64, 64), np.uint8))


def test_image_policy_rejects_other_networks(tmp_path):
    from sim2real_goggles.models.networks import SegmenterNet

    path = save_checkpoint(tmp_path / "seg.pt", SegmenterNet(base=4), "segmenter", {"base": 4})
    with pytest.raises(CheckpointError, match="not a policy"):
        ImagePolicy.load(path)
    with pytest.raises(CheckpointError, match="not found"):
        ImagePolicy.load(tmp_path / "missing.pt")


def test_ensemble_acts_on_the_mean_of_its_members(tmp_path, capsys):
    from sim2real_goggles.cli import main
    from sim2real_goggles.models.checkpoint import load_checkpoint

    torch.manual_seed(2)
    gru = save_checkpoint(
        tmp_path / "gru.pt", PolicyNet(width=8, memory=16), "policy_cnn", {"width": 8, "memory": 16}, {"image_size": 64}
    )
    members = [_policy_checkpoint(tmp_path / "a.pt", seed=0), _policy_checkpoint(tmp_path / "b.pt", seed=1), gru]
    out = tmp_path / "ens.pt"
    assert main(["ensemble-policy", *map(str, members), "--out", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [m["source"] for m in report["members"]] == list(map(str, members))
    ckpt = load_checkpoint(out)
    assert ckpt.arch == "policy_ensemble" and ckpt.metadata["kind"] == "policy"
    frames = np.random.default_rng(0).integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    singles = [ImagePolicy.load(m, device="cpu") for m in members]
    ensemble = ImagePolicy.load(out, device="cpu")
    for _episode in range(2):  # the GRU member's memory runs inside the ensemble and forgets at reset
        for f in frames:
            expected = np.mean([p.probabilities(f) for p in singles], axis=0)
            assert np.allclose(ensemble.probabilities(f), expected, atol=1e-5)
        ensemble.reset()
        for p in singles:
            p.reset()
    # half-precision weights: half the file, the same distributions to float16 precision, and
    # shipping it (pretrained add strips training state) keeps them half
    from sim2real_goggles.pretrained import strip_training_state

    half = tmp_path / "half.pt"
    assert main(["ensemble-policy", *map(str, members), "--out", str(half), "--fp16-weights", "--json"]) == 0
    capsys.readouterr()
    shipped = strip_training_state(half, tmp_path / "shipped.pt")
    for path in (half, shipped):
        assert {v.dtype for v in load_checkpoint(path).state_dict.values()} == {torch.float16}
    assert shipped.stat().st_size < 0.6 * out.stat().st_size
    compact = ImagePolicy.load(shipped, device="cpu")  # both start an episode, as ``ensemble`` was reset
    for f in frames:
        assert np.allclose(compact.probabilities(f), ensemble.probabilities(f), atol=2e-3)
    # the ensemble drives in eval-policy like any policy, the same for the same seed
    runs = [
        summarize(run_episodes(make_policy(str(out), device="cpu"), "sim", 2, 7, env_kwargs={"max_episode_steps": 30}))
        for _ in range(2)
    ]
    assert runs[0] == runs[1]


def test_ensemble_rejects_members_that_do_not_fit(tmp_path):
    from sim2real_goggles.models.networks import SegmenterNet
    from sim2real_goggles.training.policy import write_ensemble

    one, stacked = _policy_checkpoint(tmp_path / "one.pt"), _policy_checkpoint(tmp_path / "two.pt", frames=2)
    with pytest.raises(ValueError, match="at least 2"):
        write_ensemble([one], tmp_path / "e.pt")
    with pytest.raises(ValueError, match="same number of frames"):
        write_ensemble([one, stacked], tmp_path / "e.pt")
    seg = save_checkpoint(tmp_path / "seg.pt", SegmenterNet(base=4), "segmenter", {"base": 4})
    with pytest.raises(ValueError, match="seg.pt: holds a 'segmenter' network"):
        write_ensemble([one, seg], tmp_path / "e.pt")
    big = save_checkpoint(tmp_path / "big.pt", PolicyNet(width=8), "policy_cnn", {"width": 8}, {"image_size": 96})
    with pytest.raises(ValueError, match="different image sizes"):
        write_ensemble([one, big], tmp_path / "e.pt")
    with pytest.raises(CheckpointError, match="missing.pt"):
        write_ensemble([one, tmp_path / "missing.pt"], tmp_path / "e.pt")
    assert not (tmp_path / "e.pt").exists()


def _success(policy_spec, episodes=12, seed=4242):
    results = run_episodes(make_policy(policy_spec, device="cpu"), "sim", episodes, seed)
    return summarize(results)["success_rate"]


def test_recurrent_policy_net_steps_as_it_trains():
    torch.manual_seed(0)
    net = PolicyNet(width=8, memory=16).eval()
    x = torch.randn(6, 2, 3, 64, 64)
    whole = net.forward_sequence(x)
    state, stepped = None, []
    for t in range(6):
        logits, state = net.step(x[t], state)
        stepped.append(logits)
    assert torch.allclose(torch.stack(stepped), whole, atol=1e-5)
    # padding after the end of a shorter episode leaves its steps alone
    padded = torch.cat([x, torch.zeros(3, 2, 3, 64, 64)])
    assert torch.allclose(net.forward_sequence(padded)[:6], whole, atol=1e-5)
    # the memory matters: the same last frame after other frames gives other logits
    other = x.clone()
    other[0] = torch.randn(2, 3, 64, 64)
    assert not torch.allclose(net.forward_sequence(other)[-1], whole[-1])
    with pytest.raises(TypeError, match="recurrent"):
        net(x[0])
    reactive = PolicyNet(width=8).eval()
    logits, none = reactive.step(x[0])
    assert none is None and torch.equal(logits, reactive(x[0]))
    assert torch.allclose(reactive.forward_sequence(x[:2]), torch.stack([reactive(x[0]), reactive(x[1])]))


def test_image_policy_with_memory_forgets_at_reset(tmp_path):
    torch.manual_seed(1)
    net = PolicyNet(width=8, memory=16)
    path = save_checkpoint(tmp_path / "m.pt", net, "policy_cnn", {"width": 8, "memory": 16}, {"image_size": 64})
    frames = np.random.default_rng(0).integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)
    policy = ImagePolicy.load(path, device="cpu")
    fresh = policy.probabilities(frames[-1])
    policy.reset()
    for f in frames[:-1]:
        policy.probabilities(f)
    remembered = policy.probabilities(frames[-1])
    assert not np.allclose(fresh, remembered)
    policy.reset()
    assert np.allclose(policy.probabilities(frames[-1]), fresh)


def test_episode_spans_and_padded_batches():
    from sim2real_goggles.training.policy import episode_spans, sequence_batch

    starts = np.array([1, 0, 0, 1, 1, 0], bool)
    assert episode_spans(starts) == [(0, 3), (3, 4), (4, 6)]
    with pytest.raises(ValueError, match="first frame"):
        episode_spans(np.array([0, 1, 0], bool))
    obs = np.arange(6, dtype=np.uint8)[:, None, None, None] * np.ones((6, 4, 4, 3), np.uint8)
    x, valid = sequence_batch(obs, [(0, 3), (3, 4)])
    assert x.shape == (3, 2, 3, 4, 4)
    assert valid.tolist() == [[True, True], [True, False], [True, False]]
    assert torch.equal(x[1, 0], torch.full((3, 4, 4), 1 / 127.5 - 1.0))  # frame 1, in [-1, 1]
    assert torch.equal(x[0, 1], torch.full((3, 4, 4), 3 / 127.5 - 1.0)) and not x[1:, 1].any()


@pytest.fixture(scope="module")
def untrained_success(tmp_path_factory):
    """Success of an untrained policy on the rooms of ``_success`` (measured once: 12 episodes
    that run to the step limit)."""
    return _success(_policy_checkpoint(tmp_path_factory.mktemp("untrained") / "untrained.pt"))


@pytest.mark.slow
@pytest.mark.parametrize("memory", [0, 16], ids=["reactive", "recurrent"])
def test_dagger_learns_to_navigate_and_resumes_exactly(tmp_path, memory, untrained_success):
    cfg = load_policy_recipe({**TINY, "memory": memory})
    trainer = PolicyTrainer(cfg, tmp_path / "full.pt")
    save = trainer.save

    def save_and_keep_round_0(final=False):  # what a kill right after round 0 leaves on disk
        path = save(final)
        if trainer.round == 1:
            shutil.copy(path, tmp_path / "part.pt")
            shutil.copytree(trainer.data_dir, tmp_path / "part.pt.dagger")
        return path

    trainer.save = save_and_keep_round_0
    result = trainer.train(progress=False)
    assert result["rounds"] == 2
    # the fitted cross-entropy is below that of a uniform guess (ln 3) in every round
    assert all(h["loss"] < 1.0 for h in trainer.history), trainer.history
    trained = _success(tmp_path / "full.pt")
    assert trained >= untrained_success + 0.25, (trained, untrained_success)

    # killed after round 0, resumed: the same weights as the uninterrupted run
    resumed = PolicyTrainer(cfg, tmp_path / "part.pt")
    resumed.restore(tmp_path / "part.pt")
    assert resumed.round == 1 and len(resumed.obs) == 1
    resumed.train(progress=False)
    for a, b in zip(trainer.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)


def test_recipe_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown policy recipe key 'epoch'"):
        load_policy_recipe({"epoch": 3})


def test_eval_policy_is_deterministic_for_a_seed(tmp_path):
    path = _policy_checkpoint(tmp_path / "p.pt")
    runs = [summarize(run_episodes(make_policy(str(path), device="cpu"), "sim", 3, 7)) for _ in range(2)]
    assert runs[0] == runs[1]
    with pytest.raises(ValueError, match="--translator"):
        make_policy("expert", translator="pretrained:cyclegan")


def test_baseline_policies_are_found_per_look_in_the_manifest():
    from sim2real_goggles.evaluation.transfer import shipped_policy

    manifest = {
        "policy": {"method": "bc_dagger", "domains": {"train": "sim"}},
        "simgan": {"method": "simgan", "direction": "sim->real", "domains": {"real": "real_lab", "sim": "sim"}},
        "simgan_office": {"method": "simgan", "domains": {"real": "real_office", "sim": "sim"}},
        "policy_simgan": {"method": "bc_dagger", "domains": {"train": "sim", "refiner": "pretrained:simgan"}},
        "policy_simgan_office": {
            "method": "bc_dagger",
            "domains": {"train": "sim", "refiner": "pretrained:simgan_office"},
        },
        "policy_dr": {"method": "bc_dagger", "domains": {"train": "randomized", "family": "randomized: ..."}},
        "pixelda": {"method": "pixelda", "direction": "sim->real", "domains": {"real": "real_lab", "sim": "sim"}},
        "policy_pixelda": {"method": "bc_dagger", "domains": {"train": "sim", "refiner": "pretrained:pixelda"}},
        # trained through a refiner that is not shipped: the policy's entry records what it was
        "policy_pixelda_office": {
            "method": "bc_dagger",
            "domains": {"train": "sim", "refiner": "runs/pixelda_office.pt"},
            "refiner": {"method": "pixelda", "domains": {"real": "real_office", "sim": "sim"}},
        },
    }
    assert shipped_policy("simgan", "real_lab", manifest) == "pretrained:policy_simgan"
    assert shipped_policy("simgan", "real_office", manifest) == "pretrained:policy_simgan_office"
    assert shipped_policy("simgan", "my_camera", manifest) is None
    assert shipped_policy("pixelda", "real_lab", manifest) == "pretrained:policy_pixelda"
    assert shipped_policy("pixelda", "real_office", manifest) == "pretrained:policy_pixelda_office"
    assert shipped_policy("simgan", "real_office", {"p": manifest["policy_pixelda_office"]}) is None
    del manifest["policy_pixelda_office"]
    assert shipped_policy("pixelda", "real_office", manifest) is None
    assert shipped_policy("domain_randomization", "real_office", manifest) == "pretrained:policy_dr"
    del manifest["policy_dr"]
    assert shipped_policy("domain_randomization", "real_lab", manifest) is None


@pytest.mark.slow
def test_transfer_table_runs_a_tiny_matrix_and_writes_all_outputs(tmp_path, capsys, monkeypatch):
    from sim2real_goggles.cli import main
    from sim2real_goggles.evaluation import transfer

    # As if no baseline policy were shipped: their rows are reported missing, never guessed.
    monkeypatch.setattr(transfer, "shipped_policy", lambda method, look, manifest=None: None)
    # and as if no mask-aware goggles were shipped (the shipped vr_goggles are still found)
    shipped = transfer.shipped_translator
    monkeypatch.setattr(
        transfer,
        "shipped_translator",
        lambda method, look: None if method == "cyclegan_masked" else shipped(method, look),
    )
    policy = _policy_checkpoint(tmp_path / "p.pt")
    out = tmp_path / "transfer"
    args = ["transfer-table", "--looks", "real_lab", "--episodes", "1", "--policy", str(policy), "--out", str(out)]
    assert main([*args, "--json", "--translator", "cyclegan:real_lab=pretrained:cyclegan"]) == 0
    table = json.loads(capsys.readouterr().out)
    cells = {(c["method"], c["look"]) for c in table["cells"]}
    assert cells == {
        ("sim_on_sim", "sim"),
        ("no_goggles", "real_lab"),
        ("cyclegan", "real_lab"),
        ("vr_goggles", "real_lab"),
        ("vr_goggles_distilled", "real_lab"),
    }
    by_method = {c["method"]: c for c in table["cells"]}
    vr = by_method["vr_goggles"]
    assert vr["translator"] == "pretrained:vr_goggles" and vr["episodes"] == 1  # found in the manifest
    # the distilled students are listed as method distill in the manifest
    assert by_method["vr_goggles_distilled"]["translator"] == "pretrained:vr_goggles_fast"
    assert {m["method"] for m in table["missing"]} == {"domain_randomization", "simgan", "pixelda", "cyclegan_masked"}
    md = (out / "transfer.md").read_text()
    assert "| vr_goggles |" in md and "real_lab" in md
    assert json.loads((out / "transfer.json").read_text())["episodes"] == 1
    assert (out / "transfer.png").stat().st_size > 1000

    # A second run reuses the measured cells and runs only the new one (a SimGAN policy for
    # real_lab, given per look).
    again = [*args[:-1], str(tmp_path / "again"), "--json", "--reuse", str(out / "transfer.json")]
    assert main([*again, "--policy-simgan", f"real_lab={policy}"]) == 0
    second = json.loads(capsys.readouterr().out)
    by = {c["method"]: c for c in second["cells"]}
    measured = ("sim_on_sim", "no_goggles", "cyclegan", "vr_goggles", "vr_goggles_distilled")
    assert set(by) == {*measured, "simgan"}
    assert all(by[m].get("reused") for m in measured)
    assert not by["simgan"].get("reused") and by["simgan"]["policy"] == str(policy)
    first = {c["method"]: c for c in table["cells"]}
    assert by["vr_goggles"]["success_rate"] == first["vr_goggles"]["success_rate"]
    assert {m["method"] for m in second["missing"]} == {"domain_randomization", "pixelda", "cyclegan_masked"}

    # Only some rows: the others are neither run nor listed.
    rows = [*args[:-1], str(tmp_path / "rows"), "--json", "--methods", "vr_goggles,domain_randomization"]
    assert main([*rows, "--reuse", str(tmp_path / "again" / "transfer.json")]) == 0
    third = json.loads(capsys.readouterr().out)
    assert [c["method"] for c in third["cells"]] == ["vr_goggles"] and third["cells"][0]["reused"]
    assert third["looks"] == ["real_lab"] and [m["method"] for m in third["missing"]] == ["domain_randomization"]
    assert main([*rows, "--methods", "ppo"]) == 2

    # The policy file retrained under the same name: its cells are measured again, not reused.
    _policy_checkpoint(policy, seed=1)
    assert (
        main(
            [
                *args[:-1],
                str(tmp_path / "new"),
                "--json",
                "--methods",
                "sim_on_sim",
                "--reuse",
                str(out / "transfer.json"),
            ]
        )
        == 0
    )
    fourth = json.loads(capsys.readouterr().out)
    assert not fourth["cells"][0].get("reused")
    assert fourth["cells"][0]["policy_sha256"] != first["sim_on_sim"]["policy_sha256"]


@pytest.mark.slow
def test_transfer_table_killed_after_a_cell_resumes_from_its_json(tmp_path, capsys, monkeypatch):
    from sim2real_goggles.cli import main
    from sim2real_goggles.evaluation import transfer

    policy = _policy_checkpoint(tmp_path / "p.pt")
    out = tmp_path / "transfer"
    args = ["transfer-table", "--looks", "real_lab", "--episodes", "1", "--workers", "1", "--policy", str(policy)]
    args += ["--methods", "sim_on_sim,no_goggles", "--out", str(out), "--json"]
    write_progress = transfer.write_progress

    def killed(table, path):  # the run is killed right after its first cell is on disk
        write_progress(table, path)
        raise KeyboardInterrupt

    monkeypatch.setattr(transfer, "write_progress", killed)
    assert main(args) == 130
    assert "--resume" in capsys.readouterr().err
    partial = json.loads((out / "transfer.json").read_text())
    assert partial["complete"] is False and len(partial["cells"]) == 1
    assert not (out / "transfer.md").exists()
    done = partial["cells"][0]["method"]

    monkeypatch.setattr(transfer, "write_progress", write_progress)
    capsys.readouterr()
    assert main([*args, "--resume"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert table["complete"] is True
    by = {c["method"]: c for c in table["cells"]}
    assert set(by) == {"sim_on_sim", "no_goggles"}
    assert by[done].get("reused") and by[done]["success_rate"] == partial["cells"][0]["success_rate"]
    assert not by[({"sim_on_sim", "no_goggles"} - {done}).pop()].get("reused")  # only the lost cell ran
    assert json.loads((out / "transfer.json").read_text())["complete"] is True
    assert "| no_goggles |" in (out / "transfer.md").read_text()


def test_transfer_plot_draws_only_the_rows_it_has():
    from sim2real_goggles.evaluation.transfer import plotted_methods

    cell = {"success_rate": 0.5, "ci95": [0.4, 0.6]}
    some = {"looks": ["real_lab", "real_office"], "cells": [{**cell, "method": "pixelda", "look": "real_office"}]}
    assert plotted_methods(some) == ["pixelda"]  # no empty slot for an absent sim-on-sim bar
    some["cells"] += [
        {**cell, "method": "sim_on_sim", "look": "sim"},
        {**cell, "method": "vr_goggles", "look": "real_lab"},
    ]
    assert plotted_methods(some) == ["sim_on_sim", "vr_goggles", "pixelda"]
