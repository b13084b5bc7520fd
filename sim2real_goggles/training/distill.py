"""Knowledge distillation of a translator into a faster student (``--method distill``).

A trained generator (the *teacher*, e.g. ``pretrained:vr_goggles``) labels real images once:
its translations are the student's regression targets, and the frozen sim segmenter's classes
on those translations are the student's semantic targets. The student, a narrower and shallower
:class:`~sim2real_goggles.models.networks.CompactGenerator` with batch norm (folded into the
convolutions for inference, :func:`~sim2real_goggles.models.networks.fold_batchnorm`), learns

    L = |S(x) - T(x)|_1 + lambda_semantic * CE(seg(S(x)), argmax seg(T(x)))

No discriminators and no sim images: the student copies a function that is already trained, so
it needs a fraction of the teacher's iterations and keeps its quality (sem_miou, measured by
``goggles eval-translator``). Kill and ``--resume`` work as for the adversarial trainers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sim2real_goggles.models.checkpoint import load_checkpoint
from sim2real_goggles.models.networks import build_model
from sim2real_goggles.training.base import (
    AdversarialConfig,
    AdversarialTrainer,
    frozen_network,
    load_domain_tensors,
    lr_lambda,
    to_uint8,
)
from sim2real_goggles.translation import GENERATOR_ARCHS


@dataclass
class DistillConfig(AdversarialConfig):
    """Recipe of ``goggles train-translator --method distill`` (config/training/distill.yaml);
    shared fields in :class:`~sim2real_goggles.training.base.AdversarialConfig`."""

    method: str = "distill"
    teacher: str = "pretrained:vr_goggles"
    """The translator to copy (checkpoint or pretrained:NAME)."""
    segmenter: str = "pretrained:segmenter"
    """Frozen sim segmenter whose classes on the teacher's output the student must keep."""
    norm: str = "batch"
    """Student normalisation: batch (folded away at inference) or instance."""
    ngf: int = 12
    n_blocks: int = 4
    frames: int = 6000
    iterations: int = 3000
    batch_size: int = 16
    lr: float = 1e-3
    beta1: float = 0.9
    decay_start: float = 0.3
    lambda_semantic: float = 0.5
    teacher_batch: int = 256
    """Images per teacher/segmenter call while labelling (memory, not results)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.method != "distill":
            raise ValueError(f"DistillConfig is for method distill, not {self.method!r}")
        if self.arch not in GENERATOR_ARCHS:
            raise ValueError(f"student arch must be one of {GENERATOR_ARCHS}, got {self.arch!r}")
        if self.norm not in ("batch", "instance"):
            raise ValueError(f"norm must be batch or instance, got {self.norm!r}")


class DistillTrainer(AdversarialTrainer):
    """Student, optimiser and the teacher-labelled data of one distillation run."""

    progress_keys = ("loss", "l1", "semantic")

    def __init__(self, cfg: DistillConfig, out: str | Path, device: str = "cpu"):
        super().__init__(cfg, out, device)
        teacher_ckpt = load_checkpoint(cfg.teacher)
        if teacher_ckpt.arch not in GENERATOR_ARCHS:
            raise ValueError(f"{cfg.teacher}: holds a {teacher_ckpt.arch!r} network, not a translator")
        self.teacher_metadata = teacher_ckpt.metadata
        self.method, self.arch = "distill", cfg.arch
        self.arch_kwargs = {"ngf": cfg.ngf, "n_blocks": cfg.n_blocks, "norm": cfg.norm}
        self.student = build_model(cfg.arch, **self.arch_kwargs).to(self.device)
        self.sync_initial_weights([self.student])
        self.opt = torch.optim.Adam(self.student.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lr_lambda(cfg.iterations, cfg.decay_start))
        self.segmenter = frozen_network(cfg.segmenter, self.device)
        self.x, _ = load_domain_tensors(cfg.real, cfg.frames, cfg.image_size, cfg.seed)
        teacher = teacher_ckpt.build(self.device).eval()  # used under no_grad only
        targets, labels = [], []
        with torch.no_grad():
            for i in range(0, len(self.x), cfg.teacher_batch):
                t = teacher(self.x[i : i + cfg.teacher_batch].to(self.device))
                targets.append(t.cpu())
                labels.append(self.segmenter(t).argmax(1).cpu())
        self.target, self.labels = torch.cat(targets), torch.cat(labels)
        if self.device.type == "cuda":  # batches are gathered on the GPU, no copies in the loop
            self.x, self.target, self.labels = (a.to(self.device) for a in (self.x, self.target, self.labels))

    def step(self) -> dict[str, float]:
        cfg = self.cfg
        idx = torch.randint(len(self.x), (cfg.batch_size,), generator=self.gen)
        x, t, y = (a[idx].to(self.device) for a in (self.x, self.target, self.labels))
        self.student.train()
        with self.autocast():
            s = self.student(x)
            l1 = F.l1_loss(s, t)
            semantic = F.cross_entropy(self.segmenter(s), y) * cfg.lambda_semantic
            loss = l1 + semantic
        self.optimise("student", self.opt, loss)
        self.sched.step()
        self.iteration += 1
        return {"loss": float(loss.detach()), "l1": float(l1.detach()), "semantic": float(semantic.detach())}

    def main_network(self) -> nn.Module:
        self.student.eval()  # the checkpoint is for inference: batch norm on its running statistics
        return self.student

    def state_objects(self) -> dict[str, Any]:
        return {"opt": self.opt, "sched": self.sched}

    def metadata(self) -> dict[str, Any]:
        cfg = self.cfg
        return {
            "method": "distill",
            "direction": self.teacher_metadata.get("direction", "real->sim"),
            "teacher": {"checkpoint": cfg.teacher, "method": self.teacher_metadata.get("method")},
            "domains": self.teacher_metadata.get("domains", {"real": cfg.real}),
            "image_size": cfg.image_size,
            "config": asdict(cfg),
        }

    @torch.no_grad()
    def sample_grid(self, n: int) -> np.ndarray:
        """Rows of real | teacher | student as one uint8 image."""
        self.student.eval()
        x = self.x[:n].to(self.device)
        rows = to_uint8(torch.cat([x, self.target[:n].to(self.device), self.student(x)], dim=3))
        self.student.train()
        return np.concatenate(list(rows), axis=0)


__all__ = ["DistillConfig", "DistillTrainer"]
