"""Train the sim segmenter: supervised on rendered images and their ground-truth masks.

The segmenter is the frozen judge of translation quality (sem_miou) and the teacher of the
VR-Goggles semantic loss, so it is trained on the *sim* look only. Evaluating it on the
real-like looks, untranslated, measures the reality gap the goggles have to close.

``adapt`` trains the same network as a baseline that adapts the *segmenter* instead of the
image (labelled sim frames + unlabelled frames of ``real``; training/adapt.py):

* ``dann``: a domain classifier per feature stage in ``dann_levels`` reads the features through a
  gradient-reversal layer (weight ``lambda_dann``, DANN's ramp after ``adapt_warmup``);
* ``advent``: the direct entropy loss on real predictions (``lambda_entropy``) plus the
  adversarial loss on weighted self-information maps (``lambda_adv``, discriminator Adam at
  ``disc_lr``), both switched on after ``adapt_warmup`` iterations;
* ``self_train``: class-balanced self-training (CBST, Zou et al. ECCV 2018) of a student that
  starts from ``init`` (the appearance-robust labeller by default). Each of ``self_train_rounds``
  rounds labels the unlabelled real frames (flip-averaged softmax; the first round's labels
  come from ``teacher``, a real->sim translator whose translations the sim segmenter
  segments, when one is given: the goggles as teacher), keeps per class the most confident
  ``pseudo_portion`` of the pixels predicted as that class (and every pixel at least
  ``pseudo_confidence_cap`` confident), and trains on batches that are half labelled sim
  frames (appearance-randomised with probability ``augment``) and half real frames with those
  labels (random flip and colour jitter). The class-balanced thresholds keep the small classes
  (obstacles, the chair), which a single confidence threshold would drop. No real label is
  read for training: with a profile as ``real``, its ground truth only scores the pseudo-labels
  in the summary.

Sim and real frames go through the network as one batch, so batch norm keeps statistics of
both looks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from sim2real_goggles.appearance.profile import CLASS_NAMES, IGNORE_ID
from sim2real_goggles.data.domains import load_arrays
from sim2real_goggles.evaluation.metrics import confusion_matrix, iou_from_confusion, miou, rounded
from sim2real_goggles.models.checkpoint import load_checkpoint, save_checkpoint
from sim2real_goggles.models.networks import SegmenterNet, to_tensor
from sim2real_goggles.training.adapt import (
    DomainClassifier,
    dann_scale,
    domain_loss,
    entropy_loss,
    grad_reverse,
    self_information,
)
from sim2real_goggles.training.augment import AUGMENT_STYLES
from sim2real_goggles.training.base import config_dict, frozen_network

ADAPT_METHODS = ("", "dann", "advent", "self_train")


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
    context: bool = False
    """The U-Net with a third down-sampling stage and a global-context branch (SegmenterNet):
    the shipped labeller's network, whose pixels see the whole frame."""
    class_weights: tuple[float, float, float, float] = (1.0, 1.0, 2.0, 3.0)
    """Cross-entropy weights for floor, wall, obstacle, target (small classes count more)."""
    augment: float = 0.0
    """Fraction of each batch whose appearance is randomised (training/augment.py); 0 for the
    sim segmenter that judges translations, 0.75 for ``pretrained:labeller``, 1.0 (with
    ``augment_style`` recolour and ``context``) for ``pretrained:labeller_context``, the
    appearance-robust labeller that gives VR-Goggles its pseudo-labels on real images."""
    augment_style: str = "blend"
    """blend: random colours and textures blended over part of the class regions
    (``appearance_augment``); recolour: every region repainted, sim shading kept
    (``recolour_augment``, the shipped labeller's)."""
    adapt: str = ""
    """'' (sim only) | dann | advent | self_train: adapt to the unlabelled domain ``real``
    (module docstring)."""
    real: str = ""
    """Unlabelled target domain of ``adapt`` (profile, image folder or bag)."""
    adapt_warmup: int = 300
    """Supervised-only iterations before the adaptation losses start."""
    lambda_dann: float = 0.1
    dann_levels: tuple[str, ...] = ("enc3", "dec1")
    """Feature stages the DANN domain classifiers read (SegmenterNet.forward_features): the
    bottleneck and the features the class head reads (the U-Net's skips bypass the bottleneck)."""
    lambda_entropy: float = 0.01
    lambda_adv: float = 0.01
    disc_lr: float = 1e-4
    init: str = "pretrained:labeller"
    """self_train: the network the student starts from (and labels the real frames with, when
    no ``teacher`` is given); its architecture is kept, ``base_channels`` and ``context`` do not apply."""
    teacher: str = ""
    """self_train: real->sim translator of the first round's pseudo-labels: the sim segmenter
    (``teacher_segmenter``) on its translations ('' = the student's own predictions)."""
    teacher_segmenter: str = "pretrained:segmenter"
    self_train_rounds: int = 1
    """self_train: label-then-train rounds; the iterations are shared equally among them."""
    pseudo_portion: float = 0.5
    """self_train: per class, the most confident fraction of the pixels predicted as that class
    that becomes a pseudo-label (CBST's class-balanced threshold)."""
    pseudo_confidence_cap: float = 0.9
    """self_train: a pixel at least this confident is always kept (the threshold never exceeds it)."""
    finetune_lr: float = 3e-4
    """self_train: Adam learning rate of the student (constant; it starts from a trained network)."""
    seed: int = 0
    eval_looks: tuple[str, ...] = ("sim", "real_lab", "real_office")
    eval_frames: int = 400
    eval_seed: int = 100_000
    """Evaluation rooms are drawn from seeds far from the training seeds."""
    threads: int = field(default_factory=lambda: torch.get_num_threads())

    def __post_init__(self) -> None:
        if self.adapt not in ADAPT_METHODS:
            raise ValueError(f"unknown adaptation {self.adapt!r}: choose one of dann, advent, self_train")
        if self.augment_style not in AUGMENT_STYLES:
            raise ValueError(f"unknown augment_style {self.augment_style!r}: choose one of {', '.join(AUGMENT_STYLES)}")
        if self.adapt and not self.real:
            raise ValueError(f"--adapt {self.adapt} needs --real (the unlabelled target domain)")
        if self.adapt in ("dann", "advent") and self.augment > 0:
            raise ValueError("--augment and --adapt are separate baselines: give one of them")
        if self.teacher and self.adapt != "self_train":
            raise ValueError("--teacher is the first labeller of --adapt self_train; give that too")
        if self.adapt == "self_train":
            if self.self_train_rounds < 1 or self.iterations < self.self_train_rounds:
                raise ValueError("self_train_rounds must be >= 1 and at most the iterations")
            if not 0.0 < self.pseudo_portion <= 1.0:
                raise ValueError(f"pseudo_portion must be in (0, 1], got {self.pseudo_portion}")
        bad = set(self.dann_levels) - {"enc1", "enc2", "enc3", "dec2", "dec1"}
        if bad:
            raise ValueError(f"dann_levels: unknown stage(s) {sorted(bad)} (enc1 enc2 enc3 dec2 dec1)")


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
    adapter: _Adaptation | _SelfTraining | None
    if cfg.adapt == "self_train":
        start = load_checkpoint(cfg.init)
        if start.arch != "segmenter":
            raise ValueError(f"{cfg.init}: --set init= needs a segmenter checkpoint, not a {start.arch!r}")
        arch_kwargs = dict(start.arch_kwargs)
        model = start.build("cpu")
        opt = torch.optim.Adam(model.parameters(), lr=cfg.finetune_lr)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
        adapter = _SelfTraining(cfg, model)
    else:
        arch_kwargs = {"num_classes": len(CLASS_NAMES), "base": cfg.base_channels, "context": cfg.context}
        model = SegmenterNet(**arch_kwargs)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.iterations)
        adapter = _Adaptation(cfg, model) if cfg.adapt else None
        if adapter is not None and adapter.opt_d is None:
            opt.add_param_group({"params": list(adapter.classifiers.parameters())})
    weights = torch.tensor(cfg.class_weights, dtype=torch.float32)
    gen = torch.Generator().manual_seed(cfg.seed)
    augment = AUGMENT_STYLES[cfg.augment_style]
    # self-training fills the other half of each batch with pseudo-labelled real frames
    n_sim = cfg.batch_size // 2 if isinstance(adapter, _SelfTraining) else cfg.batch_size
    losses = []
    bar = tqdm(range(cfg.iterations), desc="train-segmenter", disable=not progress)
    model.train()
    for it in bar:
        idx = torch.randint(len(x_all), (n_sim,), generator=gen)
        x = x_all[idx]
        if cfg.augment > 0:
            chosen = torch.rand(len(idx), generator=gen) < cfg.augment
            x = torch.where(chosen[:, None, None, None], augment(x, y_all[idx], gen), x)
        if adapter is None:
            logits = model(x)
            loss = F.cross_entropy(logits, y_all[idx], weight=weights, ignore_index=IGNORE_ID)
        else:
            logits, loss = adapter.losses(x, y_all[idx], weights, it, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if adapter is not None:
            adapter.discriminator_step()
        losses.append(loss.item())
        if len(losses) % 20 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}", **(adapter.postfix() if adapter else {}))
    train_minutes = (time.perf_counter() - t0) / 60
    report = evaluate_segmenter(model, cfg.eval_looks, cfg.eval_frames, cfg.image_size, cfg.eval_seed)
    metadata = {
        "method": f"segmenter_{cfg.adapt}" if cfg.adapt else "segmenter_robust" if cfg.augment > 0 else "segmenter",
        "domains": {"train": cfg.domain, **({"real": cfg.real} if cfg.adapt else {})},
        "image_size": cfg.image_size,
        "iterations": cfg.iterations,
        "config": config_dict(cfg),
        "metrics": report,
        "train_minutes": round(train_minutes, 2),
        "final_loss": round(float(np.mean(losses[-50:])), 5),
        **({"adaptation": adapter.summary()} if adapter else {}),
        **(
            {"init": cfg.init, **({"teacher": cfg.teacher} if cfg.teacher else {})} if cfg.adapt == "self_train" else {}
        ),
    }
    save_checkpoint(out, model, "segmenter", arch_kwargs, metadata)
    return {
        "checkpoint": str(out),
        "train_minutes": metadata["train_minutes"],
        "final_loss": metadata["final_loss"],
        "first_loss": round(losses[0], 5),
        **({"adaptation": adapter.summary()} if adapter else {}),
        "eval": report,
    }


