"""``sim_robot_node``: the PyBullet world as a ROS 2 robot driver.

The robot of ``Goggles/NavToTarget-v0`` driven by ``cmd_vel`` (geometry_msgs/Twist) in real
time, or ``real_time_factor`` times faster. The pose is integrated with the env's own unicycle
model and collision check (:meth:`NavToTargetEnv.move`) up to "now" whenever something happens
(a command arrives, the camera or odometry timer fires), so the motion does not depend on timer
jitter. A command older than ``cmd_timeout`` (sim seconds) is treated as a stop, as a real base
does.

Publishes ``camera/image_raw`` (rgb8, in the chosen ``profile``) with ``camera/camera_info`` at
``camera_rate`` (sim Hz; the policy was trained deciding every 0.25 s, hence 4 Hz), ``odom``
(nav_msgs/Odometry) at ``odom_rate``, optionally ``camera/image_sim`` (the same view in the sim
look through this camera's lens, pixel-aligned) and ``camera/segmentation_gt`` (mono8 class ids), and ``episode_event`` (std_msgs/String,
one JSON object per event: ``start``, ``collision``, ``success``, ``timeout``, ``reset``).
An episode ends on success (within reach of the chair and facing it) or after
``max_episode_time`` sim seconds; the next starts in the room of seed ``seed + episode``.
With ``episodes`` > 0 the node prints a summary after that many episodes and exits (code 0),
which ends a launch. The ``reset`` service (std_srvs/Trigger) abandons the episode and starts
the next.

The summary includes the delay from each camera frame to the first command after it (the
whole camera → goggles → policy chain, as the robot sees it).
"""

from __future__ import annotations

import json
import math
import sys
import threading
import time
from typing import Any

import gymnasium as gym
import numpy as np
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import String
from std_srvs.srv import Trigger

from sim2real_goggles.appearance.imaging import pinhole_matrices
from sim2real_goggles.appearance.profile import load_profile, sim_through_camera
from sim2real_goggles.ros.common import DiagnosticsPublisher, declare, image_qos, request_shutdown, run_node
from sim2real_goggles.ros.image_conversion import mono_to_imgmsg, rgb_to_imgmsg


def camera_info(width: int, height: int, fov_deg: float, header: Any) -> CameraInfo:
    """Pinhole intrinsics of the render camera (vertical field of view ``fov_deg``)."""
    info = CameraInfo()
    info.header = header
    info.width, info.height = width, height
    info.distortion_model = "plumb_bob"
    info.d = [0.0] * 5
    info.k, info.p = pinhole_matrices(width, height, fov_deg)
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    return info


