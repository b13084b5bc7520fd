"""Unit tests of the node building blocks (ros/common.py) and image conversion
(ros/image_conversion.py), in this process; the nodes themselves are tested over DDS in
test_translator_node.py."""

from __future__ import annotations

import importlib.util
import threading
import time
import types
from typing import Any

import cv2
import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.context import Context
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import ReliabilityPolicy, qos_profile_sensor_data
from rclpy.signals import SignalHandlerOptions
from ros_harness import encode, image_msg
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from sim2real_goggles.data.image_msgs import ENCODINGS, ImageMessageError
from sim2real_goggles.ros import image_conversion
from sim2real_goggles.ros.common import (
    DiagnosticsPublisher,
    LatencyStats,
    LatestFrameWorker,
    RateLimitedLog,
    StartupError,
    declare,
    image_qos,
    request_shutdown,
    run_node,
)
from sim2real_goggles.ros.image_conversion import ImageConverter, select_backend

HAVE_CV_BRIDGE = importlib.util.find_spec("cv_bridge") is not None


# --------------------------------------------------------------------------------------------
# LatestFrameWorker


def test_worker_processes_only_the_newest_item_and_counts_drops():
    started, release = threading.Event(), threading.Event()
    seen: list[int] = []

    def process(item: int) -> None:
        seen.append(item)
        if item == 1:
            started.set()
            assert release.wait(5)

    worker = LatestFrameWorker(process)
    worker.start()
    try:
        assert worker.submit(1)
        assert started.wait(5)
        # 1 is in progress: 2 waits, 3 and 4 each replace the waiting item.
        assert worker.submit(2)
        assert not worker.submit(3)
        assert not worker.submit(4)
        assert worker.dropped == 2
        release.set()
        assert worker.wait_idle(5)
        assert seen == [1, 4]
        assert (worker.processed, worker.failed, worker.dropped) == (2, 0, 2)
    finally:
        assert worker.stop()


def test_worker_counts_and_reports_errors_and_keeps_going():
    errors: list[BaseException] = []
    done: list[str] = []

    def process(item: str) -> None:
        if item == "bad":
            raise ValueError("broken frame")
        done.append(item)

    worker = LatestFrameWorker(process, on_error=errors.append)
    worker.start()
    try:
        for item in ("bad", "good", "bad", "good2"):
            worker.submit(item)
            assert worker.wait_idle(5)
        assert done == ["good", "good2"]
        assert worker.failed == 2 and worker.processed == 2
        assert [str(e) for e in errors] == ["broken frame", "broken frame"]
    finally:
        worker.stop()


def test_worker_survives_a_failing_error_callback_and_stops():
    def on_error(exc: BaseException) -> None:
        raise RuntimeError("reporter broke")

    worker = LatestFrameWorker(lambda item: 1 / item, on_error=on_error)
    worker.start()
    worker.submit(0)
    assert worker.wait_idle(5)
    worker.submit(1)
    assert worker.wait_idle(5)
    assert (worker.failed, worker.processed) == (1, 1)
    assert worker.stop(timeout=2.0)
    assert not worker.running
    assert not worker.submit(2)  # stopped: nothing is accepted
    assert worker.processed == 1


def test_worker_never_holds_more_than_one_pending_item_under_a_flood():
    gate = threading.Semaphore(0)
    seen: list[int] = []

    def slow(item: int) -> None:
        gate.acquire(timeout=5)
        seen.append(item)

    worker = LatestFrameWorker(slow)
    worker.start()
    try:
        for i in range(1000):
            worker.submit(i)
        for _ in range(3):
            gate.release()
        assert worker.wait_idle(5)
        # the one in progress when the flood began and the newest; everything between dropped
        assert seen[-1] == 999 and len(seen) <= 2
        assert worker.dropped == 1000 - len(seen)
    finally:
        worker.stop()


# --------------------------------------------------------------------------------------------
# RateLimitedLog and LatencyStats


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


