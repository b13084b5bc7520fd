"""Appearance augmentation for segmenters: photometric randomisation in torch, batch-wise.

A segmenter trained on the flat sim look learns "red means target". The *labeller* of the
VR-Goggles semantic loss must instead give usable pseudo-labels on real images, so it is trained
on sim images whose appearance is randomised per class region (colour, texture, lighting, noise,
blur). It then has to rely on shape and layout, which the real look keeps. Nothing here uses
the real-like profiles or their photo textures: the randomisation is generic.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from sim2real_goggles.appearance.profile import CLASS_NAMES, IGNORE_ID, load_profile


def _rand(shape: tuple[int, ...], gen: torch.Generator, lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(shape, generator=gen)


def _smooth_noise(n: int, h: int, w: int, cells: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Value noise in [-1, 1], (n, 1, h, w): a coarse random grid per image, upsampled bilinearly.
    ``cells`` (n,) sets the grid resolution of each image (high = fine texture)."""
    out = torch.empty(n, 1, h, w)
    for i in range(n):
        c = int(cells[i])
        grid = torch.rand((1, 1, c, c), generator=gen) * 2 - 1
        out[i] = F.interpolate(grid, size=(h, w), mode="bilinear", align_corners=False)[0]
    return out


def _camera_jitter(img: torch.Tensor, gen: torch.Generator, strength: float) -> torch.Tensor:
    """The whole-frame part of both augmentations: colour mix, lighting, contrast, grey, blur,
    noise. ``img`` (N, 3, H, W) in [0, 1]; returns [-1, 1]."""
    n, _, h, w = img.shape
    # global colour mix: a random channel permutation with random gains and cross-talk
    perm = torch.stack([torch.randperm(3, generator=gen) for _ in range(n)])
    img = torch.gather(img, 1, perm[:, :, None, None].expand(-1, -1, h, w))
    mix = torch.eye(3) + _rand((n, 3, 3), gen, -0.15, 0.15) * strength
    img = torch.einsum("nij,njhw->nihw", mix * _rand((n, 3, 1), gen, 0.7, 1.3), img)
    # lighting: a smooth multiplicative field, then contrast and brightness
    light = 1 + 0.35 * strength * _smooth_noise(n, h, w, torch.randint(2, 4, (n,), generator=gen), gen)
    img = img * light
    mean = img.mean(dim=(1, 2, 3), keepdim=True)
    img = (img - mean) * _rand((n, 1, 1, 1), gen, 0.6, 1.4) + mean + _rand((n, 1, 1, 1), gen, -0.2, 0.2)
    grey = (_rand((n, 1, 1, 1), gen) < 0.15).float()
    img = img * (1 - grey) + grey * img.mean(1, keepdim=True)
    # blur (3x3 box, applied to a random half) and sensor noise
    blurred = F.avg_pool2d(F.pad(img, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    blur = (_rand((n, 1, 1, 1), gen) < 0.5).float()
    img = img * (1 - blur) + blur * blurred
    img = img + torch.randn(img.shape, generator=gen) * _rand((n, 1, 1, 1), gen, 0.0, 0.06)
    return img.clamp(0, 1) * 2 - 1


def appearance_augment(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator, strength: float = 1.0) -> torch.Tensor:
    """Randomised appearance of a batch ``x`` (N, 3, H, W) in [-1, 1] with labels ``y`` (N, H, W).

    Per image: each class region gets, with probability 0.7, a random colour blended over its own
    (so colour stops identifying the class) and, with probability 0.6, a random-scale texture;
    then a random global colour mix (channel permutation + gains), a smooth lighting field,
    contrast and brightness changes, random grey-scale, blur and sensor noise. Labels are not
    changed; the geometry is untouched.
    """
    n, _, h, w = x.shape
    img = (x.clamp(-1, 1) + 1) / 2  # [0, 1]
    for c in (*range(len(CLASS_NAMES)), IGNORE_ID):
        region = (y == c).unsqueeze(1).float()  # (n, 1, h, w)
        recolor = (_rand((n, 1, 1, 1), gen) < 0.7 * strength).float()
        color = _rand((n, 3, 1, 1), gen)
        alpha = _rand((n, 1, 1, 1), gen, 0.5, 1.0) * recolor
        img = img * (1 - region * alpha) + region * alpha * color
        textured = (_rand((n, 1, 1, 1), gen) < 0.6 * strength).float()
        cells = torch.randint(4, 33, (n,), generator=gen)
        tex = _smooth_noise(n, h, w, cells, gen)
        amp = _rand((n, 1, 1, 1), gen, 0.1, 0.45) * textured
        img = img * (1 + region * amp * tex)
    return _camera_jitter(img, gen, strength)


@functools.cache
def _sim_luminance() -> dict[int, float]:
    """Per class id, the summed RGB (over 255) of the sim look's flat colour: dividing a sim
    render by it leaves the shading."""
    sim = load_profile("sim")
    out = {}
    for class_id, name in enumerate(CLASS_NAMES):
        color = sim.texture(name).color
        if color is not None:
            out[class_id] = sum(color) / 255
    return out


def _fine_texture(n: int, h: int, w: int, gen: torch.Generator) -> torch.Tensor:
    """Pixel-scale noise in [-1, 1] (n, 1, h, w), box-smoothed once for half the batches."""
    t = torch.randn((n, 1, h, w), generator=gen)
    if torch.randint(0, 2, (1,), generator=gen).item():
        t = F.avg_pool2d(F.pad(t, (1, 1, 1, 1), mode="replicate"), 3, stride=1) * 2
    return t.clamp(-2, 2) / 2


def recolour_augment(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """The colour-blind variant of :func:`appearance_augment` for *sim* renders: every class
    region of every image is repainted in a random colour (nothing of the sim colour is left),
    keeping the render's shading (the image divided by the sim look's flat class colour). With
    probability 0.7 a coarse-to-fine smooth texture and with probability 0.5 a pixel-scale grain
    go on top; then the same whole-frame jitter as :func:`appearance_augment`. A segmenter
    trained on it can only go by shape, shading and layout."""
    n, _, h, w = x.shape
    img = (x.clamp(-1, 1) + 1) / 2
    flat = img.clone()
    luminance = _sim_luminance()
    for c in (*range(len(CLASS_NAMES)), IGNORE_ID):
        region = (y == c).unsqueeze(1).float()
        color = _rand((n, 3, 1, 1), gen)
        if c in luminance:
            shade = (flat.sum(1, keepdim=True) / luminance[c]).clamp(0.2, 1.3)
        else:
            shade = torch.ones_like(region)
        img = img * (1 - region) + region * color * shade
        textured = (_rand((n, 1, 1, 1), gen) < 0.7).float()
        cells = torch.randint(4, 65, (n,), generator=gen)
        tex = _smooth_noise(n, h, w, cells, gen)
        amp = _rand((n, 1, 1, 1), gen, 0.1, 0.45) * textured
        img = img * (1 + region * amp * tex)
        fine = (_rand((n, 1, 1, 1), gen) < 0.5).float()
        amp2 = _rand((n, 1, 1, 1), gen, 0.05, 0.4) * fine
        img = img * (1 + region * amp2 * _fine_texture(n, h, w, gen))
    return _camera_jitter(img, gen, 1.0)


AUGMENT_STYLES = {"blend": appearance_augment, "recolour": recolour_augment}
"""``SegmenterConfig.augment_style`` -> augmentation."""

__all__ = ["AUGMENT_STYLES", "appearance_augment", "recolour_augment"]
