"""Building blocks shared by every node: declared parameters, image QoS, rate-limited logging,
the newest-frame worker thread, latency statistics, /diagnostics and the ``main()`` body.

Nothing here knows about images or networks, so the policy and sim robot nodes use it as well.
"""

from __future__ import annotations

import gc
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)
from rclpy.signals import SignalHandlerOptions

# --------------------------------------------------------------------------------------------
# Parameters


def _check(name: str, value: Any, choices: Sequence[Any] | None, range: tuple[float, float] | None) -> None:
    if choices is not None and value not in choices:
        raise ValueError(f"parameter {name}: {value!r} is not one of {', '.join(map(repr, choices))}")
    if range is not None:
        lo, hi = range
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"parameter {name}: expected a number in [{lo}, {hi}], got {value!r}")
        if not lo <= value <= hi:
            raise ValueError(f"parameter {name}: {value!r} is outside [{lo}, {hi}]")


def _choices_guard(node: Node) -> dict[str, Sequence[Any]]:
    """Per-node table of parameters with choices, checked again when set at run time (rclpy
    enforces ranges and read-only itself, but has no notion of a set of allowed values)."""
    table = getattr(node, "_s2rg_choices", None)
    if table is None:
        table = {}
        node._s2rg_choices = table  # type: ignore[attr-defined]

        def on_set(params: list[Parameter]) -> SetParametersResult:
            for p in params:
                if p.name in table and p.value not in table[p.name]:
                    allowed = ", ".join(map(repr, table[p.name]))
                    return SetParametersResult(successful=False, reason=f"{p.name} must be one of {allowed}")
            return SetParametersResult(successful=True)

        node.add_on_set_parameters_callback(on_set)
    return table


def declare(
    node: Node,
    name: str,
    default: Any,
    description: str,
    *,
    read_only: bool = False,
    choices: Sequence[Any] | None = None,
    range: tuple[float, float] | None = None,  # noqa: A002 - the ROS word for it
) -> Any:
    """Declare ROS parameter ``name`` with a :class:`ParameterDescriptor` and return its value.

    ``choices``: the allowed values (also enforced for later ``ros2 param set``); ``range``:
    inclusive (low, high), published as an Integer/FloatingPointRange. A value given on the command
    line or in YAML that breaks either, or has the wrong type, raises
    ``ValueError("parameter NAME: ...")`` so :func:`run_node` reports it in one line.
    """
    constraints = []
    if choices is not None:
        constraints.append("one of: " + ", ".join(map(str, choices)))
    descriptor = ParameterDescriptor(description=description, read_only=read_only)
    if range is not None:
        lo, hi = range
        constraints.append(f"in [{lo}, {hi}]")
        if isinstance(default, int) and not isinstance(default, bool):
            descriptor.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=0)]
        else:
            descriptor.floating_point_range = [FloatingPointRange(from_value=float(lo), to_value=float(hi), step=0.0)]
    descriptor.additional_constraints = "; ".join(constraints)
    try:
        value = node.declare_parameter(name, default, descriptor).value
    except ParameterException as exc:
        # rclpy's own message already names the parameter, the value and the rule it broke.
        raise ValueError(f"parameter {name}: {exc}") from None
    _check(name, value, choices, range)
    if choices is not None and not read_only:
        _choices_guard(node)[name] = tuple(choices)
    return value


def image_qos(node: Node) -> QoSProfile:
    """QoS for camera topics, from the parameters ``qos`` and ``qos_depth``.

    ``sensor_data`` (default) is best effort, keep last: a late frame is worth nothing, and the
    publisher never blocks on a slow subscriber. ``reliable`` suits recorded data and links
    that must not lose frames (every peer must then be reliable too). Calling it again on the
    same node returns the same profile (one setting for all of a node's image topics).
    """
    if node.has_parameter("qos") and node.has_parameter("qos_depth"):
        return _image_qos_profile(node.get_parameter("qos").value, node.get_parameter("qos_depth").value)
    kind = declare(
        node,
        "qos",
        "sensor_data",
        "QoS of image topics: sensor_data (best effort, keep last) or reliable (keep last)",
        read_only=True,
        choices=("sensor_data", "reliable"),
    )
    depth = declare(
        node,
        "qos_depth",
        int(qos_profile_sensor_data.depth),
        "history depth of image topics (the node itself only ever works on the newest frame)",
        read_only=True,
        range=(1, 1000),
    )
    return _image_qos_profile(kind, depth)