class FakeLogger:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def error(self, msg: str) -> None:
        self.lines.append(("error", msg))

    def warning(self, msg: str) -> None:
        self.lines.append(("warning", msg))


def test_rate_limited_log_once_per_period_per_key_with_suppressed_count():
    clock, logger = FakeClock(), FakeLogger()
    log = RateLimitedLog(logger, period_s=5.0, clock=clock)
    assert log.error("encoding", "bad encoding 'x'")
    assert not log.error("encoding", "bad encoding 'y'")
    assert not log.error("encoding", "bad encoding 'z'")
    assert log.error("size", "empty image")  # another key is not held back
    clock.t += 4.9
    assert not log.error("encoding", "bad encoding 'w'")
    clock.t += 0.2
    assert log.error("encoding", "bad encoding 'v'")
    assert log.warn("slow", "slow frame")
    assert logger.lines == [
        ("error", "bad encoding 'x'"),
        ("error", "empty image"),
        ("error", "bad encoding 'v' (3 similar messages suppressed)"),
        ("warning", "slow frame"),
    ]
    assert log.count == {"encoding": 5, "size": 1, "slow": 1}


def test_rate_limited_log_works_with_an_rclpy_logger():
    log = RateLimitedLog(rclpy.logging.get_logger("test_rate_limited"), period_s=60.0)
    assert log.warn("k", "first")
    assert not log.warn("k", "second")
    assert log.count["k"] == 2


def test_latency_stats_percentiles_fps_and_decay():
    clock = FakeClock()
    stats = LatencyStats(window=100, fps_window_s=2.0, clock=clock)
    empty = stats.snapshot()
    assert empty["fps"] == 0 and empty["frames"] == 0 and np.isnan(empty["latency_p50_ms"])
    for i in range(200):  # 20 Hz for 10 s, latencies 0..199 ms; the window keeps the last 100
        stats.record(i / 1000)
        stats.record(0.5, "stamp_latency")
        stats.frame()
        clock.t += 0.05
    snap = stats.snapshot()
    assert snap["frames"] == 200
    assert snap["fps"] == pytest.approx(20, abs=1)
    assert snap["latency_p50_ms"] == pytest.approx(149.5, abs=0.1)
    assert snap["latency_p95_ms"] == pytest.approx(194.05, abs=0.1)
    assert snap["stamp_latency_p50_ms"] == pytest.approx(500)
    clock.t += 3.0  # the stream stopped: the rate falls to 0, the totals stay
    assert stats.snapshot()["fps"] == 0
    assert stats.snapshot()["frames"] == 200


def test_latency_stats_fps_before_a_full_window():
    clock = FakeClock()
    stats = LatencyStats(fps_window_s=5.0, clock=clock)
    for _ in range(30):  # 30 Hz for 1 s
        clock.t += 1 / 30
        stats.frame()
    assert stats.fps() == pytest.approx(30, rel=0.05)


# --------------------------------------------------------------------------------------------
# Parameters, QoS, diagnostics, run_node (a real rclpy node in a context of its own)


@pytest.fixture
def make_node():
    contexts: list[tuple[Context, Node]] = []

    def make(overrides: dict[str, Any] | None = None, name: str = "unit_node") -> Node:
        context = Context()
        rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
        params = [Parameter(k, value=v) for k, v in (overrides or {}).items()]
        node = Node(name, context=context, parameter_overrides=params)
        contexts.append((context, node))
        return node

    yield make
    for context, node in contexts:
        node.destroy_node()
        context.try_shutdown()


def test_declare_sets_descriptor_and_returns_value(make_node):
    node = make_node({"rate": 2.5})
    assert declare(node, "rate", 1.0, "frames per second", range=(0.5, 10.0)) == 2.5
    assert declare(node, "mode", "fast", "how", choices=("fast", "slow"), read_only=True) == "fast"
    assert declare(node, "depth", 3, "queue", range=(1, 9)) == 3
    rate, mode, depth = node.describe_parameters(["rate", "mode", "depth"])
    assert rate.description == "frames per second"
    assert rate.floating_point_range[0].from_value == 0.5 and rate.floating_point_range[0].to_value == 10.0
    assert "in [0.5, 10.0]" in rate.additional_constraints
    assert mode.read_only and mode.additional_constraints == "one of: fast, slow"
    assert depth.integer_range[0].from_value == 1 and depth.integer_range[0].to_value == 9


