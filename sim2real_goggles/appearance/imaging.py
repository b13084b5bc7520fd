"""Camera model (field of view, radial distortion, vignetting) and sensor effects.

The scene is rendered by an ideal pinhole camera; a :class:`CameraModel` says at which size and
field of view to render so that, after the distortion remap, the output image of the requested
size is fully covered. The same remap (nearest neighbour) is applied to the segmentation mask,
so image and mask stay pixel-aligned under any lens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from sim2real_goggles.appearance.profile import CameraSpec, SensorSpec

REFERENCE_HEIGHT = 64
"""Image height at which SensorSpec.blur_sigma is given; blur scales with the image."""


@dataclass
class CameraModel:
    """Rendering geometry for one output size and one lens.

    Attributes:
        out_size: (height, width) of the delivered image.
        render_size: (height, width) of the pinhole render that feeds the remap.
        render_fov_deg: vertical field of view of that render.
        map_x, map_y: cv2.remap maps (float32, out_size) or None for an ideal lens.
        vignette: float32 gain (out_size + (1,)) or None.
    """

    out_size: tuple[int, int]
    render_size: tuple[int, int]
    render_fov_deg: float
    map_x: np.ndarray | None
    map_y: np.ndarray | None
    vignette: np.ndarray | None

    @classmethod
    def build(cls, spec: CameraSpec, out_size: tuple[int, int]) -> CameraModel:
        h, w = out_size
        f = (h / 2.0) / math.tan(math.radians(spec.fov_deg) / 2.0)  # focal length in pixels
        # Normalised coordinates of output pixel centres.
        xs = (np.arange(w, dtype=np.float64) + 0.5 - w / 2.0) / f
        ys = (np.arange(h, dtype=np.float64) + 0.5 - h / 2.0) / f
        xd, yd = np.meshgrid(xs, ys)
        r2 = xd * xd + yd * yd
        vignette = None
        if spec.vignetting > 0:
            r2_corner = float(r2.max())
            vignette = (1.0 - spec.vignetting * r2 / r2_corner).astype(np.float32)[..., None]
        if spec.k1 == 0.0 and spec.k2 == 0.0:
            return cls(out_size, out_size, spec.fov_deg, None, None, vignette)
        scale = 1.0 + spec.k1 * r2 + spec.k2 * r2 * r2
        xu, yu = xd * scale, yd * scale
        # Render just large enough (same focal length) to cover every sampled point, plus one
        # pixel for bilinear support; keep the parity of the output so centres line up.
        half_w = max(w / 2.0, float(np.abs(xu).max()) * f + 1.0)
        half_h = max(h / 2.0, float(np.abs(yu).max()) * f + 1.0)
        rw = int(math.ceil(half_w - w / 2.0)) * 2 + w
        rh = int(math.ceil(half_h - h / 2.0)) * 2 + h
        render_fov = math.degrees(2.0 * math.atan((rh / 2.0) / f))
        map_x = (xu * f + rw / 2.0 - 0.5).astype(np.float32)
        map_y = (yu * f + rh / 2.0 - 0.5).astype(np.float32)
        return cls(out_size, (rh, rw), render_fov, map_x, map_y, vignette)

    def apply_lens(self, rgb: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        """Remap a pinhole render (render_size) to the lens image (out_size)."""
        if self.map_x is None:
            return rgb, mask
        out = cv2.remap(rgb, self.map_x, self.map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        if mask is not None:
            mask = cv2.remap(mask, self.map_x, self.map_y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)
        return out, mask


def pinhole_matrices(width: int, height: int, fov_deg: float) -> tuple[list[float], list[float]]:
    """Row-major K (3x3) and P (3x4) of the ideal render camera with vertical field of view
    ``fov_deg``, as sensor_msgs/CameraInfo holds them."""
    f = 0.5 * height / math.tan(math.radians(fov_deg) / 2)
    cx, cy = (width - 1) / 2, (height - 1) / 2
    return [f, 0.0, cx, 0.0, f, cy, 0.0, 0.0, 1.0], [f, 0.0, cx, 0.0, 0.0, f, cy, 0.0, 0.0, 0.0, 1.0, 0.0]


def apply_sensor(
    rgb: np.ndarray,
    sensor: SensorSpec,
    camera: CameraModel,
    rng: np.random.Generator,
) -> np.ndarray:
    """Apply vignetting and the sensor pipeline to a uint8 RGB image.

    Order: vignetting and exposure (light reaching the sensor), white balance, blur (optics),
    read noise, gamma (tone curve), JPEG. ``rng`` draws the noise; pass the environment's
    generator so the same seed gives the same noise.
    """
    img = rgb.astype(np.float32) * (sensor.exposure / 255.0)
    if camera.vignette is not None:
        img *= camera.vignette
    wb = np.asarray(sensor.white_balance, dtype=np.float32)
    if np.any(wb != 1.0):
        img *= wb
    if sensor.blur_sigma > 0:
        sigma = sensor.blur_sigma * rgb.shape[0] / REFERENCE_HEIGHT
        img = cv2.GaussianBlur(img, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
    if sensor.noise_std > 0:
        img += rng.standard_normal(img.shape, dtype=np.float32) * (sensor.noise_std / 255.0)
    np.clip(img, 0.0, 1.0, out=img)
    if sensor.gamma != 1.0:
        np.power(img, 1.0 / sensor.gamma, out=img)
    out = (img * 255.0 + 0.5).astype(np.uint8)
    if sensor.jpeg_quality is not None:
        ok, buf = cv2.imencode(
            ".jpg", cv2.cvtColor(out, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, sensor.jpeg_quality]
        )
        assert ok, "JPEG encoding failed"
        out = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return out
