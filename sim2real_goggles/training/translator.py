"""Unpaired translator training: CycleGAN and the VR-Goggles recipe (real -> sim).

Notation follows the papers: ``G_rs`` translates the real look to the sim look (the goggles that
ship), ``G_sr`` the reverse; ``D_sim`` and ``D_real`` are PatchGAN discriminators.

* ``cyclegan`` (Zhu et al. 2017): LSGAN adversarial terms, cycle ||G_sr(G_rs(x_r)) - x_r||_1 and
  ||G_rs(G_sr(x_s)) - x_s||_1 weighted by ``lambda_cycle``, identity ||G_rs(x_s) - x_s||_1 and
  ||G_sr(x_r) - x_r||_1 weighted by ``identity_weight * lambda_cycle``, 50-image history pools,
  Adam (lr 2e-4, beta1 0.5), learning rate constant then linearly decayed to zero.
* ``vr_goggles`` (Zhang, Tai et al. RA-L 2019) adds
  - a semantic consistency loss through the frozen sim segmenter S. The label-sound part is the
    semantic cycle CE(S(G_rs(G_sr(x_s))), y_s) with the simulator's labels. The pseudo-label
    part CE(S(G_rs(x_r)), argmax S(x_r)) is switched on only where S is reliable (CyCADA): it is
    gated per pixel by S's confidence, and globally off until S's mean confidence on the
    batch reaches ``semantic_reliability``. Both are weighted per class (``semantic_class_weights``:
    the small target and obstacles count more, DESIGN §5);
  - a shift loss ||G_rs(shift(x_r)) - shift(G_rs(x_r))||_1 on the overlap, for a random integer
    shift of up to ``max_shift_fraction`` of the image, which keeps consecutive video frames
    consistent.

Training state (all four networks, optimisers, schedulers, pools, RNG streams) is saved in the
checkpoint's ``extra`` so ``--resume`` continues exactly where it stopped; the checkpoint's main
network is ``G_rs``, loadable by :class:`sim2real_goggles.translation.Translator`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import nn
from tqdm import tqdm

from sim2real_goggles.appearance.profile import IGNORE_ID
from sim2real_goggles.data.domains import load_arrays
from sim2real_goggles.models.checkpoint import load_checkpoint, save_checkpoint
from sim2real_goggles.models.networks import PatchGANDiscriminator, build_model, to_tensor

METHODS = ("cyclegan", "vr_goggles")


@dataclass
class TranslatorConfig:
    """Recipe of ``goggles train-translator``; YAML recipes in config/training/ override these
    defaults and command-line options override the recipe."""

    method: str = "cyclegan"
    """cyclegan | vr_goggles"""
    real: str = "real_lab"
    """Real domain: profile name/path or image folder."""
    sim: str = "sim"
    """Sim domain: profile name/path or image folder (masks needed for vr_goggles)."""
    image_size: int = 64
    frames: int = 2000
    """Images drawn from each domain (rendered once, held in memory)."""
    arch: str = "compact"
    """Generator architecture: compact | resnet9."""
    ngf: int = 16
    n_blocks: int = 6
    ndf: int = 64
    iterations: int = 1600
    batch_size: int = 8
    lr: float = 2e-4
    beta1: float = 0.5
    decay_start: float = 0.5
    """Fraction of the iterations after which the learning rate decays linearly to zero."""
    lambda_cycle: float = 10.0
    identity_weight: float = 0.5
    """Identity loss weight as a fraction of lambda_cycle."""
    pool_size: int = 50
    lambda_semantic: float = 1.0
    semantic_class_weights: tuple[float, float, float, float] = (1.0, 1.0, 5.0, 10.0)
    semantic_confidence: float = 0.9
    """Pseudo-labels are used only where the segmenter's softmax confidence is at least this."""
    semantic_reliability: float = 0.8
    """The pseudo-label term is on only while the mean confidence on the real batch is at least this."""
    lambda_shift: float = 1.0
    max_shift_fraction: float = 0.125
    segmenter: str = ""
    """Checkpoint of the frozen sim segmenter (vr_goggles)."""
    seed: int = 0
    checkpoint_every: int = 200
    sample_every: int = 200
    log_dir: str = ""
    """TensorBoard folder ('' = next to the checkpoint, <out>.runs)."""

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}: choose one of {METHODS}")
        if self.method == "vr_goggles" and not self.segmenter:
            raise ValueError("vr_goggles needs --segmenter (a checkpoint from goggles train-segmenter)")
        if self.image_size % 4:
            raise ValueError(f"image_size must be a multiple of 4, got {self.image_size}")