@pytest.mark.parametrize(
    ("overrides", "kwargs", "message"),
    [
        ({"p": "medium"}, {"default": "fast", "choices": ("fast", "slow")}, "'medium' is not one of 'fast', 'slow'"),
        ({"p": 11.0}, {"default": 1.0, "range": (0.0, 10.0)}, "out of range"),
        ({"p": 0}, {"default": 3, "range": (1, 9)}, "out of range"),
        ({"p": True}, {"default": "text"}, "BOOL"),
        ({}, {"default": "cpu", "choices": ("auto", "cuda")}, "'cpu' is not one of"),
    ],
)
def test_declare_rejects_bad_values_naming_the_parameter(make_node, overrides, kwargs, message):
    node = make_node(overrides)
    with pytest.raises(ValueError, match=r"^parameter p: ") as info:
        declare(node, "p", description="a parameter", **kwargs)
    assert message in str(info.value)


def test_declare_enforces_choices_and_read_only_at_run_time(make_node):
    node = make_node()
    declare(node, "mode", "fast", "how", choices=("fast", "slow"))
    declare(node, "frozen", 1, "fixed", read_only=True)
    declare(node, "gain", 1.0, "g", range=(0.0, 2.0))
    ok, bad_choice, ro, out_of_range = node.set_parameters(
        [
            Parameter("mode", value="slow"),
            Parameter("mode", value="medium"),
            Parameter("frozen", value=2),
            Parameter("gain", value=3.0),
        ]
    )
    assert ok.successful
    assert not bad_choice.successful and "one of" in bad_choice.reason
    assert not ro.successful and not out_of_range.successful
    assert node.get_parameter("mode").value == "slow"


def test_image_qos_default_is_sensor_data(make_node):
    qos = image_qos(make_node())
    assert qos.reliability == qos_profile_sensor_data.reliability == ReliabilityPolicy.BEST_EFFORT
    assert qos.depth == qos_profile_sensor_data.depth
    assert qos.history == qos_profile_sensor_data.history


def test_image_qos_reliable_and_depth(make_node):
    node = make_node({"qos": "reliable", "qos_depth": 2})
    qos = image_qos(node)
    assert qos.reliability == ReliabilityPolicy.RELIABLE and qos.depth == 2
    assert image_qos(node) == qos  # a second image topic of the node gets the same profile
    with pytest.raises(ValueError, match="parameter qos: 'fastest' is not one of"):
        image_qos(make_node({"qos": "fastest"}))
    with pytest.raises(ValueError, match="parameter qos_depth"):
        image_qos(make_node({"qos_depth": 0}))


def test_diagnostics_status_warns_while_counters_grow(make_node):
    node = make_node()
    values = {"fps": 30.0, "dropped": 0, "failed": 0, "device": "cpu"}
    diag = DiagnosticsPublisher(node, "unit_node: /unit_node", "cpu", period_s=60.0, values=lambda: dict(values))
    status = diag.status()
    assert (status.level, status.name, status.hardware_id, status.message) == (
        DiagnosticStatus.OK,
        "unit_node: /unit_node",
        "cpu",
        "ok",
    )
    assert {kv.key: kv.value for kv in status.values} == {"fps": "30.0", "dropped": "0", "failed": "0", "device": "cpu"}
    values["dropped"] = 7
    status = diag.status()
    assert status.level == DiagnosticStatus.WARN and "7 dropped" in status.message
    assert diag.status().level == DiagnosticStatus.OK  # nothing new since the last report
    values["failed"] = 1
    assert diag.status().level == DiagnosticStatus.WARN


