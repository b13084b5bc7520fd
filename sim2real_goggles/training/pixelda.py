"""PixelDA (Bousmalis et al., CVPR 2017, https://arxiv.org/abs/1612.05424): a sim -> real
generator trained adversarially *together with the task network* on its images.

Networks: the generator ``G(x_s, z)`` (image + uniform noise in, :class:`PixelDAGenerator`), a
PatchGAN discriminator ``D`` (LSGAN) telling real frames from generated ones, and the task
network ``T`` (the 5-class segmenter) trained on sim frames and on generated frames with the
simulator's labels. Per iteration:

* ``G``: ``lambda_adv * LSGAN(D(G(x_s, z)), real) + lambda_task * CE(T(G(x_s, z)), y_s)
  + lambda_content * PMSE_fg(G(x_s, z), x_s)``. The content-similarity loss is the masked
  pairwise mean squared error of the paper: on the foreground pixels only (``content_classes``:
  obstacles and the target, masks from the simulator), and blind to a constant colour shift
  there, so objects keep their shape while their colour and the whole background may change;
* ``T``: ``CE(T(x_s), y_s) + CE(T(G(x_s, z)), y_s)`` (class-weighted like the sim segmenter);
* ``D``: ``LSGAN(D(x_r), real) + LSGAN(D(G(x_s, z)), fake)``.

The checkpoint's main network is ``G`` (direction ``sim->real``, a refiner for ``goggles
train-policy --refiner``, run with ``z = 0``); at the end ``T`` is also written as
``OUT.segmenter.pt`` (method ``segmenter_pixelda``): the segmenter trained on PixelDA images,
the pixelda row of ``goggles seg-table``. Resume, Ctrl-C and SIGTERM work as for the other
trainers (training/base.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sim2real_goggles.appearance.profile import CLASS_NAMES, IGNORE_ID
from sim2real_goggles.models.checkpoint import save_checkpoint
from sim2real_goggles.models.networks import PatchGANDiscriminator, PixelDAGenerator, SegmenterNet
from sim2real_goggles.training.base import (
    AdversarialConfig,
    AdversarialTrainer,
    config_dict,
    to_uint8,
)
from sim2real_goggles.training.translator import lsgan_loss


@dataclass
class PixelDAConfig(AdversarialConfig):
    """Recipe of ``goggles train-translator --method pixelda`` (config/training/pixelda.yaml)."""

    method: str = "pixelda"
    arch: str = "pixelda"
    ndf: int = 32
    noise_dim: int = 10
    lambda_adv: float = 1.0
    lambda_task: float = 0.5
    lambda_content: float = 1.0
    content_classes: tuple[int, ...] = (2, 3)
    """Foreground of the content-similarity loss (2 obstacle, 3 target)."""
    task_base: int = 16
    """Width of the task segmenter (as the sim segmenter's)."""
    task_lr: float = 1e-3
    task_class_weights: tuple[float, float, float, float] = (1.0, 1.0, 2.0, 3.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.method != "pixelda":
            raise ValueError(f"PixelDAConfig is for method pixelda, not {self.method!r}")
        if self.arch != "pixelda":
            raise ValueError(f"pixelda trains its own generator (arch pixelda), not {self.arch!r}")


def masked_pmse(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """PixelDA's content-similarity loss: per image, the pairwise mean squared error
    ``sum(d^2)/k - (sum d)^2/k^2`` of ``d = prediction - target`` over the k masked values
    (pixels x channels), averaged over the images with a non-empty mask. Zero when ``d`` is
    constant on the mask, so a uniform colour change of an object costs nothing."""
    m = mask[:, None].to(prediction.dtype).expand_as(prediction)
    d = (prediction - target) * m
    k = m.flatten(1).sum(1)
    keep = k > 0
    if not keep.any():
        return prediction.sum() * 0.0
    s1 = d.flatten(1).sum(1)[keep]
    s2 = (d**2).flatten(1).sum(1)[keep]
    k = k[keep]
    return (s2 / k - (s1 / k) ** 2).mean()


class PixelDATrainer(AdversarialTrainer):
    """G (sim -> real, with noise), D and the task segmenter T (module docstring)."""

    progress_keys = ("G_total", "D", "T")

    def __init__(self, cfg: PixelDAConfig, out: str | Path, device: str = "cpu"):
        super().__init__(cfg, out, device)
        self.method, self.arch = cfg.method, cfg.arch
        self.arch_kwargs = {"ngf": cfg.ngf, "n_blocks": cfg.n_blocks, "noise_dim": cfg.noise_dim}
        self.G = PixelDAGenerator(**self.arch_kwargs).to(self.device)
        self.D = PatchGANDiscriminator(ndf=cfg.ndf).to(self.device)
        self.task_kwargs = {"num_classes": len(CLASS_NAMES), "base": cfg.task_base}
        self.T = SegmenterNet(**self.task_kwargs).to(self.device)
        self.sync_initial_weights([self.G, self.D, self.T])
        betas = (cfg.beta1, 0.999)
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=cfg.lr, betas=betas)
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=cfg.lr, betas=betas)
        self.opt_T = torch.optim.Adam(self.T.parameters(), lr=cfg.task_lr)
        self.class_weights = torch.tensor(cfg.task_class_weights, dtype=torch.float32, device=self.device)
        self.content_ids = torch.tensor(cfg.content_classes, device=self.device)
        self.x_sim, self.y_sim = self.load_domain(cfg.sim, seed_offset=1)
        if self.y_sim is None:
            raise ValueError(f"{cfg.sim}: pixelda needs masks for the sim domain (task labels, content mask)")
        self.x_real, _ = self.load_domain(cfg.real)

    def _draw(self, n: int) -> torch.Tensor:
        return torch.randint(n, (self.cfg.batch_size,), generator=self.gen)

    def _task_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.T(x), y, weight=self.class_weights, ignore_index=IGNORE_ID)

    def step(self) -> dict[str, float]:
        cfg = self.cfg
        i_s = self._draw(len(self.x_sim))
        x_s, y_s = self.x_sim[i_s].to(self.device), self.y_sim[i_s].to(self.device)
        x_r = self.x_real[self._draw(len(self.x_real))].to(self.device)
        z = torch.rand(len(x_s), cfg.noise_dim, generator=self.gen).to(self.device) * 2 - 1
        losses: dict[str, torch.Tensor] = {}
        # --- generator (D and T frozen)
        self.D.requires_grad_(False)
        self.T.requires_grad_(False)
        with self.autocast():
            fake = self.G(x_s, z)
            losses["G_adv"] = lsgan_loss(self.D(fake), True) * cfg.lambda_adv
            losses["G_task"] = self._task_loss(fake, y_s) * cfg.lambda_task
            losses["content"] = masked_pmse(fake.float(), x_s, torch.isin(y_s, self.content_ids)) * cfg.lambda_content
            loss_G = sum(losses.values())
        self.optimise("G", self.opt_G, loss_G)
        losses["G_total"] = loss_G
        fake = fake.detach()
        # --- task network on sim and generated frames
        self.T.requires_grad_(True)
        with self.autocast():
            losses["T"] = self._task_loss(x_s, y_s) + self._task_loss(fake, y_s)
        self.optimise("T", self.opt_T, losses["T"])
        # --- discriminator
        self.D.requires_grad_(True)
        with self.autocast():
            losses["D"] = 0.5 * (lsgan_loss(self.D(x_r), True) + lsgan_loss(self.D(fake), False))
        self.optimise("D", self.opt_D, losses["D"])
        self.iteration += 1
        return {k: float(v.detach()) for k, v in losses.items()}

    def main_network(self) -> nn.Module:
        return self.G

    def state_objects(self) -> dict[str, Any]:
        return {"D": self.D, "T": self.T, "opt_G": self.opt_G, "opt_D": self.opt_D, "opt_T": self.opt_T}

    def metadata(self) -> dict[str, Any]:
        cfg = self.cfg
        return {
            "method": "pixelda",
            "direction": "sim->real",
            "domains": {"real": cfg.real, "sim": cfg.sim},
            "image_size": cfg.image_size,
            "config": config_dict(cfg),
        }

    @property
    def segmenter_path(self) -> Path:
        return self.out.with_name(self.out.stem + ".segmenter" + self.out.suffix)

    def save(self, path: Path | None = None, final: bool = False) -> Path:
        """The generator checkpoint (with training state); with ``final`` also the task
        segmenter as ``OUT.segmenter.pt``."""
        written = super().save(path, final)
        if final and self.rank == 0:
            cfg = self.cfg
            meta = {
                "method": "segmenter_pixelda",
                "domains": {"train": cfg.sim, "real": cfg.real},
                "image_size": cfg.image_size,
                "iterations": self.iteration,
                "generator": str(written),
                "train_minutes": round(self.train_seconds / 60, 2),
                "config": config_dict(cfg),
            }
            save_checkpoint(self.segmenter_path, self.T, "segmenter", self.task_kwargs, meta)
        return written

    def train(self, progress: bool = True, stop_after: int | None = None) -> dict[str, Any]:
        result = super().train(progress, stop_after)
        if self.iteration >= self.cfg.iterations:
            result["segmenter"] = str(self.segmenter_path)
        return result

    @torch.no_grad()
    def sample_grid(self, n: int) -> np.ndarray:
        """Rows of sim | G(sim, z=0) | G(sim, random z) as one uint8 image."""
        x = self.x_sim[:n].to(self.device)
        fixed = torch.Generator().manual_seed(0)  # not self.gen: samples must not move the run's RNG
        z = torch.rand(len(x), self.cfg.noise_dim, generator=fixed).to(self.device) * 2 - 1
        rows = to_uint8(torch.cat([x, self.G(x), self.G(x, z)], dim=3))
        return np.concatenate(list(rows), axis=0)


__all__ = ["PixelDAConfig", "PixelDATrainer", "masked_pmse"]
