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

With ``teacher_tta`` the labels are the teacher's test-time average over mirrored and shifted
copies of each frame (:func:`label_with_teacher`), which is steadier than one pass. Any
translator checkpoint can be the teacher, a student too: ``--teacher`` set to the last student
gives another round of self-distillation (README, "The goggles, measured"), and ``rounds``
runs several in one command (:func:`train_rounds`). With
``label_crf`` the class probabilities pass through a dense CRF over the real frame
(:func:`crf_refine`) before they become labels, so uncertain pixels take the class of the
like-coloured side of the frame's nearest edge. With ``lambda_layout_adv`` a discriminator on
the segmenter's class maps adds output-space adaptation (Tsai et al. CVPR 2018): the student's
maps must look like those of sim frames, which are then rendered too.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sim2real_goggles.appearance.profile import IGNORE_ID
from sim2real_goggles.models.checkpoint import load_checkpoint
from sim2real_goggles.models.networks import PatchGANDiscriminator, build_model
from sim2real_goggles.training.adapt import masked_l1
from sim2real_goggles.training.augment import _rand
from sim2real_goggles.training.base import (
    AdversarialConfig,
    AdversarialTrainer,
    frozen_network,
    lr_lambda,
    to_uint8,
)
from sim2real_goggles.training.translator import layout_maps, lsgan_loss, semantic_loss
from sim2real_goggles.translation import GENERATOR_ARCHS, _padded


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
    teacher_tta: bool = True
    """Label with the teacher's test-time average: its translations and the segmenter's class
    probabilities averaged over mirrored and shifted copies of each frame (shifts of 0 and
    +-1/16 of the image in x and y, reflection padding), each mapped back before averaging."""
    teacher_batch: int = 256
    """Images per teacher/segmenter call while labelling (memory, not results)."""
    student_noise: float = 0.0
    """Noisy Student (Xie et al. CVPR 2020): with s > 0 each training batch is mirrored (p 0.5)
    and shifted by up to s x 1/8 of the image (input, target and labels alike, reflection
    padding), and only the student's input gets camera noise: per-channel gain and brightness
    +-0.15 s, contrast +-0.3 s, blur (p 0.3 s) and sensor noise up to 0.04 s. The teacher
    labels the clean frames; 0 trains on them as they are."""
    label_threshold: float = 0.0
    """Confidence-thresholded pseudo-labels: pixels where the teacher's (averaged) class
    probability is below this get no semantic target (ignored by the cross-entropy); 0 keeps
    every pixel's argmax."""
    threshold_image: bool = False
    """With :attr:`label_threshold`, drop those pixels from the L1 image loss too."""
    student_photometric: bool = True
    """false: :attr:`student_noise` mirrors and shifts only (input, target and labels alike),
    without the camera noise on the input."""
    label_crf: int = 0
    """Mean-field iterations of a dense CRF that sharpens the teacher's class probabilities
    along the edges of the real frame before they become labels (:func:`crf_refine`); 0: off."""
    crf_sxy: float = 2.0
    """CRF kernel's spatial scale in pixels (neighbours within 2 x crf_sxy take part)."""
    crf_srgb: float = 0.1
    """CRF kernel's colour scale, on the [-1, 1] image: pixels this far apart in colour are
    barely linked, so labels stop at the frame's edges."""
    crf_weight: float = 3.0
    """Weight of the CRF's pairwise term against the teacher's log-probabilities."""
    input_scale: float = 1.0
    """Scale at which the finished student translates: recorded in its checkpoint, and
    :class:`~sim2real_goggles.translation.Translator` enlarges each frame by it (bilinear) before
    the generator and shrinks the output back (area). Unless :attr:`train_at_scale`, the student
    itself still learns on frames at ``image_size``, so its weights do not depend on it. With
    :attr:`rounds` > 1 only the last round's student records it. (A teacher labels as it
    translates: at the ``input_scale`` its own checkpoint records, see :class:`ScaledGenerator`.)"""
    train_at_scale: bool = False
    """true: the student also learns as it will translate, through :class:`ScaledGenerator` at
    :attr:`input_scale` (each training frame enlarged, the output shrunk back to ``image_size``
    before the losses), so batch norm and filters see objects at the size they will have at
    inference; the generator's work per step grows by input_scale^2 (at 1.5 a step took 1.7x as
    long, one CPU thread). false (and input_scale 1): it learns at ``image_size``. With
    :attr:`rounds` > 1 only the last round, the one that records input_scale, learns at it."""
    lambda_layout_adv: float = 0.0
    """Weight of an adversary on the segmenter's class maps (0 = off; output-space adaptation,
    Tsai et al. CVPR 2018, as ``lambda_semantic_adv`` in the VR-Goggles recipe): a PatchGAN
    (``layout_layers`` stride-2 stages, ``ndf`` filters) tells the frozen segmenter's one-hot maps
    of sim frames (``sim``, as many as ``frames``) from those of the student's translations, and
    the student learns to fool it (LSGAN), so class shapes the simulator never shows (a chair
    with no gap between its legs, a blob of floor on a wall) cost it even where the teacher's
    labels have them. The discriminator learns with Adam (lr 2e-4, beta1 0.5) on the student's
    schedule."""
    layout_layers: int = 2
    """Stride-2 stages of that discriminator (2: 34x34 patches)."""
    rounds: int = 1
    """Self-distillation rounds (:func:`train_rounds`): round 1 learns from :attr:`teacher`,
    each later round from the student of the round before; every round but the last is written
    beside the output as ``NAME.roundK.pt``."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.method != "distill":
            raise ValueError(f"DistillConfig is for method distill, not {self.method!r}")
        if self.arch not in GENERATOR_ARCHS:
            raise ValueError(f"student arch must be one of {GENERATOR_ARCHS}, got {self.arch!r}")
        if self.norm not in ("batch", "instance"):
            raise ValueError(f"norm must be batch or instance, got {self.norm!r}")
        if not 0.0 <= self.student_noise <= 1.0:
            raise ValueError(f"student_noise must be in [0, 1], got {self.student_noise}")
        if not 0.0 <= self.label_threshold < 1.0:
            raise ValueError(f"label_threshold must be in [0, 1), got {self.label_threshold}")
        if self.label_crf < 0 or min(self.crf_sxy, self.crf_srgb) <= 0 or self.crf_weight < 0:
            raise ValueError(
                f"label_crf must be >= 0, crf_sxy and crf_srgb > 0, crf_weight >= 0; got {self.label_crf}, "
                f"{self.crf_sxy}, {self.crf_srgb}, {self.crf_weight}"
            )
        if self.rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {self.rounds}")
        if not 1.0 <= self.input_scale <= 8.0:
            raise ValueError(f"input_scale must be in [1, 8], got {self.input_scale}")
        if self.lambda_layout_adv < 0 or self.layout_layers < 1:
            raise ValueError(
                f"lambda_layout_adv must be >= 0 and layout_layers >= 1, got {self.lambda_layout_adv}, "
                f"{self.layout_layers}"
            )


@torch.no_grad()
def label_with_teacher(
    teacher: nn.Module, segmenter: nn.Module, x: torch.Tensor, tta: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's translation of ``x`` (N, 3, H, W) and the segmenter's class probabilities
    on it; with ``tta``, both averaged over 18 views (mirror x 3 x 3 shifts of 0, +-H/16), each
    view's output shifted and mirrored back, every pixel averaged over the views that saw it."""
    if not tta:
        t = teacher(x)
        return t, torch.softmax(segmenter(t), 1)
    n, _, h, w = x.shape
    pad = max(1, h // 16)
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    t_sum = torch.zeros_like(x)
    p_sum: torch.Tensor | None = None
    count = torch.zeros(n, 1, h, w, device=x.device)
    for mirror in (False, True):
        for dy in (0, pad, 2 * pad):
            for dx in (0, pad, 2 * pad):
                view = padded[:, :, dy : dy + h, dx : dx + w]
                view = view.flip(3) if mirror else view
                t = teacher(view)
                p = torch.softmax(segmenter(t), 1)
                if mirror:
                    t, p = t.flip(3), p.flip(3)
                if p_sum is None:
                    p_sum = torch.zeros(n, p.shape[1], h, w, device=x.device)
                # view pixel (a, b) shows frame pixel (a + dy - pad, b + dx - pad)
                oy, ox = dy - pad, dx - pad
                ys, ye, xs, xe = max(0, oy), min(h, h + oy), max(0, ox), min(w, w + ox)
                src = (slice(None), slice(None), slice(ys - oy, ye - oy), slice(xs - ox, xe - ox))
                dst = (slice(None), slice(None), slice(ys, ye), slice(xs, xe))
                t_sum[dst] += t[src]
                p_sum[dst] += p[src]
                count[dst] += 1
    assert p_sum is not None
    return t_sum / count, p_sum / count


def area_matrix(out: int, size: int) -> torch.Tensor:
    """(out, size) weights that shrink a signal of ``size`` samples to ``out`` by averaging the
    area each output pixel covers, fractions of pixels included (OpenCV's INTER_AREA)."""
    step = size / out
    m = torch.zeros(out, size)
    for i in range(out):
        start, end = i * step, (i + 1) * step
        for j in range(int(start), min(size, math.ceil(end - 1e-9))):
            m[i, j] = min(end, j + 1) - max(start, j)
    return m / step


class ScaledGenerator(nn.Module):
    """``generator`` run as :class:`~sim2real_goggles.translation.Translator` runs it with
    ``input_scale`` s > 1, on (N, 3, H, W) float tensors: the input enlarged by s (bilinear),
    reflection-padded to the generator's size multiple, the output cropped and shrunk back to
    H x W (area filter). It differs from the Translator only by the Translator's rounding of the
    enlarged frame to uint8."""

    def __init__(self, generator: nn.Module, scale: float):
        super().__init__()
        if scale <= 1.0:
            raise ValueError(f"ScaledGenerator enlarges: scale must be > 1, got {scale}")
        self.generator, self.scale = generator, float(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        size = (round(h * self.scale), round(w * self.scale))
        big = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        pad_h, pad_w = _padded(size[0]) - size[0], _padded(size[1]) - size[1]
        y = self.generator(F.pad(big, (0, pad_w, 0, pad_h), mode="reflect"))[..., : size[0], : size[1]]
        rows, cols = area_matrix(h, size[0]).to(y), area_matrix(w, size[1]).to(y)
        return torch.einsum("hH,ncHW,wW->nchw", rows, y, cols)


@torch.no_grad()
def crf_refine(
    probs: torch.Tensor,
    image: torch.Tensor,
    iterations: int = 5,
    sxy: float = 2.0,
    srgb: float = 0.1,
    weight: float = 3.0,
) -> torch.Tensor:
    """Class probabilities (N, K, H, W) refined by mean-field inference of a CRF (Kraehenbuehl
    and Koltun, NeurIPS 2011) over ``image`` (N, C, H, W): ``probs`` as the unary term, a Potts
    pairwise term whose kernel links pixels within 2 x ``sxy`` of each other by
    ``weight * exp(-d^2 / 2 sxy^2 - |I_i - I_j|^2 / 2 srgb^2)``. Neighbours of like colour pull a
    pixel towards their class, so uncertain labels snap to the image's edges."""
    r = max(1, round(2 * sxy))
    h, w = probs.shape[-2:]
    offsets = [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1) if (dy, dx) != (0, 0)]

    def neighbours(t: torch.Tensor):  # t's value at (y + dy, x + dx) for each offset, edges replicated
        padded = F.pad(t, (r, r, r, r), mode="replicate")
        return (padded[:, :, r + dy : r + dy + h, r + dx : r + dx + w] for dy, dx in offsets)

    kernels = []
    for (dy, dx), nb in zip(offsets, neighbours(image)):
        colour = (nb - image).square().sum(1, keepdim=True)
        kernels.append(weight * torch.exp(-(dy * dy + dx * dx) / (2 * sxy**2) - colour / (2 * srgb**2)))
    unary = probs.clamp_min(1e-6).log()
    q = probs
    for _ in range(iterations):
        q = torch.softmax(unary + sum(k * nb for k, nb in zip(kernels, neighbours(q))), 1)
    return q


def noisy_student_batch(
    x: torch.Tensor,
    t: torch.Tensor,
    y: torch.Tensor,
    gen: torch.Generator,
    strength: float,
    photometric: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The :attr:`DistillConfig.student_noise` augmentation of one batch: input ``x`` and target
    ``t`` (N, 3, H, W) in [-1, 1], labels ``y`` (N, H, W). Mirror and shift move all three
    together; the photometric noise (skipped unless ``photometric``) touches ``x`` only. Random
    numbers come from ``gen`` (CPU)."""
    n, _, h, w = x.shape
    mirror = torch.rand(n, generator=gen) < 0.5
    pad = int(round(strength * h / 8))
    shifts = torch.randint(-pad, pad + 1, (n, 2), generator=gen) if pad else torch.zeros(n, 2, dtype=torch.long)
    stacked = torch.cat([x, t, y[:, None].to(x.dtype)], 1)
    stacked = torch.where(mirror.to(x.device)[:, None, None, None], stacked.flip(3), stacked)
    if pad:
        padded = F.pad(stacked, (pad, pad, pad, pad), mode="reflect")
        stacked = torch.stack(
            [
                padded[i, :, pad + dy : pad + dy + h, pad + dx : pad + dx + w]
                for i, (dy, dx) in enumerate(shifts.tolist())
            ]
        )
    x, t, y = stacked[:, :3], stacked[:, 3:6], stacked[:, 6].round().long()
    if not photometric:
        return x, t, y
    # camera noise on the input only, in [0, 1]
    img = (x + 1) / 2

    def spread(s: float) -> torch.Tensor:  # uniform in [-s, s] per image
        return _rand((n, 1, 1, 1), gen, -s * strength, s * strength).to(x.device)

    gain = 1 + torch.cat([spread(0.15) for _ in range(3)], 1)
    img = img * gain + spread(0.15)
    mean = img.mean(dim=(1, 2, 3), keepdim=True)
    img = (img - mean) * (1 + spread(0.3)) + mean
    blur = (torch.rand((n, 1, 1, 1), generator=gen) < 0.3 * strength).to(x.device, x.dtype)
    blurred = F.avg_pool2d(F.pad(img, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    img = img * (1 - blur) + blur * blurred
    sigma = torch.rand((n, 1, 1, 1), generator=gen) * 0.04 * strength
    img = img + (torch.randn(img.shape, generator=gen) * sigma).to(x.device)
    return img.clamp(0, 1) * 2 - 1, t, y


class DistillTrainer(AdversarialTrainer):
    """Student, optimiser and the teacher-labelled data of one distillation run."""

    progress_keys = ("loss", "l1", "semantic", "G_layout", "D_layout")

    def __init__(self, cfg: DistillConfig, out: str | Path, device: str = "cpu", round_index: int = 1):
        super().__init__(cfg, out, device)
        self.round_index = round_index
        teacher_ckpt = load_checkpoint(cfg.teacher)
        if teacher_ckpt.arch not in GENERATOR_ARCHS:
            raise ValueError(f"{cfg.teacher}: holds a {teacher_ckpt.arch!r} network, not a translator")
        self.teacher_metadata = teacher_ckpt.metadata
        self.method, self.arch = "distill", cfg.arch
        self.arch_kwargs = {"ngf": cfg.ngf, "n_blocks": cfg.n_blocks, "norm": cfg.norm}
        self.student = build_model(cfg.arch, **self.arch_kwargs).to(self.device)
        self.sync_initial_weights([self.student])
        # what the losses see: the student as it will translate (train_at_scale) or at image_size
        self.trained_as: nn.Module = self.student
        if cfg.train_at_scale and cfg.input_scale > 1.0:
            self.trained_as = ScaledGenerator(self.student, cfg.input_scale)
        self.opt = torch.optim.Adam(self.student.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lr_lambda(cfg.iterations, cfg.decay_start))
        self.segmenter = frozen_network(cfg.segmenter, self.device)
        self.x, _ = self.load_domain(cfg.real)
        teacher = teacher_ckpt.build(self.device).eval()  # used under no_grad only
        teacher_scale = float(self.teacher_metadata.get("input_scale", 1.0))
        if teacher_scale < 1.0:
            raise ValueError(f"{cfg.teacher}: records input_scale {teacher_scale}; a teacher must not shrink frames")
        if teacher_scale > 1.0:  # label with the teacher as it translates
            teacher = ScaledGenerator(teacher, teacher_scale)
        targets, labels = [], []
        for i in range(0, len(self.x), cfg.teacher_batch):
            x = self.x[i : i + cfg.teacher_batch].to(self.device)
            t, probs = label_with_teacher(teacher, self.segmenter, x, tta=cfg.teacher_tta)
            if cfg.label_crf:
                probs = crf_refine(probs, x, cfg.label_crf, cfg.crf_sxy, cfg.crf_srgb, cfg.crf_weight)
            targets.append(t.cpu())
            confidence, label = probs.max(1)
            labels.append(label.masked_fill(confidence < cfg.label_threshold, IGNORE_ID).cpu())
        self.target, self.labels = torch.cat(targets), torch.cat(labels)
        self.label_fraction = float((self.labels != IGNORE_ID).float().mean())
        self.D: nn.Module | None = None
        if cfg.lambda_layout_adv > 0:  # the adversary on class maps, and the sim frames it learns from
            self.x_sim, _ = self.load_domain(cfg.sim, seed_offset=1)
            classes = self.segmenter(self.x[:1].to(self.device)).shape[1]
            self.D = PatchGANDiscriminator(ndf=cfg.ndf, n_layers=cfg.layout_layers, in_channels=classes)
            self.D = self.D.to(self.device)
            self.sync_initial_weights([self.D])
            self.opt_D = torch.optim.Adam(self.D.parameters(), lr=2e-4, betas=(0.5, 0.999))
            self.sched_D = torch.optim.lr_scheduler.LambdaLR(self.opt_D, lr_lambda(cfg.iterations, cfg.decay_start))
        if self.device.type == "cuda":  # batches are gathered on the GPU, no copies in the loop
            self.x, self.target, self.labels = (a.to(self.device) for a in (self.x, self.target, self.labels))
            if self.D is not None:
                self.x_sim = self.x_sim.to(self.device)

    def step(self) -> dict[str, float]:
        cfg = self.cfg
        idx = torch.randint(len(self.x), (cfg.batch_size,), generator=self.gen)
        x, t, y = (a[idx].to(self.device) for a in (self.x, self.target, self.labels))
        if cfg.student_noise > 0:
            x, t, y = noisy_student_batch(x, t, y, self.gen, cfg.student_noise, cfg.student_photometric)
        self.student.train()
        with self.autocast():
            s = self.trained_as(x)
            if cfg.threshold_image and cfg.label_threshold > 0:
                l1 = masked_l1(s, t, y != IGNORE_ID, inside=1.0, outside=0.0)
            else:
                l1 = F.l1_loss(s, t)
            logits = self.segmenter(s)
            semantic = semantic_loss(logits, y, class_weights=None) * cfg.lambda_semantic
            loss = l1 + semantic
            if self.D is not None:
                adversarial = lsgan_loss(self.D(layout_maps(logits)), True) * cfg.lambda_layout_adv
                loss = loss + adversarial
        self.optimise("student", self.opt, loss)
        self.sched.step()
        log = {"loss": float(loss.detach()), "l1": float(l1.detach()), "semantic": float(semantic.detach())}
        if self.D is not None:
            log["G_layout"] = float(adversarial.detach())
            log["D_layout"] = self._adversary_step(logits.detach())
        self.iteration += 1
        return log

    def _adversary_step(self, logits_fake: torch.Tensor) -> float:
        """One step of the class-map discriminator: sim frames' maps real, the batch's fake."""
        assert self.D is not None
        idx = torch.randint(len(self.x_sim), (self.cfg.batch_size,), generator=self.gen)
        with self.autocast():
            with torch.no_grad():
                maps_sim = layout_maps(self.segmenter(self.x_sim[idx].to(self.device)))
            loss = 0.5 * (lsgan_loss(self.D(maps_sim), True) + lsgan_loss(self.D(layout_maps(logits_fake)), False))
        self.optimise("D", self.opt_D, loss)
        self.sched_D.step()
        return float(loss.detach())

    def main_network(self) -> nn.Module:
        self.student.eval()  # the checkpoint is for inference: batch norm on its running statistics
        return self.student

    def state_objects(self) -> dict[str, Any]:
        state: dict[str, Any] = {"opt": self.opt, "sched": self.sched}
        if self.D is not None:
            state.update(D_layout=self.D, opt_D=self.opt_D, sched_D=self.sched_D)
        return state

    def metadata(self) -> dict[str, Any]:
        cfg = self.cfg
        return {
            "method": "distill",
            "direction": self.teacher_metadata.get("direction", "real->sim"),
            "teacher": {"checkpoint": cfg.teacher, "method": self.teacher_metadata.get("method")},
            "domains": self.teacher_metadata.get("domains", {"real": cfg.real}),
            "image_size": cfg.image_size,
            "input_scale": cfg.input_scale,
            "label_fraction": round(self.label_fraction, 4),
            "round": self.round_index,
            "config": asdict(cfg),
        }

    @torch.no_grad()
    def sample_grid(self, n: int) -> np.ndarray:
        """Rows of real | teacher | student (as it learns: at input_scale with train_at_scale) as
        one uint8 image."""
        self.student.eval()
        x = self.x[:n].to(self.device)
        rows = to_uint8(torch.cat([x, self.target[:n].to(self.device), self.trained_as(x)], dim=3))
        self.student.train()
        return np.concatenate(list(rows), axis=0)


def round_paths(out: str | Path, rounds: int) -> list[Path]:
    """Where :func:`train_rounds` writes each round's student: ``NAME.round1.pt`` ... beside
    ``out``, and the last round at ``out`` itself."""
    out = Path(out)
    return [out.with_name(f"{out.stem}.round{r}{out.suffix}") for r in range(1, rounds)] + [out]


def train_rounds(
    cfg: DistillConfig, out: str | Path, device: str = "cpu", resume: bool = False, progress: bool = True
) -> dict[str, Any]:
    """Train ``cfg.rounds`` students one after another, each labelled by the one before (the
    first by ``cfg.teacher``), and return the last round's :meth:`DistillTrainer.train` result
    with ``rounds``, the checkpoints in order. With ``resume`` a round whose checkpoint is
    complete is kept as it is (not relabelled or retrained) and an unfinished one continues from
    its checkpoint; without it every round starts afresh."""
    paths = round_paths(out, cfg.rounds)
    teacher, result = cfg.teacher, {}
    for index, path in enumerate(paths, 1):
        finished = load_checkpoint(path).metadata if resume and path.exists() else {}
        if finished.get("complete"):
            result = {"checkpoint": str(path), "iterations": finished["iterations"], "minutes": 0.0}
        else:
            scale = cfg.input_scale if index == len(paths) else 1.0  # earlier rounds teach at image_size
            trainer = DistillTrainer(replace(cfg, teacher=teacher, input_scale=scale), path, device, round_index=index)
            if resume and path.exists():
                trainer.restore(path)
            result = trainer.train(progress=progress)
        teacher = str(path)
    return result | {"rounds": [str(p) for p in paths]}


__all__ = [
    "DistillConfig",
    "DistillTrainer",
    "ScaledGenerator",
    "label_with_teacher",
    "noisy_student_batch",
    "round_paths",
    "train_rounds",
]