def _fail(exc: Exception):
    def factory() -> Node:
        raise exc

    return factory


@pytest.mark.parametrize(
    ("exc", "line"),
    [
        (
            StartupError("checkpoint 'x.pt': checkpoint file not found"),
            "demo_node: checkpoint 'x.pt': checkpoint file not found",
        ),
        (
            ValueError("parameter device: 'gpu' is not one of 'auto'"),
            "demo_node: parameter device: 'gpu' is not one of 'auto'",
        ),
        (RuntimeError("CUDA out of memory"), "demo_node: start-up failed: RuntimeError: CUDA out of memory"),
    ],
)
def test_run_node_reports_a_start_up_error_in_one_line(capsys, exc, line):
    assert run_node(_fail(exc), args=[], name="demo_node") == 1
    err = capsys.readouterr().err
    assert err.strip() == line
    assert not rclpy.ok()  # the context was shut down again


def test_run_node_exits_0_when_the_node_requests_shutdown():
    nodes: list[Node] = []

    def factory() -> Node:
        node = Node("stopping_node")
        node.create_timer(0.1, lambda: request_shutdown(node))
        nodes.append(node)
        return node

    start = time.monotonic()
    assert run_node(factory, args=[], name="stopping_node") == 0
    assert time.monotonic() - start < 10
    assert nodes and not rclpy.ok()


def test_run_node_exits_0_when_the_context_is_shut_down_under_spin(monkeypatch):
    """A SIGTERM can shut the context down while the executor builds its next wait set; rclpy
    then raises RCLError from spin(). That is a stop (exit 0); the same error while the context
    is still valid is a failure and propagates."""
    from rclpy.executors import SingleThreadedExecutor

    def shutdown_then_fail(self) -> None:
        rclpy.shutdown()
        raise RuntimeError("failed to initialize wait set: the given context is not valid")

    monkeypatch.setattr(SingleThreadedExecutor, "spin", shutdown_then_fail)
    assert run_node(lambda: Node("stopped_node"), args=[], name="stopped_node") == 0
    assert not rclpy.ok()

    def fail(self) -> None:
        raise RuntimeError("a real failure")

    monkeypatch.setattr(SingleThreadedExecutor, "spin", fail)
    with pytest.raises(RuntimeError, match="a real failure"):
        run_node(lambda: Node("failing_node"), args=[], name="failing_node")
    assert not rclpy.ok()


# --------------------------------------------------------------------------------------------
# Image conversion

BACKENDS = ["numpy", pytest.param("cv_bridge", marks=pytest.mark.skipif(not HAVE_CV_BRIDGE, reason="no cv_bridge"))]


@pytest.fixture(params=BACKENDS)
def converter(request) -> ImageConverter:
    if request.param == "cv_bridge":
        pytest.importorskip("cv_bridge")
    return ImageConverter(request.param)


@pytest.mark.parametrize("encoding", list(ENCODINGS))
@pytest.mark.parametrize(("h", "w", "pad"), [(1, 1, 0), (3, 5, 1), (7, 13, 3), (16, 9, 7), (24, 32, 64)])
def test_imgmsg_to_rgb_every_encoding_and_padding(converter, encoding, h, w, pad):
    rgb = np.random.default_rng(h * w + pad).integers(0, 256, (h, w, 3), dtype=np.uint8)
    pixels, expected = encode(rgb, encoding)
    out = converter.imgmsg_to_rgb(image_msg(pixels, encoding, pad))
    assert out.dtype == np.uint8 and out.shape == (h, w, 3) and out.flags.c_contiguous
    np.testing.assert_array_equal(out, expected)


def test_is_bigendian_is_a_no_op_for_8_bit_images(converter):
    rgb = np.random.default_rng(1).integers(0, 256, (4, 6, 3), dtype=np.uint8)
    msg = image_msg(rgb, "rgb8", pad=2)
    msg.is_bigendian = 1
    np.testing.assert_array_equal(converter.imgmsg_to_rgb(msg), rgb)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "mono8"])
