"""``policy_node``: camera image in, clamped velocity command out, with a watchdog.

Subscribes ``image`` (sensor_msgs/Image: the goggles' output, or the camera itself for the
no-goggles baseline), runs the image policy (:class:`~sim2real_goggles.policy.ImagePolicy`) on
the newest frame, maps its discrete action to (v, ω) exactly as the simulator does (forward:
``forward_speed``; turn: ±``turn_rate``), clamps to ``max_linear``/``max_angular`` and publishes
``cmd_vel`` (geometry_msgs/Twist) and ``cmd_vel_stamped`` (geometry_msgs/TwistStamped carrying
the image's header, so the delay from camera to command can be measured downstream).

Safety: when no fresh image has arrived for ``timeout`` seconds (camera or translator died, a
cable came loose) the node publishes a zero Twist and logs once; it drives again when images
return. The ``enable`` service (std_srvs/SetBool) stops the robot (zero Twist) and ignores
images until enabled again. Non-finite commands are never published.

A new episode (a ``start`` event on ``episode_event``, std_msgs/String: the sim robot's JSON
events, or the plain word ``start`` from any driver) and every stop make the policy forget its
stacked frames and memory before its next action, as it did in training.
"""

from __future__ import annotations

import json
import math
import sys
import threading
import time
from typing import Any

from geometry_msgs.msg import Twist, TwistStamped
from std_msgs.msg import String
from std_srvs.srv import SetBool

from sim2real_goggles.inference import set_cpu_threads
from sim2real_goggles.models.checkpoint import CheckpointError
from sim2real_goggles.models.networks import PolicyNet
from sim2real_goggles.ros.common import declare, run_node
from sim2real_goggles.ros.image_node import DEVICES, Frame, ImageNode, checkpoint_error, guard_finite


def clamp_twist(v: float, w: float, max_linear: float, max_angular: float) -> tuple[float, float]:
    """(v, ω) within the limits; anything non-finite becomes a stop."""
    if not (math.isfinite(v) and math.isfinite(w)):
        return 0.0, 0.0
    return max(-max_linear, min(max_linear, v)), max(-max_angular, min(max_angular, w))


def action_to_twist(action: int, forward_speed: float, turn_rate: float) -> tuple[float, float]:
    """The env's discrete action as (v, ω): 0 forward, 1 turn left, 2 turn right."""
    if action == 0:
        return forward_speed, 0.0
    if action == 1:
        return 0.0, turn_rate
    if action == 2:
        return 0.0, -turn_rate
    raise ValueError(f"unknown action {action}")


