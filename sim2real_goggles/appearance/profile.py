"""Appearance profiles: typed dataclasses loaded and validated from YAML.

A profile says how the one 3D scene looks: textures per class, lighting, camera model and sensor
effects. The schema (every key, type, default, effect) is documented in
``config/profiles/README.md``; the defaults live here and only here.

Validation happens entirely at load time, so an unknown key, a wrong type or a missing texture
file fails with :class:`ProfileError` naming the file and the key before anything is rendered.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import yaml

from sim2real_goggles.resources import share_path

CLASS_NAMES: tuple[str, ...] = ("floor", "wall", "obstacle", "target")
"""Semantic classes of DESIGN.md §3, in class-id order (0 floor, 1 wall, 2 obstacle, 3 target)."""

IGNORE_ID = 255
"""Mask value for pixels that belong to no class (open background above the walls)."""

SKIMAGE_TEXTURES: tuple[str, ...] = (
    "astronaut",
    "brick",
    "camera",
    "cell",
    "checkerboard",
    "chelsea",
    "clock",
    "coffee",
    "coins",
    "colorwheel",
    "grass",
    "gravel",
    "hubble_deep_field",
    "immunohistochemistry",
    "moon",
    "page",
    "retina",
    "rocket",
    "text",
)
"""scikit-image sample images that ship inside the wheel (no download needed)."""


class ProfileError(ValueError):
    """A profile file or dict is invalid; the message names the file and the key."""


@dataclass(frozen=True)
class NoiseTexture:
    """Procedural value noise blended between two colours."""

    seed: int = 0
    """Seed of the noise pattern (the pattern is fixed per profile, not per episode)."""
    scale: float = 0.25
    """Feature size of the noise in metres."""
    colors: tuple[tuple[int, int, int], tuple[int, int, int]] = ((90, 90, 90), (170, 170, 170))
    """The two RGB colours (0-255) the noise blends between."""


@dataclass(frozen=True)
class TextureSpec:
    """What one object class looks like. Exactly one of color/skimage/file/noise is set."""

    color: tuple[int, int, int] | None = None
    """Flat RGB colour, 0-255."""
    skimage: str | None = None
    """Name of a scikit-image sample image (see SKIMAGE_TEXTURES)."""
    file: str | None = None
    """Path of an image file; relative paths are relative to the profile file."""
    noise: NoiseTexture | None = None
    """Procedural noise texture."""
    tile_m: float = 1.0
    """Size in metres covered by one repeat of an image texture."""
    tint: tuple[int, int, int] = (255, 255, 255)
    """RGB multiplier (0-255) applied to image textures, e.g. to colour a greyscale photo."""
    hue_jitter: float = 0.0
    """Per-episode hue shift drawn uniformly in [-hue_jitter, hue_jitter] (fraction of the
    colour circle, 0-0.5)."""
    brightness_jitter: float = 0.0
    """Per-episode brightness factor drawn uniformly in [1-b, 1+b]."""
    scale_jitter: float = 0.0
    """Per-episode texture-scale factor drawn uniformly in [1-s, 1+s]."""


@dataclass(frozen=True)
class LightSpec:
    """PyBullet TinyRenderer lighting."""

    direction: tuple[float, float, float] = (0.4, 0.3, 1.0)
    """Direction towards the light, world frame."""
    color: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """Light colour, RGB 0-1."""
    ambient: float = 0.6
    """Ambient coefficient."""
    diffuse: float = 0.4
    """Diffuse (Lambert) coefficient."""
    specular: float = 0.0
    """Specular coefficient."""
    shadows: bool = False
    """Cast shadows (costs a second render pass)."""


@dataclass(frozen=True)
class CameraSpec:
    """Lens model: pinhole with field of view, radial distortion and vignetting."""

    fov_deg: float = 60.0
    """Vertical field of view of the ideal pinhole camera, degrees."""
    k1: float = 0.0
    """Radial distortion: an output pixel at normalised radius r samples the pinhole image at
    r * (1 + k1 r^2 + k2 r^4). k1 > 0 is barrel distortion (a wider view squeezed in)."""
    k2: float = 0.0
    """Fourth-order radial distortion term, as k1."""
    vignetting: float = 0.0
    """Brightness fall-off: gain 1 - vignetting * (r / r_corner)^2."""


@dataclass(frozen=True)
class SensorSpec:
    """Sensor and image-pipeline effects, applied in the order listed here."""

    exposure: float = 1.0
    """Linear gain on the rendered radiance."""
    white_balance: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """Per-channel RGB gains."""
    blur_sigma: float = 0.0
    """Gaussian blur (defocus) sigma in pixels at 64 px image height; scales with image size."""
    noise_std: float = 0.0
    """Gaussian read noise, standard deviation in 0-255 intensity units."""
    gamma: float = 1.0
    """Tone curve: out = in ** (1 / gamma) on 0-1 intensities."""
    jpeg_quality: int | None = None
    """JPEG compression quality 1-100; null for none."""


@dataclass(frozen=True)
class Profile:
    """A complete appearance profile."""

    name: str
    """Profile name (defaults to the file stem)."""
    description: str = ""
    """Free text for users."""
    textures: dict[str, TextureSpec] = field(default_factory=dict)
    """Per class (floor, wall, obstacle, target) texture spec."""
    light: LightSpec = field(default_factory=LightSpec)
    camera: CameraSpec = field(default_factory=CameraSpec)
    sensor: SensorSpec = field(default_factory=SensorSpec)
    source: str = "<dict>"
    """Where the profile was loaded from (for error messages); not a YAML key."""

    def texture(self, class_name: str) -> TextureSpec:
        return self.textures[class_name]

    @property
    def has_sensor_effects(self) -> bool:
        s = self.sensor
        return (
            s.exposure != 1.0
            or tuple(s.white_balance) != (1.0, 1.0, 1.0)
            or s.blur_sigma > 0
            or s.noise_std > 0
            or s.gamma != 1.0
            or s.jpeg_quality is not None
        )


# --------------------------------------------------------------------------------------------
# Loading and validation


def profiles_dir() -> Path:
    """Folder of the shipped profiles."""
    return share_path("config", "profiles")


def list_profiles() -> list[str]:
    """Names of the shipped profiles."""
    return sorted(p.stem for p in profiles_dir().glob("*.yaml"))


def resolve_profile_path(name_or_path: str | Path) -> Path:
    """A shipped profile name (``real_lab``) or a path to a YAML file."""
    text = str(name_or_path)
    candidate = Path(text).expanduser()
    if text.endswith((".yaml", ".yml")) or candidate.is_file() or "/" in text:
        if not candidate.is_file():
            raise ProfileError(f"{text}: profile file not found")
        return candidate
    shipped = profiles_dir() / f"{text}.yaml"
    if not shipped.is_file():
        raise ProfileError(
            f"unknown profile {text!r}: not a shipped profile ({', '.join(list_profiles())}) "
            "and not a path to a .yaml file"
        )
    return shipped


_CACHE: dict[tuple[str, int, int], Profile] = {}


def sim_through_camera(sim: Profile, real: Profile) -> Profile:
    """The sim look seen through the real look's lens: pixel-aligned with frames of ``real``, the
    reference a real -> sim translation is compared against."""
    return dataclasses.replace(sim, name=f"{sim.name}@{real.name}_camera", camera=real.camera)


def load_profile(profile: str | Path | Profile) -> Profile:
    """Load and validate a profile by name, path, ``randomized:SEED`` (one member of the
    domain-randomisation family, :mod:`sim2real_goggles.appearance.randomize`), or pass a
    :class:`Profile` through."""
    if isinstance(profile, Profile):
        return profile
    # Imported here: the family module builds its members with this module's validation.
    from sim2real_goggles.appearance.randomize import is_family_spec, profile_from_spec

    if isinstance(profile, str) and is_family_spec(profile):
        return profile_from_spec(profile)
    path = resolve_profile_path(profile).resolve()
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key not in _CACHE:
        try:
            raw = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ProfileError(f"{path}: not valid YAML: {exc}") from exc
        _CACHE[key] = profile_from_dict(raw, source=str(path), default_name=path.stem)
    return _CACHE[key]


def profile_from_dict(raw: Any, source: str = "<dict>", default_name: str = "custom") -> Profile:
    """Build a :class:`Profile` from a parsed YAML mapping, validating every key."""
    if not isinstance(raw, dict):
        raise ProfileError(f"{source}: a profile must be a mapping, got {type(raw).__name__}")
    raw = dict(raw)
    raw.setdefault("name", default_name)
    textures_raw = raw.pop("textures", None)
    if not isinstance(textures_raw, dict):
        raise ProfileError(f"{source}: key 'textures' must be a mapping of {CLASS_NAMES}")
    textures: dict[str, TextureSpec] = {}
    for cls in textures_raw:
        if cls not in CLASS_NAMES:
            raise ProfileError(f"{source}: unknown key 'textures.{cls}' (classes: {CLASS_NAMES})")
    for cls in CLASS_NAMES:
        if cls not in textures_raw:
            raise ProfileError(f"{source}: missing key 'textures.{cls}'")
        spec = _build(TextureSpec, textures_raw[cls], source, f"textures.{cls}")
        textures[cls] = _check_texture(spec, source, f"textures.{cls}")
    profile = _build(Profile, raw, source, "", extra={"textures": textures, "source": source})
    _check_ranges(profile)
    return profile


def _build(cls: type, raw: Any, source: str, where: str, extra: dict | None = None) -> Any:
    """Instantiate dataclass ``cls`` from ``raw``, checking keys and types recursively."""
    prefix = f"{where}." if where else ""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ProfileError(f"{source}: key '{where}' must be a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    reserved = set(extra or {})
    kwargs: dict[str, Any] = dict(extra or {})
    for key, value in raw.items():
        if key not in names or key in reserved:
            allowed = sorted(names - reserved - {"source"})
            raise ProfileError(f"{source}: unknown key '{prefix}{key}' (allowed: {allowed})")
        kwargs[key] = _coerce(hints[key], value, source, f"{prefix}{key}")
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, source: str, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, source, key)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, source, key)
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ProfileError(f"{source}: key '{key}' must be a list of {len(args)} values")
        return tuple(_coerce(a, v, source, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if tp is bool:
        if not isinstance(value, bool):
            raise ProfileError(f"{source}: key '{key}' must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ProfileError(f"{source}: key '{key}' must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ProfileError(f"{source}: key '{key}' must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ProfileError(f"{source}: key '{key}' must be a string, got {value!r}")
        return value
    raise ProfileError(f"{source}: key '{key}' has an unsupported type {tp}")  # pragma: no cover


def _check_texture(spec: TextureSpec, source: str, key: str) -> TextureSpec:
    given = [n for n in ("color", "skimage", "file", "noise") if getattr(spec, n) is not None]
    if len(given) != 1:
        raise ProfileError(
            f"{source}: key '{key}' needs exactly one of color, skimage, file, noise (got {given or 'none'})"
        )
    rgb_keys = [("color", spec.color), ("tint", spec.tint)]
    if spec.noise is not None:
        rgb_keys += [(f"noise.colors[{i}]", c) for i, c in enumerate(spec.noise.colors)]
    for name, rgb in rgb_keys:
        if rgb is not None and not all(0 <= c <= 255 for c in rgb):
            raise ProfileError(f"{source}: key '{key}.{name}' values must be within 0-255")
    if spec.noise is not None and spec.noise.scale <= 0:
        raise ProfileError(f"{source}: key '{key}.noise.scale' must be > 0")
    if spec.skimage is not None and spec.skimage not in SKIMAGE_TEXTURES:
        raise ProfileError(
            f"{source}: key '{key}.skimage': unknown image {spec.skimage!r} (available: {', '.join(SKIMAGE_TEXTURES)})"
        )
    if spec.file is not None:
        path = Path(spec.file).expanduser()
        if not path.is_absolute() and source != "<dict>":
            path = Path(source).parent / path
        if not path.is_file():
            raise ProfileError(f"{source}: key '{key}.file': texture file not found: {path}")
        if cv2.imread(str(path), cv2.IMREAD_COLOR) is None:
            raise ProfileError(f"{source}: key '{key}.file': not a readable image: {path}")
        spec = dataclasses.replace(spec, file=str(path.resolve()))
    if spec.tile_m <= 0:
        raise ProfileError(f"{source}: key '{key}.tile_m' must be > 0")
    if not 0 <= spec.hue_jitter <= 0.5:
        raise ProfileError(f"{source}: key '{key}.hue_jitter' must be within 0-0.5")
    for name in ("brightness_jitter", "scale_jitter"):
        if not 0 <= getattr(spec, name) < 1:
            raise ProfileError(f"{source}: key '{key}.{name}' must be within [0, 1)")
    return spec


def _check_ranges(p: Profile) -> None:
    src = p.source
    checks = [
        (0 < p.camera.fov_deg < 150, "camera.fov_deg", "must be within (0, 150)"),
        (0 <= p.camera.vignetting < 1, "camera.vignetting", "must be within [0, 1)"),
        (p.sensor.exposure > 0, "sensor.exposure", "must be > 0"),
        (all(g > 0 for g in p.sensor.white_balance), "sensor.white_balance", "gains must be > 0"),
        (p.sensor.gamma > 0, "sensor.gamma", "must be > 0"),
        (p.sensor.noise_std >= 0, "sensor.noise_std", "must be >= 0"),
        (p.sensor.blur_sigma >= 0, "sensor.blur_sigma", "must be >= 0"),
        (
            p.sensor.jpeg_quality is None or 1 <= p.sensor.jpeg_quality <= 100,
            "sensor.jpeg_quality",
            "must be within 1-100 or null",
        ),
        (any(abs(c) > 0 for c in p.light.direction), "light.direction", "must not be zero"),
    ]
    for ok, key, why in checks:
        if not ok:
            raise ProfileError(f"{src}: key '{key}' {why}")
    # Barrel/pincushion models must stay monotonic over the image, or pixels fold over.
    r_max = 1.5
    for i in range(1, 31):
        r = r_max * i / 30
        if 1 + 3 * p.camera.k1 * r * r + 5 * p.camera.k2 * r**4 <= 0:
            raise ProfileError(f"{src}: keys 'camera.k1'/'camera.k2' fold the image over (too negative)")