@pytest.mark.parametrize(("h", "w"), [(1, 1), (5, 3), (48, 64)])
def test_rgb_to_imgmsg_round_trip_and_header(converter, encoding, h, w):
    rgb = np.random.default_rng(h + w).integers(0, 256, (h, w, 3), dtype=np.uint8)
    header = Header(frame_id="camera_optical")
    header.stamp.sec, header.stamp.nanosec = 12, 345
    msg = converter.rgb_to_imgmsg(rgb, header, encoding)
    channels = 1 if encoding == "mono8" else 3
    assert (msg.height, msg.width, msg.encoding, msg.step) == (h, w, encoding, w * channels)
    assert len(msg.data) == h * w * channels and msg.is_bigendian == 0
    assert msg.header.frame_id == "camera_optical" and (msg.header.stamp.sec, msg.header.stamp.nanosec) == (12, 345)
    _, expected = encode(rgb, encoding)
    np.testing.assert_array_equal(converter.imgmsg_to_rgb(msg), expected)


def test_mono_to_imgmsg(converter):
    ids = np.random.default_rng(0).integers(0, 4, (7, 11), dtype=np.uint8)
    msg = converter.mono_to_imgmsg(ids, Header(frame_id="f"))
    assert (msg.encoding, msg.step, msg.header.frame_id) == ("mono8", 11, "f")
    np.testing.assert_array_equal(np.frombuffer(bytes(msg.data), np.uint8).reshape(7, 11), ids)


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((4, 4), np.uint8),
        np.zeros((4, 4, 4), np.uint8),
        np.zeros((4, 4, 3), np.float32),
        np.zeros((0, 4, 3), np.uint8),
    ],
)
def test_rgb_to_imgmsg_rejects_non_rgb_arrays(converter, bad):
    with pytest.raises(ValueError, match="expected a non-empty"):
        converter.rgb_to_imgmsg(bad)


def test_writers_reject_unknown_encodings_and_bad_masks(converter):
    with pytest.raises(ValueError, match="not 'rgba8'"):
        converter.rgb_to_imgmsg(np.zeros((2, 2, 3), np.uint8), encoding="rgba8")
    with pytest.raises(ValueError):
        converter.mono_to_imgmsg(np.zeros((2, 2, 3), np.uint8))


def _good(**changes: Any) -> Image:
    msg = image_msg(np.zeros((4, 5, 3), np.uint8), "rgb8")
    for key, value in changes.items():
        setattr(msg, key, value)
    return msg


@pytest.mark.parametrize(
    ("msg", "message"),
    [
        (_good(encoding="16UC1"), "unsupported encoding '16UC1'"),
        (_good(encoding=""), "unsupported encoding ''"),
        (_good(encoding="RGB8"), "unsupported encoding"),
        (_good(encoding="bayer_rggb8"), "unsupported encoding"),
        (_good(width=0, step=0, data=b""), "empty image"),
        (_good(height=0, data=b""), "empty image"),
        (_good(step=14), "step 14 is smaller than a row of 5 rgb8 pixels"),
        (_good(step=0), "step 0 is smaller"),
        (_good(data=bytes(59)), "59 bytes of data, expected 4 rows of 15 bytes"),
        (_good(data=bytes(61)), "61 bytes of data"),
        (_good(data=b""), "0 bytes of data"),
        (_good(is_bigendian=2), "is_bigendian is 2"),
        (_good(height=4000, width=4000, step=12000), "bytes of data, expected"),
    ],
)
def test_imgmsg_to_rgb_rejects_malformed_messages(converter, msg, message):
    with pytest.raises(ImageMessageError, match=message.replace("(", r"\(")):
        converter.imgmsg_to_rgb(msg)