class PolicyNode(ImageNode):
    """``image`` -> ``cmd_vel`` through an image-policy checkpoint, with a watchdog."""

    def __init__(self, **kwargs: Any):
        self._lock = threading.Lock()
        self._last_image = time.monotonic()  # the watchdog counts from start-up
        self._stopped = False  # a stop was published and no command since
        self._new_episode = False  # forget frames and memory before the next action
        super().__init__("policy_node", **kwargs)

    def setup(self) -> None:
        from sim2real_goggles.policy import ImagePolicy

        spec = declare(
            self, "policy", "pretrained:policy", "policy checkpoint: a path or pretrained:NAME", read_only=True
        )
        device = declare(self, "device", "auto", "inference device", read_only=True, choices=DEVICES)
        self.max_linear = declare(self, "max_linear", 0.5, "clamp of |v| (m/s)", range=(0.0, 10.0))
        self.max_angular = declare(self, "max_angular", 1.5, "clamp of |ω| (rad/s)", range=(0.0, 20.0))
        self.timeout = declare(
            self, "timeout", 0.5, "watchdog: stop when no valid image arrived for this long (s)", range=(0.01, 60.0)
        )
        self.forward_speed = declare(self, "forward_speed", 0.4, "v of the forward action (m/s)", range=(0.0, 10.0))
        self.turn_rate = declare(self, "turn_rate", math.pi / 3, "|ω| of the turn actions (rad/s)", range=(0.0, 20.0))
        sample = declare(
            self, "sample", True, "draw actions from the policy's distribution (else the most likely)", read_only=True
        )
        seed = declare(self, "seed", 0, "seed of the action sampler", read_only=True)
        self.enabled = declare(self, "enabled", True, "drive at start-up (else wait for the enable service)")
        # One thread: the policy nets are small, and beside a translator on the same cores a
        # second thread of each node only spins (goggles bench pipeline on 2 cores: p95 35 ms
        # with one thread per node, 41-64 ms with PyTorch's default of one per core)
        threads = declare(
            self, "threads", 1, "CPU threads for inference; 0 keeps PyTorch's default", read_only=True, range=(0, 256)
        )
        try:
            self.policy = ImagePolicy.load(spec, device=device, sample=sample, seed=seed)
        except (CheckpointError, ValueError) as exc:
            raise checkpoint_error(spec, exc) from None
        # the action heads' logits, which reactive and recurrent policies (and each member of an
        # ensemble) alike compute last
        for net in self.policy.model.modules():
            if isinstance(net, PolicyNet):
                guard_finite(net.action_head, "policy output")
        set_cpu_threads(threads, self.policy.device)
        self.cmd_pub = self.create_publisher(Twist, "cmd_vel", 10)
        self.stamped_pub = self.create_publisher(TwistStamped, "cmd_vel_stamped", 10)
        self.create_service(SetBool, "enable", self._on_enable)
        self.create_subscription(String, "episode_event", self._on_episode_event, 10)
        self.create_timer(min(0.05, self.timeout / 4), self._watchdog)
        self.start(hardware_id=str(self.policy.device))
        self.get_logger().info(
            f"policy {spec} on {self.policy.device}; limits |v|<={self.max_linear} |w|<={self.max_angular}; "
            f"watchdog {self.timeout}s; {'enabled' if self.enabled else 'disabled until enable'}"
        )

    # ------------------------------------------------------------------ frames
    def accept(self, frame: Frame) -> bool:
        with self._lock:
            self._last_image = time.monotonic()
            return self.enabled

    def process(self, frame: Frame) -> None:
        with self._lock:
            forget, self._new_episode = self._new_episode, False
        if forget:
            self.policy.reset()
        action = self.policy.act(frame.rgb)
        v, w = clamp_twist(
            *action_to_twist(action, self.forward_speed, self.turn_rate), self.max_linear, self.max_angular
        )
        with self._lock:
            if not self.enabled or time.monotonic() - self._last_image > self.timeout:
                return  # disabled or gone stale while we computed: the stop stands
            self._publish(v, w, frame.header)
            self._stopped = False

    def _publish(self, v: float, w: float, header: Any | None = None) -> None:
        twist = Twist()
        twist.linear.x, twist.angular.z = float(v), float(w)
        stamped = TwistStamped()
        if header is not None:
            stamped.header = header
        else:
            stamped.header.stamp = self.get_clock().now().to_msg()
        stamped.twist = twist
        self.publish(self.cmd_pub, twist)
        self.publish(self.stamped_pub, stamped)

    def _stop(self, reason: str) -> None:
        """Publish a zero Twist once per stop and say why (caller holds the lock)."""
        if not self._stopped:
            self._publish(0.0, 0.0)
            self._stopped = True
            self._new_episode = True
            self.get_logger().warning(f"stopping the robot: {reason}")

    def _watchdog(self) -> None:
        with self._lock:
            stale = time.monotonic() - self._last_image
            if self.enabled and stale > self.timeout:
                topic = self.resolve_topic_name("image")
                self._stop(f"no valid image on {topic} for {stale:.2f} s (timeout {self.timeout} s)")

    def _on_episode_event(self, msg: String) -> None:
        text = msg.data.strip()
        try:
            event = json.loads(text).get("event") if text.startswith("{") else text
        except (ValueError, AttributeError):
            self.get_logger().warning(
                f"ignoring an episode_event that is not a JSON object: {text[:80]!r}", throttle_duration_sec=5.0
            )
            return
        if event == "start":
            with self._lock:
                self._new_episode = True

    def _on_enable(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        with self._lock:
            self.enabled = bool(request.data)
            if not self.enabled:
                self._stop("disabled by the enable service")
            else:
                self._stopped = False
                self._last_image = time.monotonic()
        response.success = True
        response.message = "enabled" if request.data else "disabled: robot stopped"
        return response

    def extra_diagnostics(self) -> dict[str, Any]:
        return {"device": str(self.policy.device), "enabled": self.enabled, "policy": str(self.policy.path)}


def main(args: list[str] | None = None) -> None:
    sys.exit(run_node(PolicyNode, args, name="policy_node"))


if __name__ == "__main__":
    main()
