"""SimGAN (Shrivastava et al., CVPR 2017): a sim -> real *refiner* trained adversarially.

The refiner R makes sim images look real while keeping what they show, so a policy can be
trained on refined sim images (the sim-to-real alternative to goggles, a baseline of the policy
table). The losses of the paper:

* **local adversarial loss**: a fully convolutional discriminator scores every local patch
  (a PatchGAN with ``d_layers`` stride-2 stages: 34x34 patches for 2) with the logistic loss
  summed over patches, so R cannot win by changing the global layout;
* **self-regularisation**: ``lambda_reg * |psi(R(x)) - psi(x)|_1`` with psi the mean colour of
  ``reg_pool`` x ``reg_pool`` blocks (``reg_pool`` 1 = pixels), which keeps the content and the
  annotations of the sim image valid while letting texture and colour change;
* **history of refined images**: half of every fake batch the discriminator sees comes from a
  buffer of earlier refined images, and half the current batch replaces random entries of it;
* **pre-training**: ``pretrain_refiner`` iterations of self-regularisation alone, then
  ``pretrain_discriminator`` iterations of the discriminator alone, before the adversarial game.

The checkpoint's main network is R (direction ``sim->real``), loadable by
:class:`~sim2real_goggles.translation.Translator`; the training state lets ``--resume`` continue
exactly, as for the CycleGAN trainers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sim2real_goggles.models.networks import PatchGANDiscriminator, build_model
from sim2real_goggles.training.base import AdversarialConfig, AdversarialTrainer, to_uint8


@dataclass
class SimGANConfig(AdversarialConfig):
    """Recipe of ``goggles train-translator --method simgan`` (config/training/simgan.yaml);
    shared fields in :class:`~sim2real_goggles.training.base.AdversarialConfig`."""

    method: str = "simgan"
    ndf: int = 32
    d_layers: int = 2
    """Stride-2 stages of the local discriminator (2: 34x34 patches)."""
    iterations: int = 1200
    """All iterations, pre-training included."""
    pretrain_refiner: int = 100
    pretrain_discriminator: int = 50
    lambda_reg: float = 2.0
    reg_pool: int = 4
    history_size: int = 256

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.method != "simgan":
            raise ValueError(f"SimGANConfig is for method simgan, not {self.method!r}")
        if self.pretrain_refiner + self.pretrain_discriminator >= self.iterations:
            raise ValueError("pre-training must leave adversarial iterations: raise iterations")


class HistoryBuffer:
    """SimGAN's buffer of refined images: :meth:`mix` returns a fake batch whose second half
    comes from the buffer (once it holds enough), then stores half of the new images in it,
    replacing random entries once full."""

    def __init__(self, size: int):
        self.size = size
        self.images: list[torch.Tensor] = []

    def mix(self, batch: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        batch = batch.detach()
        half = len(batch) // 2
        out = batch
        if half and len(self.images) >= half:
            picks = torch.randperm(len(self.images), generator=gen)[:half]
            out = torch.cat([batch[: len(batch) - half], torch.stack([self.images[int(i)] for i in picks])])
        for img in batch[:half] if half else batch:
            if len(self.images) < self.size:
                self.images.append(img.clone())
            else:
                self.images[int(torch.randint(self.size, (), generator=gen))] = img.clone()
        return out

    def state_dict(self) -> list[torch.Tensor]:
        return [t.clone() for t in self.images]

    def load_state_dict(self, images: list[torch.Tensor]) -> None:
        self.images = [t.clone() for t in images]


def local_adversarial_loss(logits: torch.Tensor, real: bool) -> torch.Tensor:
    """Logistic loss of every local patch score, averaged (SimGAN's local adversarial loss)."""
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, 1.0 if real else 0.0))


def self_regularisation(refined: torch.Tensor, source: torch.Tensor, pool: int) -> torch.Tensor:
    """|psi(refined) - psi(source)|_1 with psi the mean of ``pool`` x ``pool`` blocks."""
    if pool > 1:
        refined, source = F.avg_pool2d(refined, pool), F.avg_pool2d(source, pool)
    return F.l1_loss(refined, source)


