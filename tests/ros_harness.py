"""Test-side ROS 2 helpers: a probe node spinning in a thread, and node processes under test.

Every node under test runs as its own process (its console script), talking real DDS to the
:class:`RosProbe` of the test, as on a robot. Both inherit ``os.environ``, so they share the
``ROS_DOMAIN_ID`` and LOCALHOST discovery that ``tests/conftest.py`` sets.

    with RosProbe() as ros, NodeProcess("translator_node", {"checkpoint": "pretrained:cyclegan"},
                                        ros=ros, subscribes=["image"], publishes=["image_translated"]):
        pub = ros.publisher(Image, "image", SENSOR_QOS)
        out = ros.subscribe(Image, "image_translated", SENSOR_QOS)
        ros.wait_matched(pub)
        pub.publish(msg)
        reply = out.wait_for(lambda m: m.header.frame_id == "cam")
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.publisher import Publisher
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from sim2real_goggles.data.image_msgs import ENCODINGS

SENSOR_QOS = qos_profile_sensor_data
RELIABLE_QOS = QoSProfile(depth=10)


def wait_until(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.02) -> Any:
    """Poll ``condition`` until it returns something truthy (returned); AssertionError naming
    ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.1f} s waiting for {what}")
        time.sleep(interval)


class Collector:
    """Messages received on one topic, in arrival order, with their arrival times."""

    def __init__(self, topic: str):
        self.topic = topic
        self.messages: list[Any] = []
        self.times: list[float] = []
        self._cond = threading.Condition()
        self.subscription: Any = None

    def _on_message(self, msg: Any) -> None:
        with self._cond:
            self.messages.append(msg)
            self.times.append(time.monotonic())
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self.messages)

    def clear(self) -> None:
        with self._cond:
            self.messages.clear()
            self.times.clear()

    def wait_for(self, predicate: Callable[[Any], bool] = lambda m: True, timeout: float = 10.0, since: int = 0) -> Any:
        """The first message matching ``predicate``, among those received so far (from index
        ``since``; ``since=len(collector)`` waits for a new one) and arriving within ``timeout``."""
        seen = since
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for msg in self.messages[seen:]:
                    if predicate(msg):
                        return msg
                seen = len(self.messages)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"no matching message on {self.topic} within {timeout:.1f} s ({seen} received)"
                    )
                self._cond.wait(left)

    def wait_count(self, count: int, timeout: float = 10.0) -> list[Any]:
        """The first ``count`` messages, waiting up to ``timeout`` for them."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.messages) >= count, timeout):
                raise AssertionError(f"{len(self.messages)} of {count} messages on {self.topic} within {timeout:.1f} s")
            return list(self.messages[:count])

    def expect_none(self, predicate: Callable[[Any], bool] = lambda m: True, duration: float = 1.0) -> None:
        """Assert no message matching ``predicate`` arrives (or has arrived) within ``duration``."""
        try:
            msg = self.wait_for(predicate, duration)
        except AssertionError:
            return
        raise AssertionError(f"unexpected message on {self.topic}: {msg}")


class RosProbe:
    """The test's own rclpy node, in a context of its own, spun by a background thread.

    A separate context leaves rclpy's default context (and its signal handlers) to code under
    test in the same process; ``close()`` (or leaving the ``with`` block) shuts it all down.
    """

    def __init__(self, name: str = "test_probe"):
        self.context = Context()
        rclpy.init(context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        self.node = Node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, name=f"{name}-spin", daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            while self.context.ok():
                self.executor.spin_once(timeout_sec=0.05)
        except Exception:  # noqa: BLE001 - the context shut down under spin_once
            if self.context.ok():
                raise

    def publisher(self, msg_type: type, topic: str, qos: QoSProfile = RELIABLE_QOS) -> Publisher:
        return self.node.create_publisher(msg_type, topic, qos)

    def subscribe(self, msg_type: type, topic: str, qos: QoSProfile = RELIABLE_QOS) -> Collector:
        collector = Collector(topic)
        collector.subscription = self.node.create_subscription(msg_type, topic, collector._on_message, qos)
        return collector

    def wait_matched(self, endpoint: Any, count: int = 1, timeout: float = 15.0) -> None:
        """Wait until a publisher has ``count`` matched subscriptions (or a Collector's
        subscription has ``count`` matched publishers): discovery done, nothing sent is lost."""
        if isinstance(endpoint, Collector):
            sub = endpoint.subscription
            wait_until(lambda: sub.get_publisher_count() >= count, timeout, f"a publisher of {endpoint.topic}")
        else:
            wait_until(
                lambda: endpoint.get_subscription_count() >= count, timeout, f"a subscriber of {endpoint.topic_name}"
            )

    def wait_for_topic(self, topic: str, role: str = "publisher", timeout: float = 15.0) -> None:
        """Wait until the graph shows a ``publisher`` or ``subscriber`` of ``topic``."""
        name = topic if topic.startswith("/") else "/" + topic
        counter = self.node.count_publishers if role == "publisher" else self.node.count_subscribers
        wait_until(lambda: counter(name) > 0, timeout, f"a {role} of {name}")

    def close(self) -> None:
        self.context.try_shutdown()
        self._thread.join(timeout=5.0)
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()

    def __enter__(self) -> RosProbe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------------------------
# Images


def header(frame_id: str = "", stamp_ns: int | None = None) -> Header:
    """A Header with ``frame_id`` and ``stamp_ns`` (default: now, wall clock)."""
    ns = time.time_ns() if stamp_ns is None else stamp_ns
    msg = Header(frame_id=frame_id)
    msg.stamp.sec, msg.stamp.nanosec = divmod(ns, 10**9)
    return msg


def stamp_ns(h: Header) -> int:
    return h.stamp.sec * 10**9 + h.stamp.nanosec


def encode(rgb: np.ndarray, encoding: str) -> tuple[np.ndarray, np.ndarray]:
    """(the pixels of (H, W, 3) uint8 ``rgb`` as ``encoding`` stores them, the RGB image a
    reader must get back: grey for mono8/8UC1)."""
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    alpha = np.full(rgb.shape[:2] + (1,), 77, np.uint8)
    grey_rgb = np.repeat(gray[..., None], 3, -1)
    table = {
        "rgb8": (rgb, rgb),
        "bgr8": (rgb[..., ::-1], rgb),
        "rgba8": (np.concatenate([rgb, alpha], -1), rgb),
        "bgra8": (np.concatenate([rgb[..., ::-1], alpha], -1), rgb),
        "mono8": (gray, grey_rgb),
        "8UC1": (gray, grey_rgb),
        "8UC3": (rgb[..., ::-1], rgb),  # OpenCV's convention: 3 channels are BGR
    }
    return table[encoding]


def image_msg(pixels: np.ndarray, encoding: str, pad: int = 0, hdr: Header | None = None, seed: int = 0) -> Image:
    """A sensor_msgs/Image holding ``pixels`` (H, W[, C]) with ``pad`` bytes of garbage after each row."""
    h = pixels.shape[0]
    rows = np.ascontiguousarray(pixels).reshape(h, -1)
    garbage = np.random.default_rng(seed).integers(0, 256, (h, pad), dtype=np.uint8)
    data = np.concatenate([rows, garbage], axis=1)
    msg = Image(height=h, width=pixels.shape[1], encoding=encoding, is_bigendian=0, step=data.shape[1])
    msg.data = data.tobytes()  # bytes: assigning an ndarray is very slow
    if hdr is not None:
        msg.header = hdr
    return msg


def image_from_msg(msg: Image) -> np.ndarray:
    """(H, W, C) or (H, W) uint8 pixels of an unpadded 8-bit Image, channels as stored."""
    data = np.frombuffer(bytes(msg.data), np.uint8)
    channels = msg.step // msg.width
    assert msg.step == msg.width * channels and data.size == msg.step * msg.height, "padded or inconsistent"
    return data.reshape(msg.height, msg.width, channels) if channels > 1 else data.reshape(msg.height, msg.width)


def malformed_messages(n: int, seed: int = 0) -> list[Image]:
    """``n`` Images that are each broken in one random way (never accidentally valid)."""
    rng = np.random.default_rng(seed)
    unsupported = ["16UC1", "32FC1", "rgb16", "bgra16", "yuv422", "bayer_rggb8", "", "RGB8", "jpeg", "8UC4", "mono16"]
    msgs = []
    for i in range(n):
        h, w = int(rng.integers(1, 40)), int(rng.integers(1, 40))
        encoding = str(rng.choice(["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "8UC1", "8UC3"]))
        channels = ENCODINGS[encoding][0]
        step = w * channels + int(rng.integers(0, 4))
        size = step * h
        kind = i % 9
        if kind == 0:  # an encoding the node does not read, or garbage text
            encoding = (
                str(rng.choice(unsupported))
                if rng.random() < 0.5
                else "".join(map(chr, rng.integers(33, 127, int(rng.integers(1, 12)))))
            )
            if encoding in ENCODINGS:
                encoding = "x" + encoding
        elif kind == 1:  # zero width or height
            h, w = (0, w) if rng.random() < 0.5 else (h, 0)
            size = step * h
        elif kind == 2:  # step shorter than a row
            step = int(rng.integers(0, w * channels))
        elif kind == 3:  # data shorter than step * height
            size = int(rng.integers(0, step * h))
        elif kind == 4:  # data longer
            size = step * h + int(rng.integers(1, 500))
        elif kind == 5:  # no data at all
            size = 0
        elif kind == 6:  # huge claimed size, tiny data
            h, w, step = 60000, 60000, 60000 * channels
            size = int(rng.integers(0, 1000))
        elif kind == 7:  # is_bigendian nonsense
            pass
        else:  # everything random
            h, w, step = (int(x) for x in rng.integers(0, 2**31, 3))
            size = int(rng.integers(0, 2000))
            encoding = str(rng.choice(unsupported))
        msg = Image(
            height=h, width=w, encoding=encoding, step=step, is_bigendian=int(rng.integers(2, 256)) if kind == 7 else 0
        )
        msg.data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        msg.header = header(f"fuzz{i}")
        msgs.append(msg)
    return msgs


# --------------------------------------------------------------------------------------------
# Node processes


def executable(name: str) -> str:
    """The console script ``name`` of this environment (beside the Python running the tests)."""
    local = Path(sys.executable).parent / name
    if local.is_file():
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"console script {name!r} not found beside {sys.executable} or on PATH")
    return found


def ros_args(params: Mapping[str, Any] | None = None, remaps: Mapping[str, str] | None = None) -> list[str]:
    """``--ros-args -p name:=value ... -r from:=to ...`` (booleans as true/false)."""
    args = ["--ros-args"]
    for key, value in (params or {}).items():
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        args += ["-p", f"{key}:={text}"]
    for src, dst in (remaps or {}).items():
        args += ["-r", f"{src}:={dst}"]
    return args


def run_to_exit(
    name: str, params: Mapping[str, Any] | None = None, timeout: float = 60.0, args: Iterable[str] = ()
) -> subprocess.CompletedProcess:
    """Run a node that is expected to end by itself (e.g. a start-up error); output captured."""
    return subprocess.run(
        [executable(name), *args, *ros_args(params)],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class NodeProcess:
    """A node's console script as a child process, as a context manager.

    Entering starts it (``os.environ`` inherited, so the test's ROS domain; unless already
    :meth:`launch`-ed) and waits until ``ros`` sees its ``publishes`` / ``subscribes`` topics in
    the graph; leaving stops it (see :meth:`stop`) and asserts that nothing of it is left running. Its stdout and stderr go to one
    file, readable with :meth:`output`, and are shown when start-up fails.
    """

    def __init__(
        self,
        name: str,
        params: Mapping[str, Any] | None = None,
        *,
        ros: RosProbe | None = None,
        publishes: Iterable[str] = (),
        subscribes: Iterable[str] = (),
        remaps: Mapping[str, str] | None = None,
        startup_timeout: float = 40.0,
        env: Mapping[str, str] | None = None,
    ):
        self.name = name
        self.command = [executable(name), *ros_args(params, remaps)]
        self.ros = ros
        self.publishes = list(publishes)
        self.subscribes = list(subscribes)
        self.startup_timeout = startup_timeout
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen | None = None
        self._launched = 0.0
        self._ready = False
        self.returncode: int | None = None
        self._log = tempfile.NamedTemporaryFile(prefix=f"{name}-", suffix=".log", delete=False)  # noqa: SIM115

    def launch(self) -> NodeProcess:
        """Start the process without waiting (launch several, then :meth:`wait_ready` each, to
        overlap their start-up)."""
        if self.proc is not None:
            raise RuntimeError(f"{self.name} was already launched")
        # A session of its own: the final SIGKILL reaches anything the node may have started.
        self.proc = subprocess.Popen(
            self.command, env=self.env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self._launched = time.monotonic()
        return self

    def wait_ready(self) -> NodeProcess:
        """Wait until ``ros`` sees the node's topics; on failure stop it and show its output."""
        assert self.proc is not None, "launch() first"
        if self._ready:
            return self
        try:
            if self.ros is not None:
                deadline = self._launched + self.startup_timeout
                for role, topics in (("publisher", self.publishes), ("subscriber", self.subscribes)):
                    for topic in topics:
                        self.check_alive()
                        self.ros.wait_for_topic(topic, role, timeout=max(0.1, deadline - time.monotonic()))
            self.check_alive()
            self._ready = True
        except BaseException as exc:
            self.stop()
            raise AssertionError(f"{self.name} did not come up ({exc}):\n{self.output()}") from None
        return self

    def start(self) -> NodeProcess:
        """Launch (unless launched) and wait until ready."""
        if self.proc is None:
            self.launch()
        return self.wait_ready()

    def check_alive(self) -> None:
        assert self.proc is not None
        code = self.proc.poll()
        if code is not None:
            raise AssertionError(f"{self.name} exited with code {code}:\n{self.output()}")

    @property
    def ready(self) -> bool:
        """:meth:`wait_ready` succeeded: the node came up."""
        return self._ready

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self) -> str:
        return Path(self._log.name).read_text(errors="replace")

    def stop(self, sig: int = signal.SIGINT, timeout: float = 10.0) -> int:
        """Send ``sig`` (SIGINT: Ctrl-C), wait up to ``timeout`` s, then SIGKILL the whole process
        group; returns the exit code (negative: killed by that signal). Asserts nothing is left."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.returncode = self.proc.wait(5.0)

        def group_gone() -> bool:
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                return True
            return False

        wait_until(group_gone, 5.0, f"the processes of {self.name} (group {self.proc.pid}) to end")
        return self.returncode

    def __enter__(self) -> NodeProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.returncode is None:
            self.stop()
        self._log.close()
        Path(self._log.name).unlink(missing_ok=True)


__all__ = [
    "RELIABLE_QOS",
    "SENSOR_QOS",
    "Collector",
    "NodeProcess",
    "RosProbe",
    "encode",
    "executable",
    "header",
    "image_from_msg",
    "image_msg",
    "ros_args",
    "run_to_exit",
    "stamp_ns",
    "wait_until",
]
