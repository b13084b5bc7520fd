"""Write rosbag2 recordings (MCAP or sqlite3) with ``rosbags``, as ``ros2 bag record`` does.

A bag is a folder holding ``metadata.yaml`` and one storage file (``<name>_0.mcap`` or
``<name>.db3``). Message definitions and type hashes come from the ROS 2 Kilted type store
(the distribution the pip ``ros-rclpy`` 9.x wheels are built from), so ``ros2 bag info``/``play`` and
MCAP tools (Foxglove, ``mcap`` readers) accept the files. Metadata is written at :meth:`close`,
which also runs when the ``with`` block is left by an exception or by Ctrl-C, so what was
written is kept.

Example::

    with BagWriter("out_bag", storage="mcap") as bag:
        bag.add_topic("/camera/image_raw", "sensor_msgs/msg/Image")
        bag.write_image("/camera/image_raw", stamp_ns, rgb)
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from sim2real_goggles.data.bags import BagError
from sim2real_goggles.data.image_msgs import rgb_to_image_fields

STORAGES = ("mcap", "sqlite3")
"""Storage formats; MCAP is rosbag2's default since Iron."""

BAG_VERSION = 8
"""metadata.yaml version written: rosbag2 Jazzy's, which Jazzy and later read."""


@lru_cache(maxsize=1)
def typestore():
    """The ROS 2 Kilted type store (message classes, definitions, CDR (de)serialisation)."""
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_KILTED)


def known_type(msgtype: str) -> bool:
    """Whether the type store has ``msgtype`` (``pkg/msg/Name``) and so can write it."""
    return msgtype in typestore().types


def normalize_type(msgtype: str) -> str:
    """``sensor_msgs/Image`` or ``sensor_msgs/msg/Image`` -> ``sensor_msgs/msg/Image``."""
    parts = msgtype.strip().split("/")
    if len(parts) == 2:
        parts = [parts[0], "msg", parts[1]]
    return "/".join(parts)


def stamp(ns: int) -> Any:
    """builtin_interfaces/Time for a time in nanoseconds."""
    Time = typestore().types["builtin_interfaces/msg/Time"]
    return Time(sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))


def header(ns: int, frame_id: str) -> Any:
    Header = typestore().types["std_msgs/msg/Header"]
    return Header(stamp=stamp(ns), frame_id=frame_id)


def image_message(ns: int, image: np.ndarray, frame_id: str = "camera", encoding: str | None = None) -> Any:
    """A sensor_msgs/Image: ``image`` (H, W, 3) uint8 RGB as ``rgb8``/``bgr8``, or (H, W) uint8 as
    ``mono8``."""
    Image = typestore().types["sensor_msgs/msg/Image"]
    img = np.ascontiguousarray(image)
    if img.ndim == 2:
        if img.dtype != np.uint8:
            raise ValueError(f"mono8 images must be uint8, got {img.dtype}")
        h, w = img.shape
        fields = {"height": h, "width": w, "encoding": "mono8", "is_bigendian": 0, "step": w, "data": img.reshape(-1)}
    else:
        fields = rgb_to_image_fields(img, encoding or "rgb8")
    return Image(header=header(ns, frame_id), **fields)


def serialize(msg: Any) -> bytes:
    """CDR bytes of a type-store message (what rosbag2 stores and rclpy publishes raw)."""
    return bytes(typestore().serialize_cdr(msg, msg.__msgtype__))


def deserialize(data: bytes | memoryview, msgtype: str) -> Any:
    return typestore().deserialize_cdr(data, msgtype)


def storage_of(name: str):
    from rosbags.rosbag2 import StoragePlugin

    if name not in STORAGES:
        raise ValueError(f"unknown bag format {name!r}: choose one of {', '.join(STORAGES)}")
    return StoragePlugin.MCAP if name == "mcap" else StoragePlugin.SQLITE3


class BagWriter:
    """A rosbag2 bag being written. Topics are added once (:meth:`add_topic`) and then written
    with serialised bytes (:meth:`write_raw`), type-store messages (:meth:`write`) or images
    (:meth:`write_image`). The output folder must not exist yet."""

    def __init__(self, path: str | Path, storage: str = "mcap", version: int = BAG_VERSION):
        try:
            from rosbags.rosbag2 import Writer
        except ImportError as exc:  # pragma: no cover - rosbags is in the "ros" extra
            raise BagError(f"{path}: writing bags needs rosbags (pip install 'sim2real_goggles[ros]')") from exc
        self.path = Path(path)
        self.storage = storage
        if self.path.exists():
            raise BagError(f"{self.path}: exists already; a bag is written to a new folder")
        self._writer = Writer(self.path, version=version, storage_plugin=storage_of(storage))
        self._writer.open()
        self._connections: dict[str, Any] = {}
        self.counts: dict[str, int] = {}
        self.closed = False

    @property
    def topics(self) -> dict[str, str]:
        """Topic -> message type of the topics added so far."""
        return {t: c.msgtype for t, c in self._connections.items()}

    def add_topic(self, topic: str, msgtype: str, qos_profiles: list | None = None) -> None:
        """Register ``topic`` with ``msgtype`` (``pkg/msg/Name``). Adding the same topic with the
        same type again does nothing; another type is an error."""
        msgtype = normalize_type(msgtype)
        if topic in self._connections:
            if self._connections[topic].msgtype != msgtype:
                raise BagError(f"{self.path}: topic {topic} is {self._connections[topic].msgtype}, not {msgtype}")
            return
        if not known_type(msgtype):
            raise BagError(f"{self.path}: message type {msgtype} of {topic} is not known to the ROS 2 type store")
        self._connections[topic] = self._writer.add_connection(
            topic, msgtype, typestore=typestore(), offered_qos_profiles=qos_profiles or ()
        )
        self.counts[topic] = 0

    def write_raw(self, topic: str, timestamp_ns: int, data: bytes | memoryview) -> None:
        """Write one serialised (CDR) message received at ``timestamp_ns``."""
        if topic not in self._connections:
            raise BagError(f"{self.path}: topic {topic} was not added")
        self._writer.write(self._connections[topic], int(timestamp_ns), data)
        self.counts[topic] += 1

    def write(self, topic: str, timestamp_ns: int, msg: Any) -> None:
        """Write a type-store message; the topic is added with the message's type if new."""
        self.add_topic(topic, msg.__msgtype__)
        self.write_raw(topic, timestamp_ns, serialize(msg))

    def write_image(
        self,
        topic: str,
        timestamp_ns: int,
        image: np.ndarray,
        frame_id: str = "camera",
        encoding: str | None = None,
        stamp_ns: int | None = None,
    ) -> None:
        """Write an image as sensor_msgs/Image (see :func:`image_message`); the header stamp is
        ``stamp_ns`` (default: the log time)."""
        msg = image_message(timestamp_ns if stamp_ns is None else stamp_ns, image, frame_id, encoding)
        self.write(topic, timestamp_ns, msg)

    def close(self) -> None:
        """Write metadata.yaml and close the storage file (once)."""
        if not self.closed:
            self.closed = True
            self._writer.close()

    def __enter__(self) -> BagWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = [
    "BAG_VERSION",
    "STORAGES",
    "BagWriter",
    "deserialize",
    "header",
    "image_message",
    "known_type",
    "normalize_type",
    "serialize",
    "stamp",
    "typestore",
]
