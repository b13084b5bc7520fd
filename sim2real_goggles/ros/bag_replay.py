"""``goggles replay``: publish a rosbag2 bag's messages over ROS 2 with their original timing, as
``ros2 bag play`` does, without a ROS install (``rosbags`` reads, pip rclpy publishes).

    goggles replay runs/lab_bag
    goggles replay runs/lab_bag --rate 2 --loop --topics /camera/image_raw --remap /camera/image_raw:=/image

The bag is a folder with ``metadata.yaml`` or a single ``.mcap`` / ``.db3`` file, written by
``ros2 bag record``, by ``rosbags`` or by ``goggles record``. Messages are published as the bag
stores them (serialised CDR bytes, so subscribers get byte-identical messages; Fast DDS pads a
payload with zeros to a multiple of 4 bytes on the way, as it does for every publisher) at
``first publish time + (log time - first log time) / rate``; a message that is late (slow disk,
busy CPU) goes out at once, later ones keep their schedule. One publisher per topic, of the
message class imported from the type's Python package (``sensor_msgs.msg.Image``); its
reliability is ``--qos`` (reliable by default, which both reliable and best-effort subscribers
accept), its durability transient local when every publisher recorded in the bag offered it
(latched topics such as ``/tf_static``), else volatile.

Before the first message the player waits up to ``--delay`` seconds for every topic to have a
subscriber (discovery takes a moment; a message published before that is lost for a volatile
subscriber), starting early once they all have one. At the end it waits (up to 5 s) until
reliable subscribers acknowledged every message. ``--loop`` starts again until Ctrl-C; Ctrl-C
and SIGTERM end playback with exit code 0.

A missing or damaged bag, a ``--topics`` entry the bag does not have (the error lists its
topics), a bad ``--remap`` or a message type whose Python package is not installed raise a
ValueError naming the file, topic or type.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.publisher import Publisher
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from sim2real_goggles.data.bags import BagError, open_reader
from sim2real_goggles.ros.bag_common import (
    StopRequest,
    full_topic_name,
    import_message_class,
    start_rclpy,
    stop_rclpy,
)

QUEUE_DEPTH = 100
"""History depth of the replay publishers (reliable: messages kept until acknowledged)."""

ACK_TIMEOUT_S = 5.0
"""How long the player waits at the end for reliable subscribers to acknowledge everything."""

SLEEP_S = 0.05
"""Longest single sleep, so that a stop is noticed quickly."""


@dataclass
class ReplayTopic:
    """One topic of the bag being played."""

    topic: str
    """Name in the bag."""
    publish_as: str
    """Name it is published on (after --remap)."""
    msgtype: str
    msg_class: type
    connections: list[Any]
    count: int
    latched: bool
    """Every publisher recorded in the bag offered transient local durability."""


def parse_remaps(rules: list[str]) -> dict[str, str]:
    """``["/a:=/b", ...]`` -> {"/a": "/b"}; ValueError naming a malformed rule."""
    remaps: dict[str, str] = {}
    for rule in rules:
        src, sep, dst = rule.partition(":=")
        if not sep or not src.strip() or not dst.strip():
            raise ValueError(f"--remap {rule!r}: expected FROM:=TO, e.g. /camera/image_raw:=/image")
        remaps[full_topic_name(src)] = full_topic_name(dst)
    return remaps


def _latched(connections: list[Any]) -> bool:
    from rosbags.interfaces import QosDurability

    offered = [q for c in connections for q in getattr(c.ext, "offered_qos_profiles", None) or ()]
    return bool(offered) and all(q.durability == QosDurability.TRANSIENT_LOCAL for q in offered)


def plan_topics(path: Path, reader: Any, topics: list[str] | None, remap: list[str]) -> list[ReplayTopic]:
    """The bag's topics to play (all, or ``topics``), with their remapped names and imported
    message classes. ValueError naming the file and the topic, rule or type at fault."""
    by_topic: dict[str, list[Any]] = {}
    for connection in reader.connections:
        by_topic.setdefault(connection.topic, []).append(connection)
    listing = ", ".join(f"{t} ({conns[0].msgtype})" for t, conns in sorted(by_topic.items())) or "none"
    if topics:
        wanted = list(dict.fromkeys(full_topic_name(t) for t in topics))
        unknown = [t for t in wanted if t not in by_topic]
        if unknown:
            raise BagError(f"{path}: no topic {', '.join(unknown)} in this bag; its topics: {listing}")
    else:
        wanted = sorted(by_topic)
    if not wanted:
        raise BagError(f"{path}: the bag has no topics")
    remaps = parse_remaps(remap)
    stray = [src for src in remaps if src not in wanted]
    if stray:
        raise ValueError(
            f"--remap {', '.join(stray)}: not a topic being replayed from {path} (topics: {', '.join(wanted)})"
        )
    plans = []
    for topic in wanted:
        connections = by_topic[topic]
        types = sorted({c.msgtype for c in connections})
        if len(types) != 1:
            raise BagError(f"{path}: topic {topic} holds several message types ({', '.join(types)})")
        # A ROS 1 bag's connections have no serialization_format: their bytes are not CDR.
        formats = {getattr(c.ext, "serialization_format", "ros1") for c in connections}
        if formats - {"cdr"}:
            raise BagError(
                f"{path}: topic {topic} is stored as {', '.join(sorted(formats))}, not cdr; cannot publish it (convert a ROS 1 bag with rosbags-convert)"
            )
        try:
            msg_class = import_message_class(types[0])
        except ValueError as exc:
            raise ValueError(f"{path}: topic {topic}: {exc}") from None
        plans.append(
            ReplayTopic(
                topic=topic,
                publish_as=remaps.get(topic, topic),
                msgtype=types[0],
                msg_class=msg_class,
                connections=connections,
                count=sum(c.msgcount for c in connections),
                latched=_latched(connections),
            )
        )
    targets = [p.publish_as for p in plans]
    clashes = sorted({t for t in targets if targets.count(t) > 1})
    if clashes:
        raise ValueError(f"--remap: several topics would be published as {', '.join(clashes)}")
    return plans


def publisher_qos(reliability: str, latched: bool) -> QoSProfile:
    if reliability not in ("reliable", "best_effort"):
        raise ValueError(f"unknown --qos {reliability!r}: choose reliable or best_effort")
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=QUEUE_DEPTH,
        reliability=ReliabilityPolicy.RELIABLE if reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE,
    )


class BagPlayer(Node):
    """Publishers for the topics being replayed."""

    def __init__(self, context: Any = None) -> None:
        super().__init__("goggles_replay", context=context)
        self.publishers_by_topic: dict[str, Publisher] = {}
        self.published = 0

    def advertise(self, plans: list[ReplayTopic], reliability: str) -> None:
        for plan in plans:
            self.publishers_by_topic[plan.topic] = self.create_publisher(
                plan.msg_class, plan.publish_as, publisher_qos(reliability, plan.latched)
            )

    def all_subscribed(self) -> bool:
        return all(p.get_subscription_count() > 0 for p in self.publishers_by_topic.values())

    def publish(self, topic: str, data: bytes) -> None:
        self.publishers_by_topic[topic].publish(data)
        self.published += 1

    def wait_acked(self, timeout_s: float) -> bool:
        """Wait until reliable subscribers have every message; True if they all have."""
        deadline = time.monotonic() + timeout_s
        ok = True
        for pub in self.publishers_by_topic.values():
            left = max(0.0, deadline - time.monotonic())
            ok = pub.wait_for_all_acked(Duration(nanoseconds=int(left * 1e9))) and ok
        return ok


def _messages(path: Path, reader: Any, connections: list[Any]) -> Iterator[tuple[str, int, bytes]]:
    """(topic, log time ns, CDR bytes) in log-time order; BagError naming the file if it breaks
    part way (a truncated or damaged storage file)."""
    iterator = reader.messages(connections=connections)
    while True:
        try:
            connection, timestamp, data = next(iterator)
        except StopIteration:
            return
        except Exception as exc:  # noqa: BLE001 - rosbags raises several types for damaged files
            raise BagError(f"{path}: damaged, reading stopped: {exc}") from exc
        yield connection.topic, timestamp, bytes(data)


def _sleep_until(target: float, stop: StopRequest) -> bool:
    """Sleep until monotonic time ``target``; False if a stop was requested first."""
    while not stop.requested:
        left = target - time.monotonic()
        if left <= 0:
            return True
        time.sleep(min(left, SLEEP_S))
    return False


def play_once(
    path: Path, reader: Any, player: BagPlayer, plans: list[ReplayTopic], rate: float, stop: StopRequest
) -> bool:
    """One pass over the bag; False if it was stopped part way."""
    connections = [c for p in plans for c in p.connections]
    start = time.monotonic()
    first: int | None = None
    for topic, timestamp, data in _messages(path, reader, connections):
        if first is None:
            first = timestamp
        if not _sleep_until(start + (timestamp - first) / 1e9 / rate, stop):
            return False
        player.publish(topic, data)
    return not stop.requested


def replay_main(args: argparse.Namespace) -> int:
    """``goggles replay``: see the module docstring. Returns the exit code."""
    if not args.rate > 0:
        raise ValueError(f"--rate must be positive, got {args.rate:g}")
    if args.delay < 0:
        raise ValueError(f"--delay must not be negative, got {args.delay:g}")
    path = Path(args.bag)
    if not path.exists():
        raise BagError(f"{path}: no such bag (a folder with metadata.yaml, or a .mcap / .db3 file)")
    reader = open_reader(path)
    try:
        plans = plan_topics(path, reader, args.topics, args.remap)
        total = sum(p.count for p in plans)
        if total == 0:
            print(f"{path}: no messages on {', '.join(p.topic for p in plans)}; nothing to replay")
            return 0
        with StopRequest() as stop:
            context, player, executor = start_rclpy(BagPlayer)
            passes = 0
            try:
                player.advertise(plans, args.qos)
                deadline = time.monotonic() + args.delay
                while not stop.requested and time.monotonic() < deadline and not player.all_subscribed():
                    time.sleep(min(SLEEP_S, max(0.0, deadline - time.monotonic())))
                names = ", ".join(p.publish_as for p in plans)
                print(f"replaying {total} messages from {path} on {names} at rate {args.rate:g}", flush=True)
                while not stop.requested:
                    if play_once(path, reader, player, plans, args.rate, stop):
                        passes += 1
                    if not args.loop:
                        break
                if not stop.requested:
                    player.wait_acked(ACK_TIMEOUT_S)
                    if args.qos == "best_effort":
                        time.sleep(0.1)  # no acknowledgements: give the last message time to leave
            finally:
                stop_rclpy(context, player, executor)
            state = "stopped" if stop.requested else "done"
            print(f"{state}: published {player.published} messages ({passes} full passes)", flush=True)
    finally:
        reader.close()
    return 0


__all__ = ["BagPlayer", "ReplayTopic", "parse_remaps", "plan_topics", "play_once", "publisher_qos", "replay_main"]
