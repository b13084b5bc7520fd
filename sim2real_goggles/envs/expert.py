"""Privileged expert: plans on the known layout and follows the path with the env's actions.

The planner is the layout's geodesic distance field (robot radius plus a safety margin); the
follower aims at a look-ahead point on the traced path and turns in place whenever the heading
error exceeds half a turn step, so it emits exactly the discrete actions a learned policy has.

With ``scan=True`` the expert only makes choices a camera could justify: while neither the chair
nor the direction of its path is in the camera's field of view, it turns left (always left) until
one of them is, instead of turning the shorter way towards a doorway the camera does not show.
A reactive image policy cloned from the plain expert sees the same blank wall labelled "left" in
one room and "right" in the next, and dithers in front of it; the scanning expert's labels there
are the same in every room.
"""

from __future__ import annotations

import math

import numpy as np

from sim2real_goggles.envs.layout import CHAIR_HALF_EXTENT
from sim2real_goggles.envs.nav_to_target import FORWARD, TURN_LEFT, TURN_RIGHT, NavToTargetEnv, bearing_error


class Expert:
    """Acts on an unwrapped :class:`NavToTargetEnv` (reads its layout and pose).

    Args:
        lookahead: distance (m) along the path to the point the robot aims at.
        escape_steps: forward steps of the manoeuvre after a blocked move.
        scan: turn left while neither the chair nor the path's direction is in view (above).
        view_deg: horizontal field of view for ``scan``; default: the env's profile camera's
            (square images: the vertical field of view is also the horizontal one).
    """

    def __init__(
        self,
        env: NavToTargetEnv,
        lookahead: float = 0.35,
        escape_steps: int = 3,
        scan: bool = False,
        view_deg: float | None = None,
    ):
        self.env = env
        self.lookahead = lookahead
        self.escape_steps = escape_steps
        self.scan = scan
        self.view_deg = view_deg
        self._layout = None
        self._escape_heading: float | None = None
        self._escape_forward = 0

    def act(self) -> int:
        env = self.env
        assert env.layout is not None, "reset the env before asking the expert"
        if env.layout is not self._layout:  # a new episode
            self._layout, self._escape_heading, self._escape_forward = env.layout, None, 0
        x, y, yaw = (float(v) for v in env.pose)
        t = env.layout.target
        turn_half_step = 0.5 * env.turn_rate * env.control_period
        if math.hypot(t.x - x, t.y - y) <= env.success_distance - 0.03:
            # In range: face the chair (success needs the bearing within the tolerance).
            if self.scan and not self.sees_target():
                return TURN_LEFT
            return self._turn_towards(bearing_error(x, y, yaw, t.x, t.y), turn_half_step)
        if self._escape_heading is not None:  # committed escape manoeuvre after a blocked move
            err = _wrap(self._escape_heading - yaw)
            if abs(err) > turn_half_step:
                return self._turn_towards(err, 0.0)
            if self._escape_forward > 0 and not self._blocked():
                self._escape_forward -= 1
                return FORWARD
            self._escape_heading = None
        goal = self._waypoint(x, y)
        err = bearing_error(x, y, yaw, goal[0], goal[1])
        if self.scan and abs(err) > self._half_view() and not self.sees_target():
            return TURN_LEFT
        if abs(err) > turn_half_step * 1.05:
            return self._turn_towards(err, 0.0)
        if self._blocked():
            # Grazing a corner: pick the free heading closest to the path, turn to it, and
            # drive a few steps before following again (no back-and-forth turning).
            self._escape_heading = self._free_heading(x, y, yaw, goal)
            self._escape_forward = self.escape_steps
            return self._turn_towards(_wrap(self._escape_heading - yaw), 0.0)
        return FORWARD

    def _half_view(self) -> float:
        view = self.view_deg if self.view_deg is not None else self.env.profile.camera.fov_deg
        return 0.5 * math.radians(view)

    def sees_target(self, margin_deg: float = 5.0) -> bool:
        """Whether the chair's centre is in the camera's view: within the field of view less
        ``margin_deg`` each side, and no wall or obstacle across the line of sight."""
        env = self.env
        layout = env.layout
        assert layout is not None
        x, y, yaw = (float(v) for v in env.pose)
        t = layout.target
        if abs(bearing_error(x, y, yaw, t.x, t.y)) > self._half_view() - math.radians(margin_deg):
            return False
        # Sample the sight line up to the chair's footprint (its own body does not hide it).
        length = math.hypot(t.x - x, t.y - y) - CHAIR_HALF_EXTENT
        if length <= 0:
            return True
        s = np.linspace(0.0, length, max(2, int(length / 0.04) + 1)) / (length + CHAIR_HALF_EXTENT)
        px, py = x + s * (t.x - x), y + s * (t.y - y)
        blockers = [w.footprint for w in layout.walls] + [o.footprint for o in layout.obstacles]
        return all(bool(np.all(f.distance_grid(px, py) > 0.0)) for f in blockers)

    def _blocked(self, yaw: float | None = None) -> bool:
        env = self.env
        saved = env.pose
        if yaw is not None:
            env.pose = np.array([saved[0], saved[1], yaw])
        try:
            return env.predict_move(env.forward_speed, 0.0, env.control_period)[1]
        finally:
            env.pose = saved

    def _free_heading(self, x: float, y: float, yaw: float, goal: tuple[float, float]) -> float:
        step = self.env.turn_rate * self.env.control_period
        want = math.atan2(goal[1] - y, goal[0] - x)
        candidates = [_wrap(yaw + k * step) for k in range(1, int(math.ceil(2 * math.pi / step)))]
        free = [h for h in candidates if not self._blocked(h)]
        if not free:
            return _wrap(yaw + math.pi)
        return min(free, key=lambda h: abs(_wrap(h - want)))

    def _waypoint(self, x: float, y: float) -> tuple[float, float]:
        layout = self.env.layout
        assert layout is not None
        path = layout.plan_field.path_from(x, y)
        if not path:
            return layout.target.x, layout.target.y
        travelled, prev = 0.0, (x, y)
        for point in path:
            travelled += math.hypot(point[0] - prev[0], point[1] - prev[1])
            prev = point
            if travelled >= self.lookahead:
                return point
        return path[-1] if len(path) > 1 else (layout.target.x, layout.target.y)

    @staticmethod
    def _turn_towards(err: float, deadband: float) -> int:
        if abs(err) <= deadband:
            return FORWARD
        return TURN_LEFT if err > 0 else TURN_RIGHT


def _wrap(angle: float) -> float:
    return math.atan2(math.sin(angle), math.cos(angle))


def random_action(rng: np.random.Generator) -> int:
    """Uniform random action (for random driving in data collection)."""
    return int(rng.integers(3))