def _image_qos_profile(kind: str, depth: int) -> QoSProfile:
    if kind == "sensor_data":
        return QoSProfile(
            history=qos_profile_sensor_data.history,
            depth=depth,
            reliability=qos_profile_sensor_data.reliability,
            durability=qos_profile_sensor_data.durability,
        )
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.VOLATILE,
    )


# --------------------------------------------------------------------------------------------
# Logging


class RateLimitedLog:
    """Log each kind of problem (``key``) at most once per ``period_s``.

    A node fed a stream of bad messages would otherwise write a line per frame. The next line
    logged for a key says how many were held back; :attr:`count` holds the totals per key.
    ``logger`` is an rclpy logger (or anything with ``error`` and ``warning``/``warn``).
    """

    def __init__(self, logger: Any, period_s: float = 5.0, clock: Callable[[], float] = time.monotonic):
        self.logger = logger
        self.period_s = period_s
        self.clock = clock
        self.count: dict[str, int] = {}
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()

    def _log(self, emit: Callable[[str], Any], key: str, message: str) -> bool:
        with self._lock:
            self.count[key] = self.count.get(key, 0) + 1
            now = self.clock()
            last = self._last.get(key)
            if last is not None and now - last < self.period_s:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return False
            self._last[key] = now
            suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            message = f"{message} ({suppressed} similar messages suppressed)"
        emit(message)
        return True

    def error(self, key: str, message: str) -> bool:
        """Log ``message`` as an error unless ``key`` was logged in the last period; True if logged."""
        return self._log(self.logger.error, key, message)

    def warn(self, key: str, message: str) -> bool:
        """Like :meth:`error`, at warning level."""
        emit = getattr(self.logger, "warning", None) or self.logger.warn
        return self._log(emit, key, message)


# --------------------------------------------------------------------------------------------
# Work on the newest item only

_EMPTY = object()


class LatestFrameWorker:
    """Run ``process(item)`` on a thread of its own, always on the newest submitted item.

    At most one item waits: submitting while one is pending replaces it (counted in
    :attr:`dropped`), so a slow ``process`` never builds a queue and the output is never older
    than one processing time. This keeps inference off the executor thread, which stays free
    for subscriptions, timers and parameter services. An exception in ``process`` is counted in
    :attr:`failed` and handed to ``on_error``; the worker carries on with the next item.
    """

    def __init__(
        self,
        process: Callable[[Any], Any],
        on_error: Callable[[BaseException], Any] | None = None,
        name: str = "latest-frame-worker",
    ):
        self.process = process
        self.on_error = on_error
        self.name = name
        self.dropped = 0
        self.processed = 0
        self.failed = 0
        self._pending: Any = _EMPTY
        self._busy = False
        self._running = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        with self._cond:
            if self._running:
                return
            self._running = True
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def submit(self, item: Any) -> bool:
        """Hand over ``item``; False when it replaced one still waiting (or the worker is stopped)."""
        with self._cond:
            if not self._running:
                self.dropped += 1
                return False
            replaced = self._pending is not _EMPTY
            if replaced:
                self.dropped += 1
            self._pending = item
            self._cond.notify_all()
        return not replaced

    def stop(self, timeout: float = 2.0) -> bool:
        """Stop after the item in progress (a waiting one is dropped); True if the thread ended."""
        with self._cond:
            self._running = False
            if self._pending is not _EMPTY:
                self._pending = _EMPTY
                self.dropped += 1
            self._cond.notify_all()
        thread = self._thread
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until nothing is pending or in progress; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._pending is _EMPTY and not self._busy, timeout)

    @property
    def running(self) -> bool:
        return self._running

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending is not _EMPTY or not self._running)
                if not self._running:
                    self._cond.notify_all()
                    return
                item, self._pending = self._pending, _EMPTY
                self._busy = True
            try:
                self.process(item)
            except Exception as exc:  # noqa: BLE001 - one bad item must not end the worker
                with self._cond:
                    self.failed += 1
                if self.on_error is not None:
                    try:
                        self.on_error(exc)
                    except Exception:  # noqa: BLE001, S110 - a failing reporter must not end it either
                        pass
            else:
                with self._cond:
                    self.processed += 1
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()


