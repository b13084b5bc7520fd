"""sensor_msgs/Image and sensor_msgs/CompressedImage <-> numpy, without cv_bridge.

ROS 2's cv_bridge is not on PyPI (and PyPI's ``cv-bridge`` is ROS 1 and breaks with numpy 2), so
the project converts the messages itself. The functions take any object with the message's
fields (an rclpy message, a rosbags-deserialised message or a stand-in) and raise
:class:`ImageMessageError`, naming the problem, for a message that does not describe a valid
image, so callers can log and drop it.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

# encoding -> (channels, dtype, conversion to RGB or None)
ENCODINGS: dict[str, tuple[int, Any, int | None]] = {
    "rgb8": (3, np.uint8, None),
    "bgr8": (3, np.uint8, cv2.COLOR_BGR2RGB),
    "rgba8": (4, np.uint8, cv2.COLOR_RGBA2RGB),
    "bgra8": (4, np.uint8, cv2.COLOR_BGRA2RGB),
    "mono8": (1, np.uint8, cv2.COLOR_GRAY2RGB),
    "8UC1": (1, np.uint8, cv2.COLOR_GRAY2RGB),
    "8UC3": (3, np.uint8, cv2.COLOR_BGR2RGB),
}


class ImageMessageError(ValueError):
    """An image message whose fields do not describe a valid image."""


def image_msg_to_rgb(msg: Any) -> np.ndarray:
    """(H, W, 3) uint8 RGB from a sensor_msgs/Image (encodings: :data:`ENCODINGS`)."""
    encoding = str(getattr(msg, "encoding", ""))
    if encoding not in ENCODINGS:
        raise ImageMessageError(f"unsupported encoding {encoding!r} (supported: {', '.join(ENCODINGS)})")
    channels, dtype, conversion = ENCODINGS[encoding]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0:
        raise ImageMessageError(f"empty image {w}x{h}")
    row = w * channels * np.dtype(dtype).itemsize
    if step < row:
        raise ImageMessageError(f"step {step} is smaller than a row of {w} {encoding} pixels ({row} bytes)")
    data = np.frombuffer(bytes(msg.data) if not isinstance(msg.data, np.ndarray) else msg.data.tobytes(), np.uint8)
    if data.size < step * h:
        raise ImageMessageError(f"{data.size} bytes of data for {h} rows of {step} bytes")
    rows = data[: step * h].reshape(h, step)[:, :row]
    img = rows.reshape(h, w, channels) if channels > 1 else rows.reshape(h, w)
    if conversion is None:
        return np.ascontiguousarray(img)
    return cv2.cvtColor(np.ascontiguousarray(img), conversion)


def compressed_msg_to_rgb(msg: Any) -> np.ndarray:
    """(H, W, 3) uint8 RGB from a sensor_msgs/CompressedImage (JPEG, PNG, ...)."""
    buf = np.frombuffer(bytes(msg.data) if not isinstance(msg.data, np.ndarray) else msg.data.tobytes(), np.uint8)
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
    if img is None:
        raise ImageMessageError(f"compressed image ({getattr(msg, 'format', '?')}) does not decode")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def rgb_to_image_fields(image: np.ndarray, encoding: str = "rgb8") -> dict[str, Any]:
    """Fields of a sensor_msgs/Image holding ``image`` (H, W, 3) uint8 RGB."""
    img = np.ascontiguousarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"expected (H, W, 3) uint8, got {img.shape} {img.dtype}")
    if encoding == "bgr8":
        img = np.ascontiguousarray(img[:, :, ::-1])
    elif encoding != "rgb8":
        raise ValueError(f"can write rgb8 or bgr8, not {encoding!r}")
    h, w = img.shape[:2]
    return {"height": h, "width": w, "encoding": encoding, "is_bigendian": 0, "step": w * 3, "data": img.reshape(-1)}


__all__ = ["ENCODINGS", "ImageMessageError", "compressed_msg_to_rgb", "image_msg_to_rgb", "rgb_to_image_fields"]
