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
    part CE(S(G_rs(x_r)), argmax L(x_r)) takes its labels from a labeller L: S itself in CyCADA,
    an appearance-robust sim segmenter in the shipped recipe, because S scores near zero on the
    real look and its labels there are noise. The term is switched on only where L is reliable
    (CyCADA): after ``semantic_warmup`` iterations, gated per pixel by L's confidence, and off
    while L's mean confidence on the batch is below ``semantic_reliability``. Both terms are
    weighted per class (``semantic_class_weights``: the small target and obstacles count more,
    DESIGN §5);
  - a shift loss ||G_rs(shift(x_r)) - shift(G_rs(x_r))||_1 on the overlap, for a random integer
    shift of up to ``max_shift_fraction`` of the image, which keeps consecutive video frames
    consistent;
  - optionally (``lambda_semantic_adv`` > 0) an adversarial term on the segmentation maps: a
    third PatchGAN ``D_sem`` tells S's class maps of sim frames from those of translations
    (output-space adaptation, Tsai et al. CVPR 2018), so the layout of the classes in a
    translation must look like the simulator's.
* ``mask_loss`` (``--mask-loss``, either method): the mask-aware CycleGAN of synthetic retail
  imagery. The cycle and identity L1 terms are averaged separately inside and outside the
  object masks (classes ``mask_classes``: obstacles and the target) and weighted
  ``mask_inside_weight`` and ``mask_outside_weight`` (training/adapt.py ``masked_l1``), so a
  chair of a few dozen pixels weighs as much as the room around it. Sim masks come from the
  simulator; real frames have no labels at deployment, so their masks are the classes the
  labeller (``labeller``, else ``pretrained:labeller``) predicts on them.

Training state (all four networks, optimisers, schedulers, pools, RNG streams) is saved in the
checkpoint's ``extra`` so ``--resume`` continues exactly where it stopped; the checkpoint's main
network is ``G_rs`` (its weight average with ``ema_decay``), loadable by
:class:`sim2real_goggles.translation.Translator`. The loop, resume, AMP and data-parallel ranks
live in :mod:`sim2real_goggles.training.base`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from sim2real_goggles.appearance.profile import IGNORE_ID
from sim2real_goggles.models.checkpoint import load_checkpoint
from sim2real_goggles.models.networks import PatchGANDiscriminator, build_model
from sim2real_goggles.training.adapt import masked_l1
from sim2real_goggles.training.base import (
    AdversarialConfig,
    AdversarialTrainer,
    config_dict,
    frozen_network,
    lr_lambda,
    to_uint8,
)

METHODS = ("cyclegan", "vr_goggles")
"""Methods of :class:`TranslatorTrainer`; ``simgan`` has its own trainer (training/simgan.py)."""


