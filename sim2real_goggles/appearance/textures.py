"""Texture images for the scene, made from a profile's per-class :class:`TextureSpec`.

Every texture is a square RGB tile that repeats every ``tile_m`` metres on the surface it covers
(the scene's meshes carry UVs in units of tiles). Per-episode jitter is drawn by the caller from
the environment's RNG and applied here, so renders stay reproducible under a seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from sim2real_goggles.appearance.profile import NoiseTexture, TextureSpec

TEXTURE_PX = 256
"""Side of a texture tile in pixels: fine enough for 256x256 views of a 1 m tile at 1 m."""


@dataclass(frozen=True)
class TextureJitter:
    """One episode's draw of a texture's jitter."""

    hue: float = 0.0
    brightness: float = 1.0
    scale: float = 1.0

    @staticmethod
    def draw(spec: TextureSpec, rng: np.random.Generator) -> TextureJitter:
        """Draw uniformly within the spec's jitter ranges (always three draws, so the RNG
        stream does not depend on which ranges are zero)."""
        u = rng.uniform(-1.0, 1.0, size=3)
        return TextureJitter(
            hue=float(u[0] * spec.hue_jitter),
            brightness=float(1.0 + u[1] * spec.brightness_jitter),
            scale=float(1.0 + u[2] * spec.scale_jitter),
        )


def shift_hue(rgb: np.ndarray, hue: float) -> np.ndarray:
    """Rotate the hue of a uint8 RGB image by ``hue`` (fraction of the colour circle)."""
    if hue == 0.0:
        return rgb
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV_FULL)
    hsv[..., 0] = (hsv[..., 0].astype(np.int16) + int(round(hue * 256))) % 256
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB_FULL)


def jittered_color(spec: TextureSpec, jitter: TextureJitter) -> tuple[float, float, float]:
    """Flat colour of a ``color`` spec after jitter, as 0-1 floats (may exceed 1 slightly)."""
    assert spec.color is not None
    rgb = np.array([[spec.color]], dtype=np.uint8)
    rgb = shift_hue(rgb, jitter.hue)[0, 0].astype(np.float64) / 255.0
    return tuple(float(c) for c in rgb * jitter.brightness)  # type: ignore[return-value]


def texture_image(spec: TextureSpec, jitter: TextureJitter) -> np.ndarray:
    """The RGB uint8 tile of an image/noise texture with hue jitter applied.

    Brightness jitter is not baked in: the renderer applies it as the body colour, which
    multiplies the texture at no cost.
    """
    base = _base_tile(spec)
    return shift_hue(base, jitter.hue)


@lru_cache(maxsize=64)
def _base_tile(spec: TextureSpec) -> np.ndarray:
    if spec.skimage is not None:
        import skimage.data

        img = np.asarray(getattr(skimage.data, spec.skimage)())
        tile = _square_tile(_to_rgb(img))
    elif spec.file is not None:
        img = cv2.imread(spec.file, cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"{spec.file}: not a readable image")
        tile = _square_tile(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
    elif spec.noise is not None:
        tile = _noise_tile(spec.noise, spec.tile_m)
    else:
        raise ValueError("texture_image() needs an image or noise texture, not a flat colour")
    tint = np.asarray(spec.tint, dtype=np.float32) / 255.0
    if np.any(tint != 1.0):
        tile = np.clip(tile.astype(np.float32) * tint, 0, 255).astype(np.uint8)
    tile.setflags(write=False)
    return tile


def _to_rgb(img: np.ndarray) -> np.ndarray:
    if img.dtype == bool:
        img = img.astype(np.uint8) * 255
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return np.ascontiguousarray(img[..., :3]).astype(np.uint8)


def _square_tile(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    s = min(h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    crop = img[y0 : y0 + s, x0 : x0 + s]
    return cv2.resize(crop, (TEXTURE_PX, TEXTURE_PX), interpolation=cv2.INTER_AREA)


def _noise_tile(noise: NoiseTexture, tile_m: float) -> np.ndarray:
    """Seamless (periodic) smooth noise: white noise low-pass filtered in the Fourier domain."""
    rng = np.random.default_rng(noise.seed)
    white = rng.standard_normal((TEXTURE_PX, TEXTURE_PX))
    sigma_px = max(noise.scale / tile_m * TEXTURE_PX, 0.5)
    f = np.fft.fftfreq(TEXTURE_PX)
    fy, fx = np.meshgrid(f, f, indexing="ij")
    # Gaussian blur of std sigma_px in space == Gaussian of std 1/(2 pi sigma_px) in frequency.
    lowpass = np.exp(-2.0 * (np.pi * sigma_px) ** 2 * (fx**2 + fy**2))
    smooth = np.real(np.fft.ifft2(np.fft.fft2(white) * lowpass))
    smooth = (smooth - smooth.min()) / max(float(np.ptp(smooth)), 1e-9)
    a = np.asarray(noise.colors[0], dtype=np.float32)
    b = np.asarray(noise.colors[1], dtype=np.float32)
    tile = a + (b - a) * smooth[..., None].astype(np.float32)
    return np.clip(tile, 0, 255).astype(np.uint8)
