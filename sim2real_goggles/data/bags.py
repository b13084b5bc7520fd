"""Camera images from rosbag2 recordings (sqlite3 ``.db3`` or MCAP), read with ``rosbags``
(no ROS install needed).

A bag spec is ``PATH`` or ``PATH:TOPIC``: PATH is a bag folder (with ``metadata.yaml``) or a
single ``.db3`` / ``.mcap`` file; TOPIC an image topic (sensor_msgs/Image or
sensor_msgs/CompressedImage). Without a topic the bag must hold exactly one image topic.
Messages that do not decode to an image are skipped with a warning and counted.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from sim2real_goggles.data.image_msgs import ImageMessageError, compressed_msg_to_rgb, image_msg_to_rgb

log = logging.getLogger(__name__)

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
BAG_SUFFIXES = (".db3", ".mcap")


class BagError(ValueError):
    """A bag that cannot be read, or that has no usable image topic; the message names it."""


def split_bag_spec(spec: str | Path) -> tuple[Path, str | None]:
    """``PATH[:TOPIC]`` -> (path, topic or None)."""
    text = str(spec)
    head, sep, tail = text.rpartition(":/")
    if sep and head:
        return Path(head), "/" + tail
    return Path(text), None


def is_bag(spec: str | Path) -> bool:
    path, _ = split_bag_spec(spec)
    if path.is_dir():
        return (path / "metadata.yaml").is_file()
    return path.is_file() and path.suffix in BAG_SUFFIXES


def open_reader(path: Path):
    """An opened rosbags ``AnyReader`` of a bag folder or storage file; :class:`BagError` naming
    the path when it is not a readable recording."""
    try:
        from rosbags.highlevel import AnyReader
    except ImportError as exc:  # pragma: no cover - rosbags is in the "ros" extra
        raise BagError(f"{path}: reading bags needs rosbags (pip install 'sim2real_goggles[ros]')") from exc
    try:
        reader = AnyReader([path])
        reader.open()
    except Exception as exc:  # noqa: BLE001 - rosbags raises several types for damaged bags
        raise BagError(f"{path}: not a readable rosbag2 recording: {exc}") from exc
    return reader


def image_topics(path: Path) -> dict[str, str]:
    """Image topics of a bag and their message types."""
    reader = open_reader(path)
    try:
        return {c.topic: c.msgtype for c in reader.connections if c.msgtype in IMAGE_TYPES}
    finally:
        reader.close()


def iter_bag_images(spec: str | Path, stats: dict[str, int] | None = None):
    """Yield ``(timestamp_ns, rgb)`` for every decodable image message of the spec's topic.
    ``stats`` (optional) counts ``read`` and ``skipped`` messages."""
    path, topic = split_bag_spec(spec)
    stats = stats if stats is not None else {}
    stats.setdefault("read", 0)
    stats.setdefault("skipped", 0)
    reader = open_reader(path)
    try:
        topics = {c.topic: c for c in reader.connections if c.msgtype in IMAGE_TYPES}
        if topic is None:
            if len(topics) != 1:
                raise BagError(
                    f"{path}: holds {len(topics)} image topics ({', '.join(sorted(topics)) or 'none'}); "
                    "name one as PATH:TOPIC"
                )
            (topic,) = topics
        if topic not in topics:
            raise BagError(f"{path}: no image topic {topic!r} (image topics: {', '.join(sorted(topics)) or 'none'})")
        connection = topics[topic]
        for conn, timestamp, raw in reader.messages(connections=[connection]):
            try:
                msg = reader.deserialize(raw, conn.msgtype)
                if conn.msgtype.endswith("CompressedImage"):
                    rgb = compressed_msg_to_rgb(msg)
                else:
                    rgb = image_msg_to_rgb(msg)
            except (ImageMessageError, Exception) as exc:  # noqa: BLE001 - a damaged message must not stop the read
                stats["skipped"] += 1
                log.warning("%s: message at %d on %s skipped: %s", path, timestamp, topic, exc)
                continue
            stats["read"] += 1
            yield timestamp, rgb
    finally:
        reader.close()


class BagDomain:
    """Up to ``n`` images of a bag's camera topic (evenly spaced over the recording when it
    holds more), resized to ``image_size``; held in memory. :attr:`skipped` counts messages
    that did not decode."""

    def __init__(self, spec: str | Path, image_size: int | None = 64, n: int | None = None):
        self.spec = str(spec)
        path, topic = split_bag_spec(spec)
        self.name = f"{path.name}{topic or ''}"
        stats: dict[str, int] = {}
        images = [rgb for _, rgb in iter_bag_images(spec, stats)]
        self.skipped = stats["skipped"]
        if not images:
            raise BagError(f"{path}: no decodable images ({self.skipped} messages skipped)")
        if n is not None and len(images) > n:
            keep = np.linspace(0, len(images) - 1, n).round().astype(int)
            images = [images[i] for i in keep]
        if image_size is not None:
            images = [square_image(im, image_size) for im in images]
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"image": self.images[index], "mask": None, "source": f"{self.name}#{index}"}


def square_image(image: np.ndarray, size: int, interpolation: int = cv2.INTER_AREA) -> np.ndarray:
    """Centre crop to a square, then resize to ``size`` (area filter; pass
    ``cv2.INTER_NEAREST`` for class-id masks, so ids stay ids)."""
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    crop = image[top : top + side, left : left + side]
    if side == size:
        return np.ascontiguousarray(crop)
    return cv2.resize(crop, (size, size), interpolation=interpolation)


__all__ = [
    "BagDomain",
    "BagError",
    "image_topics",
    "is_bag",
    "iter_bag_images",
    "open_reader",
    "split_bag_spec",
    "square_image",
]