def test_imgmsg_to_rgb_rejects_stand_ins_with_non_integer_fields(converter):
    stand_in = types.SimpleNamespace(encoding="rgb8", height="four", width=5, step=15, is_bigendian=0, data=bytes(60))
    with pytest.raises(ImageMessageError, match="not integers"):
        converter.imgmsg_to_rgb(stand_in)


def test_compressed_to_rgb(converter):
    rgb = np.random.default_rng(3).integers(0, 256, (9, 14, 3), dtype=np.uint8)
    ok, png = cv2.imencode(".png", rgb[..., ::-1])
    assert ok
    msg = CompressedImage(format="png", data=png.tobytes())
    np.testing.assert_array_equal(converter.compressed_to_rgb(msg), rgb)
    for data in (b"", b"\x89PNG garbage", bytes(range(256))):
        with pytest.raises(ImageMessageError, match="compressed image"):
            converter.compressed_to_rgb(CompressedImage(format="jpeg", data=data))


def test_module_functions_use_the_selected_backend():
    expected = "cv_bridge" if HAVE_CV_BRIDGE else "numpy"
    assert image_conversion.BACKEND == expected
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    msg = image_conversion.rgb_to_imgmsg(rgb, Header(frame_id="x"), "bgr8")
    np.testing.assert_array_equal(image_conversion.imgmsg_to_rgb(msg), rgb)
    ids = image_conversion.mono_to_imgmsg(rgb[..., 0])
    assert ids.encoding == "mono8"


def _importer(module: types.ModuleType | None):
    def importer(name: str) -> types.ModuleType:
        assert name == "cv_bridge"
        if module is None:
            raise ImportError("No module named 'cv_bridge'")
        return module

    return importer


def test_select_backend_prefers_cv_bridge_when_it_imports(monkeypatch):
    monkeypatch.delenv(image_conversion.BACKEND_ENV, raising=False)
    ros2_bridge = types.ModuleType("cv_bridge")
    ros2_bridge.CvBridge = object  # type: ignore[attr-defined]
    ros1_bridge = types.ModuleType("cv_bridge")  # PyPI's ROS 1 build: no usable CvBridge here
    assert select_backend(None, _importer(ros2_bridge)) == ("cv_bridge", ros2_bridge)
    assert select_backend("auto", _importer(None)) == ("numpy", None)
    assert select_backend("auto", _importer(ros1_bridge)) == ("numpy", None)
    assert select_backend("numpy", _importer(ros2_bridge)) == ("numpy", None)
    with pytest.raises(ImportError, match="cv_bridge does not import"):
        select_backend("cv_bridge", _importer(None))
    with pytest.raises(ImportError, match="has no CvBridge"):
        select_backend("cv_bridge", _importer(ros1_bridge))
    with pytest.raises(ValueError, match="expected auto, cv_bridge or numpy"):
        select_backend("opencv", _importer(None))


def test_select_backend_environment_override(monkeypatch):
    ros2_bridge = types.ModuleType("cv_bridge")
    ros2_bridge.CvBridge = object  # type: ignore[attr-defined]
    monkeypatch.setenv(image_conversion.BACKEND_ENV, "numpy")
    assert select_backend(None, _importer(ros2_bridge))[0] == "numpy"
    assert ImageConverter().backend == "numpy"
    monkeypatch.setenv(image_conversion.BACKEND_ENV, "cv_bridge")
    assert select_backend(None, _importer(ros2_bridge))[0] == "cv_bridge"


@pytest.mark.skipif(not HAVE_CV_BRIDGE, reason="cv_bridge (ROS 2) is not installed")
def test_cv_bridge_backend_is_used_when_available():
    cv_bridge = pytest.importorskip("cv_bridge")
    conv = ImageConverter("cv_bridge")
    assert conv.backend == "cv_bridge" and isinstance(conv._bridge, cv_bridge.CvBridge)
    rgb = np.random.default_rng(5).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    np.testing.assert_array_equal(conv.imgmsg_to_rgb(conv.rgb_to_imgmsg(rgb, Header(), "bgr8")), rgb)
