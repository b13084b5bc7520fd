"""Bags as a training domain: sqlite3 and MCAP, raw and compressed images, damaged messages."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

pytest.importorskip("rosbags")

from rosbags.rosbag2 import StoragePlugin, Writer  # noqa: E402
from rosbags.typesys import Stores, get_typestore  # noqa: E402

from sim2real_goggles.data.bags import BagDomain, BagError, image_topics, is_bag  # noqa: E402
from sim2real_goggles.data.domains import load_arrays, open_domain  # noqa: E402
from sim2real_goggles.data.image_msgs import ImageMessageError, image_msg_to_rgb, rgb_to_image_fields  # noqa: E402

TS = get_typestore(Stores.ROS2_HUMBLE)
Image = TS.types["sensor_msgs/msg/Image"]
CompressedImage = TS.types["sensor_msgs/msg/CompressedImage"]
Header = TS.types["std_msgs/msg/Header"]
Time = TS.types["builtin_interfaces/msg/Time"]


def _header(i: int):
    return Header(stamp=Time(sec=i, nanosec=0), frame_id="camera")


def _frames(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (48, 80, 3), dtype=np.uint8) for _ in range(n)]


def write_bag(path, frames, storage=StoragePlugin.SQLITE3, broken: int = 0, compressed: bool = False):
    with Writer(path, version=8, storage_plugin=storage) as writer:
        raw = writer.add_connection("/camera/image_raw", "sensor_msgs/msg/Image", typestore=TS)
        comp = writer.add_connection("/camera/image/compressed", "sensor_msgs/msg/CompressedImage", typestore=TS)
        for i, rgb in enumerate(frames):
            fields = rgb_to_image_fields(rgb, "bgr8" if i % 2 else "rgb8")
            msg = Image(header=_header(i), **fields)
            writer.write(raw, i * 100_000_000, TS.serialize_cdr(msg, Image.__msgtype__))
            if compressed:
                ok, png = cv2.imencode(".png", rgb[:, :, ::-1])
                cmsg = CompressedImage(header=_header(i), format="png", data=png.reshape(-1))
                writer.write(comp, i * 100_000_000, TS.serialize_cdr(cmsg, CompressedImage.__msgtype__))
        for k in range(broken):  # a row stride shorter than the row: malformed
            bad = Image(
                header=_header(99),
                height=4,
                width=4,
                encoding="rgb8",
                is_bigendian=0,
                step=3,
                data=np.zeros(12, np.uint8),
            )
            writer.write(raw, (len(frames) + k) * 100_000_000, TS.serialize_cdr(bad, Image.__msgtype__))


@pytest.mark.parametrize("storage", [StoragePlugin.SQLITE3, StoragePlugin.MCAP])
def test_bag_images_round_trip_both_storages(tmp_path, storage):
    frames = _frames(5)
    bag = tmp_path / "bag"
    write_bag(bag, frames, storage=storage, compressed=True)
    assert is_bag(bag) and not is_bag(tmp_path)
    assert image_topics(bag) == {
        "/camera/image_raw": "sensor_msgs/msg/Image",
        "/camera/image/compressed": "sensor_msgs/msg/CompressedImage",
    }
    raw = BagDomain(f"{bag}:/camera/image_raw", image_size=None)
    comp = BagDomain(f"{bag}:/camera/image/compressed", image_size=None)
    for i, rgb in enumerate(frames):  # rgb8 and bgr8 messages both come back as RGB, exactly
        assert np.array_equal(raw[i]["image"], rgb)
        assert np.array_equal(comp[i]["image"], rgb)  # PNG is lossless
    with pytest.raises(BagError, match="2 image topics"):
        BagDomain(bag)  # which topic? the error says
    with pytest.raises(BagError, match="no image topic '/nope'"):
        BagDomain(f"{bag}:/nope")


def test_damaged_messages_are_skipped_and_counted(tmp_path):
    bag = tmp_path / "bag"
    write_bag(bag, _frames(4), broken=2)
    dom = open_domain(f"{bag}:/camera/image_raw", image_size=32, n=100)
    assert isinstance(dom, BagDomain)
    assert len(dom) == 4 and dom.skipped == 2
    assert dom[0]["image"].shape == (32, 32, 3) and dom[0]["mask"] is None
    images, masks = load_arrays(f"{bag}:/camera/image_raw", 3, 32)
    assert images.shape == (3, 32, 32, 3) and masks is None  # evenly spaced subset


def test_corrupt_bag_names_the_file(tmp_path):
    bad = tmp_path / "broken.mcap"
    bad.write_bytes(b"\x89MCAP0\r\n garbage")
    with pytest.raises(BagError, match="broken.mcap"):
        BagDomain(bad)


def test_image_message_errors_name_the_problem():
    class Msg:
        height, width, step, encoding = 2, 2, 6, "rgb8"
        data = bytes(12)

    assert image_msg_to_rgb(Msg()).shape == (2, 2, 3)
    Msg.encoding = "yuv422"
    with pytest.raises(ImageMessageError, match="unsupported encoding"):
        image_msg_to_rgb(Msg())
    Msg.encoding, Msg.data = "rgb8", bytes(5)
    with pytest.raises(ImageMessageError, match="bytes of data"):
        image_msg_to_rgb(Msg())
