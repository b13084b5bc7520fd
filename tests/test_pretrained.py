"""pretrained:NAME checkpoints: the manifest, lookup, shipping, and what is shipped."""

from __future__ import annotations

import pytest
import torch

import sim2real_goggles.pretrained as pretrained
from sim2real_goggles.models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from sim2real_goggles.models.networks import CompactGenerator
from sim2real_goggles.translation import Translator

REQUIRED = ("segmenter", "labeller", "cyclegan", "vr_goggles", "vr_goggles_real_office", "simgan")


def test_register_strips_training_state_and_lookup_finds_it(tmp_path, monkeypatch):
    manifest = tmp_path / "pkg" / "manifest.yaml"
    manifest.parent.mkdir()
    monkeypatch.setattr(pretrained, "MANIFEST", manifest)
    gen = CompactGenerator(ngf=4, n_blocks=1)
    opt_state = {"state": {i: torch.randn(4000) for i in range(8)}}
    src = save_checkpoint(
        tmp_path / "run.pt",
        gen,
        "compact",
        {"ngf": 4, "n_blocks": 1},
        {"method": "cyclegan", "image_size": 64, "iterations": 7, "config": {"seed": 3}, "train_minutes": 1.5},
        extra={"opt_G": opt_state},
    )
    entry = pretrained.register("tiny", src, "a test", "goggles train-translator ...", {"sem_miou": 0.5})
    assert entry["seed"] == 3 and entry["iterations"] == 7 and entry["train_minutes"] == 1.5
    assert entry["evaluation"] == {"sem_miou": 0.5} and entry["command"].startswith("goggles")
    shipped = manifest.parent / "tiny.pt"
    assert shipped.stat().st_size < src.stat().st_size / 2
    ckpt = load_checkpoint("pretrained:tiny")
    assert ckpt.extra == {} and ckpt.path == shipped
    for k, v in gen.state_dict().items():
        assert torch.equal(ckpt.state_dict[k], v)
    assert pretrained.sha256(shipped) == pretrained.load_manifest()["tiny"]["sha256"]
    with pytest.raises(
        CheckpointError, match=r"unknown pretrained checkpoint 'pretrained:nope' \(known: pretrained:tiny\)"
    ):
        load_checkpoint("pretrained:nope")
    assert "input_scale" not in entry  # recorded only for translators that do not run at 1x
    scaled = save_checkpoint(tmp_path / "s.pt", gen, "compact", {"ngf": 4, "n_blocks": 1}, {"input_scale": 1.5})
    assert pretrained.register("scaled", scaled, "a test", "goggles ...")["input_scale"] == 1.5
    assert Translator.load("pretrained:scaled", device="cpu").input_scale == 1.5


def test_register_ships_half_weights_and_records_an_unshipped_refiner(tmp_path, monkeypatch):
    from sim2real_goggles.models.networks import PolicyNet

    manifest = tmp_path / "pkg" / "manifest.yaml"
    manifest.parent.mkdir()
    monkeypatch.setattr(pretrained, "MANIFEST", manifest)
    monkeypatch.chdir(tmp_path)
    refiner = save_checkpoint(
        tmp_path / "runs" / "refiner.pt",
        CompactGenerator(ngf=4, n_blocks=1),
        "compact",
        {"ngf": 4, "n_blocks": 1},
        {"method": "simgan", "direction": "sim->real", "domains": {"real": "real_office", "sim": "sim"}},
    )
    torch.manual_seed(0)
    net = PolicyNet(width=16, hidden=64)
    meta = {"method": "bc_dagger", "domains": {"train": "sim", "refiner": "runs/refiner.pt"}, "config": {"seed": 0}}
    src = save_checkpoint(
        tmp_path / "policy.pt", net, "policy_cnn", {"width": 16, "hidden": 64}, {**meta, "train_minutes": 2.0}
    )
    entry = pretrained.register("p", src, "a test", "goggles train-policy ...", fp16_weights=True)
    assert entry["refiner"] == {
        "file": "runs/refiner.pt",
        "method": "simgan",
        "domains": {"real": "real_office", "sim": "sim"},
        "sha256": pretrained.sha256(refiner),
    }
    shipped = load_checkpoint("pretrained:p")
    assert {v.dtype for v in shipped.state_dict.values()} == {torch.float16}
    assert entry["bytes"] < src.stat().st_size * 0.6
    # loaded, it computes in float32, within half precision's rounding of the original
    model = shipped.build()
    x = torch.randn(2, 3, 64, 64)
    assert next(model.parameters()).dtype == torch.float32
    assert torch.allclose(model(x), net(x), atol=1e-2)
    refiner.unlink()
    with pytest.raises(ValueError, match="runs/refiner.pt, which is not there"):
        pretrained.register("p2", src, "a test", "goggles train-policy ...")


def test_broken_manifest_fails_clearly(tmp_path, monkeypatch):
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text("checkpoints: [1, 2")
    monkeypatch.setattr(pretrained, "MANIFEST", manifest)
    with pytest.raises(CheckpointError, match="manifest.yaml: not valid YAML"):
        load_checkpoint("pretrained:x")