class SimRobotNode(Node):
    def __init__(self) -> None:
        super().__init__("sim_robot_node")
        self.profile = declare(self, "profile", "real_lab", "camera look: a profile name or YAML path", read_only=True)
        self.seed = declare(self, "seed", 0, "room of episode k: env seed seed + k", read_only=True)
        size = declare(self, "image_size", 64, "camera image side (pixels)", read_only=True, range=(8, 1024))
        self.camera_rate = declare(self, "camera_rate", 4.0, "camera frames per sim second", range=(0.1, 200.0))
        self.odom_rate = declare(self, "odom_rate", 20.0, "odometry messages per sim second", range=(0.1, 500.0))
        self.rtf = declare(
            self, "real_time_factor", 1.0, "sim seconds per wall second", read_only=True, range=(0.01, 100.0)
        )
        self.episodes = declare(self, "episodes", 0, "exit after this many episodes (0: run forever)", range=(0, 10**6))
        self.max_episode_time = declare(
            self, "max_episode_time", 100.0, "episode time limit (sim s; the env allows 400 x 0.25 s)", range=(1.0, 1e6)
        )
        publish_sim = declare(self, "publish_sim_image", False, "also publish camera/image_sim (paired sim look)")
        publish_seg = declare(self, "publish_segmentation", False, "also publish camera/segmentation_gt (class ids)")
        self.cmd_timeout = declare(
            self, "cmd_timeout", 0.5, "a command older than this (sim s) counts as a stop", range=(0.0, 60.0)
        )
        self.frame_id = declare(self, "frame_id", "camera", "frame_id of camera messages")

        look = load_profile(self.profile)
        # The sim look through this camera's lens: pixel-aligned with camera/image_raw, so a
        # recording of both is an evaluation bag (goggles eval-bag --reference-topic).
        sim_ref = sim_through_camera(load_profile("sim"), look)
        self.sim_name = sim_ref.name
        self.env = gym.make(
            "Goggles/NavToTarget-v0",
            image_size=size,
            profile=look,
            paired_profiles=[sim_ref] if publish_sim else [],
            info_mask=publish_seg,
        ).unwrapped
        self.fov = self.env.renderer.profile.camera.fov_deg
        group = MutuallyExclusiveCallbackGroup()  # the env is touched by one callback at a time
        qos = image_qos(self)
        self.image_pub = self.create_publisher(Image, "camera/image_raw", qos)
        self.info_pub = self.create_publisher(CameraInfo, "camera/camera_info", qos)
        self.sim_pub = self.create_publisher(Image, "camera/image_sim", qos) if publish_sim else None
        self.seg_pub = self.create_publisher(Image, "camera/segmentation_gt", qos) if publish_seg else None
        self.odom_pub = self.create_publisher(Odometry, "odom", 10)
        self.event_pub = self.create_publisher(String, "episode_event", 10)
        self.create_subscription(Twist, "cmd_vel", self._on_cmd, 10, callback_group=group)
        self.create_service(Trigger, "reset", self._on_reset, callback_group=group)
        self.timers_ = [
            self.create_timer(1.0 / (self.camera_rate * self.rtf), self._on_camera, callback_group=group),
            self.create_timer(1.0 / (self.odom_rate * self.rtf), self._on_odom, callback_group=group),
        ]
        self.diagnostics = DiagnosticsPublisher(self, "sim_robot_node", "pybullet", values=self._diag)

        self.cmd = (0.0, 0.0)
        self.cmd_time = -math.inf  # sim time of the last command
        self.results: list[dict[str, Any]] = []
        self.latencies: list[float] = []
        self._awaiting_cmd: float | None = None  # wall time of the newest frame not yet answered
        self.episode = 0
        self.finished = False
        self._start_episode()
        self.get_logger().info(
            f"sim robot in look {self.profile!r}, seed {self.seed}, camera {size}x{size} at {self.camera_rate} Hz, "
            f"real-time factor {self.rtf}" + (f", {self.episodes} episodes" if self.episodes else "")
        )

    # ------------------------------------------------------------------ time and motion
    def sim_now(self) -> float:
        return (time.monotonic() - self._wall_origin) * self.rtf

    def _advance(self) -> None:
        """Integrate the current command from the last update to now."""
        now = self.sim_now()
        dt = now - self._sim_time
        if dt <= 0:
            return
        v, w = self.cmd
        if now - self.cmd_time > self.cmd_timeout:
            v, w = 0.0, 0.0
        if v != 0.0 or w != 0.0:
            blocked = self.env.move(v, w, dt)
            if blocked and not self._in_contact:
                self._collisions += 1
                self._event("collision")
            self._in_contact = blocked
        self._sim_time = now
        if self.env.is_success():
            self._end_episode("success")
        elif now >= self.max_episode_time:
            self._end_episode("timeout")

    # ------------------------------------------------------------------ episodes
    def _start_episode(self) -> None:
        self.env.reset(seed=self.seed + self.episode)
        self._wall_origin = time.monotonic()
        self._sim_time = 0.0
        self._collisions = 0
        self._in_contact = False
        self._commands = 0
        self.cmd, self.cmd_time = (0.0, 0.0), -math.inf
        self._event("start")

    def _end_episode(self, outcome: str) -> None:
        result = {
            "episode": self.episode,
            "seed": self.seed + self.episode,
            "outcome": outcome,
            "success": outcome == "success",
            "sim_time": round(self._sim_time, 2),
            "collisions": self._collisions,
            "commands": self._commands,
            "distance": round(self._target_distance(), 3),
        }
        self.results.append(result)
        self._event(outcome, **{k: result[k] for k in ("sim_time", "collisions", "distance")})
        n = self.episodes or "∞"
        self.get_logger().info(
            f"episode {self.episode + 1}/{n} (seed {result['seed']}): {outcome} after {result['sim_time']} s, "
            f"{result['collisions']} collisions, {result['commands']} commands"
        )
        self.episode += 1
        if self.episodes and self.episode >= self.episodes:
            self._finish()
        else:
            self._start_episode()

    def _target_distance(self) -> float:
        x, y, _ = self.env.pose
        target = self.env.layout.target
        return math.hypot(target.x - x, target.y - y)

    def summary(self) -> dict[str, Any]:
        n = len(self.results)
        wins = [r for r in self.results if r["success"]]
        lat = np.asarray(self.latencies) * 1000
        return {
            "profile": self.profile,
            "episodes": n,
            "successes": len(wins),
            "success_rate": len(wins) / n if n else 0.0,
            "mean_time_to_success_s": round(float(np.mean([r["sim_time"] for r in wins])), 2) if wins else None,
            "collisions": int(sum(r["collisions"] for r in self.results)),
            "latency_mean_ms": round(float(lat.mean()), 2) if lat.size else None,
            "latency_p95_ms": round(float(np.percentile(lat, 95)), 2) if lat.size else None,
            "results": self.results,
        }

    def _finish(self) -> None:
        self.finished = True
        s = self.summary()
        self.get_logger().info(
            f"summary: {s['successes']}/{s['episodes']} episodes reached the target "
            f"(success rate {s['success_rate']:.0%}), mean time to success {s['mean_time_to_success_s']} s, "
            f"{s['collisions']} collisions, camera-to-command latency mean {s['latency_mean_ms']} ms "
            f"p95 {s['latency_p95_ms']} ms"
        )
        print("SUMMARY " + json.dumps(s), flush=True)
        for timer in (*self.timers_, self.diagnostics.timer):
            timer.cancel()
        # Shut down from outside this callback, once it has returned: spin() then ends cleanly
        # and run_node exits 0 (shutting down inside it leaves the executor a dead task).
        threading.Timer(0.1, request_shutdown, args=(self,)).start()

    def _event(self, kind: str, **fields: Any) -> None:
        msg = String()
        msg.data = json.dumps(
            {"event": kind, "episode": self.episode, "seed": self.seed + self.episode, "time": self.sim_now(), **fields}
        )
        self.event_pub.publish(msg)

    # ------------------------------------------------------------------ callbacks
    def _on_cmd(self, msg: Twist) -> None:
        if self.finished:
            return
        self._advance()
        v, w = float(msg.linear.x), float(msg.angular.z)
        if not (math.isfinite(v) and math.isfinite(w)):
            self.get_logger().error("ignored a non-finite cmd_vel; stopping", throttle_duration_sec=5.0)
            v, w = 0.0, 0.0
        self.cmd, self.cmd_time = (v, w), self.sim_now()
        self._commands += 1
        if self._awaiting_cmd is not None:
            self.latencies.append(time.monotonic() - self._awaiting_cmd)
            self._awaiting_cmd = None

    def _on_camera(self) -> None:
        if self.finished:
            return
        self._advance()
        if self.finished:
            return
        obs, info = self.env.observe()
        header = Image().header
        header.stamp = self.get_clock().now().to_msg()
        header.frame_id = self.frame_id
        self.image_pub.publish(rgb_to_imgmsg(obs, header))
        self.info_pub.publish(camera_info(obs.shape[1], obs.shape[0], self.fov, header))
        if self.sim_pub is not None:
            self.sim_pub.publish(rgb_to_imgmsg(info["paired"][self.sim_name], header))
        if self.seg_pub is not None:
            self.seg_pub.publish(mono_to_imgmsg(info["mask"], header))
        self._awaiting_cmd = time.monotonic()

    def _on_odom(self) -> None:
        if self.finished:
            return
        self._advance()
        x, y, yaw = (float(c) for c in self.env.pose)
        v, w = self.cmd if self.sim_now() - self.cmd_time <= self.cmd_timeout else (0.0, 0.0)
        odom = Odometry()
        odom.header.stamp = self.get_clock().now().to_msg()
        odom.header.frame_id = "odom"
        odom.child_frame_id = "base_link"
        odom.pose.pose.position.x, odom.pose.pose.position.y = x, y
        odom.pose.pose.orientation.z, odom.pose.pose.orientation.w = math.sin(yaw / 2), math.cos(yaw / 2)
        odom.twist.twist.linear.x, odom.twist.twist.angular.z = v, w
        self.odom_pub.publish(odom)

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        if self.finished:
            response.success, response.message = False, "all episodes are done"
            return response
        self._advance()
        if not self.finished:
            self._end_episode("reset")
        response.success = True
        response.message = f"started episode {self.episode} (seed {self.seed + self.episode})"
        return response

    def _diag(self) -> dict[str, Any]:
        return {
            "episode": self.episode,
            "successes": sum(r["success"] for r in self.results),
            "profile": self.profile,
            "real_time_factor": self.rtf,
        }


def main(args: list[str] | None = None) -> None:
    sys.exit(run_node(SimRobotNode, args))


if __name__ == "__main__":
    main()
