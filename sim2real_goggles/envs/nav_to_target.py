"""``Goggles/NavToTarget-v0``: a camera-driven robot must reach a chair in a procedural room."""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, SupportsFloat

import cv2
import gymnasium as gym
import numpy as np
from gymnasium import spaces

from sim2real_goggles.appearance.profile import Profile, load_profile
from sim2real_goggles.envs.layout import CHAIR_HALF_EXTENT, Layout, LayoutConfig, generate_layout
from sim2real_goggles.envs.scene import SceneRenderer, camera_view_matrix

FORWARD, TURN_LEFT, TURN_RIGHT = 0, 1, 2
ACTION_NAMES = ("forward", "turn_left", "turn_right")
SUBSTEP_LENGTH = 0.02
"""Longest straight move (m) between two collision checks."""


class NavToTargetEnv(gym.Env[np.ndarray, np.int64]):
    """Drive a differential-drive robot to the target chair using only its camera.

    ## Description
    A round robot (radius ``robot_radius``) with a forward-looking RGB camera stands in a
    procedurally generated room: a rectangle of ``room_size`` sides, sometimes split by an
    interior wall with a doorway, with 0 to ``max_obstacles`` boxes and cylinders and one chair,
    the target. The room is rendered by PyBullet's TinyRenderer in an appearance ``profile``
    (``sim`` by default; ``real_lab`` and ``real_office`` are real-like looks). The robot moves
    kinematically (unicycle model, collision-checked every ``SUBSTEP_LENGTH`` against the exact
    2D footprints of walls, obstacles and chair); a blocked move stops at the obstacle.

    ## Action space
    ``Discrete(3)``; each action holds one (v, ω) command for ``control_period`` seconds, so a
    ROS Twist driver executes the same policy:

    | action | name       | v (m/s)          | ω (rad/s)      | per step (defaults) |
    |--------|------------|------------------|----------------|---------------------|
    | 0      | forward    | ``forward_speed`` | 0              | 0.10 m              |
    | 1      | turn_left  | 0                | ``+turn_rate`` | +15°                |
    | 2      | turn_right | 0                | ``-turn_rate`` | -15°                |

    ## Observation space
    ``Box(0, 255, (H, W, 3), uint8)``: the camera image in the chosen profile, ``image_size``
    (default 64×64).

    ## Rewards
    ``progress_weight`` × (decrease of the geodesic distance to the goal region, m)
    − ``step_cost`` − ``collision_penalty`` if the move was blocked + ``success_bonus`` on success.

    ## Starting state
    The room, obstacle set, target pose and a start pose at least ``min_start_distance`` (geodesic)
    from the goal region are drawn from the seed; the start heading is uniform.

    ## Changing the look between episodes
    ``reset(options={"profile": p})`` or :meth:`set_profile` before ``reset`` shows the new look
    from that episode on, reusing the PyBullet client (domain randomisation draws one per episode).
    The look never changes the room: a seed gives the same layout and start in every look.

    ## Episode end
    Terminated on success: robot centre within ``success_distance`` of the chair centre and the
    chair centre within ±``facing_tolerance_deg`` of the heading. Truncated by the time limit
    (``max_episode_steps`` = 400 at registration).

    ## Info
    Every step: ``robot_pose`` and ``target_pose`` ([x, y, yaw]), ``distance`` (Euclidean) and
    ``geodesic_distance`` to the goal region, ``collision`` (this step), ``collisions`` (episode),
    ``is_success``, ``profile``. With ``info_mask=True``: ``mask`` (H×W uint8 class ids: 0 floor,
    1 wall, 2 obstacle, 3 target, 255 nothing). With ``paired_profiles``: ``paired`` (profile →
    image of the same view) and, with ``info_mask``, ``paired_mask`` (profile → mask in that
    profile's camera model).

    ## Arguments
    All constructor arguments below are keyword arguments of ``gymnasium.make``.

    ## Version history
    * v0: initial version.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(
        self,
        render_mode: str | None = None,
        image_size: int | tuple[int, int] = 64,
        profile: str | Path | Profile = "sim",
        paired_profiles: Sequence[str | Path | Profile] = (),
        info_mask: bool = False,
        room_size: tuple[float, float] = (4.0, 7.0),
        max_obstacles: int = 5,
        partition_probability: float = 0.5,
        robot_radius: float = 0.18,
        forward_speed: float = 0.4,
        turn_rate: float = math.pi / 3,
        control_period: float = 0.25,
        camera_height: float = 0.3,
        camera_forward: float = 0.12,
        camera_pitch_deg: float = -10.0,
        success_distance: float = 0.6,
        facing_tolerance_deg: float = 30.0,
        min_start_distance: float = 1.5,
        progress_weight: float = 1.0,
        step_cost: float = 0.01,
        collision_penalty: float = 0.1,
        success_bonus: float = 10.0,
        render_size: int = 256,
    ):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode {render_mode!r} not in {self.metadata['render_modes']}")
        self.render_mode = render_mode
        h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        self.image_size = (int(h), int(w))
        self.layout_config = LayoutConfig(
            room_size=tuple(room_size),
            max_obstacles=max_obstacles,
            partition_probability=partition_probability,
            robot_radius=robot_radius,
            goal_distance=success_distance - 0.05,
            min_start_distance=min_start_distance,
        )
        self.forward_speed = forward_speed
        self.turn_rate = turn_rate
        self.control_period = control_period
        self.camera_height = camera_height
        if not 0.0 <= camera_forward < robot_radius - 0.05:
            # The lens must stay inside the body outline, or at contact it would look through walls.
            raise ValueError(f"camera_forward ({camera_forward}) must be within [0, robot_radius - 0.05)")
        self.camera_forward = camera_forward
        self.camera_pitch_deg = camera_pitch_deg
        self.success_distance = success_distance
        self.facing_tolerance = math.radians(facing_tolerance_deg)
        self.progress_weight = progress_weight
        self.step_cost = step_cost
        self.collision_penalty = collision_penalty
        self.success_bonus = success_bonus
        self.render_size = render_size
        self.info_mask = info_mask

        self.renderer = SceneRenderer(profile, self.image_size)
        self.paired = {}
        for prof in paired_profiles:
            r = SceneRenderer(prof, self.image_size)
            self.paired[r.profile.name] = r
        self.observation_space = spaces.Box(0, 255, (*self.image_size, 3), np.uint8)
        self.action_space = spaces.Discrete(3)

        self._next_profile: Profile | None = None
        self.layout: Layout | None = None
        self.pose = np.zeros(3)
        self._geodesic = 0.0
        self._collisions = 0
        self._last_obs: np.ndarray | None = None

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        if options and options.get("profile") is not None:
            self.set_profile(options["profile"])
        if self._next_profile is not None:
            self.renderer.set_profile(self._next_profile)
            self._next_profile = None
        self.layout = generate_layout(self.np_random, self.layout_config)
        # One draw for all appearance randomness; each look then has a stream of its own keyed by
        # its name, so a look renders the same whether it is the observation or a paired view,
        # and the room sequence does not depend on which paired looks were asked for.
        appearance_seed = int(self.np_random.integers(2**63))
        for renderer in (self.renderer, *self.paired.values()):
            key = zlib.crc32(renderer.profile.name.encode())
            renderer.build(self.layout, np.random.default_rng([appearance_seed, key]))
        s = self.layout.start
        self.pose = np.array([s.x, s.y, s.yaw])
        self._geodesic = self.layout.reward_field.lookup(s.x, s.y)
        self._collisions = 0
        obs, info = self._observe(collision=False)
        return obs, info

    def step(self, action: int | np.integer) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        assert self.layout is not None, "call reset() before step()"
        if not self.action_space.contains(action):
            raise ValueError(f"invalid action {action!r}: expected an int in 0..2 ({', '.join(ACTION_NAMES)})")
        a = int(action)
        v = self.forward_speed if a == FORWARD else 0.0
        w = self.turn_rate if a == TURN_LEFT else -self.turn_rate if a == TURN_RIGHT else 0.0
        collision = self.move(v, w, self.control_period)
        self._collisions += int(collision)
        geodesic = self.layout.reward_field.lookup(self.pose[0], self.pose[1])
        success = self.is_success()
        reward = (
            self.progress_weight * (self._geodesic - geodesic)
            - self.step_cost
            - self.collision_penalty * collision
            + self.success_bonus * success
        )
        self._geodesic = geodesic
        obs, info = self._observe(collision)
        return obs, float(reward), success, False, info

    @property
    def profile(self) -> Profile:
        """The look of the observations (of the current episode)."""
        return self.renderer.profile

    def set_profile(self, profile: str | Path | Profile) -> None:
        """Show observations in ``profile`` from the next :meth:`reset` on (validated now, so a
        bad profile fails here). Paired looks are not affected."""
        self._next_profile = load_profile(profile)

    def render(self) -> np.ndarray | None:
        """Camera view (nearest-neighbour upscaled) beside a top-down map, ``render_size`` high."""
        if self.render_mode is None:
            gym.logger.warn("render() called without render_mode; pass render_mode='rgb_array'")
            return None
        if self._last_obs is None:
            return np.zeros((self.render_size, 2 * self.render_size, 3), np.uint8)
        h, w = self.image_size
        cam = cv2.resize(
            self._last_obs, (round(self.render_size * w / h), self.render_size), interpolation=cv2.INTER_NEAREST
        )
        return np.concatenate([cam, self.top_down(self.render_size)], axis=1)

    def close(self) -> None:
        for renderer in (self.renderer, *self.paired.values()):
            renderer.close()

    # ------------------------------------------------------------------ robot
    def move(self, v: float, w: float, duration: float) -> bool:
        """Integrate a (v, ω) command for ``duration`` s; returns True if an obstacle blocked it.

        At contact the robot stops where it is for the rest of the command (a bumper stop).
        Also used by the ROS robot driver for arbitrary Twist commands.
        """
        self.pose, collided = self.predict_move(v, w, duration)
        return collided

    def predict_move(self, v: float, w: float, duration: float) -> tuple[np.ndarray, bool]:
        """Where a (v, ω) command would take the robot, and whether it would be blocked."""
        assert self.layout is not None
        x, y, yaw = (float(c) for c in self.pose)
        n = max(1, math.ceil(abs(v) * duration / SUBSTEP_LENGTH))
        h = duration / n
        footprints = self.layout.footprints
        radius = self.layout_config.robot_radius
        collided = False
        for _ in range(n):
            mid = yaw + 0.5 * w * h
            nx, ny = x + v * h * math.cos(mid), y + v * h * math.sin(mid)
            if v != 0.0 and any(f.distance(nx, ny) <= radius for f in footprints):
                collided = True
                break
            x, y, yaw = nx, ny, yaw + w * h
        return np.array([x, y, math.atan2(math.sin(yaw), math.cos(yaw))]), collided

    def is_success(self) -> bool:
        assert self.layout is not None
        x, y, yaw = self.pose
        t = self.layout.target
        if math.hypot(t.x - x, t.y - y) > self.success_distance:
            return False
        return abs(bearing_error(x, y, yaw, t.x, t.y)) <= self.facing_tolerance

    # ------------------------------------------------------------------ observation
    def view_matrix(self) -> list[float]:
        x, y, yaw = self.pose
        return camera_view_matrix(x, y, yaw, self.camera_height, self.camera_forward, self.camera_pitch_deg)

    def observe(self, collision: bool = False) -> tuple[np.ndarray, dict[str, Any]]:
        """Render the camera at the current pose (and the paired looks/mask if configured);
        ``info`` as in :meth:`step`. The ROS robot driver calls this at its camera rate."""
        return self._observe(collision)

    def _observe(self, collision: bool) -> tuple[np.ndarray, dict[str, Any]]:
        assert self.layout is not None
        view = self.view_matrix()
        obs, mask = self.renderer.render(view, with_mask=self.info_mask)
        self._last_obs = obs
        x, y, _ = self.pose
        t = self.layout.target
        info: dict[str, Any] = {
            "robot_pose": self.pose.copy(),
            "target_pose": t.as_array(),
            "distance": math.hypot(t.x - x, t.y - y),
            "geodesic_distance": self._geodesic,
            "collision": bool(collision),
            "collisions": self._collisions,
            "is_success": self.is_success(),
            "profile": self.renderer.profile.name,
        }
        if mask is not None:
            info["mask"] = mask
        if self.paired:
            rendered = {name: r.render(view, with_mask=self.info_mask) for name, r in self.paired.items()}
            info["paired"] = {name: img for name, (img, _) in rendered.items()}
            if self.info_mask:
                info["paired_mask"] = {name: m for name, (_, m) in rendered.items()}
        return obs, info

    def top_down(self, size: int) -> np.ndarray:
        """A size×size RGB map: walls, obstacles, chair (red), robot (blue) with heading."""
        assert self.layout is not None
        lay = self.layout
        img = np.full((size, size, 3), 245, np.uint8)
        span = max(lay.width, lay.depth) + 0.4
        scale = size / span

        def px(x: float, y: float) -> tuple[int, int]:
            return int(round(size / 2 + x * scale)), int(round(size / 2 - y * scale))

        def draw(fp, color) -> None:
            if fp.radius > 0:
                cv2.circle(img, px(fp.x, fp.y), max(1, int(fp.radius * scale)), color, -1)
                return
            c, s = math.cos(fp.yaw), math.sin(fp.yaw)
            corners = [
                px(fp.x + c * dx - s * dy, fp.y + s * dx + c * dy)
                for dx, dy in ((-fp.hx, -fp.hy), (fp.hx, -fp.hy), (fp.hx, fp.hy), (-fp.hx, fp.hy))
            ]
            cv2.fillPoly(img, [np.array(corners, np.int32)], color)

        for wall in lay.walls:
            draw(wall.footprint, (90, 90, 90))
        for ob in lay.obstacles:
            draw(ob.footprint, (60, 160, 60))
        draw(lay.footprints[-1], (220, 40, 40))
        cv2.circle(img, px(lay.target.x, lay.target.y), int(self.success_distance * scale), (220, 120, 120), 1)
        x, y, yaw = self.pose
        r = self.layout_config.robot_radius
        cv2.circle(img, px(x, y), max(2, int(r * scale)), (40, 80, 220), -1)
        cv2.line(img, px(x, y), px(x + 2 * r * math.cos(yaw), y + 2 * r * math.sin(yaw)), (20, 20, 20), 2)
        return img


def bearing_error(x: float, y: float, yaw: float, tx: float, ty: float) -> float:
    """Signed angle (rad) from the heading to the direction of (tx, ty), in [-π, π]."""
    d = math.atan2(ty - y, tx - x) - yaw
    return math.atan2(math.sin(d), math.cos(d))


__all__ = ["NavToTargetEnv", "ACTION_NAMES", "FORWARD", "TURN_LEFT", "TURN_RIGHT", "CHAIR_HALF_EXTENT", "bearing_error"]
