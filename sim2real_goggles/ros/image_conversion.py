"""sensor_msgs/Image and CompressedImage <-> numpy RGB for the nodes.

Uses ROS 2's cv_bridge when it imports (a ROS install), else the package's own numpy conversion
(:mod:`sim2real_goggles.data.image_msgs`; pip installs have no ROS 2 cv_bridge). ``BACKEND`` says
which; the environment variable ``SIM2REAL_GOGGLES_IMAGE_BACKEND`` (``auto``, ``numpy``,
``cv_bridge``) overrides the choice. Either way a message is first checked here (encoding, sizes,
``step``, data length, ``is_bigendian``), so both backends reject the same messages with
:class:`ImageMessageError` naming the problem, and cv_bridge's own errors are wrapped in it.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from types import ModuleType
from typing import Any

import cv2
import numpy as np
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from sim2real_goggles.data.image_msgs import (
    ENCODINGS,
    ImageMessageError,
    compressed_msg_to_rgb,
    image_msg_to_rgb,
)

BACKENDS = ("cv_bridge", "numpy")
OUTPUT_ENCODINGS = ("rgb8", "bgr8", "mono8")
BACKEND_ENV = "SIM2REAL_GOGGLES_IMAGE_BACKEND"


def select_backend(
    requested: str | None = None, importer: Callable[[str], ModuleType] = importlib.import_module
) -> tuple[str, ModuleType | None]:
    """(backend name, cv_bridge module or None) for ``requested`` (``auto`` by default, or the
    environment variable): ``auto`` takes cv_bridge when it imports, else numpy."""
    requested = (requested or os.environ.get(BACKEND_ENV) or "auto").strip()
    if requested not in ("auto", *BACKENDS):
        raise ValueError(f"{BACKEND_ENV}={requested!r}: expected auto, cv_bridge or numpy")
    if requested == "numpy":
        return "numpy", None
    try:
        module = importer("cv_bridge")
    except ImportError as exc:
        if requested == "cv_bridge":
            raise ImportError(f"{BACKEND_ENV}=cv_bridge but cv_bridge does not import: {exc}") from exc
        return "numpy", None
    # ROS 1's cv_bridge from PyPI imports but breaks on numpy 2; only ROS 2's has this API.
    if not hasattr(module, "CvBridge"):
        if requested == "cv_bridge":
            raise ImportError(f"{BACKEND_ENV}=cv_bridge but {module!r} has no CvBridge")
        return "numpy", None
    return "cv_bridge", module


def _data_size(data: Any) -> int:
    if isinstance(data, np.ndarray):
        return data.nbytes
    try:
        return memoryview(data).nbytes
    except TypeError:
        return len(data)


def check_image_msg(msg: Any) -> tuple[int, int, int]:
    """Raise :class:`ImageMessageError` unless ``msg`` describes a valid image this module reads;
    returns (height, width, channels)."""
    encoding = str(getattr(msg, "encoding", ""))
    if encoding not in ENCODINGS:
        raise ImageMessageError(f"unsupported encoding {encoding!r} (supported: {', '.join(ENCODINGS)})")
    channels = ENCODINGS[encoding][0]
    try:
        h, w, step = int(msg.height), int(msg.width), int(msg.step)
        bigendian = int(msg.is_bigendian)
    except (AttributeError, TypeError, ValueError) as exc:
        raise ImageMessageError(f"image fields are not integers: {exc}") from None
    if bigendian not in (0, 1):
        raise ImageMessageError(f"is_bigendian is {bigendian}, expected 0 or 1")
    # Every supported encoding has 8-bit channels, where the byte order changes nothing.
    if h <= 0 or w <= 0:
        raise ImageMessageError(f"empty image {w}x{h}")
    row = w * channels
    if step < row:
        raise ImageMessageError(f"step {step} is smaller than a row of {w} {encoding} pixels ({row} bytes)")
    size = _data_size(msg.data)
    if size != step * h:
        raise ImageMessageError(f"{size} bytes of data, expected {h} rows of {step} bytes ({step * h})")
    return h, w, channels


class ImageConverter:
    """Image message conversion through one backend (``None``: :func:`select_backend`)."""

    def __init__(self, backend: str | None = None):
        self.backend, module = select_backend(backend)
        self._bridge = module.CvBridge() if module is not None else None

    def imgmsg_to_rgb(self, msg: Any) -> np.ndarray:
        """(H, W, 3) uint8 RGB from a sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8, 8UC1,
        8UC3; any row padding)."""
        h, w, channels = check_image_msg(msg)
        # The numpy reader takes what cv_bridge gets wrong: cv_bridge cuts padded rows into whole
        # pixels (step // pixel size), misplacing every row after the first when the padding is
        # not a whole number of pixels, and its big-endian branch calls ndarray.newbyteorder,
        # gone in NumPy 2 (for 8-bit channels the byte order changes nothing anyway).
        if self._bridge is None or int(msg.step) % channels or int(msg.is_bigendian):
            return image_msg_to_rgb(msg)
        try:
            # passthrough: cv_bridge lays the buffer out; the colour conversion is the same
            # table as the numpy path's, so 8UC1/8UC3 mean the same with both backends.
            img = np.asarray(self._bridge.imgmsg_to_cv2(msg, desired_encoding="passthrough"))
            img = np.ascontiguousarray(img.reshape(h, w, channels) if channels > 1 else img.reshape(h, w))
        except Exception as exc:  # noqa: BLE001 - CvBridgeError, TypeError, ValueError from numpy
            raise ImageMessageError(f"cv_bridge cannot read the image: {exc}") from exc
        conversion = ENCODINGS[str(msg.encoding)][2]
        return img if conversion is None else cv2.cvtColor(img, conversion)

    def compressed_to_rgb(self, msg: Any) -> np.ndarray:
        """(H, W, 3) uint8 RGB from a sensor_msgs/CompressedImage (JPEG, PNG, ...)."""
        fmt = getattr(msg, "format", "?")
        if _data_size(msg.data) == 0:
            raise ImageMessageError(f"compressed image ({fmt}) has no data")
        if self._bridge is None:
            return compressed_msg_to_rgb(msg)
        try:
            bgr = self._bridge.compressed_imgmsg_to_cv2(msg, desired_encoding="bgr8")
        except Exception as exc:  # noqa: BLE001 - cv_bridge raises several types for bad data
            raise ImageMessageError(f"compressed image ({fmt}) does not decode: {exc}") from exc
        if bgr is None or np.asarray(bgr).size == 0:
            raise ImageMessageError(f"compressed image ({fmt}) does not decode")
        return cv2.cvtColor(np.asarray(bgr), cv2.COLOR_BGR2RGB)

    def _image(self, pixels: np.ndarray, encoding: str, header: Header | None) -> Image:
        if self._bridge is not None:
            msg = self._bridge.cv2_to_imgmsg(pixels, encoding=encoding)
        else:
            h, w = pixels.shape[:2]
            msg = Image(height=h, width=w, encoding=encoding, is_bigendian=0, step=pixels.strides[0])
            # bytes, not the array: assigning an ndarray to msg.data costs ~60 ms at 640x480.
            msg.data = pixels.tobytes()
        if header is not None:
            msg.header = header
        return msg

    def rgb_to_imgmsg(self, rgb: np.ndarray, header: Header | None = None, encoding: str = "rgb8") -> Image:
        """sensor_msgs/Image of an (H, W, 3) uint8 RGB image, written as rgb8, bgr8 or mono8."""
        img = np.asarray(rgb)
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8 or img.size == 0:
            raise ValueError(f"expected a non-empty (H, W, 3) uint8 image, got {img.shape} {img.dtype}")
        if encoding == "rgb8":
            pixels = np.ascontiguousarray(img)
        elif encoding == "bgr8":
            pixels = np.ascontiguousarray(img[:, :, ::-1])
        elif encoding == "mono8":
            pixels = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY)
        else:
            raise ValueError(f"can write {', '.join(OUTPUT_ENCODINGS)}, not {encoding!r}")
        return self._image(pixels, encoding, header)

    def mono_to_imgmsg(self, ids: np.ndarray, header: Header | None = None) -> Image:
        """mono8 sensor_msgs/Image of an (H, W) uint8 array (class ids, masks)."""
        arr = np.asarray(ids)
        if arr.ndim != 2 or arr.dtype != np.uint8 or arr.size == 0:
            raise ValueError(f"expected a non-empty (H, W) uint8 array, got {arr.shape} {arr.dtype}")
        return self._image(np.ascontiguousarray(arr), "mono8", header)


_default = ImageConverter()
BACKEND: str = _default.backend
"""The backend the module-level functions use: ``cv_bridge`` or ``numpy``."""

imgmsg_to_rgb = _default.imgmsg_to_rgb
compressed_to_rgb = _default.compressed_to_rgb
rgb_to_imgmsg = _default.rgb_to_imgmsg
mono_to_imgmsg = _default.mono_to_imgmsg


__all__ = [
    "BACKEND",
    "BACKENDS",
    "ImageConverter",
    "OUTPUT_ENCODINGS",
    "ImageMessageError",
    "check_image_msg",
    "compressed_to_rgb",
    "imgmsg_to_rgb",
    "mono_to_imgmsg",
    "rgb_to_imgmsg",
    "select_backend",
]
