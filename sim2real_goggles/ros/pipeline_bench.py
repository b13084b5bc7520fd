"""``goggles bench pipeline``: camera → translator → policy → cmd_vel over DDS, end to end.

The translator node and the policy node run as separate processes, exactly as a launch starts
them; this process plays the camera (pre-rendered frames of a real-like look, published at
``rate`` Hz from a thread of its own, each with a unique stamp) and listens to the policy's
``cmd_vel_stamped``, which carries the stamp of the image the command was computed from. So every
command is matched to its frame: latency = arrival of the command − camera stamp (one clock,
this process's), and ``delivered_ratio`` = frames that produced a command / frames sent.

The same run measures the bare transport as a reference: a camera → policy chain without the
translator (``goggles:=false``) on the same frames, alternating with the full chain in rounds,
so ``translator_cost_p50_ms`` compares the two under the same machine load.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import numpy as np

NODE_MODULES = {
    "translator_node": "sim2real_goggles.ros.translator_node",
    "policy_node": "sim2real_goggles.ros.policy_node",
}


def ros_local_environment(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for benchmark processes: DDS discovery on loopback only, and a domain id
    of this run's own unless one is set (parallel runs must not cross-talk)."""
    env = dict(os.environ if env is None else env)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(1, 101)))
    return env


def start_node(exe: str, params: dict[str, Any], remaps: dict[str, str], name: str) -> subprocess.Popen:
    """A node as its own process (``python -m <module> --ros-args ...``), in its own group."""
    cmd = [sys.executable, "-m", NODE_MODULES[exe], "--ros-args", "-r", f"__node:={name}"]
    for key, value in params.items():
        value = str(value).lower() if isinstance(value, bool) else value
        cmd += ["-p", f"{key}:={value}"]
    for src, dst in remaps.items():
        cmd += ["-r", f"{src}:={dst}"]
    log = tempfile.TemporaryFile("w+")  # node logs, shown if the node dies (a pipe could fill up)
    return subprocess.Popen(cmd, env=os.environ.copy(), start_new_session=True, stdout=log, stderr=log, text=True)


def stop_nodes(procs: list[subprocess.Popen], grace: float = 5.0) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGINT)
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def render_frames(profile: str, size: int, n: int = 60, seed: int = 0) -> list[np.ndarray]:
    """Camera frames of an expert drive in ``profile`` (rendered before the clock starts)."""
    import gymnasium as gym

    from sim2real_goggles.envs.expert import Expert

    env = gym.make("Goggles/NavToTarget-v0", image_size=size, profile=profile)
    obs, _ = env.reset(seed=seed)
    expert = Expert(env.unwrapped)
    frames = [obs]
    while len(frames) < n:
        obs, _, term, trunc, _ = env.step(expert.act())
        frames.append(obs)
        if term or trunc:
            obs, _ = env.reset()
            frames.append(obs)
    env.close()
    return frames[:n]


class _Camera:
    """Test-side rclpy node: publishes frames at a fixed rate, matches commands by stamp."""

    def __init__(self, node: Any, topic: str, frames: list[np.ndarray], qos: Any):
        from geometry_msgs.msg import TwistStamped
        from sensor_msgs.msg import Image

        from sim2real_goggles.ros.image_conversion import rgb_to_imgmsg

        self.node = node
        self.rgb_to_imgmsg = rgb_to_imgmsg
        self.msgs = []
        for rgb in frames:
            self.msgs.append(rgb_to_imgmsg(rgb, Image().header))
        self.pub = node.create_publisher(Image, topic, qos)
        self.sent: dict[int, float] = {}  # stamp ns -> send time
        self.acted: dict[int, float] = {}  # stamp ns -> command arrival
        self._lock = threading.Lock()
        node.create_subscription(TwistStamped, "/bench/cmd_vel_stamped", self._on_cmd, 100)

    def _on_cmd(self, msg: Any) -> None:
        arrived = time.time_ns()
        key = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        with self._lock:
            if key in self.sent and key not in self.acted:
                self.acted[key] = arrived

    def publish(self, i: int) -> int:
        msg = self.msgs[i % len(self.msgs)]
        now = time.time_ns()
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(now, 1_000_000_000)
        msg.header.frame_id = "camera"
        with self._lock:
            self.sent[now] = now
        self.pub.publish(msg)
        return now

    def stream(self, rate: float, seconds: float) -> list[int]:
        """Publish at ``rate`` Hz for ``seconds``; returns the stamps sent."""
        period = 1.0 / rate
        stamps = []
        start = time.perf_counter()
        i = 0
        while True:
            due = start + i * period
            if due - start >= seconds:
                break
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            stamps.append(self.publish(i))
            i += 1
        return stamps


