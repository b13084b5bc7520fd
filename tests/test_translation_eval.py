"""Translation-quality report: metric definitions and the eval-translator command."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sim2real_goggles.appearance.profile import load_profile
from sim2real_goggles.cli import main
from sim2real_goggles.evaluation.metrics import confusion_matrix, iou_from_confusion, miou, miou_interval
from sim2real_goggles.evaluation.translation_eval import frechet_distance, paired_frames, sim_through_camera
from sim2real_goggles.models.checkpoint import save_checkpoint
from sim2real_goggles.models.networks import CompactGenerator, SegmenterNet


def test_frechet_distance_zero_for_same_features_and_grows_with_shift():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 8))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    near = frechet_distance(a, a + 0.1)
    far = frechet_distance(a, a + 1.0)
    assert 0 < near < far
    assert far == pytest.approx(8 * 1.0**2, rel=0.05)  # mean shift of 1 in 8 dimensions


def test_reference_is_the_sim_look_through_the_real_lens():
    ref = sim_through_camera(load_profile("sim"), load_profile("real_lab"))
    assert ref.camera == load_profile("real_lab").camera
    assert ref.textures == load_profile("sim").textures
    data = paired_frames("real_lab", "sim", n=6, seed=5, size=32)
    # The reference shares the real look's geometry: its flat colours follow the real mask.
    sim_floor = data["ref"][data["mask_real"] == 0].mean(0)
    assert np.abs(sim_floor - np.array([128, 128, 128])).max() < 40
    assert data["real"].shape == data["ref"].shape == (6, 32, 32, 3)


def _room_confusions(rng: np.random.Generator, rooms: int, frames: int, miss: np.ndarray) -> np.ndarray:
    """Confusions of ``frames`` random 4-class 8x8 masks per room; room r calls a fraction
    miss[r] of the obstacle (class 2) pixels wall (class 1)."""
    out = []
    for r in range(rooms):
        for _ in range(frames):
            target = rng.integers(0, 4, size=(8, 8))
            pred = target.copy()
            pred[(target == 2) & (rng.random((8, 8)) < miss[r])] = 1
            out.append(confusion_matrix(pred, target))
    return np.stack(out)


def test_miou_interval_draws_rooms_not_frames():
    rng = np.random.default_rng(0)
    # Rooms that all score alike: the interval closes on their mIoU.
    same = np.stack([confusion_matrix(np.arange(4).repeat(4), np.arange(4).repeat(4))] * 12)
    assert miou_interval(same, np.arange(12)) == pytest.approx((1.0, 1.0))
    # Rooms that differ: the interval holds the pooled mIoU and has width.
    miss = rng.random(10)
    cms = _room_confusions(rng, 10, 6, miss)
    rooms = np.arange(10).repeat(6)
    pooled = miou(iou_from_confusion(cms.sum(0)))
    low, high = miou_interval(cms, rooms)
    assert low < pooled < high and high - low > 0.02
    # The room is the unit: the same frames counted as one room each give a far narrower
    # (over-confident) interval than when grouped by the room they came from.
    low_f, high_f = miou_interval(cms, np.arange(len(cms)))
    assert high_f - low_f < 0.7 * (high - low)
    # Summing a room's frames first changes nothing: the interval depends on the rooms' totals.
    totals = np.stack([cms[rooms == r].sum(0) for r in range(10)])
    assert miou_interval(totals, np.arange(10)) == pytest.approx((low, high))
    # Four times the rooms (alike in spread): a narrower interval.
    more = _room_confusions(rng, 40, 6, rng.random(40))
    low4, high4 = miou_interval(more, np.arange(40).repeat(6))
    assert high4 - low4 < 0.75 * (high - low)
    with pytest.raises(ValueError, match="one confusion matrix"):
        miou_interval(cms, rooms[:-1])


def _untrained_generator(path, ngf: int, **metadata):
    """An untrained compact translator checkpoint (seed 0) with ``metadata``."""
    torch.manual_seed(0)
    return save_checkpoint(
        path, CompactGenerator(ngf=ngf, n_blocks=1), "compact", {"ngf": ngf, "n_blocks": 1}, metadata
    )


def test_eval_translator_command_reports_every_metric(tmp_path, capsys):
    gen = _untrained_generator(tmp_path / "g.pt", 8, image_size=32, method="cyclegan")
    seg = save_checkpoint(tmp_path / "s.pt", SegmenterNet(base=8), "segmenter", {"base": 8})
    assert main(["eval-translator", str(gen), "--segmenter", str(seg), "--n", "12", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    for key in (
        "sem_miou",
        "sem_miou_no_goggles",
        "sem_miou_sim",
        "sem_miou_ref",
        "psnr",
        "ssim",
        "fd_seg",
        "shift_err",
        "n",
    ):
        assert key in report
    assert report["n"] == 12 and report["image_size"] == 32 and report["input_scale"] == 1.0
    low, high = report["sem_miou_ci95"]
    assert report["rooms"] >= 1 and 0.0 <= low <= high <= 1.0
    assert 0.0 <= report["sem_miou"] <= 1.0 and report["psnr"] > 0 and -1 <= report["ssim"] <= 1
    assert report["fd_seg"] >= 0 and report["shift_err"] > 0  # an untrained conv net is not shift-equivariant
    assert (tmp_path / "g.real_lab.grid.png").is_file()

    # --input-scale runs the same generator on enlarged frames: another translation, reported
    assert (
        main(["eval-translator", str(gen), "--segmenter", str(seg), "--n", "12", "--input-scale", "1.5", "--json"]) == 0
    )
    scaled = json.loads(capsys.readouterr().out)
    assert scaled["input_scale"] == 1.5 and scaled["n"] == 12
    assert scaled["psnr"] != report["psnr"] and scaled["sem_miou_sim"] == report["sem_miou_sim"]


def test_perfect_translation_score_comes_from_the_sim_look_through_the_real_camera(tmp_path, capsys):
    """sem_miou_ref is the shipped sim segmenter on the sim look rendered through the real lens,
    scored against the real frame's mask: near the sim upper bound, far above the untranslated
    real frames, and not the (untrained) translator's score."""
    gen = _untrained_generator(tmp_path / "g.pt", 4, image_size=64, method="cyclegan")
    assert main(["eval-translator", str(gen), "--real", "real_office", "--n", "12", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["sem_miou_ref"] > 0.9 and report["sem_miou_ref"] > report["sem_miou_no_goggles"] + 0.3
    assert report["sem_miou_ref"] > report["sem_miou"] + 0.3
    assert set(report["per_class_iou_ref"]) == set(report["per_class_iou_sim"])


def test_eval_of_a_refiner_compares_refined_sim_with_the_paired_real_frames(tmp_path, capsys):
    ref = _untrained_generator(tmp_path / "r.pt", 4, image_size=32, method="simgan", direction="sim->real")
    seg = save_checkpoint(tmp_path / "s.pt", SegmenterNet(base=8), "segmenter", {"base": 8})
    assert main(["eval-translator", str(ref), "--segmenter", str(seg), "--n", "8", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["direction"] == "sim->real" and report["n"] == 8
    for key in ("psnr", "ssim", "fd_seg", "psnr_identity", "ssim_identity", "fd_seg_identity"):
        assert key in report
    # the unrefined sim frame is a different image from the real one, and an untrained refiner
    # (near-constant output) scores differently from it
    assert 0 < report["psnr_identity"] < 40 and report["psnr"] != report["psnr_identity"]
    assert (tmp_path / "r.real_lab.grid.png").is_file()
