"""Distillation of a translator into a batch-norm student: learning, exact resume, inference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sim2real_goggles.models.checkpoint import load_checkpoint, save_checkpoint
from sim2real_goggles.models.networks import CompactGenerator, SegmenterNet
from sim2real_goggles.resources import share_path
from sim2real_goggles.training.distill import DistillConfig, DistillTrainer
from sim2real_goggles.training.translator import load_recipe
from sim2real_goggles.translation import Translator


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("distill")
    torch.manual_seed(1)
    teacher = save_checkpoint(
        tmp / "teacher.pt",
        CompactGenerator(ngf=4, n_blocks=1),
        "compact",
        {"ngf": 4, "n_blocks": 1},
        {"method": "cyclegan", "direction": "real->sim", "domains": {"real": "real_lab", "sim": "sim"}},
    )
    segmenter = save_checkpoint(tmp / "seg.pt", SegmenterNet(base=4).eval(), "segmenter", {"base": 4})
    return str(teacher), str(segmenter)


def config(nets, **kw) -> DistillConfig:
    teacher, segmenter = nets
    base = dict(
        teacher=teacher,
        segmenter=segmenter,
        image_size=32,
        frames=16,
        ngf=4,
        n_blocks=1,
        batch_size=4,
        lr=5e-3,
        checkpoint_every=1000,
        sample_every=1000,
    )
    return DistillConfig(**(base | kw))


def test_student_learns_the_teacher(nets, tmp_path):
    trainer = DistillTrainer(config(nets, iterations=150, batch_size=8), tmp_path / "s.pt")
    with torch.no_grad():
        x = trainer.x[:8]
        start = (trainer.student.eval()(x) - trainer.target[:8]).abs().mean()
    result = trainer.train(progress=False)
    l1 = [h["l1"] for h in trainer.history]
    assert np.mean(l1[-10:]) < 0.75 * np.mean(l1[:5])
    student = Translator.load(result["checkpoint"], device="cpu")
    with torch.no_grad():
        end = (student.model(x) - trainer.target[:8]).abs().mean()
    assert end < 0.9 * start  # the saved student (eval mode, folded batch norm) is closer too
    ckpt = load_checkpoint(result["checkpoint"])
    assert ckpt.arch_kwargs == {"ngf": 4, "n_blocks": 1, "norm": "batch"}
    assert ckpt.metadata["method"] == "distill" and ckpt.metadata["teacher"]["method"] == "cyclegan"
    assert ckpt.metadata["domains"]["real"] == "real_lab"


def test_resume_equals_uninterrupted(nets, tmp_path):
    cfg = config(nets, iterations=6)
    straight = DistillTrainer(cfg, tmp_path / "a.pt")
    straight.train(progress=False)
    first = DistillTrainer(cfg, tmp_path / "b.pt")
    first.train(progress=False, stop_after=3)
    resumed = DistillTrainer(cfg, tmp_path / "b.pt")
    resumed.restore(tmp_path / "b.pt")
    resumed.train(progress=False)
    for name, tensor in straight.student.state_dict().items():
        assert torch.equal(tensor, resumed.student.state_dict()[name]), name


def test_recipe_and_config_errors(nets):
    cfg = load_recipe(share_path("config", "training", "distill.yaml"), frames=8)
    assert isinstance(cfg, DistillConfig) and cfg.norm == "batch" and cfg.teacher == "pretrained:vr_goggles"
    with pytest.raises(ValueError, match="norm must be batch or instance"):
        config(nets, norm="group")
    with pytest.raises(ValueError, match="option 'labeller' does not apply to method 'distill'"):
        load_recipe(share_path("config", "training", "distill.yaml"), labeller="x.pt")
    teacher, segmenter = nets
    with pytest.raises(ValueError, match="not a translator"):
        DistillTrainer(config((segmenter, segmenter)), "unused.pt")