class SimGANTrainer(AdversarialTrainer):
    """Refiner R (sim -> real) and its local discriminator D."""

    progress_keys = ("R_total", "D")

    def __init__(self, cfg: SimGANConfig, out: str | Path, device: str = "cpu"):
        super().__init__(cfg, out, device)
        self.method, self.arch = cfg.method, cfg.arch
        self.arch_kwargs = {"ngf": cfg.ngf, "n_blocks": cfg.n_blocks}
        self.R = build_model(cfg.arch, **self.arch_kwargs).to(self.device)
        self.D = PatchGANDiscriminator(ndf=cfg.ndf, n_layers=cfg.d_layers).to(self.device)
        self.sync_initial_weights([self.R, self.D])
        betas = (cfg.beta1, 0.999)
        self.opt_R = torch.optim.Adam(self.R.parameters(), lr=cfg.lr, betas=betas)
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=cfg.lr, betas=betas)
        self.history_buffer = HistoryBuffer(cfg.history_size)
        self.x_sim, _ = self.load_domain(cfg.sim, seed_offset=1)
        self.x_real, _ = self.load_domain(cfg.real)

    def _draw(self, images: torch.Tensor) -> torch.Tensor:
        idx = torch.randint(len(images), (self.cfg.batch_size,), generator=self.gen)
        return images[idx].to(self.device)

    @property
    def phase(self) -> str:
        cfg = self.cfg
        if self.iteration < cfg.pretrain_refiner:
            return "pretrain_refiner"
        if self.iteration < cfg.pretrain_refiner + cfg.pretrain_discriminator:
            return "pretrain_discriminator"
        return "adversarial"

    def step(self) -> dict[str, float]:
        cfg = self.cfg
        phase = self.phase
        x_s = self._draw(self.x_sim)
        losses: dict[str, torch.Tensor] = {}
        if phase in ("pretrain_refiner", "adversarial"):
            self.D.requires_grad_(False)
            with self.autocast():
                refined = self.R(x_s)
                losses["reg"] = self_regularisation(refined, x_s, cfg.reg_pool) * cfg.lambda_reg
                if phase == "adversarial":
                    losses["R_adv"] = local_adversarial_loss(self.D(refined), True)
                loss_R = sum(losses.values())
            self.optimise("R", self.opt_R, loss_R)
            losses["R_total"] = loss_R
        if phase in ("pretrain_discriminator", "adversarial"):
            self.D.requires_grad_(True)
            with torch.no_grad(), self.autocast():
                fresh = self.R(x_s).float()
            fake = self.history_buffer.mix(fresh, self.gen)
            x_r = self._draw(self.x_real)
            with self.autocast():
                losses["D"] = 0.5 * (
                    local_adversarial_loss(self.D(x_r), True) + local_adversarial_loss(self.D(fake), False)
                )
            self.optimise("D", self.opt_D, losses["D"])
        self.iteration += 1
        return {k: float(v.detach()) for k, v in losses.items()}

    def main_network(self) -> nn.Module:
        return self.R

    def state_objects(self) -> dict[str, Any]:
        return {"D": self.D, "opt_R": self.opt_R, "opt_D": self.opt_D, "history_buffer": self.history_buffer}

    def metadata(self) -> dict[str, Any]:
        cfg = self.cfg
        return {
            "method": "simgan",
            "direction": "sim->real",
            "domains": {"real": cfg.real, "sim": cfg.sim},
            "image_size": cfg.image_size,
            "config": asdict(cfg),
        }

    @torch.no_grad()
    def sample_grid(self, n: int) -> np.ndarray:
        """Rows of sim | R(sim) as one uint8 image."""
        x = self.x_sim[:n].to(self.device)
        rows = to_uint8(torch.cat([x, self.R(x)], dim=3))
        return np.concatenate(list(rows), axis=0)


__all__ = ["HistoryBuffer", "SimGANConfig", "SimGANTrainer", "local_adversarial_loss", "self_regularisation"]
