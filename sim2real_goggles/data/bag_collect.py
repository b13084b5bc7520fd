"""Evaluation bags from the simulator: a real-like camera stream with its paired sim render and
ground-truth mask, as a rosbag2 recording (``goggles collect --bag``).

Topics (every message of one frame shares one header stamp, so they pair exactly):

* ``/camera/image_raw`` (sensor_msgs/Image, rgb8): the real-like look, what a robot records;
* ``/camera/image_sim`` (rgb8): the same view in the sim look *through the real look's camera*
  (same lens), so it is pixel-aligned with ``image_raw``: the reference of PSNR/SSIM/flicker;
* ``/camera/segmentation_gt`` (mono8): class ids of ``image_raw`` (0 floor, 1 wall,
  2 obstacle, 3 target, 255 ignore);
* ``/camera/camera_info`` (pinhole intrinsics of the ideal camera) and ``/odom`` (robot pose).

Time runs at the env's control period (0.25 s a step, so ``every=1`` gives 4 Hz) from a fixed
epoch (2026-01-01T00:00:00Z), with one second between episodes: the same arguments give the same
bag byte for byte.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from sim2real_goggles.appearance.imaging import pinhole_matrices
from sim2real_goggles.appearance.profile import load_profile, sim_through_camera
from sim2real_goggles.data.bag_writer import BagWriter, header, typestore
from sim2real_goggles.data.collect import DRIVERS, iter_frames

CAMERA_TOPIC = "/camera/image_raw"
SIM_TOPIC = "/camera/image_sim"
LABELS_TOPIC = "/camera/segmentation_gt"
INFO_TOPIC = "/camera/camera_info"
ODOM_TOPIC = "/odom"
EPOCH_NS = 1_767_225_600 * 1_000_000_000
EPISODE_GAP_NS = 1_000_000_000
FRAME_ID = "camera"


def camera_info_message(ns: int, width: int, height: int, fov_deg: float) -> Any:
    """sensor_msgs/CameraInfo of an ideal pinhole camera with vertical field of view ``fov_deg``."""
    CameraInfo = typestore().types["sensor_msgs/msg/CameraInfo"]
    RegionOfInterest = typestore().types["sensor_msgs/msg/RegionOfInterest"]
    k, p = pinhole_matrices(width, height, fov_deg)
    return CameraInfo(
        header=header(ns, FRAME_ID),
        height=height,
        width=width,
        distortion_model="plumb_bob",
        d=np.zeros(5),
        k=np.array(k),
        r=np.eye(3).reshape(-1),
        p=np.array(p),
        binning_x=0,
        binning_y=0,
        roi=RegionOfInterest(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False),
    )


def odometry_message(ns: int, pose: list[float]) -> Any:
    """nav_msgs/Odometry holding the robot pose [x, y, yaw] in the ``map`` frame."""
    T = typestore().types
    x, y, yaw = (float(v) for v in pose[:3])
    pose_msg = T["geometry_msgs/msg/PoseWithCovariance"](
        pose=T["geometry_msgs/msg/Pose"](
            position=T["geometry_msgs/msg/Point"](x=x, y=y, z=0.0),
            orientation=T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=math.sin(yaw / 2), w=math.cos(yaw / 2)),
        ),
        covariance=np.zeros(36),
    )
    vec = T["geometry_msgs/msg/Vector3"]
    twist = T["geometry_msgs/msg/TwistWithCovariance"](
        twist=T["geometry_msgs/msg/Twist"](linear=vec(x=0.0, y=0.0, z=0.0), angular=vec(x=0.0, y=0.0, z=0.0)),
        covariance=np.zeros(36),
    )
    return T["nav_msgs/msg/Odometry"](header=header(ns, "map"), child_frame_id="base_link", pose=pose_msg, twist=twist)


def collect_bag(
    out: str | Path,
    profile: str = "real_lab",
    episodes: int = 10,
    seed: int = 0,
    image_size: int = 64,
    driver: str = "mixed",
    every: int = 1,
    max_steps: int = 400,
    max_frames: int | None = None,
    storage: str = "mcap",
    control_period: float = 0.25,
    progress: bool = True,
) -> dict[str, Any]:
    """Drive ``episodes`` rooms (env seed ``seed + e``) and write the evaluation bag ``out``.
    Stops early after ``max_frames`` frames. Returns a summary (frames, topics, counts)."""
    if driver not in DRIVERS:
        raise ValueError(f"unknown driver {driver!r}: choose one of {DRIVERS}")
    real = load_profile(profile)
    if real.name == "sim":
        raise ValueError("collect --bag records a real-like look with its sim reference; --profile sim has none")
    ref = sim_through_camera(load_profile("sim"), real)
    period_ns = int(round(control_period * 1e9))
    frames = 0
    episode, last_step, t_episode = -1, 0, EPOCH_NS
    with BagWriter(out, storage=storage) as bag:
        for frame in iter_frames(
            [real, ref], episodes, seed, image_size, driver, every=every, max_steps=max_steps, progress=progress
        ):
            if max_frames is not None and frames >= max_frames:
                break
            if frame.episode != episode:
                if episode >= 0:
                    t_episode += last_step * period_ns + EPISODE_GAP_NS
                episode = frame.episode
            last_step = frame.step
            ns = t_episode + frame.step * period_ns
            bag.write_image(CAMERA_TOPIC, ns, frame.images[real.name], FRAME_ID)
            bag.write_image(SIM_TOPIC, ns, frame.images[ref.name], FRAME_ID)
            bag.write_image(LABELS_TOPIC, ns, frame.masks[real.name], FRAME_ID)
            h, w = frame.images[real.name].shape[:2]
            bag.write(INFO_TOPIC, ns, camera_info_message(ns, w, h, real.camera.fov_deg))
            bag.write(ODOM_TOPIC, ns, odometry_message(ns, frame.robot_pose))
            frames += 1
        counts = dict(bag.counts)
    if frames == 0:
        raise ValueError(f"{out}: no frames recorded (episodes={episodes}, every={every})")
    return {
        "out": str(out),
        "format": storage,
        "profile": real.name,
        "frames": frames,
        "topics": counts,
        "episodes_started": episode + 1,
    }


__all__ = ["CAMERA_TOPIC", "INFO_TOPIC", "LABELS_TOPIC", "ODOM_TOPIC", "SIM_TOPIC", "collect_bag"]