# --------------------------------------------------------------------------------------------
# Statistics and diagnostics


class LatencyStats:
    """Rolling frame rate and latency percentiles.

    Latencies are kept per named series (the last ``window`` samples each; ``record(x)`` feeds
    the ``latency`` series, ``record(x, "stamp_latency")`` another); the frame rate counts
    :meth:`frame` calls over the last ``fps_window_s`` seconds, so it falls to 0 when the
    stream stops. Thread-safe.
    """

    def __init__(self, window: int = 300, fps_window_s: float = 5.0, clock: Callable[[], float] = time.monotonic):
        self.window = window
        self.fps_window_s = fps_window_s
        self.clock = clock
        self.frames = 0
        self._series: dict[str, deque[float]] = {"latency": deque(maxlen=window)}
        self._times: deque[float] = deque()
        self._first: float | None = None
        self._lock = threading.Lock()

    def record(self, latency_s: float, series: str = "latency") -> None:
        with self._lock:
            self._series.setdefault(series, deque(maxlen=self.window)).append(float(latency_s))

    def frame(self) -> None:
        now = self.clock()
        with self._lock:
            self.frames += 1
            self._first = now if self._first is None else self._first
            self._times.append(now)
            self._prune(now)

    def _prune(self, now: float) -> None:
        while self._times and self._times[0] < now - self.fps_window_s:
            self._times.popleft()

    def fps(self) -> float:
        now = self.clock()
        with self._lock:
            self._prune(now)
            if self._first is None:
                return 0.0
            # Until a full window has passed, divide by the time since the first frame.
            span = min(self.fps_window_s, now - self._first)
            return len(self._times) / span if span > 0 else 0.0

    def snapshot(self) -> dict[str, float | int]:
        """``fps``, ``frames`` and ``{series}_p50_ms`` / ``{series}_p95_ms`` per series (NaN when empty)."""
        out: dict[str, float | int] = {"fps": round(self.fps(), 2), "frames": self.frames}
        with self._lock:
            series = {name: np.array(values) for name, values in self._series.items()}
        for name, values in series.items():
            p50, p95 = np.percentile(values, (50, 95)) * 1000 if values.size else (float("nan"), float("nan"))
            out[f"{name}_p50_ms"] = round(float(p50), 3)
            out[f"{name}_p95_ms"] = round(float(p95), 3)
        return out


class DiagnosticsPublisher:
    """Publish one ``DiagnosticStatus`` on ``/diagnostics`` every ``period_s``.

    ``values()`` gives the key/values shown (any type, sent as strings). The level is WARN when
    the counters ``dropped`` or ``failed`` among them grew since the last report, else OK; the
    message says why.
    """

    WATCHED = ("dropped", "failed")

    def __init__(
        self,
        node: Node,
        name: str,
        hardware_id: str,
        period_s: float = 1.0,
        values: Callable[[], dict[str, Any]] | None = None,
    ):
        self.node = node
        self.name = name
        self.hardware_id = hardware_id
        self.values = values or dict
        self._previous: dict[str, int] = {}
        # diagnostic_updater's QoS: reliable, depth 10, so aggregators see every report.
        self.publisher = node.create_publisher(DiagnosticArray, "/diagnostics", QoSProfile(depth=10))
        self.timer = node.create_timer(period_s, self.publish)

    def status(self) -> DiagnosticStatus:
        values = self.values()
        grown = []
        for key in self.WATCHED:
            if key in values:
                now = int(values[key])
                delta = now - self._previous.get(key, 0)
                self._previous[key] = now
                if delta > 0:
                    grown.append(f"{delta} {key}")
        level = DiagnosticStatus.WARN if grown else DiagnosticStatus.OK
        message = ("in the last period: " + ", ".join(grown)) if grown else "ok"
        return DiagnosticStatus(
            level=level,
            name=self.name,
            message=message,
            hardware_id=self.hardware_id,
            values=[KeyValue(key=str(k), value=str(v)) for k, v in values.items()],
        )

    def publish(self) -> None:
        msg = DiagnosticArray(status=[self.status()])
        msg.header.stamp = self.node.get_clock().now().to_msg()
        self.publisher.publish(msg)


