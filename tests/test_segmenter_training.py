"""Segmenter training: losses fall, weights change, metrics are computed right."""

from __future__ import annotations

import numpy as np
import pytest

from sim2real_goggles.evaluation.metrics import confusion_matrix, iou_from_confusion, miou
from sim2real_goggles.models.checkpoint import load_checkpoint
from sim2real_goggles.training.segmenter import SegmenterConfig, train_segmenter


def test_iou_on_known_masks():
    target = np.array([[0, 0, 1, 1], [2, 2, 3, 255]])
    pred = np.array([[0, 1, 1, 1], [2, 2, 0, 3]])
    per_class = iou_from_confusion(confusion_matrix(pred, target))
    assert per_class["floor"] == pytest.approx(1 / 3)  # tp 1, fp 1 (the target pixel), fn 1
    assert per_class["wall"] == pytest.approx(2 / 3)
    assert per_class["obstacle"] == 1.0
    assert per_class["target"] == 0.0  # its only pixel was called floor; 255 is ignored
    assert miou(per_class) == pytest.approx((1 / 3 + 2 / 3 + 1 + 0) / 4)
    assert miou(iou_from_confusion(confusion_matrix(target, target))) == 1.0


def test_a_short_training_run_learns_and_writes_a_checkpoint(tmp_path):
    cfg = SegmenterConfig(
        frames=96, iterations=40, batch_size=16, image_size=32, base_channels=8, eval_looks=("sim",), eval_frames=48
    )
    result = train_segmenter(cfg, tmp_path / "seg.pt", progress=False)
    assert result["final_loss"] < 0.6 * result["first_loss"]
    sim = result["eval"]["sim"]
    assert sim["sem_miou"] > 0.3  # 40 iterations of a tiny net: far above chance, far from done
    assert sim["per_class_iou"]["floor"] > 0.5
    ckpt = load_checkpoint(tmp_path / "seg.pt")
    assert ckpt.arch == "segmenter" and ckpt.metadata["iterations"] == 40
    assert ckpt.metadata["metrics"]["sim"]["sem_miou"] == sim["sem_miou"]


def test_the_context_labeller_trains_on_recoloured_frames_and_reloads_with_its_architecture(tmp_path):
    cfg = SegmenterConfig(
        frames=96,
        iterations=100,
        batch_size=16,
        image_size=32,
        base_channels=8,
        context=True,
        augment=1.0,
        augment_style="recolour",
        eval_looks=("sim",),
        eval_frames=48,
    )
    result = train_segmenter(cfg, tmp_path / "lab.pt", progress=False)
    assert result["final_loss"] < 0.85 * result["first_loss"]
    assert result["eval"]["sim"]["sem_miou"] > 0.3
    ckpt = load_checkpoint(tmp_path / "lab.pt")
    assert ckpt.arch_kwargs["context"] is True
    net = ckpt.build()
    assert hasattr(net, "glob") and ckpt.metadata["config"]["augment_style"] == "recolour"


def test_an_unknown_augment_style_is_a_config_error():
    with pytest.raises(ValueError, match="unknown augment_style 'paint': choose one of blend, recolour"):
        SegmenterConfig(augment=1.0, augment_style="paint")
