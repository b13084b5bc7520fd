"""What ``goggles record`` and ``goggles replay`` share: topic names, message classes by type
name, QoS in rosbags' terms, signals that set a flag, and an rclpy context of their own."""

from __future__ import annotations

import importlib
import signal
from collections.abc import Callable
from types import FrameType
from typing import Any, TypeVar

import rclpy
from rclpy.context import Context
from rclpy.exceptions import InvalidTopicNameException
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile
from rclpy.signals import SignalHandlerOptions
from rclpy.validate_full_topic_name import validate_full_topic_name

from sim2real_goggles.data.bag_writer import normalize_type

NodeT = TypeVar("NodeT", bound=Node)


def full_topic_name(topic: str) -> str:
    """``camera/image_raw`` -> ``/camera/image_raw`` (the tools run in the root namespace);
    ValueError naming the topic if it is not a valid ROS 2 topic name."""
    name = topic.strip()
    name = name if name.startswith("/") else "/" + name
    try:
        validate_full_topic_name(name)
    except InvalidTopicNameException as exc:
        raise ValueError(f"{topic!r} is not a valid ROS 2 topic name: {exc}") from None
    return name


def import_message_class(msgtype: str) -> type:
    """The rclpy message class of ``pkg/msg/Name`` (``sensor_msgs.msg.Image``); ValueError naming
    the type when its Python package is not installed or does not define it."""
    parts = normalize_type(msgtype).split("/")
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"{msgtype!r} is not a ROS 2 message type (pkg/msg/Name)")
    package, kind, name = parts
    try:
        module = importlib.import_module(f"{package}.{kind}")
    except ImportError as exc:
        raise ValueError(
            f"message type {msgtype} cannot be imported: {exc} (is the ROS 2 message package {package} "
            "installed for this Python?)"
        ) from None
    cls = getattr(module, name, None)
    if not isinstance(cls, type):
        raise ValueError(f"message type {msgtype}: {package}.{kind} has no message {name}")
    return cls


def rosbags_qos(profile: QoSProfile) -> Any:
    """An rclpy QoS profile as ``rosbags``' ``Qos`` (the offered_qos_profiles of a bag topic).
    The enum values are rmw's in both; infinite durations stay rmw's infinite (9223372036 s
    854775807 ns), as rosbag2 writes them in version 8 metadata."""
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    def duration(d: Any) -> Any:
        sec, nsec = divmod(int(d.nanoseconds), 1_000_000_000)
        return QosTime(sec=sec, nsec=nsec)

    return Qos(
        history=QosHistory(int(profile.history)),
        depth=int(profile.depth),
        reliability=QosReliability(int(profile.reliability)),
        durability=QosDurability(int(profile.durability)),
        deadline=duration(profile.deadline),
        lifespan=duration(profile.lifespan),
        liveliness=QosLiveliness(int(profile.liveliness)),
        liveliness_lease_duration=duration(profile.liveliness_lease_duration),
        avoid_ros_namespace_conventions=bool(profile.avoid_ros_namespace_conventions),
    )


class StopRequest:
    """SIGINT / SIGTERM set :attr:`requested` instead of raising.

    The recorder and the player poll the flag between short waits. A Python handler that only
    sets a flag can never interrupt a half-written message or the closing of the bag, which
    rclpy's own handlers (a KeyboardInterrupt raised wherever the main thread happens to be) can.
    Used as a context manager, it restores the previous handlers on exit.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        self.signal = self.signal or signum

    def __enter__(self) -> StopRequest:
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


def start_rclpy(make_node: Callable[[Context], NodeT]) -> tuple[Context, NodeT, SingleThreadedExecutor]:
    """A context of its own without rclpy's signal handlers (see :class:`StopRequest`), the node
    ``make_node(context)`` in it and an executor for that node; undo with :func:`stop_rclpy`."""
    context = Context()
    rclpy.init(args=[], context=context, signal_handler_options=SignalHandlerOptions.NO)
    try:
        node = make_node(context)
    except BaseException:
        context.try_shutdown()
        raise
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    return context, node, executor


def stop_rclpy(context: Context, node: Node | None, executor: SingleThreadedExecutor | None) -> None:
    if executor is not None:
        executor.shutdown(timeout_sec=1.0)
    if node is not None:
        node.destroy_node()
    context.try_shutdown()


__all__ = ["StopRequest", "full_topic_name", "import_message_class", "rosbags_qos", "start_rclpy", "stop_rclpy"]