def test_shipped_checkpoints_are_present_intact_and_documented():
    entries = pretrained.load_manifest()
    for name in REQUIRED:
        assert name in entries, f"pretrained:{name} is not shipped"
    total = 0
    for name, entry in entries.items():
        path = pretrained.MANIFEST.parent / entry["file"]
        assert path.is_file(), name
        assert pretrained.sha256(path) == entry["sha256"], f"{name}: file differs from the manifest"
        ckpt = load_checkpoint(f"pretrained:{name}")
        assert ckpt.extra == {}, f"{name}: training state was not stripped"
        assert entry["command"].startswith("goggles "), name
        assert entry["seed"] is not None and entry["train_minutes"], name
        total += path.stat().st_size
    assert total < 30e6
    for name in ("cyclegan", "vr_goggles"):
        meta = load_checkpoint(f"pretrained:{name}").metadata
        assert meta["direction"] == "real->sim" and meta["domains"]["real"] == "real_lab"
        assert "sem_miou" in entries[name]["evaluation"]
    assert load_checkpoint("pretrained:simgan").metadata["direction"] == "sim->real"
    out = Translator.load("pretrained:vr_goggles", device="cpu")(torch.zeros(64, 64, 3, dtype=torch.uint8).numpy())
    assert out.shape == (64, 64, 3)


@pytest.mark.slow
@pytest.mark.parametrize("look", ["real_lab", "real_office"])
@pytest.mark.parametrize(("stem", "scale"), [("vr_goggles_selfdistill", 1.5), ("vr_goggles_selfdistill_fast", 1.0)])
def test_shipped_self_distilled_goggles_score_what_their_manifest_records(look, stem, scale, capsys, tmp_path):
    """The best shipped goggles and their fast students, run by the README's command on the
    issue's 500 frames, give the figures their manifest entry records (the half-precision
    file's), above the first fast student of the same look (the same network as the new fast
    ones) on the same rooms."""
    import json

    from sim2real_goggles.cli import main

    sfx = "" if look == "real_lab" else f"_{look}"
    entries = pretrained.load_manifest()
    entry = entries[f"{stem}{sfx}"]
    recorded = entry["evaluation"]
    assert recorded["real"] == look and recorded["n"] == 500
    args = ["eval-translator", f"pretrained:{stem}{sfx}", "--real", look, "--sim", "sim"]
    assert main([*args, "--n", "500", "--grid", str(tmp_path / "grid.png"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    for key in ("sem_miou", "sem_miou_no_goggles", "shift_err", "psnr"):
        assert report[key] == pytest.approx(recorded[key], abs=2e-3), key
    assert report["rooms"] == recorded["rooms"] == 32
    assert report["input_scale"] == recorded["input_scale"] == entry.get("input_scale", 1.0) == scale
    assert report["sem_miou_ci95"] == pytest.approx(recorded["sem_miou_ci95"], abs=2e-3)
    assert report["sem_miou"] > entries[f"vr_goggles_fast{sfx}"]["evaluation"]["sem_miou"] + 0.02


@pytest.mark.parametrize("sfx", ["", "_real_office"])
def test_fast_self_distilled_students_run_the_first_fast_students_network(sfx):
    """A CPU robot swapping ``vr_goggles_fast`` for ``vr_goggles_selfdistill_fast`` keeps its
    cost: the same network, translating at the frame's own size."""
    new = load_checkpoint(f"pretrained:vr_goggles_selfdistill_fast{sfx}")
    old = load_checkpoint(f"pretrained:vr_goggles_fast{sfx}")
    assert (new.arch, new.arch_kwargs) == (old.arch, old.arch_kwargs)
    assert new.metadata.get("input_scale", 1.0) == 1.0
    assert new.metadata["domains"] == old.metadata["domains"]


def test_transfer_table_rows_find_the_translators_their_readme_figures_measured():
    """Several shipped students share the manifest method ``distill``: the transfer table's
    ``vr_goggles_distilled`` row must still take the fast students it was measured with."""
    from sim2real_goggles.evaluation.transfer import shipped_translator

    assert shipped_translator("vr_goggles_distilled", "real_lab") == "pretrained:vr_goggles_fast"
    assert shipped_translator("vr_goggles_distilled", "real_office") == "pretrained:vr_goggles_fast_real_office"
    assert shipped_translator("vr_goggles", "real_office") == "pretrained:vr_goggles_real_office"


def test_transfer_table_rows_take_their_named_translator_whatever_the_manifest_order(monkeypatch):
    """A manifest with the self-distilled students first (as a hand edit, or the fast students
    removed and added again, would leave it) must not move the distilled row off the students it names;
    a row without a named translator takes the method's only file for the look."""
    from sim2real_goggles.evaluation.transfer import shipped_translator

    manifest = pretrained.load_manifest()
    first = [n for n in manifest if n.startswith("vr_goggles_selfdistill")]
    reordered = {n: manifest[n] for n in first} | {n: e for n, e in manifest.items() if n not in first}
    assert next(iter(reordered)) != "vr_goggles_fast"
    monkeypatch.setattr(pretrained, "load_manifest", lambda path=None: reordered)
    assert shipped_translator("vr_goggles_distilled", "real_lab") == "pretrained:vr_goggles_fast"
    assert shipped_translator("vr_goggles_distilled", "real_office") == "pretrained:vr_goggles_fast_real_office"
    assert shipped_translator("cyclegan", "real_office") == "pretrained:cyclegan_real_office"
    # the named student not shipped for a look: the method's first file for that look
    del reordered["vr_goggles_fast_real_office"]
    assert shipped_translator("vr_goggles_distilled", "real_office") == "pretrained:vr_goggles_selfdistill_real_office"
    assert shipped_translator("vr_goggles_distilled", "real_unknown") is None
