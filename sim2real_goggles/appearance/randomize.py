"""The ``randomized`` family: seeded random appearance profiles for domain randomisation.

Domain randomisation (Tobin et al., IROS 2017, https://arxiv.org/abs/1703.06907) trains on so
many random looks that the real one is "just another variation". :func:`random_profile` draws
one member of the family from a seed; the policy trainer draws a fresh member per episode
(``goggles train-policy --profile randomized``). One member is also a profile spec anywhere a
profile name is accepted: ``randomized:SEED`` (``goggles profiles show randomized:3``); its name
is ``randomized#SEED``, which is accepted as a spec too.

Per member, independently (U = uniform, logU = log-uniform; defaults of :class:`FamilyRanges`):

- ``textures``, per class (floor, wall, obstacle, target): a flat colour (p = 0.5) with each
  channel U{0..255}, or a ``noise`` texture of two such colours with feature size
  logU(0.01, 0.3) m on a tile of U(0.5, 2.0) m (seed drawn too); per-episode jitter
  hue U(0, 0.1), brightness U(0, 0.3), scale U(0, 0.3). **Procedural only: never ``skimage`` or
  ``file`` photos**, so the family contains neither evaluation look (``real_lab`` and
  ``real_office`` both use photo textures).
- ``light``: direction at azimuth U(0, 360°) and elevation U(20°, 90°), colour per channel
  U(0.7, 1.0), ambient U(0.3, 0.8), diffuse U(0.2, 0.8), specular U(0, 0.3), shadows p = 0.5.
- ``camera``: field of view U(50°, 75°), k1 U(-0.08, 0.16), k2 U(-0.01, 0.03) (never folds the
  image over), vignetting U(0, 0.45).
- ``sensor``: exposure logU(0.7, 1.4), white balance red and blue gains U(0.8, 1.2) (green 1),
  blur sigma U(0, 1.2) px at 64 px, read noise U(0, 12), gamma logU(0.8, 1.25), JPEG with
  p = 0.5 at quality U{30..95}.

The light, camera and sensor ranges cover the shipped real-like looks (tests check it); only
their photo textures are outside the family. Each part (each class's texture, light, camera,
sensor) draws from a generator of its own, keyed by (seed, part), so a member's camera does not
depend on how its textures were drawn.

Seed space (documented so training and validation never share a member): training episodes use
:func:`training_member` (a hash of the run seed and the episode counter, in [0, 2**31)); the
trainer's per-round validation uses :func:`validation_member` (``2**31 + i`` for validation room
``i``), a fixed set disjoint from every training draw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from sim2real_goggles.appearance.profile import CLASS_NAMES, Profile, ProfileError, profile_from_dict

FAMILY = "randomized"
"""The family's spec: a fresh member per episode (trainer) or ``randomized:SEED`` for one."""

FAMILY_DESCRIPTION = (
    "domain-randomisation family (sim2real_goggles.appearance.randomize): procedural flat/noise "
    "textures per class, random light, camera and sensor; no photo textures"
)

VALIDATION_SEED_START = 2**31
"""Validation room ``i`` is shown in member ``VALIDATION_SEED_START + i``; training members
are below it."""

_PARTS = (*CLASS_NAMES, "light", "camera", "sensor")


@dataclass(frozen=True)
class FamilyRanges:
    """Ranges of the family (see the module docstring for the distribution of each)."""

    noise_probability: float = 0.5
    noise_scale_m: tuple[float, float] = (0.01, 0.3)
    tile_m: tuple[float, float] = (0.5, 2.0)
    hue_jitter: tuple[float, float] = (0.0, 0.1)
    brightness_jitter: tuple[float, float] = (0.0, 0.3)
    scale_jitter: tuple[float, float] = (0.0, 0.3)
    light_elevation_deg: tuple[float, float] = (20.0, 90.0)
    light_color: tuple[float, float] = (0.7, 1.0)
    ambient: tuple[float, float] = (0.3, 0.8)
    diffuse: tuple[float, float] = (0.2, 0.8)
    specular: tuple[float, float] = (0.0, 0.3)
    shadow_probability: float = 0.5
    fov_deg: tuple[float, float] = (50.0, 75.0)
    k1: tuple[float, float] = (-0.08, 0.16)
    k2: tuple[float, float] = (-0.01, 0.03)
    vignetting: tuple[float, float] = (0.0, 0.45)
    exposure: tuple[float, float] = (0.7, 1.4)
    white_balance: tuple[float, float] = (0.8, 1.2)
    blur_sigma: tuple[float, float] = (0.0, 1.2)
    noise_std: tuple[float, float] = (0.0, 12.0)
    gamma: tuple[float, float] = (0.8, 1.25)
    jpeg_probability: float = 0.5
    jpeg_quality: tuple[int, int] = (30, 95)