def _window_stats(camera: _Camera, stamps: list[int]) -> dict[str, Any]:
    with camera._lock:
        lat = np.array([(camera.acted[s] - s) / 1e6 for s in stamps if s in camera.acted])
    sent = len(stamps)
    return {
        "frames_sent": sent,
        "frames_acted": int(lat.size),
        "delivered_ratio": round(lat.size / sent, 4) if sent else 0.0,
        "p50_ms": round(float(np.percentile(lat, 50)), 2) if lat.size else None,
        "p95_ms": round(float(np.percentile(lat, 95)), 2) if lat.size else None,
        "max_ms": round(float(lat.max()), 2) if lat.size else None,
    }


def _spin_until_shutdown(executor: Any) -> None:
    from rclpy.executors import ExternalShutdownException

    try:
        executor.spin()
    except ExternalShutdownException:  # the benchmark is over: rclpy was shut down
        pass


def bench_pipeline(
    translator: str = "pretrained:vr_goggles",
    policy: str = "pretrained:policy",
    profile: str = "real_lab",
    rate: float = 30.0,
    seconds: float = 10.0,
    size: int = 64,
    rounds: int = 2,
    device: str = "cpu",
    ready_timeout: float = 90.0,
    backend: str = "eager",
    threads: int = 1,
) -> dict[str, Any]:
    """Run the benchmark (see the module docstring); returns the JSON record. ``threads``: the
    translator node's CPU inference threads (1, as config/ros/translator.yaml; 0: PyTorch's
    default); the policy nodes keep their default (one thread)."""
    os.environ.update(ros_local_environment())
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import qos_profile_sensor_data

    frames = render_frames(profile, size)
    rclpy.init()
    node = rclpy.create_node("goggles_bench_camera")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spinner = threading.Thread(target=_spin_until_shutdown, args=(executor,), daemon=True)
    spinner.start()
    common = {"device": device, "timeout": 5.0}
    procs = [
        start_node(
            "translator_node",
            {"checkpoint": translator, "device": device, "backend": backend, "threads": threads},
            {"image": "/bench/camera", "image_translated": "/bench/goggles"},
            "bench_translator",
        ),
        start_node(
            "policy_node",
            {"policy": policy, **common},
            {"image": "/bench/goggles", "cmd_vel": "/bench/cmd_vel", "cmd_vel_stamped": "/bench/cmd_vel_stamped"},
            "bench_policy",
        ),
        start_node(  # the reference chain: the same policy straight on the camera
            "policy_node",
            {"policy": policy, **common},
            {
                "image": "/bench/camera_direct",
                "cmd_vel": "/bench/cmd_vel",
                "cmd_vel_stamped": "/bench/cmd_vel_stamped",
            },
            "bench_policy_direct",
        ),
    ]
    try:
        full = _Camera(node, "/bench/camera", frames, qos_profile_sensor_data)
        direct = _Camera(node, "/bench/camera_direct", frames, qos_profile_sensor_data)
        for cam, what in ((full, "translator -> policy"), (direct, "policy")):
            deadline = time.monotonic() + ready_timeout
            while not cam.acted:
                for p in procs:
                    if p.poll() is not None:
                        p.stdout.seek(0)
                        raise RuntimeError(f"a benchmark node exited ({p.returncode}): {p.stdout.read()[-2000:]}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no command from the {what} chain within {ready_timeout} s")
                cam.stream(rate, 0.5)
            cam.stream(rate, 1.0)  # warm-up at the full rate
        full_stamps: list[int] = []
        direct_stamps: list[int] = []
        for _ in range(rounds):
            full_stamps += full.stream(rate, seconds / rounds)
            direct_stamps += direct.stream(rate, seconds / rounds)
        time.sleep(0.5)  # let the last commands arrive
        result = {
            "benchmark": "pipeline",
            "rate_hz": rate,
            "seconds": seconds,
            "image_size": size,
            "profile": profile,
            "translator": translator,
            "backend": backend,
            "threads": threads,
            "policy": policy,
            "device": device,
            **_window_stats(full, full_stamps),
            "reference_no_translator": _window_stats(direct, direct_stamps),
        }
        ref = result["reference_no_translator"]
        if result["p50_ms"] is not None and ref["p50_ms"] is not None:
            result["translator_cost_p50_ms"] = round(result["p50_ms"] - ref["p50_ms"], 2)
        result["target_met"] = bool(
            result["p95_ms"] is not None and result["p95_ms"] <= 50.0 and result["delivered_ratio"] >= 0.95
        )
        return result
    finally:
        stop_nodes(procs)
        rclpy.try_shutdown()  # wakes the executor: the spin thread ends before the node goes
        spinner.join(timeout=5.0)
        executor.shutdown(timeout_sec=1.0)
        node.destroy_node()


__all__ = ["bench_pipeline", "ros_local_environment"]
