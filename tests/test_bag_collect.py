"""`goggles collect --bag`: evaluation bags that rosbags, MCAP readers and ros2 bag accept."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

pytest.importorskip("rosbags")

from rosbags.highlevel import AnyReader  # noqa: E402

from sim2real_goggles.cli import main  # noqa: E402
from sim2real_goggles.data.bag_collect import CAMERA_TOPIC, INFO_TOPIC, LABELS_TOPIC, ODOM_TOPIC, SIM_TOPIC  # noqa: E402
from sim2real_goggles.data.bags import iter_bag_images  # noqa: E402

TOPICS = {
    CAMERA_TOPIC: "sensor_msgs/msg/Image",
    SIM_TOPIC: "sensor_msgs/msg/Image",
    LABELS_TOPIC: "sensor_msgs/msg/Image",
    INFO_TOPIC: "sensor_msgs/msg/CameraInfo",
    ODOM_TOPIC: "nav_msgs/msg/Odometry",
}


def _collect(out, *extra: str) -> None:
    args = ["collect", "--profile", "real_lab", "--episodes", "2", "--size", "64", "--max-frames", "6", "--bag"]
    assert main([*args, str(out), *extra]) == 0


def _read(bag) -> dict[str, list]:
    """topic -> [(log time, message)] via rosbags."""
    out: dict[str, list] = {}
    with AnyReader([bag]) as reader:
        for conn, t, raw in reader.messages():
            out.setdefault(conn.topic, []).append((t, reader.deserialize(raw, conn.msgtype)))
    return out


@pytest.fixture(scope="module")
def mcap_bag(tmp_path_factory):
    bag = tmp_path_factory.mktemp("bags") / "eval_mcap"
    _collect(bag)
    return bag


def test_eval_bag_topics_pair_by_stamp_and_hold_the_paired_views(mcap_bag):
    meta = yaml.safe_load((mcap_bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["storage_identifier"] == "mcap"
    assert meta["message_count"] == 6 * len(TOPICS)
    assert {
        t["topic_metadata"]["name"]: t["topic_metadata"]["type"] for t in meta["topics_with_message_count"]
    } == TOPICS
    assert all(t["topic_metadata"]["serialization_format"] == "cdr" for t in meta["topics_with_message_count"])

    msgs = _read(mcap_bag)
    stamps = {topic: [(m.header.stamp.sec, m.header.stamp.nanosec) for _, m in msgs[topic]] for topic in TOPICS}
    assert len({tuple(s) for s in stamps.values()}) == 1, "every topic of a frame shares one header stamp"
    times = [t for t, _ in msgs[CAMERA_TOPIC]]
    assert times == sorted(times) and len(set(times)) == 6
    assert min(np.diff(times)) >= 250_000_000  # 4 Hz camera, more across an episode gap

    raw = [img for _, img in iter_bag_images(f"{mcap_bag}:{CAMERA_TOPIC}")]
    sim = [img for _, img in iter_bag_images(f"{mcap_bag}:{SIM_TOPIC}")]
    assert raw[0].shape == (64, 64, 3) and sim[0].shape == (64, 64, 3)
    assert not np.array_equal(raw[0], sim[0]), "the camera is the real-like look, the reference the sim look"
    for _, m in msgs[LABELS_TOPIC]:
        assert m.encoding == "mono8"
        assert set(np.unique(m.data)) <= {0, 1, 2, 3, 255}
    info = msgs[INFO_TOPIC][0][1]
    assert (info.width, info.height) == (64, 64) and info.k[0] > 0
    assert msgs[ODOM_TOPIC][0][1].header.frame_id == "map"


def test_sim_reference_is_pixel_aligned_with_the_labels(mcap_bag):
    """The sim segmenter finds the ground-truth classes in /camera/image_sim: the reference is
    rendered through the real look's lens (a plain sim render would not line up)."""
    from sim2real_goggles.models.checkpoint import load_checkpoint
    from sim2real_goggles.training.segmenter import predict

    msgs = _read(mcap_bag)
    labels = np.stack([np.asarray(m.data).reshape(m.height, m.width) for _, m in msgs[LABELS_TOPIC]])
    sims = np.stack([img for _, img in iter_bag_images(f"{mcap_bag}:{SIM_TOPIC}")])
    raws = np.stack([img for _, img in iter_bag_images(f"{mcap_bag}:{CAMERA_TOPIC}")])
    segmenter = load_checkpoint("pretrained:segmenter").build("cpu")
    valid = labels != 255

    def accuracy(images: np.ndarray) -> float:
        return float((predict(segmenter, images) == labels)[valid].mean())

    assert accuracy(sims) > 0.95
    assert accuracy(raws) < accuracy(sims) - 0.2, "the camera look is not the sim look"


def test_eval_bag_reads_with_the_mcap_library_and_its_ros2_decoder(mcap_bag):
    mcap_reader = pytest.importorskip("mcap.reader")
    decoder = pytest.importorskip("mcap_ros2.decoder")
    (path,) = mcap_bag.glob("*.mcap")
    ours = _read(mcap_bag)
    seen: dict[str, list] = {}
    with open(path, "rb") as f:
        reader = mcap_reader.make_reader(f, decoder_factories=[decoder.DecoderFactory()])
        for schema, channel, message, decoded in reader.iter_decoded_messages():
            assert schema.encoding == "ros2msg" and channel.message_encoding == "cdr"
            assert schema.name == TOPICS[channel.topic]
            seen.setdefault(channel.topic, []).append((message.log_time, decoded))
    assert set(seen) == set(TOPICS)
    for (t_a, a), (t_b, b) in zip(ours[CAMERA_TOPIC], seen[CAMERA_TOPIC], strict=True):
        assert t_a == t_b
        assert (a.height, a.width, a.encoding, a.step) == (b.height, b.width, b.encoding, b.step)
        assert bytes(a.data) == bytes(b.data)


def test_sqlite3_bag_and_identical_bags_from_identical_arguments(tmp_path, mcap_bag):
    _collect(tmp_path / "db", "--format", "sqlite3")
    assert list((tmp_path / "db").glob("*.db3"))
    a, b = _read(mcap_bag), _read(tmp_path / "db")
    assert set(a) == set(b)
    for (ta, ma), (tb, mb) in zip(a[CAMERA_TOPIC], b[CAMERA_TOPIC], strict=True):
        assert ta == tb and bytes(ma.data) == bytes(mb.data)
    again = tmp_path / "again" / mcap_bag.name  # the MCAP file embeds the bag's name
    _collect(again)
    (first,), (second,) = mcap_bag.glob("*.mcap"), again.glob("*.mcap")
    assert first.read_bytes() == second.read_bytes(), "same arguments, same bag byte for byte"


def test_collect_bag_refuses_bad_arguments(tmp_path, capsys, mcap_bag):
    assert main(["collect", "--episodes", "1", "--out", str(tmp_path / "a"), "--bag", str(tmp_path / "b")]) == 2
    assert "one of --out" in capsys.readouterr().err
    assert main(["collect", "--episodes", "1", "--paired", "sim", "--bag", str(tmp_path / "c")]) == 2
    assert "--paired" in capsys.readouterr().err
    assert main(["collect", "--episodes", "1", "--profile", "sim", "--bag", str(tmp_path / "d")]) == 2
    assert "sim reference" in capsys.readouterr().err
    assert main(["collect", "--episodes", "1", "--bag", str(mcap_bag)]) == 2
    assert "exists already" in capsys.readouterr().err
