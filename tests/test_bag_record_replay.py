"""``goggles record`` and ``goggles replay`` over real DDS, each in a process of its own.

A bag written with ``rosbags`` is replayed by ``goggles replay`` while ``goggles record`` records
it; the recording must hold the same messages, byte for byte (but for the zero padding DDS adds
up to a multiple of 4 bytes), with the same relative timing. Stops (Ctrl-C, SIGTERM,
``--duration``) must leave a complete, readable bag, and bad input must fail with a message
naming the file, topic or type.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from ros_harness import RELIABLE_QOS, SENSOR_QOS, NodeProcess, RosProbe, executable, image_msg, wait_until
from rosbags.highlevel import AnyReader
from rosbags.interfaces import QosDurability, QosReliability
from sensor_msgs.msg import Image
from std_msgs.msg import String

from sim2real_goggles.cli import main
from sim2real_goggles.data.bag_writer import BagWriter, image_message, serialize, typestore
from sim2real_goggles.ros.bag_common import import_message_class, rosbags_qos
from sim2real_goggles.ros.bag_replay import plan_topics, publisher_qos

SOURCE_TOPICS = {
    "/camera/image_raw": "sensor_msgs/msg/Image",
    "/cmd_vel": "geometry_msgs/msg/Twist",
    "/status": "std_msgs/msg/String",
}


class Goggles(NodeProcess):
    """``goggles ARGS…`` as a child process (its own session, output to a file, stopped and
    checked for leftovers on exit, as :class:`NodeProcess`)."""

    def __init__(self, *argv: object, ros: RosProbe | None = None, subscribes: tuple[str, ...] = ()):
        super().__init__("goggles", ros=ros, subscribes=subscribes)
        self.command = [executable("goggles"), *map(str, argv)]

    def wait_output(self, text: str, timeout: float = 30.0) -> None:
        def seen() -> bool:
            if text in self.output():
                return True
            self.check_alive()
            return False

        wait_until(seen, timeout, f"{text!r} from {' '.join(self.command[1:3])}")

    def wait_exit(self, timeout: float = 30.0) -> int:
        """Wait for the process to end by itself; its exit code (the rest of its group is killed)."""
        assert self.proc is not None
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(f"{self.command[1]} did not end within {timeout} s:\n{self.output()}") from None
        return self.stop()


def run_goggles(*argv: object, timeout: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run(
        [executable("goggles"), *map(str, argv)], env=dict(os.environ), capture_output=True, text=True, timeout=timeout
    )


def read_bag(path: Path) -> list[tuple[str, str, int, bytes]]:
    """(topic, type, log time ns, CDR bytes) of every message, in log-time order."""
    with AnyReader([path]) as reader:
        return [(c.topic, c.msgtype, t, bytes(d)) for c, t, d in reader.messages()]


def summary_counts(output: str) -> dict[str, int]:
    """Messages per topic from the summary ``goggles record`` prints at the end."""
    assert "recorded " in output, output
    tail = output[output.rindex("recorded ") :]
    return {m[1]: int(m[3]) for m in re.finditer(r"^\s+(/\S+)\s+(\S+)\s+(\d+)$", tail, re.M)}


def write_source_bag(path: Path, storage: str) -> None:
    """About a second of data at 20 Hz: images in four encodings (one with row padding), Twists
    and a few Strings; log times start at an arbitrary epoch."""
    types = typestore().types
    Twist, Vector3, StringT = (
        types[t] for t in ("geometry_msgs/msg/Twist", "geometry_msgs/msg/Vector3", SOURCE_TOPICS["/status"])
    )
    rng = np.random.default_rng(1)
    t0 = 1_700_000_000 * 10**9
    with BagWriter(path, storage=storage) as bag:
        for topic, msgtype in SOURCE_TOPICS.items():
            bag.add_topic(topic, msgtype)
        for i in range(20):
            t = t0 + i * 50_000_000
            rgb = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
            if i % 4 == 2:
                msg = image_message(t, rgb[..., 0], frame_id=f"cam{i}")  # mono8
            elif i % 4 == 3:  # rgba8 with 5 bytes of padding per row
                msg = image_message(t, rgb, frame_id=f"cam{i}")
                rows = np.concatenate([rgb, np.full((12, 16, 1), 9, np.uint8)], -1).reshape(12, -1)
                msg.data = np.concatenate([rows, np.zeros((12, 5), np.uint8)], 1).reshape(-1)
                msg.encoding, msg.step = "rgba8", 16 * 4 + 5
            else:
                msg = image_message(t, rgb, frame_id=f"cam{i}", encoding=("rgb8", "bgr8")[i % 4])
            bag.write_raw("/camera/image_raw", t, serialize(msg))
            twist = Twist(linear=Vector3(x=0.1 * i, y=0.0, z=0.0), angular=Vector3(x=0.0, y=0.0, z=-0.05 * i))
            bag.write_raw("/cmd_vel", t + 10_000_000, serialize(twist))
            if i % 4 == 0:
                bag.write_raw("/status", t + 20_000_000, serialize(StringT(data=f"status {i} ✓")))


def relay(source: Path, out: Path, storage: str, record_topics: list[str], *replay_args: object) -> dict[str, int]:
    """Replay ``source`` (``goggles replay``) while ``goggles record`` records ``record_topics``
    into ``out``; the recorder's summary counts. The player waits for the recorder's
    subscriptions (--delay), so discovery time costs nothing."""
    with Goggles("replay", source, "--delay", 30, *replay_args) as player:
        with Goggles("record", out, "--topics", *record_topics, "--format", storage, "--wait", 30) as recorder:
            recorder.wait_output("recording ")
            assert player.wait_exit(40) == 0, player.output()
            assert "published" in player.output()
            assert recorder.stop(signal.SIGINT) == 0, recorder.output()
            return summary_counts(recorder.output())


def on_the_wire(cdr: bytes) -> bytes:
    """``cdr`` as a subscriber receives it: Fast DDS pads a serialised payload with zeros to a
    multiple of 4 bytes (rosbags writes it unpadded; ros2 bag records the padded form)."""
    return cdr + b"\0" * (-len(cdr) % 4)


def assert_same_stream(source: list, recorded: list, rate: float, tolerance_s: float = 0.08) -> None:
    """Same topics, types and bytes in the same order per topic; log times at the same offsets
    from the first message (scaled by 1 / rate), within ``tolerance_s`` each."""
    assert len(recorded) == len(source)
    for topic in {m[0] for m in source}:
        src = [m for m in source if m[0] == topic]
        rec = [m for m in recorded if m[0] == topic]
        assert [m[1] for m in rec] == [m[1] for m in src], topic
        assert [m[3] for m in rec] == [on_the_wire(m[3]) for m in src], f"{topic}: payloads differ"
    src_offsets = np.array(sorted(m[2] - source[0][2] for m in source)) / 1e9 / rate
    rec_offsets = np.array(sorted(m[2] - recorded[0][2] for m in recorded)) / 1e9
    errors = np.abs(rec_offsets - src_offsets)
    assert errors.max() < tolerance_s, f"timing off by up to {errors.max() * 1000:.0f} ms"
    assert np.median(errors) < tolerance_s / 4, f"timing off by {np.median(errors) * 1000:.0f} ms (median)"


@pytest.mark.parametrize(
    ("source_storage", "record_storage", "rate"), [("sqlite3", "mcap", 1.0), ("mcap", "sqlite3", 2.0)]
)
def test_replay_and_record_round_trip_is_byte_identical(tmp_path, source_storage, record_storage, rate):
    source = tmp_path / "source"
    write_source_bag(source, source_storage)
    expected = read_bag(source)

    first = tmp_path / "first"
    counts = relay(source, first, record_storage, list(SOURCE_TOPICS), "--rate", rate)
    recorded = read_bag(first)
    assert counts == {"/camera/image_raw": 20, "/cmd_vel": 20, "/status": 5}
    assert_same_stream(expected, recorded, rate)
    assert (first / "metadata.yaml").is_file()
    with AnyReader([first]) as reader:
        assert {c.topic: c.msgtype for c in reader.connections} == SOURCE_TOPICS
        assert {c.ext.serialization_format for c in reader.connections} == {"cdr"}
        # The player's publishers, as offered: reliable, volatile (what ros2 bag play uses).
        offered = [q for c in reader.connections for q in c.ext.offered_qos_profiles]
        assert offered and {q.reliability for q in offered} == {QosReliability.RELIABLE}
        image = reader.deserialize(recorded[0][3], "sensor_msgs/msg/Image")
        assert image.header.frame_id == "cam0" and image.encoding == "rgb8"

    # Second hop: what goggles record wrote plays back (storage file given directly), with a
    # topic chosen and renamed.
    second = tmp_path / "second"
    storage_file = next(p for p in first.iterdir() if p.suffix in (".mcap", ".db3"))
    counts = relay(
        storage_file,
        second,
        source_storage,
        ["/image"],
        "--topics",
        "/camera/image_raw",
        "--remap",
        "/camera/image_raw:=/image",
    )
    assert counts == {"/image": 20}
    again = read_bag(second)
    assert [m[3] for m in again] == [on_the_wire(m[3]) for m in expected if m[0] == "/camera/image_raw"]
    assert_same_stream(
        [m for m in recorded if m[0] == "/camera/image_raw"], [("/camera/image_raw", *m[1:]) for m in again], 1.0
    )


class CountingPublisher:
    """Publishes ``std_msgs/String`` "0", "1", … on a thread until stopped."""

    def __init__(self, ros: RosProbe, topic: str, period_s: float = 0.01):
        self.pub = ros.publisher(String, topic, RELIABLE_QOS)
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(period_s,), daemon=True)
        self._thread.start()

    def _run(self, period_s: float) -> None:
        while not self._stop.wait(period_s):
            self.pub.publish(String(data=str(self.sent)))
            self.sent += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5.0)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_stopping_the_recorder_keeps_every_message_it_received(tmp_path, sig):
    out = tmp_path / "bag"
    with RosProbe() as ros:
        chatter = CountingPublisher(ros, "/chatter")
        try:
            with Goggles("record", out, "--topics", "/chatter", "--wait", 30, ros=ros, subscribes=("/chatter",)) as rec:
                rec.wait_output("recording ")
                ros.wait_matched(chatter.pub)
                start = chatter.sent
                wait_until(lambda: chatter.sent >= start + 60, 20, "60 messages published")
                code = rec.stop(sig)  # while the probe keeps publishing
                output = rec.output()
        finally:
            chatter.stop()
    assert code == 0, output
    assert (out / "metadata.yaml").is_file()
    reported = summary_counts(output)
    messages = read_bag(out)
    assert reported == {"/chatter": len(messages)}
    assert len(messages) >= 30
    values = [int(typestore().deserialize_cdr(m[3], "std_msgs/msg/String").data) for m in messages]
    # Reliable, so from the first message the recorder got to the last, none is missing.
    assert values == list(range(values[0], values[0] + len(values)))
    assert values[-1] < chatter.sent
    assert all(m[1] == "std_msgs/msg/String" for m in messages)
    assert [m[2] for m in messages] == sorted(m[2] for m in messages)


def test_duration_ends_recording_and_qos_matches_the_publishers(tmp_path):
    out = tmp_path / "bag"
    latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    with RosProbe() as ros:
        ros.publisher(String, "/map_name", latched).publish(String(data="lab"))
        camera = ros.publisher(Image, "/camera/image_raw", SENSOR_QOS)  # best effort
        frame = image_msg(np.zeros((4, 6, 3), np.uint8), "rgb8")
        stop = threading.Event()

        def publish_frames() -> None:
            while not stop.wait(0.02):
                camera.publish(frame)

        thread = threading.Thread(target=publish_frames, daemon=True)
        thread.start()
        try:
            rec = Goggles("record", out, "--topics", "/map_name", "camera/image_raw", "--duration", 1.5, "--wait", 30)
            with rec:
                rec.wait_output("recording ")
                began = time.monotonic()
                code = rec.wait_exit(30)
                took = time.monotonic() - began
                output = rec.output()
        finally:
            stop.set()
            thread.join(5.0)
    assert code == 0, output
    assert 1.3 < took < 6.0, took
    messages = read_bag(out)
    # The latched message was published before the recorder existed: only a transient-local
    # subscription gets it. The best-effort camera matches only a best-effort subscription.
    assert [m[3] for m in messages if m[0] == "/map_name"] == [
        on_the_wire(serialize(typestore().types["std_msgs/msg/String"](data="lab")))
    ]
    frames = [m for m in messages if m[0] == "/camera/image_raw"]
    assert len(frames) >= 20
    assert (frames[-1][2] - frames[0][2]) / 1e9 < 1.6
    assert summary_counts(output) == {"/map_name": 1, "/camera/image_raw": len(frames)}
    with AnyReader([out]) as reader:
        offered = {c.topic: c.ext.offered_qos_profiles for c in reader.connections}
    assert [q.reliability for q in offered["/camera/image_raw"]] == [QosReliability.BEST_EFFORT]
    assert [q.durability for q in offered["/map_name"]] == [QosDurability.TRANSIENT_LOCAL]


def test_record_fails_clearly_when_a_topic_never_appears(tmp_path):
    out = tmp_path / "bag"
    with RosProbe() as ros:
        # Usually found in time (not asserted: discovery may be slow on a loaded machine); a
        # recording with one topic missing fails all the same.
        ros.publisher(String, "/present")
        began = time.monotonic()
        result = run_goggles("record", out, "--topics", "/present", "/never_published", "--wait", 3)
        took = time.monotonic() - began
    assert result.returncode == 2
    assert "/never_published" in result.stderr and "nothing recorded" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert 3 <= took < 20, took
    assert not out.exists(), "no bag for a recording that never started"

    out.mkdir()
    assert main(["record", str(out), "--topics", "/present"]) == 2


def corrupt_bags(tmp_path: Path) -> list[Path]:
    """Garbage .mcap and .db3 files, and a bag folder whose MCAP file is truncated (as a killed
    writer leaves it)."""
    garbage = bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8))
    paths = [tmp_path / "garbage.mcap", tmp_path / "garbage.db3"]
    for path in paths:
        path.write_bytes(garbage)
    folder = tmp_path / "truncated_bag"
    write_source_bag(folder, "mcap")
    storage_file = next(folder.glob("*.mcap"))
    storage_file.write_bytes(storage_file.read_bytes()[:-300])
    return [*paths, folder]


def test_replay_errors_name_the_file_topic_or_type(tmp_path, capsys):
    missing = tmp_path / "no_such_bag"
    assert main(["replay", str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err

    for path in corrupt_bags(tmp_path):
        assert main(["replay", str(path), "--delay", "0"]) == 2
        err = capsys.readouterr().err
        assert f"goggles replay: error: {path}" in err, err

    good = tmp_path / "good"
    write_source_bag(good, "sqlite3")
    assert main(["replay", str(good), "--topics", "/camera/image_raw", "/tf"]) == 2
    err = capsys.readouterr().err
    assert "/tf" in err and all(t in err for t in SOURCE_TOPICS), err
    assert main(["replay", str(good), "--remap", "/camera/image_raw=/image"]) == 2
    assert "FROM:=TO" in capsys.readouterr().err
    assert main(["replay", str(good), "--remap", "/odom:=/x"]) == 2
    assert "/odom" in capsys.readouterr().err

    # A topic every recorded publisher offered as transient local (a latched /tf_static, a map)
    # is replayed latched; others volatile. Reliability is --qos.
    latched_bag = tmp_path / "latched_bag"
    with BagWriter(latched_bag, storage="sqlite3") as bag:
        latched = rosbags_qos(QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        bag.add_topic("/map_name", "std_msgs/msg/String", qos_profiles=[latched])
        bag.add_topic("/status", "std_msgs/msg/String", qos_profiles=[latched, rosbags_qos(SENSOR_QOS)])
    with AnyReader([latched_bag]) as reader:
        plans = {p.topic: p for p in plan_topics(latched_bag, reader, None, [])}
    assert plans["/map_name"].latched and not plans["/status"].latched
    assert publisher_qos("best_effort", True).durability == DurabilityPolicy.TRANSIENT_LOCAL
    assert publisher_qos("best_effort", True).reliability == ReliabilityPolicy.BEST_EFFORT

    # A type the type store knows but whose Python package is not installed here.
    tf_bag = tmp_path / "tf_bag"
    with BagWriter(tf_bag, storage="mcap") as bag:
        bag.write("/tf", 1, typestore().types["tf2_msgs/msg/TFMessage"](transforms=[]))
    assert main(["replay", str(tf_bag)]) == 2
    assert "tf2_msgs/msg/TFMessage" in capsys.readouterr().err
    with pytest.raises(ValueError, match="tf2_msgs/msg/TFMessage"):
        import_message_class("tf2_msgs/msg/TFMessage")
    assert import_message_class("sensor_msgs/msg/Image") is Image

    # And through the console script, as a user sees it.
    result = run_goggles("replay", tmp_path / "garbage.mcap")
    assert result.returncode == 2
    assert "garbage.mcap" in result.stderr and "Traceback" not in result.stderr


def test_replay_loops_until_ctrl_c(tmp_path):
    bag = tmp_path / "words"
    StringT = typestore().types["std_msgs/msg/String"]
    words = ["alpha", "beta", "gamma", "delta"]
    with BagWriter(bag, storage="mcap") as writer:
        for i, word in enumerate(words):
            writer.write("/words", 5_000_000_000 + i * 40_000_000, StringT(data=word))
    with RosProbe() as ros:
        heard = ros.subscribe(String, "/spoken")
        with Goggles("replay", bag, "--loop", "--remap", "/words:=/spoken", "--delay", 30) as player:
            heard.wait_count(3 * len(words), timeout=30)
            code = player.stop(signal.SIGINT)
            output = player.output()
    assert code == 0, output
    assert "stopped: published" in output
    received = [m.data for m in heard.messages]
    assert received[: 3 * len(words)] == words * 3