RANGES = FamilyRanges()


def random_profile(seed: int, ranges: FamilyRanges = RANGES) -> Profile:
    """Member ``seed`` (an int >= 0) of the family: the same profile for the same seed, validated
    like any profile file."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ProfileError(f"randomized:{seed}: the seed of a family member must be an integer >= 0")
    seed = int(seed)
    rngs = {part: np.random.default_rng([seed, i]) for i, part in enumerate(_PARTS)}
    raw = {
        "name": f"{FAMILY}#{seed}",
        "description": f"member {seed} of the {FAMILY_DESCRIPTION}",
        "textures": {cls: _texture(rngs[cls], ranges) for cls in CLASS_NAMES},
        "light": _light(rngs["light"], ranges),
        "camera": _camera(rngs["camera"], ranges),
        "sensor": _sensor(rngs["sensor"], ranges),
    }
    return profile_from_dict(raw, source=f"{FAMILY}:{seed}")


def profile_from_spec(spec: str) -> Profile:
    """``randomized:SEED`` (or the member's name ``randomized#SEED``) -> that member."""
    head, sep, tail = spec.partition(":") if ":" in spec else spec.partition("#")
    if head != FAMILY:
        raise ProfileError(f"{spec}: not a member of the {FAMILY!r} family")
    if not sep:
        raise ProfileError(
            f"{spec!r} is the domain-randomisation family (a fresh look per episode, as in "
            f"`goggles train-policy --profile {FAMILY}`), not one look; name one member as "
            f"{FAMILY}:SEED, e.g. {FAMILY}:3"
        )
    try:
        seed = int(tail)
    except ValueError:
        raise ProfileError(f"{spec}: the seed after '{FAMILY}{sep}' must be an integer >= 0") from None
    return random_profile(seed)


def is_family_spec(text: str) -> bool:
    """Whether ``text`` names the family or one of its members (not a file path)."""
    if "/" in text or text.endswith((".yaml", ".yml")):
        return False
    return text == FAMILY or text.startswith((f"{FAMILY}:", f"{FAMILY}#"))


def training_member(run_seed: int, episode: int) -> int:
    """Member seed of training episode ``episode`` of a run seeded ``run_seed``: a hash of the
    two, so a resumed run draws the same looks; always below :data:`VALIDATION_SEED_START`."""
    state = np.random.SeedSequence([int(run_seed), int(episode), 0x0D0A1A]).generate_state(1)[0]
    return int(state) % VALIDATION_SEED_START


def validation_member(index: int) -> int:
    """Member seed of validation room ``index`` (a fixed range, disjoint from training)."""
    return VALIDATION_SEED_START + int(index)


def preview_sheet(n: int = 8, seed: int = 0, room: int = 7, size: int = 128, columns: int = 4) -> np.ndarray:
    """RGB contact sheet of members ``seed`` .. ``seed + n - 1``: in each, the view from the start
    of room ``room`` (an env seed) turned towards the chair, labelled ``randomized:SEED`` (one
    env, its look switched per member). Room 7 shows all four classes."""
    import cv2

    from sim2real_goggles.envs.nav_to_target import NavToTargetEnv

    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    env = NavToTargetEnv(image_size=size, profile=random_profile(seed))
    tiles = []
    try:
        for member in range(seed, seed + n):
            env.reset(seed=room, options={"profile": random_profile(member)})
            target = env.layout.target
            env.pose[2] = math.atan2(target.y - env.pose[1], target.x - env.pose[0])
            obs, _ = env.observe()
            label = np.full((20, size, 3), 255, np.uint8)
            cv2.putText(label, f"{FAMILY}:{member}", (3, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
            tiles.append(np.concatenate([label, obs], axis=0))
    finally:
        env.close()
    columns = max(1, min(columns, n))
    tiles += [np.full_like(tiles[0], 255)] * (-len(tiles) % columns)
    rows = [np.concatenate(tiles[i : i + columns], axis=1) for i in range(0, len(tiles), columns)]
    return np.concatenate(rows, axis=0)


# --------------------------------------------------------------------------------------------


def _u(rng: np.random.Generator, lo_hi: tuple[float, float], digits: int = 3) -> float:
    return round(float(rng.uniform(*lo_hi)), digits)


def _log_u(rng: np.random.Generator, lo_hi: tuple[float, float], digits: int = 3) -> float:
    lo, hi = lo_hi
    return round(float(math.exp(rng.uniform(math.log(lo), math.log(hi)))), digits)


def _rgb(rng: np.random.Generator) -> list[int]:
    return [int(c) for c in rng.integers(0, 256, size=3)]


def _texture(rng: np.random.Generator, r: FamilyRanges) -> dict[str, Any]:
    spec: dict[str, Any]
    if rng.random() < r.noise_probability:
        tile = _u(rng, r.tile_m)
        spec = {
            "noise": {
                "seed": int(rng.integers(2**31)),
                "scale": _log_u(rng, r.noise_scale_m, 4),
                "colors": [_rgb(rng), _rgb(rng)],
            },
            "tile_m": tile,
        }
    else:
        spec = {"color": _rgb(rng)}
    spec["hue_jitter"] = _u(rng, r.hue_jitter)
    spec["brightness_jitter"] = _u(rng, r.brightness_jitter)
    spec["scale_jitter"] = _u(rng, r.scale_jitter)
    return spec


def _light(rng: np.random.Generator, r: FamilyRanges) -> dict[str, Any]:
    azimuth = rng.uniform(0.0, 2.0 * math.pi)
    elevation = math.radians(rng.uniform(*r.light_elevation_deg))
    direction = [
        math.cos(elevation) * math.cos(azimuth),
        math.cos(elevation) * math.sin(azimuth),
        math.sin(elevation),
    ]
    return {
        "direction": [round(c, 3) for c in direction],
        "color": [_u(rng, r.light_color) for _ in range(3)],
        "ambient": _u(rng, r.ambient),
        "diffuse": _u(rng, r.diffuse),
        "specular": _u(rng, r.specular),
        "shadows": bool(rng.random() < r.shadow_probability),
    }


def _camera(rng: np.random.Generator, r: FamilyRanges) -> dict[str, Any]:
    return {
        "fov_deg": _u(rng, r.fov_deg, 1),
        "k1": _u(rng, r.k1),
        "k2": _u(rng, r.k2),
        "vignetting": _u(rng, r.vignetting),
    }


def _sensor(rng: np.random.Generator, r: FamilyRanges) -> dict[str, Any]:
    jpeg = rng.random() < r.jpeg_probability
    quality = int(rng.integers(r.jpeg_quality[0], r.jpeg_quality[1] + 1))  # drawn either way
    return {
        "exposure": _log_u(rng, r.exposure),
        "white_balance": [_u(rng, r.white_balance), 1.0, _u(rng, r.white_balance)],
        "blur_sigma": _u(rng, r.blur_sigma),
        "noise_std": _u(rng, r.noise_std, 2),
        "gamma": _log_u(rng, r.gamma),
        "jpeg_quality": quality if jpeg else None,
    }


__all__ = [
    "FAMILY",
    "FAMILY_DESCRIPTION",
    "RANGES",
    "VALIDATION_SEED_START",
    "FamilyRanges",
    "is_family_spec",
    "preview_sheet",
    "profile_from_spec",
    "random_profile",
    "training_member",
    "validation_member",
]
