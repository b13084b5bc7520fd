"""Train the sim segmenter: supervised on rendered images and their ground-truth masks.

The segmenter is the frozen judge of translation quality (sem_miou) and the teacher of the
VR-Goggles semantic loss, so it is trained on the *sim* look only. Evaluating it on the
real-like looks, untranslated, measures the reality gap the goggles have to close.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from sim2real_goggles.appearance.profile import CLASS_NAMES, IGNORE_ID
from sim2real_goggles.data.domains import load_arrays
from sim2real_goggles.evaluation.metrics import confusion_matrix, iou_from_confusion, miou, rounded
from sim2real_goggles.models.checkpoint import save_checkpoint
from sim2real_goggles.models.networks import SegmenterNet, to_tensor
from sim2real_goggles.training.augment import appearance_augment


@dataclass
class SegmenterConfig:
    """Recipe of ``goggles train-segmenter`` (defaults are the shipped recipe)."""

    domain: str = "sim"
    """Training look (profile) or folder of images with masks/."""
    image_size: int = 64
    frames: int = 3000
    """Training frames rendered from the domain (profiles) or read (folders)."""
    iterations: int = 1500
    batch_size: int = 16
    lr: float = 1e-3
    base_channels: int = 16
    """Width of the U-Net (16: 0.12 M parameters, 0.13 s per batch of 16 at 64x64 on 2 cores)."""
    class_weights: tuple[float, float, float, float] = (1.0, 1.0, 2.0, 3.0)
    """Cross-entropy weights for floor, wall, obstacle, target (small classes count more)."""
    augment: float = 0.0
    """Fraction of each batch whose appearance is randomised (training/augment.py); 0 for the
    sim segmenter that judges translations, 0.75 for the appearance-robust labeller that gives
    VR-Goggles its pseudo-labels on real images."""
    seed: int = 0
    eval_looks: tuple[str, ...] = ("sim", "real_lab", "real_office")
    eval_frames: int = 400
    eval_seed: int = 100_000
    """Evaluation rooms are drawn from seeds far from the training seeds."""
    threads: int = field(default_factory=lambda: torch.get_num_threads())


@torch.no_grad()
def predict(model: torch.nn.Module, images: np.ndarray, batch: int = 128) -> np.ndarray:
    """Class ids (N, H, W) uint8 for uint8 images (N, H, W, 3)."""
    model.eval()
    out = [
        model(to_tensor(images[i : i + batch])).argmax(1).to(torch.uint8).numpy() for i in range(0, len(images), batch)
    ]
    return np.concatenate(out)


def evaluate_segmenter(
    model: torch.nn.Module, looks: tuple[str, ...], frames: int, size: int, seed: int
) -> dict[str, Any]:
    """sem_miou and per-class IoU of ``model`` on each look (untranslated)."""
    report: dict[str, Any] = {}
    for look in looks:
        images, masks = load_arrays(look, frames, size, seed, require_masks=True)
        cm = confusion_matrix(predict(model, images), masks)
        per_class = iou_from_confusion(cm)
        report[look] = {
            "sem_miou": round(miou(per_class), 4),
            "per_class_iou": rounded(per_class),
        }
    return report


def train_segmenter(cfg: SegmenterConfig, out: Path, progress: bool = True) -> dict[str, Any]:
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    t0 = time.perf_counter()
    images, masks = load_arrays(cfg.domain, cfg.frames, cfg.image_size, cfg.seed, require_masks=True)
    x_all, y_all = to_tensor(images), torch.from_numpy(masks.astype(np.int64))
    arch_kwargs = {"num_classes": len(CLASS_NAMES), "base": cfg.base_channels}
    model = SegmenterNet(**arch_kwargs)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.iterations)
    weights = torch.tensor(cfg.class_weights, dtype=torch.float32)
    gen = torch.Generator().manual_seed(cfg.seed)
    losses = []
    bar = tqdm(range(cfg.iterations), desc="train-segmenter", disable=not progress)
    model.train()
    for _ in bar:
        idx = torch.randint(len(x_all), (cfg.batch_size,), generator=gen)
        x = x_all[idx]
        if cfg.augment > 0:
            chosen = torch.rand(len(idx), generator=gen) < cfg.augment
            x = torch.where(chosen[:, None, None, None], appearance_augment(x, y_all[idx], gen), x)
        logits = model(x)
        loss = F.cross_entropy(logits, y_all[idx], weight=weights, ignore_index=IGNORE_ID)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if len(losses) % 20 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
    train_minutes = (time.perf_counter() - t0) / 60
    report = evaluate_segmenter(model, cfg.eval_looks, cfg.eval_frames, cfg.image_size, cfg.eval_seed)
    metadata = {
        "method": "segmenter_robust" if cfg.augment > 0 else "segmenter",
        "domains": {"train": cfg.domain},
        "image_size": cfg.image_size,
        "iterations": cfg.iterations,
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()},
        "metrics": report,
        "train_minutes": round(train_minutes, 2),
        "final_loss": round(float(np.mean(losses[-50:])), 5),
    }
    save_checkpoint(out, model, "segmenter", arch_kwargs, metadata)
    return {
        "checkpoint": str(out),
        "train_minutes": metadata["train_minutes"],
        "final_loss": metadata["final_loss"],
        "first_loss": round(losses[0], 5),
        "eval": report,
    }