@dataclass
class TranslatorConfig(AdversarialConfig):
    """Recipe of ``goggles train-translator`` (cyclegan, vr_goggles); YAML recipes in
    config/training/ override these defaults and command-line options override the recipe.
    The fields shared with SimGAN are in :class:`~sim2real_goggles.training.base.AdversarialConfig`."""

    method: str = "cyclegan"
    """cyclegan | vr_goggles"""
    decay_start: float = 0.5
    """Fraction of the iterations after which the learning rate decays linearly to zero."""
    lambda_cycle: float = 10.0
    identity_weight: float = 0.5
    """Identity loss weight as a fraction of lambda_cycle."""
    pool_size: int = 50
    ema_decay: float = 0.0
    """When > 0, the checkpoint's ``G_rs`` (what ships and what ``Translator`` loads) is an
    exponential moving average of the trained generator's weights (Yazici et al. ICLR 2019,
    "The unusual effectiveness of averaging in GAN training"): after iteration t,
    ``ema += (1 - d) * (G_rs - ema)`` with ``d = min(ema_decay, (1 + t) / (10 + t))`` (the ramp
    lets the early average follow the fast-moving start). Training itself is unchanged: the
    average is never trained, and the generator being trained stays in the training state for
    ``--resume``. 0 = off (the checkpoint holds the trained G_rs)."""
    cycle_noise_std: float = 0.0
    """Standard deviation of Gaussian noise (in the [-1, 1] image range) added to each
    translation before the other generator reconstructs it in the cycle terms (Bashkirova et al.
    2019, "Adversarial self-defense for cycle-consistent GANs"). Without it a generator can hide
    what it paints over (a cabinet repainted as wall) in differences too small to see and still
    pass the cycle; with it, what the reverse generator needs must stay visible. 0 = off."""
    lambda_semantic: float = 1.0
    """Weight of the pseudo-label term CE(S(G_rs(x_r)), labeller(x_r))."""
    lambda_semantic_cycle: float = 1.0
    """Weight of the label-sound semantic cycle CE(S(G_rs(G_sr(x_s))), y_s)."""
    semantic_class_weights: tuple[float, float, float, float] = (1.0, 1.0, 5.0, 10.0)
    semantic_confidence: float = 0.9
    """Pseudo-labels are used only where the labeller's softmax confidence is at least this."""
    semantic_reliability: float = 0.8
    """The pseudo-label term is on only while the labeller's mean confidence on the real batch is at least this."""
    semantic_warmup: int = 0
    """Iterations of plain CycleGAN (plus the semantic cycle) before the pseudo-label term may switch on."""
    lambda_semantic_adv: float = 0.0
    """Weight of the adversarial term on the segmentation maps (vr_goggles; 0 = off): a
    discriminator ``D_sem`` tells the sim segmenter's class maps of sim frames, S(x_s), from
    those of translations, S(G_rs(x_r)) (one-hot, with the softmax's gradient:
    :func:`layout_maps`), and G_rs is trained to fool it (LSGAN, after ``semantic_warmup``). It
    is output-space adaptation (Tsai et al. CVPR 2018) on the goggles: the simulator's rooms fix
    the layout of the classes (where obstacles stand, the shape of the chair), so a translation
    that paints a cabinet as wall or a chair as obstacle gives a map whose shapes the sim frames
    never show, whatever the pseudo-labels say."""
    lambda_shift: float = 1.0
    max_shift_fraction: float = 0.125
    segmenter: str = ""
    """Checkpoint of the frozen sim segmenter S (vr_goggles): the translation must be segmented
    correctly by the network that knows only the sim look."""
    labeller: str = ""
    """Checkpoint of the segmenter whose predictions on real images are the pseudo-labels
    ('' = S itself, as in CyCADA). The recipe uses an appearance-robust sim segmenter
    (``pretrained:labeller_context``: the global-context U-Net trained with every class region
    repainted, see config/training/vr_goggles.yaml): S on real images scores near zero, so its
    pseudo-labels would be noise."""
    labeller_adapt_lr: float = 0.0
    """When > 0, the labeller keeps learning during training, after the warm-up, on the sim->real
    translations G_sr(x_s) with the simulator's labels y_s (label-sound: CyCADA's task network
    trained on adapted source images), Adam at this learning rate, batch-norm statistics
    frozen. Its pseudo-labels then follow the real look as G_sr learns it. Off in the shipped
    recipe: on real_lab it taught the labeller G_sr's obstacles and obstacles vanished
    (config/training/vr_goggles.yaml)."""
    mask_loss: bool = False
    """Weigh the cycle and identity terms inside and outside object masks (module docstring)."""
    mask_classes: tuple[int, ...] = (2, 3)
    """Classes inside the mask (2 obstacle, 3 target)."""
    mask_inside_weight: float = 0.5
    mask_outside_weight: float = 0.5
    """Weights of the mean L1 inside and outside the masks. Summing to 1, they keep the scale of
    the plain L1 (equal where the error is uniform) while the object pixels, whatever their
    number, get half of the weight."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}: choose one of {METHODS}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.cycle_noise_std < 0:
            raise ValueError(f"cycle_noise_std must be >= 0, got {self.cycle_noise_std}")
        if self.lambda_semantic_adv < 0:
            raise ValueError(f"lambda_semantic_adv must be >= 0, got {self.lambda_semantic_adv}")
        if self.lambda_semantic_adv > 0 and self.method != "vr_goggles":
            raise ValueError("lambda_semantic_adv needs the sim segmenter of --method vr_goggles")
        if self.method == "vr_goggles" and not self.segmenter:
            raise ValueError("vr_goggles needs --segmenter (a checkpoint from goggles train-segmenter)")


def load_recipe(path: str | Path, **overrides: Any) -> Any:
    """A YAML recipe with overrides applied (None = keep): a :class:`TranslatorConfig`, a
    :class:`~sim2real_goggles.training.simgan.SimGANConfig` when the method is ``simgan``, or a
    :class:`~sim2real_goggles.training.distill.DistillConfig` for ``distill``.
    Unknown keys, in the file or among the overrides, are errors that name them."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: cannot read the recipe: {exc}") from exc
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a recipe must be a mapping of config fields")
    given = {k: v for k, v in overrides.items() if v is not None}
    method = given.get("method", raw.get("method", "cyclegan"))
    if method == "simgan":
        from sim2real_goggles.training.simgan import SimGANConfig

        config_cls: type = SimGANConfig
    elif method == "distill":
        from sim2real_goggles.training.distill import DistillConfig

        config_cls = DistillConfig
    elif method == "pixelda":
        from sim2real_goggles.training.pixelda import PixelDAConfig

        config_cls = PixelDAConfig
    else:
        config_cls = TranslatorConfig
    names = {f.name for f in fields(config_cls)}
    for key in raw:
        if key not in names:
            raise ValueError(f"{path}: unknown key {key!r} (allowed: {sorted(names)})")
    for key in given:
        if key not in names:
            raise ValueError(f"option {key!r} does not apply to method {method!r}")
    raw.update(given)
    for key in ("semantic_class_weights", "mask_classes", "content_classes", "task_class_weights"):
        if key in raw:
            raw[key] = tuple(raw[key])
    return config_cls(**raw)


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

    def state_dict(self) -> list[torch.Tensor]:
        return [t.clone() for t in self.images]

    def load_state_dict(self, images: list[torch.Tensor]) -> None:
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
    logits: torch.Tensor,
    labels: torch.Tensor,
    class_weights: torch.Tensor | None,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Class-weighted (``None``: unweighted) cross-entropy of segmenter logits against labels,
    pixels in ``mask`` only (and never IGNORE_ID pixels); zero when every pixel is masked out."""
    labels = labels.clone()
    if mask is not None:
        labels[~mask] = IGNORE_ID
    if not (labels != IGNORE_ID).any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits, labels, weight=class_weights, ignore_index=IGNORE_ID)


def layout_maps(logits: torch.Tensor) -> torch.Tensor:
    """One-hot maps of a segmenter's classes (N, C, H, W) that pass the gradient of its softmax
    (straight-through). A discriminator on them sees where each class is, not how confident the
    segmenter was: S is sure of itself on sim frames and less so on translations, and soft maps
    would let the discriminator win on that alone."""
    p = logits.float().softmax(1)
    hard = F.one_hot(p.argmax(1), p.shape[1]).permute(0, 3, 1, 2).to(p.dtype)
    return hard + p - p.detach()


class TranslatorTrainer(AdversarialTrainer):
    """Holds the networks, optimisers and data of one run; :meth:`train` runs it."""

    def __init__(self, cfg: TranslatorConfig, out: str | Path, device: str = "cpu"):
        super().__init__(cfg, out, device)
        # the method checkpoints record (and --resume checks): the mask-aware variant is its own
        self.method = f"{cfg.method}_masked" if cfg.mask_loss else cfg.method
        self.arch = cfg.arch
        self.arch_kwargs = {"ngf": cfg.ngf, "n_blocks": cfg.n_blocks}
        self.G_rs = build_model(cfg.arch, **self.arch_kwargs).to(self.device)
        self.G_sr = build_model(cfg.arch, **self.arch_kwargs).to(self.device)
        self.D_sim = PatchGANDiscriminator(ndf=cfg.ndf).to(self.device)
        self.D_real = PatchGANDiscriminator(ndf=cfg.ndf).to(self.device)
        self.discriminators = [self.D_sim, self.D_real]
        self.D_sem: nn.Module | None = None
        if cfg.lambda_semantic_adv > 0:
            self.D_sem = PatchGANDiscriminator(ndf=cfg.ndf, in_channels=len(cfg.semantic_class_weights)).to(self.device)
            self.discriminators.append(self.D_sem)
        self.sync_initial_weights([self.G_rs, self.G_sr, *self.discriminators])
        self.G_rs_ema: nn.Module | None = None
        if cfg.ema_decay > 0:
            self.G_rs_ema = copy.deepcopy(self.G_rs).requires_grad_(False)
        betas = (cfg.beta1, 0.999)
        self.opt_G = torch.optim.Adam([*self.G_rs.parameters(), *self.G_sr.parameters()], lr=cfg.lr, betas=betas)
        self.opt_D = torch.optim.Adam([p for d in self.discriminators for p in d.parameters()], lr=cfg.lr, betas=betas)
        lam = lr_lambda(cfg.iterations, cfg.decay_start)
        self.sched_G = torch.optim.lr_scheduler.LambdaLR(self.opt_G, lam)
        self.sched_D = torch.optim.lr_scheduler.LambdaLR(self.opt_D, lam)
        self.pool_sim, self.pool_real = ImagePool(cfg.pool_size), ImagePool(cfg.pool_size)
        self.segmenter: nn.Module | None = None
        self.labeller: nn.Module | None = None
        self.class_weights = torch.tensor(cfg.semantic_class_weights, dtype=torch.float32, device=self.device)
        if cfg.method == "vr_goggles":
            self.segmenter = frozen_network(cfg.segmenter, self.device)
            self.labeller = frozen_network(cfg.labeller, self.device) if cfg.labeller else self.segmenter
            if cfg.labeller_adapt_lr > 0:
                # its own copy (even when the labeller is S itself), trained in place
                self.labeller = load_checkpoint(cfg.labeller or cfg.segmenter).build(self.device)
                self.opt_L = torch.optim.Adam(self.labeller.parameters(), lr=cfg.labeller_adapt_lr, betas=(0.9, 0.999))
        self.mask_labeller: nn.Module | None = None
        if cfg.mask_loss:
            if self.labeller is not None and cfg.labeller_adapt_lr == 0:
                self.mask_labeller = self.labeller
            else:
                self.mask_labeller = frozen_network(cfg.labeller or "pretrained:labeller", self.device)
            self.mask_class_ids = torch.tensor(cfg.mask_classes, device=self.device)
        self.x_real, _ = self.load_domain(cfg.real)
        self.x_sim, self.y_sim = self.load_domain(cfg.sim, seed_offset=1)
        if (cfg.method == "vr_goggles" or cfg.mask_loss) and self.y_sim is None:
            why = "the mask loss needs its object masks" if cfg.mask_loss else "the semantic cycle uses its labels"
            raise ValueError(f"{cfg.sim}: {cfg.method} needs masks for the sim domain ({why})")
        if self.device.type == "cuda":
            # Frames live on the GPU for the whole run: a batch is an index gather there, with no
            # host-to-device copy in the loop (2000 frames of 64x64 take 98 MB per domain).
            self.x_real, self.x_sim = self.x_real.to(self.device), self.x_sim.to(self.device)
            self.y_sim = None if self.y_sim is None else self.y_sim.to(self.device)

    # ------------------------------------------------------------------ one iteration
    def _batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        b = self.cfg.batch_size
        ir = torch.randint(len(self.x_real), (b,), generator=self.gen)
        is_ = torch.randint(len(self.x_sim), (b,), generator=self.gen)
        y = self.y_sim[is_].to(self.device) if self.y_sim is not None else None
        return self.x_real[ir].to(self.device), self.x_sim[is_].to(self.device), y

    def _cycle_noise(self, fake: torch.Tensor) -> torch.Tensor:
        if self.cfg.cycle_noise_std <= 0:
            return fake
        noise = torch.randn(fake.shape, generator=self.gen).to(device=fake.device, dtype=fake.dtype)
        return fake + noise * self.cfg.cycle_noise_std

    def _semantic_terms(
        self, x_r: torch.Tensor, y_s: torch.Tensor, fake_s: torch.Tensor, rec_s: torch.Tensor, log: dict[str, float]
    ) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        assert self.segmenter is not None and self.labeller is not None
        terms = {"sem_cycle": semantic_loss(self.segmenter(rec_s), y_s, self.class_weights) * cfg.lambda_semantic_cycle}
        with torch.no_grad():
            confidence, pseudo = self.labeller(x_r).float().softmax(1).max(1)
        reliability = float(confidence.mean())
        log["labeller_confidence_real"] = reliability
        pseudo_on = self.iteration >= cfg.semantic_warmup and reliability >= cfg.semantic_reliability
        adversary_on = self.D_sem is not None and self.iteration >= cfg.semantic_warmup
        if not (pseudo_on or adversary_on):
            return terms
        logits_fake = self.segmenter(fake_s)  # once, for both terms
        if pseudo_on:
            confident = confidence >= cfg.semantic_confidence
            log["pseudo_label_fraction"] = float(confident.float().mean())
            terms["sem_pseudo"] = (
                semantic_loss(logits_fake, pseudo, self.class_weights, confident) * cfg.lambda_semantic
            )
        if adversary_on:
            assert self.D_sem is not None
            terms["G_sem"] = lsgan_loss(self.D_sem(layout_maps(logits_fake)), True) * cfg.lambda_semantic_adv
        return terms

    def _reconstruction_losses(self, x_r: torch.Tensor, y_s: torch.Tensor | None, log: dict[str, float]) -> dict:
        """The L1 of the cycle and identity terms per domain: plain, or masked (``mask_loss``)."""
        cfg = self.cfg
        if not cfg.mask_loss:
            return {"real": F.l1_loss, "sim": F.l1_loss}
        assert self.mask_labeller is not None and y_s is not None
        with torch.no_grad():
            mask_r = torch.isin(self.mask_labeller(x_r).argmax(1), self.mask_class_ids)
        mask_s = torch.isin(y_s, self.mask_class_ids)
        log["mask_fraction_real"] = float(mask_r.float().mean())
        log["mask_fraction_sim"] = float(mask_s.float().mean())
        w_in, w_out = cfg.mask_inside_weight, cfg.mask_outside_weight
        return {
            "real": lambda a, b: masked_l1(a, b, mask_r, w_in, w_out),
            "sim": lambda a, b: masked_l1(a, b, mask_s, w_in, w_out),
        }

    def step(self) -> dict[str, float]:
        cfg = self.cfg
        x_r, x_s, y_s = self._batch()
        lam_c, lam_i = cfg.lambda_cycle, cfg.lambda_cycle * cfg.identity_weight
        log: dict[str, float] = {}
        rec_loss = self._reconstruction_losses(x_r, y_s, log)
        # --- generators (discriminators frozen)
        for d in self.discriminators:
            d.requires_grad_(False)
        with self.autocast():
            fake_s = self.G_rs(x_r)  # real -> sim
            fake_r = self.G_sr(x_s)  # sim -> real
            rec_r = self.G_sr(self._cycle_noise(fake_s))
            rec_s = self.G_rs(self._cycle_noise(fake_r))
            losses: dict[str, torch.Tensor] = {
                "G_rs": lsgan_loss(self.D_sim(fake_s), True),
                "G_sr": lsgan_loss(self.D_real(fake_r), True),
                "cycle_real": rec_loss["real"](rec_r, x_r) * lam_c,  # ||G_sr(G_rs(x_r)) - x_r||
                "cycle_sim": rec_loss["sim"](rec_s, x_s) * lam_c,  # ||G_rs(G_sr(x_s)) - x_s||
            }
            if lam_i > 0:
                losses["idt_rs"] = rec_loss["sim"](self.G_rs(x_s), x_s) * lam_i
                losses["idt_sr"] = rec_loss["real"](self.G_sr(x_r), x_r) * lam_i
            if cfg.method == "vr_goggles":
                assert y_s is not None
                losses.update(self._semantic_terms(x_r, y_s, fake_s, rec_s, log))
                max_shift = max(1, int(cfg.image_size * cfg.max_shift_fraction))
                dy, dx = (int(v) for v in torch.randint(-max_shift, max_shift + 1, (2,), generator=self.gen))
                losses["shift"] = shift_loss(self.G_rs, x_r, dy, dx, y=fake_s) * cfg.lambda_shift
            loss_G = sum(losses.values())
        self.optimise("G", self.opt_G, loss_G)
        if cfg.method == "vr_goggles" and cfg.labeller_adapt_lr > 0 and self.iteration >= cfg.semantic_warmup:
            assert self.labeller is not None and y_s is not None
            with self.autocast():
                losses["labeller"] = semantic_loss(self.labeller(fake_r.detach()), y_s, self.class_weights)
            self.optimise("L", self.opt_L, losses["labeller"])
        # --- discriminators, on pooled fakes
        for d in self.discriminators:
            d.requires_grad_(True)
        pooled_s = self.pool_sim.query(fake_s.float(), self.gen)
        pooled_r = self.pool_real.query(fake_r.float(), self.gen)
        with self.autocast():
            losses["D_sim"] = 0.5 * (lsgan_loss(self.D_sim(x_s), True) + lsgan_loss(self.D_sim(pooled_s), False))
            losses["D_real"] = 0.5 * (lsgan_loss(self.D_real(x_r), True) + lsgan_loss(self.D_real(pooled_r), False))
            loss_D = losses["D_sim"] + losses["D_real"]
            if self.D_sem is not None and "G_sem" in losses:
                assert self.segmenter is not None
                with torch.no_grad():
                    maps_s = layout_maps(self.segmenter(x_s))
                    maps_fake = layout_maps(self.segmenter(pooled_s))
                losses["D_sem"] = 0.5 * (
                    lsgan_loss(self.D_sem(maps_s), True) + lsgan_loss(self.D_sem(maps_fake), False)
                )
                loss_D = loss_D + losses["D_sem"]
        self.optimise("D", self.opt_D, loss_D)
        self.sched_G.step()
        self.sched_D.step()
        self.iteration += 1
        if self.G_rs_ema is not None:
            self._update_ema()
        log.update({k: float(v.detach()) for k, v in losses.items()})
        log["G_total"] = float(loss_G.detach())
        return log

    @torch.no_grad()
    def _update_ema(self) -> None:
        """One step of the weight average (``ema_decay``), after iteration ``self.iteration``."""
        assert self.G_rs_ema is not None
        t = self.iteration
        decay = min(self.cfg.ema_decay, (1 + t) / (10 + t))
        for averaged, trained in zip(self.G_rs_ema.parameters(), self.G_rs.parameters(), strict=True):
            averaged.lerp_(trained, 1.0 - decay)
        for averaged, trained in zip(self.G_rs_ema.buffers(), self.G_rs.buffers(), strict=True):
            averaged.copy_(trained)

    # ------------------------------------------------------------------ state
    def main_network(self) -> nn.Module:
        """The goggles that ship: the weight average when ``ema_decay`` is on, else G_rs."""
        return self.G_rs if self.G_rs_ema is None else self.G_rs_ema

    def state_objects(self) -> dict[str, Any]:
        state: dict[str, Any] = (
            {"labeller": self.labeller, "opt_L": self.opt_L} if self.cfg.labeller_adapt_lr > 0 else {}
        )
        if self.G_rs_ema is not None:
            state["G_rs"] = self.G_rs  # the trained generator; the checkpoint's state_dict is the average
        if self.D_sem is not None:
            state["D_sem"] = self.D_sem
        return state | {
            "G_sr": self.G_sr,
            "D_sim": self.D_sim,
            "D_real": self.D_real,
            "opt_G": self.opt_G,
            "opt_D": self.opt_D,
            "sched_G": self.sched_G,
            "sched_D": self.sched_D,
            "pool_sim": self.pool_sim,
            "pool_real": self.pool_real,
        }

    def metadata(self) -> dict[str, Any]:
        cfg = self.cfg
        return {
            "method": self.method,
            "direction": "real->sim",
            "domains": {"real": cfg.real, "sim": cfg.sim},
            "image_size": cfg.image_size,
            "config": config_dict(cfg),
        }

    @torch.no_grad()
    def sample_grid(self, n: int) -> np.ndarray:
        """Rows of real | G_rs(real) | G_sr(G_rs(real)) as one uint8 image (G_rs as it ships:
        the weight average when ``ema_decay`` is on)."""
        x = self.x_real[:n].to(self.device)
        fake = self.main_network()(x)
        rows = to_uint8(torch.cat([x, fake, self.G_sr(fake)], dim=3))
        return np.concatenate(list(rows), axis=0)


__all__ = [
    "METHODS",
    "ImagePool",
    "TranslatorConfig",
    "TranslatorTrainer",
    "layout_maps",
    "load_recipe",
    "lsgan_loss",
    "semantic_loss",
    "shift_loss",
]