def load_recipe(path: str | Path, **overrides: Any) -> TranslatorConfig:
    """A YAML recipe (keys = TranslatorConfig fields) with overrides applied (None = keep)."""
    path = Path(path)
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a recipe must be a mapping of TranslatorConfig fields")
    names = {f.name for f in fields(TranslatorConfig)}
    for key in raw:
        if key not in names:
            raise ValueError(f"{path}: unknown key {key!r} (allowed: {sorted(names)})")
    raw.update({k: v for k, v in overrides.items() if v is not None})
    if "semantic_class_weights" in raw:
        raw["semantic_class_weights"] = tuple(raw["semantic_class_weights"])
    return TranslatorConfig(**raw)


class ImagePool:
    """CycleGAN's history of generated images: each query returns, per image, either the new
    one or (with probability 1/2 once full) a stored one that the new image replaces."""

    def __init__(self, size: int):
        self.size = size
        self.images: list[torch.Tensor] = []

    def query(self, batch: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if self.size == 0:
            return batch
        out = []
        for img in batch.detach():
            if len(self.images) < self.size:
                self.images.append(img.clone())
                out.append(img)
            elif torch.rand((), generator=gen) < 0.5:
                i = int(torch.randint(self.size, (), generator=gen))
                out.append(self.images[i].clone())
                self.images[i] = img.clone()
            else:
                out.append(img)
        return torch.stack(out)

    def state(self) -> list[torch.Tensor]:
        return [t.clone() for t in self.images]

    def load(self, images: list[torch.Tensor]) -> None:
        self.images = [t.clone() for t in images]


def lsgan_loss(prediction: torch.Tensor, real: bool) -> torch.Tensor:
    """Least-squares GAN loss (Mao et al. 2017)."""
    return F.mse_loss(prediction, torch.full_like(prediction, 1.0 if real else 0.0))


def shift_loss(generator: nn.Module, x: torch.Tensor, dy: int, dx: int, y: torch.Tensor | None = None) -> torch.Tensor:
    """|G(shift(x)) - shift(G(x))| on the region both images cover. ``y`` = G(x) if known.

    shift(x)[i, j] = x[i - dy, j - dx]; zero for a shift-equivariant G.
    """
    h, w = x.shape[-2:]
    shifted = torch.roll(x, shifts=(dy, dx), dims=(-2, -1))
    g_shifted = generator(shifted)
    g_x = generator(x) if y is None else y
    ys, ye = max(dy, 0), h + min(dy, 0)
    xs, xe = max(dx, 0), w + min(dx, 0)
    # On the overlap, shift(G(x))[i, j] = G(x)[i - dy, j - dx].
    return F.l1_loss(g_shifted[..., ys:ye, xs:xe], g_x[..., ys - dy : ye - dy, xs - dx : xe - dx])


def semantic_loss(
    logits: torch.Tensor, labels: torch.Tensor, class_weights: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Class-weighted cross-entropy of segmenter logits against labels, pixels in ``mask`` only
    (and never IGNORE_ID pixels); zero when every pixel is masked out."""
    labels = labels.clone()
    if mask is not None:
        labels[~mask] = IGNORE_ID
    if not (labels != IGNORE_ID).any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits, labels, weight=class_weights, ignore_index=IGNORE_ID)


def _load_domain(spec: str, n: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    images, masks = load_arrays(spec, n, size, seed)
    return to_tensor(images), None if masks is None else torch.from_numpy(masks.astype(np.int64))


def _lr_lambda(iterations: int, decay_start: float):
    start = int(iterations * decay_start)

    def factor(it: int) -> float:
        if it < start:
            return 1.0
        return max(0.0, 1.0 - (it - start) / max(1, iterations - start))

    return factor


class TranslatorTrainer:
    """Holds the networks, optimisers and data of one run; :meth:`train` runs it."""

    def __init__(self, cfg: TranslatorConfig, out: str | Path, device: str = "cpu"):
        self.cfg = cfg
        self.out = Path(out)
        self.device = torch.device(device)
        torch.manual_seed(cfg.seed)
        gen_kwargs: dict[str, Any] = {"ngf": cfg.ngf, "n_blocks": cfg.n_blocks}
        self.gen_kwargs = gen_kwargs
        self.G_rs = build_model(cfg.arch, **gen_kwargs).to(self.device)
        self.G_sr = build_model(cfg.arch, **gen_kwargs).to(self.device)
        self.D_sim = PatchGANDiscriminator(ndf=cfg.ndf).to(self.device)
        self.D_real = PatchGANDiscriminator(ndf=cfg.ndf).to(self.device)
        betas = (cfg.beta1, 0.999)
        self.opt_G = torch.optim.Adam([*self.G_rs.parameters(), *self.G_sr.parameters()], lr=cfg.lr, betas=betas)
        self.opt_D = torch.optim.Adam([*self.D_sim.parameters(), *self.D_real.parameters()], lr=cfg.lr, betas=betas)
        lam = _lr_lambda(cfg.iterations, cfg.decay_start)
        self.sched_G = torch.optim.lr_scheduler.LambdaLR(self.opt_G, lam)
        self.sched_D = torch.optim.lr_scheduler.LambdaLR(self.opt_D, lam)
        self.pool_sim, self.pool_real = ImagePool(cfg.pool_size), ImagePool(cfg.pool_size)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.iteration = 0
        self.history: list[dict[str, float]] = []
        self.segmenter: nn.Module | None = None
        self.class_weights = torch.tensor(cfg.semantic_class_weights, dtype=torch.float32, device=self.device)
        if cfg.method == "vr_goggles":
            self.segmenter = load_checkpoint(cfg.segmenter).build(self.device)
            for p in self.segmenter.parameters():
                p.requires_grad_(False)
        self.x_real, _ = _load_domain(cfg.real, cfg.frames, cfg.image_size, cfg.seed)
        self.x_sim, self.y_sim = _load_domain(cfg.sim, cfg.frames, cfg.image_size, cfg.seed + 1)
        if cfg.method == "vr_goggles" and self.y_sim is None:
            raise ValueError(
                f"{cfg.sim}: vr_goggles needs masks for the sim domain (the semantic cycle uses its labels)"
            )

    # ------------------------------------------------------------------ one iteration
    def _batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        b = self.cfg.batch_size
        ir = torch.randint(len(self.x_real), (b,), generator=self.gen)
        is_ = torch.randint(len(self.x_sim), (b,), generator=self.gen)
        y = self.y_sim[is_].to(self.device) if self.y_sim is not None else None
        return self.x_real[ir].to(self.device), self.x_sim[is_].to(self.device), y

    def step(self) -> dict[str, float]:
        cfg = self.cfg
        x_r, x_s, y_s = self._batch()
        lam_c, lam_i = cfg.lambda_cycle, cfg.lambda_cycle * cfg.identity_weight
        # --- generators (discriminators frozen)
        for d in (self.D_sim, self.D_real):
            d.requires_grad_(False)
        fake_s = self.G_rs(x_r)  # real -> sim
        fake_r = self.G_sr(x_s)  # sim -> real
        rec_r = self.G_sr(fake_s)
        rec_s = self.G_rs(fake_r)
        losses: dict[str, torch.Tensor] = {
            "G_rs": lsgan_loss(self.D_sim(fake_s), True),
            "G_sr": lsgan_loss(self.D_real(fake_r), True),
            "cycle_real": F.l1_loss(rec_r, x_r) * lam_c,  # ||G_sr(G_rs(x_r)) - x_r||
            "cycle_sim": F.l1_loss(rec_s, x_s) * lam_c,  # ||G_rs(G_sr(x_s)) - x_s||
        }
        if lam_i > 0:
            losses["idt_rs"] = F.l1_loss(self.G_rs(x_s), x_s) * lam_i
            losses["idt_sr"] = F.l1_loss(self.G_sr(x_r), x_r) * lam_i
        log: dict[str, float] = {}
        if cfg.method == "vr_goggles":
            assert self.segmenter is not None and y_s is not None
            losses["sem_cycle"] = semantic_loss(self.segmenter(rec_s), y_s, self.class_weights) * cfg.lambda_semantic
            with torch.no_grad():
                probs = self.segmenter(x_r).softmax(1)
                confidence, pseudo = probs.max(1)
            reliability = float(confidence.mean())
            log["seg_confidence_real"] = reliability
            if reliability >= cfg.semantic_reliability:
                confident = confidence >= cfg.semantic_confidence
                losses["sem_pseudo"] = (
                    semantic_loss(self.segmenter(fake_s), pseudo, self.class_weights, confident) * cfg.lambda_semantic
                )
            max_shift = max(1, int(cfg.image_size * cfg.max_shift_fraction))
            dy, dx = (int(v) for v in torch.randint(-max_shift, max_shift + 1, (2,), generator=self.gen))
            losses["shift"] = shift_loss(self.G_rs, x_r, dy, dx, y=fake_s) * cfg.lambda_shift
        loss_G = sum(losses.values())
        self.opt_G.zero_grad(set_to_none=True)
        loss_G.backward()
        self.opt_G.step()
        # --- discriminators, on pooled fakes
        for d in (self.D_sim, self.D_real):
            d.requires_grad_(True)
        pooled_s = self.pool_sim.query(fake_s, self.gen)
        pooled_r = self.pool_real.query(fake_r, self.gen)
        losses["D_sim"] = 0.5 * (lsgan_loss(self.D_sim(x_s), True) + lsgan_loss(self.D_sim(pooled_s), False))
        losses["D_real"] = 0.5 * (lsgan_loss(self.D_real(x_r), True) + lsgan_loss(self.D_real(pooled_r), False))
        self.opt_D.zero_grad(set_to_none=True)
        (losses["D_sim"] + losses["D_real"]).backward()
        self.opt_D.step()
        self.sched_G.step()
        self.sched_D.step()
        self.iteration += 1
        log.update({k: float(v.detach()) for k, v in losses.items()})
        log["G_total"] = float(loss_G.detach())
        return log

    # ------------------------------------------------------------------ state
    def save(self, path: Path | None = None, final: bool = False) -> Path:
        cfg = self.cfg
        recent = self.history[-50:]
        metadata = {
            "method": cfg.method,
            "direction": "real->sim",
            "domains": {"real": cfg.real, "sim": cfg.sim},
            "image_size": cfg.image_size,
            "iterations": self.iteration,
            "complete": final,
            "config": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()},
            "losses": {
                k: round(float(np.mean([h[k] for h in recent if k in h])), 5) for k in (recent[-1] if recent else {})
            },
        }
        extra = {
            "G_sr": self.G_sr.state_dict(),
            "D_sim": self.D_sim.state_dict(),
            "D_real": self.D_real.state_dict(),
            "opt_G": self.opt_G.state_dict(),
            "opt_D": self.opt_D.state_dict(),
            "sched_G": self.sched_G.state_dict(),
            "sched_D": self.sched_D.state_dict(),
            "pool_sim": self.pool_sim.state(),
            "pool_real": self.pool_real.state(),
            "gen_state": self.gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "iteration": self.iteration,
        }
        return save_checkpoint(path or self.out, self.G_rs, cfg.arch, self.gen_kwargs, metadata, extra)

    def restore(self, path: Path) -> None:
        ckpt = load_checkpoint(path)
        if ckpt.metadata.get("method") != self.cfg.method or ckpt.arch != self.cfg.arch:
            raise ValueError(
                f"{path}: was trained with {ckpt.metadata.get('method')}/{ckpt.arch}, not {self.cfg.method}/{self.cfg.arch}"
            )
        if "opt_G" not in ckpt.extra:
            raise ValueError(f"{path}: holds no training state to resume from")
        e = ckpt.extra
        self.G_rs.load_state_dict(ckpt.state_dict)
        self.G_sr.load_state_dict(e["G_sr"])
        self.D_sim.load_state_dict(e["D_sim"])
        self.D_real.load_state_dict(e["D_real"])
        self.opt_G.load_state_dict(e["opt_G"])
        self.opt_D.load_state_dict(e["opt_D"])
        self.sched_G.load_state_dict(e["sched_G"])
        self.sched_D.load_state_dict(e["sched_D"])
        self.pool_sim.load(e["pool_sim"])
        self.pool_real.load(e["pool_real"])
        self.gen.set_state(e["gen_state"])
        torch.set_rng_state(e["torch_rng"])
        self.iteration = int(e["iteration"])

    # ------------------------------------------------------------------ loop
    def train(self, progress: bool = True, stop_after: int | None = None) -> dict[str, Any]:
        """Run to ``cfg.iterations`` (or ``stop_after`` more iterations). Ctrl-C saves first."""
        cfg = self.cfg
        writer = _summary_writer(cfg.log_dir or str(self.out) + ".runs")
        target = cfg.iterations if stop_after is None else min(cfg.iterations, self.iteration + stop_after)
        t0 = time.perf_counter()
        bar = tqdm(total=target, initial=self.iteration, desc=f"train {cfg.method}", disable=not progress)
        try:
            while self.iteration < target:
                log = self.step()
                self.history.append(log)
                if writer is not None:
                    for k, v in log.items():
                        writer.add_scalar(f"train/{k}", v, self.iteration)
                    if self.iteration % cfg.sample_every == 0:
                        writer.add_image(
                            "samples/real|goggles|cycle", sample_grid(self, 4), self.iteration, dataformats="HWC"
                        )
                if self.iteration % cfg.checkpoint_every == 0:
                    self.save()
                bar.update(1)
                bar.set_postfix({k: f"{log[k]:.3f}" for k in ("G_total", "D_sim", "D_real") if k in log})
        except KeyboardInterrupt:
            self.save()
            bar.close()
            raise
        finally:
            if writer is not None:
                writer.close()
        bar.close()
        path = self.save(final=self.iteration >= cfg.iterations)
        return {
            "checkpoint": str(path),
            "iterations": self.iteration,
            "minutes": round((time.perf_counter() - t0) / 60, 2),
            "losses_first": self.history[0] if self.history else {},
            "losses_last": self.history[-1] if self.history else {},
        }


@torch.no_grad()
def sample_grid(trainer: TranslatorTrainer, n: int) -> np.ndarray:
    """Rows of real | G_rs(real) | G_sr(G_rs(real)) as one uint8 image."""
    x = trainer.x_real[:n].to(trainer.device)
    was_training = trainer.G_rs.training
    trainer.G_rs.eval()
    trainer.G_sr.eval()
    fake = trainer.G_rs(x)
    rows = torch.cat([x, fake, trainer.G_sr(fake)], dim=3)
    if was_training:
        trainer.G_rs.train()
        trainer.G_sr.train()
    grid = torch.cat(list(rows), dim=1)  # stack rows vertically
    return ((grid.permute(1, 2, 0).cpu().numpy() + 1.0) * 127.5).clip(0, 255).astype(np.uint8)


def _summary_writer(log_dir: str):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # pragma: no cover - tensorboard is a dependency; keep training without it
        return None
    return SummaryWriter(log_dir=log_dir)


def iterations_per_second(trainer: TranslatorTrainer, n: int = 5) -> float:
    trainer.step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(n):
        trainer.step()
    return n / (time.perf_counter() - t0)


__all__ = [
    "METHODS",
    "ImagePool",
    "TranslatorConfig",
    "TranslatorTrainer",
    "iterations_per_second",
    "load_recipe",
    "lsgan_loss",
    "semantic_loss",
    "shift_loss",
]
