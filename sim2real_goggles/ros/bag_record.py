"""``goggles record``: ROS 2 topics into a rosbag2 bag (MCAP or sqlite3), as ``ros2 bag record``
does, without a ROS install (pip rclpy for the subscriptions, ``rosbags`` for the files).

    goggles record runs/lab_bag --topics /camera/image_raw /cmd_vel --duration 30
    goggles record runs/lab_bag --topics /camera/image_raw --format sqlite3 --wait 30

Each topic's type is taken from the ROS graph: the recorder waits up to ``--wait`` seconds for
every topic to have a publisher. If one never appears, or its type cannot be imported or is
unknown to the ROS 2 type store, nothing is recorded and the command fails naming the topic (a
bag silently missing the camera is worse than no bag: fix the list and start again). Messages
are subscribed ``raw``: rclpy hands over the serialised CDR bytes, which are written unchanged,
as they arrive, with the node clock's receive time as the log time, which is what rosbag2 stores.
The bag lists each topic with its type, ``cdr`` serialisation and the publishers' offered QoS,
so ``ros2 bag info`` / ``ros2 bag play`` accept it.

QoS ``auto`` subscribes as ``ros2 bag record`` does: reliable when every publisher is reliable,
else best effort; transient local when every publisher is (so latched messages are recorded).
``reliable`` / ``best_effort`` force the reliability (durability is still matched).

Ctrl-C, SIGTERM or ``--duration`` end the recording: messages already delivered to the recorder
are written, the bag is closed (metadata.yaml written) and a summary (messages per topic, path)
is printed; the exit code is 0.

Signals, rclpy start-up and message-class import are shared with ``goggles replay``
(:mod:`sim2real_goggles.ros.bag_common`).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from rclpy.context import Context
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSPolicyKind, QoSProfile, ReliabilityPolicy
from rclpy.topic_endpoint_info import TopicEndpointInfo

from sim2real_goggles.data.bag_writer import BagWriter, known_type, normalize_type
from sim2real_goggles.data.bags import BagError
from sim2real_goggles.ros.bag_common import (
    StopRequest,
    full_topic_name,
    import_message_class,
    rosbags_qos,
    start_rclpy,
    stop_rclpy,
)

QUEUE_DEPTH = 100
"""History depth of the recording subscriptions: room for bursts while a message is written."""

NodeT = TypeVar("NodeT", bound=Node)

POLL_S = 0.1
"""How often the graph is polled for the topics, and the longest wait before a stop is noticed."""


# --------------------------------------------------------------------------------------------
# Recording


@dataclass
class TopicPlan:
    """What is recorded from one topic, as found in the graph."""

    topic: str
    msgtype: str
    msg_class: type
    qos: QoSProfile
    offered: list[Any] = field(default_factory=list)
    """The publishers' QoS profiles (rosbags ``Qos``), stored in the bag as ros2 bag does."""


def subscription_qos(publishers: list[TopicEndpointInfo], mode: str = "auto") -> QoSProfile:
    """The recording subscription's QoS for ``publishers``: ``mode`` ``auto`` is reliable only if
    every publisher is (a reliable subscription does not match a best-effort publisher), else
    best effort; durability is transient local only if every publisher offers it."""
    offered = [p.qos_profile for p in publishers]
    if mode == "reliable":
        reliability = ReliabilityPolicy.RELIABLE
    elif mode == "best_effort":
        reliability = ReliabilityPolicy.BEST_EFFORT
    elif mode == "auto":
        all_reliable = bool(offered) and all(q.reliability == ReliabilityPolicy.RELIABLE for q in offered)
        reliability = ReliabilityPolicy.RELIABLE if all_reliable else ReliabilityPolicy.BEST_EFFORT
    else:
        raise ValueError(f"unknown QoS mode {mode!r}: choose auto, reliable or best_effort")
    all_latched = bool(offered) and all(q.durability == DurabilityPolicy.TRANSIENT_LOCAL for q in offered)
    durability = DurabilityPolicy.TRANSIENT_LOCAL if all_latched else DurabilityPolicy.VOLATILE
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=QUEUE_DEPTH, reliability=reliability, durability=durability
    )