# --------------------------------------------------------------------------------------------
# main()


class StartupError(Exception):
    """A node cannot start; the message is shown as-is, in one line, by :func:`run_node`."""


def request_shutdown(node: Node | None = None) -> None:
    """End :func:`run_node`'s spin from inside the node (a callback, a timer, another thread):
    shuts down the node's rclpy context, so the process exits with code 0 as on Ctrl-C."""
    context = node.context if node is not None else rclpy.get_default_context()
    context.try_shutdown()


def _program_name() -> str:
    return Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "node"


def run_node(node_factory: Callable[[], Node], args: list[str] | None = None, *, name: str | None = None) -> int:
    """The ``main()`` body of every node; returns the exit code.

    Start-up errors (bad parameter, missing checkpoint, ...) print one line
    ``NAME: problem`` to stderr and return 1, without a traceback: they are the user's to fix,
    not a bug. Ctrl-C, SIGTERM (``ros2 launch``, ``docker stop``, systemd) and an external
    ``rclpy.shutdown`` end the node quietly with 0.
    """
    name = name or _program_name()
    try:
        # ALL: rclpy's own SIGINT and SIGTERM handlers shut the context down, which wakes the
        # executor and makes spin() return; no Python handler is needed (one would replace
        # rclpy's and only run once the executor's wait ends).
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.ALL)
    except Exception as exc:  # noqa: BLE001 - bad --ros-args and the like
        print(f"{name}: cannot initialise ROS: {exc}", file=sys.stderr)
        return 1
    node: Node | None = None
    executor: SingleThreadedExecutor | None = None
    try:
        try:
            node = node_factory()
        except (KeyboardInterrupt, ExternalShutdownException):
            return 0
        except Exception as exc:  # noqa: BLE001 - reported in one line, see below
            # A half-built node may sit in reference cycles: collect it while the context lives.
            gc.collect()
            if not rclpy.ok():
                return 0  # stopped (Ctrl-C, SIGTERM) while starting
            # One line: the first of the message (torch and others append paragraphs of advice).
            text = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
            if not isinstance(exc, StartupError | ValueError | OSError | ParameterException):
                text = f"start-up failed: {type(exc).__name__}: {text}"
            print(f"{name}: {text}", file=sys.stderr)
            return 1
        # One thread: inference runs on the image nodes' own worker threads, and the sim
        # robot's callbacks share one mutually exclusive group anyway. rclpy's
        # MultiThreadedExecutor runs its wait loop in Python on a pool of threads that compete
        # for the GIL with the worker's torch calls (ros2/rclpy#1223, #1452): in `goggles bench
        # pipeline` it doubled the translator node's time per frame.
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        try:
            executor.spin()
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        except Exception:
            # A signal that shuts the context down while spin() builds its next wait set makes
            # rclpy raise RCLError ("the given context is not valid"): a stop, not a failure.
            if rclpy.ok():
                raise
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        if executor is not None:
            executor.shutdown(timeout_sec=1.0)
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()


__all__ = [
    "DiagnosticsPublisher",
    "LatencyStats",
    "LatestFrameWorker",
    "RateLimitedLog",
    "StartupError",
    "declare",
    "image_qos",
    "request_shutdown",
    "run_node",
]