class _LossLog:
    """Per-iteration values of an adaptation's losses: the progress-bar postfix and the summary
    (first and last mean, 50 iterations each). Keys in ``quiet`` stay out of the postfix."""

    quiet: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.log: dict[str, list[float]] = {}

    def _record(self, key: str, value: torch.Tensor) -> None:
        self.log.setdefault(key, []).append(float(value.detach()))

    def postfix(self) -> dict[str, str]:
        return {k: f"{np.mean(v[-20:]):.3f}" for k, v in self.log.items() if k not in self.quiet and v}

    def summary(self) -> dict[str, Any]:
        return {
            k: {"first": round(float(np.mean(v[:50])), 5), "last": round(float(np.mean(v[-50:])), 5)}
            for k, v in self.log.items()
        }


class _Adaptation(_LossLog):
    """The DANN or ADVENT terms of one segmenter run (see the module docstring)."""

    quiet = ("seg",)  # the progress bar shows the total loss already

    def __init__(self, cfg: SegmenterConfig, model: SegmenterNet):
        super().__init__()
        self.cfg, self.model = cfg, model
        images, _ = load_arrays(cfg.real, cfg.frames, cfg.image_size, cfg.seed + 1)
        self.x_real = to_tensor(images)
        with torch.no_grad():
            model.eval()
            logits, feats = model.forward_features(self.x_real[:1])
            model.train()
        levels = cfg.dann_levels if cfg.adapt == "dann" else ("self_information",)
        channels = {k: v.shape[1] for k, v in feats.items()} | {"self_information": logits.shape[1]}
        # DANN's classifiers train with the segmenter (the reversal makes it adversarial);
        # ADVENT's discriminator has its own optimiser and step.
        self.classifiers = nn.ModuleDict({k: DomainClassifier(channels[k]) for k in levels})
        self.opt_d = (
            torch.optim.Adam(self.classifiers.parameters(), lr=cfg.disc_lr, betas=(0.9, 0.99))
            if cfg.adapt == "advent"
            else None
        )
        self.maps: tuple[torch.Tensor, torch.Tensor] | None = None

    def losses(
        self, x_sim: torch.Tensor, y_sim: torch.Tensor, weights: torch.Tensor, it: int, gen: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.cfg
        b = len(x_sim)
        x_real = self.x_real[torch.randint(len(self.x_real), (b,), generator=gen)]
        logits, feats = self.model.forward_features(torch.cat([x_sim, x_real]))
        loss = F.cross_entropy(logits[:b], y_sim, weight=weights, ignore_index=IGNORE_ID)
        self._record("seg", loss)
        self.maps = None
        if it < cfg.adapt_warmup:
            return logits[:b], loss
        if cfg.adapt == "dann":
            scale = dann_scale((it - cfg.adapt_warmup) / max(1, cfg.iterations - cfg.adapt_warmup))
            dom = sum(
                domain_loss(out[:b], real=False) + domain_loss(out[b:], real=True)
                for out in (self.classifiers[k](grad_reverse(feats[k], scale)) for k in cfg.dann_levels)
            ) / len(cfg.dann_levels)
            self._record("domain", dom)
            loss = loss + cfg.lambda_dann * dom
        else:
            ent = entropy_loss(logits[b:])
            info = self_information(logits)
            disc = self.classifiers["self_information"]
            disc.requires_grad_(False)
            fool = domain_loss(disc(info[b:]), real=False)  # real maps should look like sim ones
            disc.requires_grad_(True)
            self._record("entropy_real", ent)
            self._record("adv", fool)
            loss = loss + cfg.lambda_entropy * ent + cfg.lambda_adv * fool
            self.maps = (info[:b].detach(), info[b:].detach())
        return logits[:b], loss

    def discriminator_step(self) -> None:
        """ADVENT: one step of the self-information discriminator on this iteration's maps."""
        if self.opt_d is None or self.maps is None:
            return
        disc = self.classifiers["self_information"]
        sim_maps, real_maps = self.maps
        loss = 0.5 * (domain_loss(disc(sim_maps), real=False) + domain_loss(disc(real_maps), real=True))
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_d.step()
        self._record("disc", loss)


class _SelfTraining(_LossLog):
    """Class-balanced self-training (``adapt: self_train``, see the module docstring): the
    pseudo-labels of the real frames, remade at the start of every round, and the real half of
    each batch."""

    def __init__(self, cfg: SegmenterConfig, model: nn.Module):
        super().__init__()
        self.cfg, self.model = cfg, model
        images, masks = load_arrays(cfg.real, cfg.frames, cfg.image_size, cfg.seed + 1)
        self.real_images = images
        self.x_real = to_tensor(images)
        # ground truth of a profile, used only to score the pseudo-labels in the summary
        self.y_true = None if masks is None else torch.from_numpy(masks.astype(np.int64))
        self.per_round = cfg.iterations // cfg.self_train_rounds
        self.y_real: torch.Tensor | None = None
        self.rounds: list[dict[str, Any]] = []

    @torch.no_grad()
    def _probabilities(self, first: bool) -> torch.Tensor:
        """Flip-averaged class probabilities (N, C, H, W) of the real frames: the teacher's
        (sim segmenter on its translations) in the first round when one is given, else the
        student's own."""
        if first and self.cfg.teacher:
            from sim2real_goggles.translation import Translator

            translator = Translator.load(self.cfg.teacher, device="cpu")
            net = frozen_network(self.cfg.teacher_segmenter, torch.device("cpu"))
            images = self.real_images

            def run(batch: np.ndarray) -> torch.Tensor:
                return net(to_tensor(translator(batch))).softmax(1)

        else:
            net, images = self.model, self.real_images
            net.eval()

            def run(batch: np.ndarray) -> torch.Tensor:
                return net(to_tensor(batch)).softmax(1)

        out = []
        for i in range(0, len(images), 64):
            batch = images[i : i + 64]
            flipped = np.ascontiguousarray(batch[:, :, ::-1])
            out.append((run(batch) + run(flipped).flip(3)) / 2)
        self.model.train()
        return torch.cat(out)

    def relabel(self, first: bool) -> None:
        cfg = self.cfg
        confidence, label = self._probabilities(first).max(1)
        thresholds: list[float | None] = []  # None: no pixel was predicted as that class
        for c in range(len(CLASS_NAMES)):
            conf_c = confidence[label == c]
            if conf_c.numel() == 0:
                thresholds.append(None)
                continue
            # the most confident pseudo_portion of this class's pixels (sorted, no sampling)
            k = max(1, int(round(cfg.pseudo_portion * conf_c.numel())))
            kth = float(conf_c.flatten().sort(descending=True).values[k - 1])
            thresholds.append(min(cfg.pseudo_confidence_cap, kth))
        # a class never predicted has no pixel to keep, so any threshold serves it
        keep = confidence >= torch.tensor([1.0 if t is None else t for t in thresholds])[label]
        self.y_real = torch.where(keep, label, torch.full_like(label, IGNORE_ID))
        info: dict[str, Any] = {
            "source": "teacher" if first and cfg.teacher else "student",
            "thresholds": [None if t is None else round(t, 4) for t in thresholds],
            "kept_fraction": round(float(keep.float().mean()), 4),
        }
        if self.y_true is not None:
            right = label == self.y_true
            info["kept_accuracy"] = round(float(right[keep].float().mean()), 4)
            info["kept_accuracy_per_class"] = {
                name: round(float(right[keep & (label == c)].float().mean()), 4)
                if (keep & (label == c)).any()
                else None
                for c, name in enumerate(CLASS_NAMES)
            }
        self.rounds.append(info)

    def losses(
        self, x_sim: torch.Tensor, y_sim: torch.Tensor, weights: torch.Tensor, it: int, gen: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if it % self.per_round == 0 and len(self.rounds) < self.cfg.self_train_rounds:
            self.relabel(first=not self.rounds)
        assert self.y_real is not None
        b = self.cfg.batch_size - len(x_sim)
        idx = torch.randint(len(self.x_real), (b,), generator=gen)
        x_real, y_real = self.x_real[idx], self.y_real[idx]
        flip = torch.rand(b, generator=gen) < 0.5
        x_real = torch.where(flip[:, None, None, None], x_real.flip(3), x_real)
        y_real = torch.where(flip[:, None, None], y_real.flip(2), y_real)
        gains = 0.85 + 0.3 * torch.rand((b, 3, 1, 1), generator=gen)
        offset = 0.2 * torch.rand((b, 1, 1, 1), generator=gen) - 0.1
        x_real = (x_real * gains + offset + 0.03 * torch.randn(x_real.shape, generator=gen)).clamp(-1, 1)
        logits = self.model(torch.cat([x_sim, x_real]))
        loss_sim = F.cross_entropy(logits[: len(x_sim)], y_sim, weight=weights, ignore_index=IGNORE_ID)
        loss_real = F.cross_entropy(logits[len(x_sim) :], y_real, weight=weights, ignore_index=IGNORE_ID)
        self._record("sim", loss_sim)
        self._record("real", loss_real)
        # the sim and the real half weigh alike, whatever their pixel counts
        return logits[: len(x_sim)], 0.5 * (loss_sim + loss_real)

    def discriminator_step(self) -> None:
        """No discriminator: self-training has none."""

    def summary(self) -> dict[str, Any]:
        return {**super().summary(), "rounds": self.rounds}