class BagRecorder(Node):
    """Subscribes (raw) to topics and writes every message to a :class:`BagWriter` as it
    arrives. Runs in the context given; the caller spins it (see :func:`record_main`)."""

    def __init__(self, context: Context | None = None) -> None:
        super().__init__("goggles_record", context=context)
        self.writer: BagWriter | None = None
        self.counts: dict[str, int] = {}
        self.failure: BaseException | None = None
        self._subscriptions: list[Any] = []

    def find_topics(self, topics: list[str], wait_s: float, qos_mode: str, stop: StopRequest) -> list[TopicPlan] | None:
        """Wait up to ``wait_s`` for every topic to have a publisher; their plans (None when a
        stop was requested first). ValueError naming the topics that never appeared, or whose
        type cannot be recorded."""
        deadline = time.monotonic() + wait_s
        while True:
            found = {t: self.get_publishers_info_by_topic(t) for t in topics}
            missing = [t for t, pubs in found.items() if not pubs]
            if not missing or time.monotonic() >= deadline:
                break
            if stop.requested:
                return None
            time.sleep(POLL_S)
        if missing:
            raise ValueError(
                f"no publisher of {', '.join(missing)} appeared within {wait_s:g} s (--wait); nothing recorded"
            )
        plans = []
        for topic, publishers in found.items():
            types = sorted({p.topic_type for p in publishers})
            if len(types) != 1:
                raise ValueError(
                    f"topic {topic} is published with several types ({', '.join(types)}); cannot record it"
                )
            msgtype = normalize_type(types[0])
            try:
                msg_class = import_message_class(msgtype)
            except ValueError as exc:
                raise ValueError(f"topic {topic}: {exc}") from None
            if not known_type(msgtype):
                raise ValueError(f"topic {topic}: message type {msgtype} is not known to the ROS 2 type store")
            plans.append(
                TopicPlan(
                    topic=topic,
                    msgtype=msgtype,
                    msg_class=msg_class,
                    qos=subscription_qos(publishers, qos_mode),
                    offered=[rosbags_qos(p.qos_profile) for p in publishers],
                )
            )
        return plans

    def start(self, writer: BagWriter, plans: list[TopicPlan]) -> None:
        """Add the topics to ``writer`` and subscribe to them."""
        self.writer = writer
        for plan in plans:
            writer.add_topic(plan.topic, plan.msgtype, qos_profiles=plan.offered)
            self.counts[plan.topic] = 0
        for plan in plans:
            events = SubscriptionEventCallbacks(incompatible_qos=self._incompatible(plan.topic))
            self._subscriptions.append(
                self.create_subscription(
                    plan.msg_class, plan.topic, self._writer_for(plan.topic), plan.qos, raw=True, event_callbacks=events
                )
            )

    def _writer_for(self, topic: str) -> Callable[[bytes], None]:
        def on_message(data: bytes) -> None:
            if self.failure is not None or self.writer is None:
                return
            received_ns = self.get_clock().now().nanoseconds
            try:
                self.writer.write_raw(topic, received_ns, data)
            except Exception as exc:  # noqa: BLE001 - disk full and the like: stop, keep what was written
                self.failure = exc
                return
            self.counts[topic] += 1

        return on_message

    def _incompatible(self, topic: str) -> Callable[[Any], None]:
        def on_incompatible(event: Any) -> None:
            try:
                policy = QoSPolicyKind(event.last_policy_kind).name.lower()
            except ValueError:
                policy = str(event.last_policy_kind)
            hint = " (try --qos best_effort)" if policy == "reliability" else " (restart the recording to match it)"
            self.get_logger().warning(
                f"{topic}: a publisher offers a QoS this recording cannot match ({policy}); its messages are "
                f"not recorded{hint}"
            )

        return on_incompatible

    @property
    def received(self) -> int:
        return sum(self.counts.values())

    def stop(self) -> None:
        for sub in self._subscriptions:
            self.destroy_subscription(sub)
        self._subscriptions.clear()


def _drain(executor: SingleThreadedExecutor, recorder: BagRecorder, limit_s: float = 1.0) -> None:
    """Write the messages already delivered to the recorder but not yet taken (so a stop loses
    nothing that reached it): spin without waiting until nothing more is ready (or ``limit_s``
    passes, should a fast stream keep it busy)."""
    deadline = time.monotonic() + limit_s
    quiet = 0
    while quiet < 3 and time.monotonic() < deadline and recorder.failure is None:
        before = recorder.received
        executor.spin_once(timeout_sec=0.0)
        quiet = quiet + 1 if recorder.received == before else 0


def format_summary(path: Path, storage: str, counts: dict[str, int], types: dict[str, str], seconds: float) -> str:
    total = sum(counts.values())
    lines = [f"recorded {total} messages in {seconds:.1f} s to {path} ({storage})"]
    width = max((len(t) for t in counts), default=0)
    for topic, n in counts.items():
        lines.append(f"  {topic:<{width}}  {types[topic]}  {n}")
    return "\n".join(lines)


def record_main(args: argparse.Namespace) -> int:
    """``goggles record``: see the module docstring. Returns the exit code; errors the user can
    fix (topic never published, bag exists, ...) raise ValueError naming the topic or path."""
    out = Path(args.out)
    if out.exists():
        raise BagError(f"{out}: exists already; a bag is written to a new folder")
    if args.duration is not None and args.duration <= 0:
        raise ValueError(f"--duration must be positive, got {args.duration:g}")
    if args.wait < 0:
        raise ValueError(f"--wait must not be negative, got {args.wait:g}")
    topics = list(dict.fromkeys(full_topic_name(t) for t in args.topics))

    with StopRequest() as stop:
        context, recorder, executor = start_rclpy(BagRecorder)
        writer: BagWriter | None = None
        started = time.monotonic()
        try:
            plans = recorder.find_topics(topics, args.wait, args.qos, stop)
            if plans is None:
                print("goggles record: stopped while waiting for the topics; no bag written", file=sys.stderr)
                return 0
            writer = BagWriter(out, storage=args.format)
            recorder.start(writer, plans)
            until = f"for {args.duration:g} s" if args.duration else "until Ctrl-C"
            what = f"{len(plans)} topic{'s' if len(plans) != 1 else ''}"
            print(f"recording {what} to {out} ({args.format}) {until}", flush=True)
            started = time.monotonic()
            end = started + args.duration if args.duration else float("inf")
            while not stop.requested and recorder.failure is None and context.ok():
                now = time.monotonic()
                if now >= end:
                    break
                executor.spin_once(timeout_sec=min(POLL_S, end - now))
            _drain(executor, recorder)
            recorder.stop()
        finally:
            # Reached on errors too: whatever was written is kept in a readable bag.
            if writer is not None:
                writer.close()
            stop_rclpy(context, recorder, executor)
    if recorder.failure is not None:
        raise BagError(f"{out}: writing failed, recording stopped: {recorder.failure}")
    types = {p.topic: p.msgtype for p in plans}
    print(format_summary(out, args.format, dict(recorder.counts), types, time.monotonic() - started), flush=True)
    return 0


__all__ = ["BagRecorder", "TopicPlan", "format_summary", "record_main", "subscription_qos"]
