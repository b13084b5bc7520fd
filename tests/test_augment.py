"""Appearance augmentations of the labeller: geometry kept, colour no longer a class cue."""

from __future__ import annotations

import torch

from sim2real_goggles.data.domains import load_arrays
from sim2real_goggles.models.networks import to_tensor
from sim2real_goggles.training.augment import appearance_augment, recolour_augment


def _sim_batch(n=16):
    images, masks = load_arrays("sim", n, 32, 0, require_masks=True)
    return to_tensor(images), torch.from_numpy(masks.astype("int64"))


def _region_mean(x, y, c):
    m = (y == c).unsqueeze(1).float()
    return (x * m).sum(dim=(2, 3)) / m.sum(dim=(2, 3)).clamp(min=1)


def test_recolour_repaints_every_region_so_colour_stops_naming_the_class():
    x, y = _sim_batch()
    out = recolour_augment(x, y, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.min() >= -1 and out.max() <= 1
    # floor (class 0) is the same grey in every sim frame; after recolouring, its mean colour
    # varies across frames as much as a random colour does
    present = (y == 0).flatten(1).any(1)
    floor_sim = _region_mean(x, y, 0)[present]
    floor_aug = _region_mean(out, y, 0)[present]
    assert floor_sim.std(0).max() < 0.05
    assert floor_aug.std(0).min() > 0.15
    # the same generator state gives the same batch; the blend augmentation is another one
    assert torch.equal(out, recolour_augment(x, y, torch.Generator().manual_seed(0)))
    assert not torch.equal(out, appearance_augment(x, y, torch.Generator().manual_seed(0)))


def test_recolour_keeps_the_sim_shading_inside_a_region():
    x, y = _sim_batch(4)
    x = x.clone()
    x[:, :, :, 16:] = ((x[:, :, :, 16:] + 1) * 0.5) - 1  # the right half of every frame in shadow
    out = recolour_augment(x, y, torch.Generator().manual_seed(1))
    out_plain = recolour_augment(_sim_batch(4)[0], y, torch.Generator().manual_seed(1))
    # same random colours, so the shadowed half comes out darker than without the shadow, the
    # other half about as bright (the frame-wide contrast step moves it a little)
    left = (out_plain - out)[..., :16].mean()
    right = (out_plain - out)[..., 16:].mean()
    assert right > left + 0.2
