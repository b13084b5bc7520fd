"""Privileged expert: plans on the known layout and follows the path with the env's actions.

The planner is the layout's geodesic distance field (robot radius plus a safety margin); the
follower aims at a look-ahead point on the traced path and turns in place whenever the heading
error exceeds half a turn step, so it emits exactly the discrete actions a learned policy has.
"""

from __future__ import annotations

import math

import numpy as np

from sim2real_goggles.envs.nav_to_target import FORWARD, TURN_LEFT, TURN_RIGHT, NavToTargetEnv, bearing_error


class Expert:
    """Acts on an unwrapped :class:`NavToTargetEnv` (reads its layout and pose).

    Args:
        lookahead: distance (m) along the path to the point the robot aims at.
    """

    def __init__(self, env: NavToTargetEnv, lookahead: float = 0.35, escape_steps: int = 3):
        self.env = env
        self.lookahead = lookahead
        self.escape_steps = escape_steps
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
        if abs(err) > turn_half_step * 1.05:
            return self._turn_towards(err, 0.0)
        if self._blocked():
            # Grazing a corner: pick the free heading closest to the path, turn to it, and
            # drive a few steps before following again (no back-and-forth turning).
            self._escape_heading = self._free_heading(x, y, yaw, goal)
            self._escape_forward = self.escape_steps
            return self._turn_towards(_wrap(self._escape_heading - yaw), 0.0)
        return FORWARD

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
