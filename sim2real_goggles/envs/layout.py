"""Procedural room layouts, 2D collision geometry and geodesic distance fields.

A :class:`Layout` is everything that is the same in every appearance profile: room size, wall
segments, obstacles, the target chair and the robot's start pose. It is drawn from the
environment's RNG, so a seed fixes the room. Collision checks use exact 2D footprints (the robot
is a disc); planning and the progress reward use a grid with a geodesic distance field to the
goal region, computed with scikit-image's minimum-cost-path solver.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from skimage.graph import MCP_Geometric

GRID_RESOLUTION = 0.05
"""Metres per cell of the planning grid."""

CHAIR_HALF_EXTENT = 0.22
"""Half side of the chair's square footprint (matches sim/chair.urdf)."""


@dataclass(frozen=True)
class Footprint:
    """A 2D obstacle footprint: an oriented rectangle, or a circle when ``radius`` > 0."""

    x: float
    y: float
    hx: float = 0.0
    hy: float = 0.0
    yaw: float = 0.0
    radius: float = 0.0

    def distance(self, px: float, py: float) -> float:
        """Distance from a point to the footprint (0 inside)."""
        dx, dy = px - self.x, py - self.y
        if self.radius > 0:
            return max(math.hypot(dx, dy) - self.radius, 0.0)
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        lx, ly = abs(c * dx + s * dy) - self.hx, abs(-s * dx + c * dy) - self.hy
        return math.hypot(max(lx, 0.0), max(ly, 0.0))

    def distance_grid(self, gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
        """Vectorised :meth:`distance` over grids of points."""
        dx, dy = gx - self.x, gy - self.y
        if self.radius > 0:
            return np.maximum(np.hypot(dx, dy) - self.radius, 0.0)
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        lx = np.maximum(np.abs(c * dx + s * dy) - self.hx, 0.0)
        ly = np.maximum(np.abs(-s * dx + c * dy) - self.hy, 0.0)
        return np.hypot(lx, ly)

    @property
    def bounding_radius(self) -> float:
        return self.radius if self.radius > 0 else math.hypot(self.hx, self.hy)


@dataclass(frozen=True)
class Wall:
    """A wall segment: an axis-free box of half extents (hx, hy) and height."""

    footprint: Footprint
    height: float


@dataclass(frozen=True)
class Obstacle:
    """A box or cylinder standing on the floor."""

    kind: str  # "box" | "cylinder"
    footprint: Footprint
    height: float


@dataclass(frozen=True)
class Pose2D:
    x: float
    y: float
    yaw: float

    def as_array(self) -> np.ndarray:
        return np.array([self.x, self.y, self.yaw], dtype=np.float64)


@dataclass(frozen=True)
class LayoutConfig:
    """Parameters of the room generator (constructor arguments of the environment)."""

    room_size: tuple[float, float] = (4.0, 7.0)
    """Range of the room's side lengths in metres."""
    max_obstacles: int = 5
    """Obstacles per room are drawn uniformly from 0..max_obstacles."""
    partition_probability: float = 0.5
    """Chance of an interior wall with a doorway."""
    wall_height: float = 2.5
    wall_thickness: float = 0.1
    robot_radius: float = 0.18
    goal_distance: float = 0.55
    """Cells within this distance of the target centre form the planner's goal region."""
    min_start_distance: float = 1.5
    """Minimum geodesic distance from the start to the goal region."""
    planning_margin: float = 0.1
    """Extra clearance the planner keeps from obstacles beyond the robot radius."""


@dataclass
class Layout:
    """One generated room. Built by :func:`generate_layout`; never mutated by the env."""

    width: float
    depth: float
    walls: list[Wall]
    obstacles: list[Obstacle]
    target: Pose2D
    start: Pose2D
    config: LayoutConfig
    _fields: dict[float, DistanceField] = field(default_factory=dict, repr=False)

    @cached_property
    def footprints(self) -> list[Footprint]:
        """Everything the robot can collide with, target chair included (the layout's geometry
        never changes after generation, so this is built once: it is read every env step)."""
        chair = Footprint(self.target.x, self.target.y, CHAIR_HALF_EXTENT, CHAIR_HALF_EXTENT, self.target.yaw)
        return [w.footprint for w in self.walls] + [o.footprint for o in self.obstacles] + [chair]

    def clearance(self, x: float, y: float) -> float:
        """Distance from a point to the nearest footprint."""
        return min(f.distance(x, y) for f in self.footprints)

    def distance_field(self, inflation: float) -> DistanceField:
        """Geodesic distance to the goal region for a disc of radius ``inflation`` (cached)."""
        key = round(inflation, 4)
        if key not in self._fields:
            self._fields[key] = DistanceField.build(self, inflation)
        return self._fields[key]

    @property
    def reward_field(self) -> DistanceField:
        return self.distance_field(self.config.robot_radius)

    @property
    def plan_field(self) -> DistanceField:
        return self.distance_field(self.config.robot_radius + self.config.planning_margin)


@dataclass
class DistanceField:
    """Grid of geodesic distances (metres) to the goal region; inf where unreachable."""

    origin: tuple[float, float]
    resolution: float
    free: np.ndarray
    distance: np.ndarray
    mcp: MCP_Geometric

    @classmethod
    def build(cls, layout: Layout, inflation: float) -> DistanceField:
        res = GRID_RESOLUTION
        x0, y0 = -layout.width / 2.0, -layout.depth / 2.0
        nx, ny = int(math.ceil(layout.width / res)), int(math.ceil(layout.depth / res))
        gx, gy = np.meshgrid(x0 + (np.arange(nx) + 0.5) * res, y0 + (np.arange(ny) + 0.5) * res)
        clearance = np.full(gx.shape, np.inf)
        for fp in layout.footprints:
            np.minimum(clearance, fp.distance_grid(gx, gy), out=clearance)
        free = clearance > inflation
        goal = free & (np.hypot(gx - layout.target.x, gy - layout.target.y) <= layout.config.goal_distance)
        costs = np.where(free, 1.0, np.inf)
        mcp = MCP_Geometric(costs, fully_connected=True)
        starts = list(zip(*np.nonzero(goal)))
        if starts:
            cum, _ = mcp.find_costs(starts)
            distance = np.where(free, cum * res, np.inf)
        else:
            distance = np.full(gx.shape, np.inf)
        return cls((x0, y0), res, free, distance, mcp)

    def cell(self, x: float, y: float) -> tuple[int, int]:
        """(row, col) of the cell holding a point, clamped to the grid."""
        r = int((y - self.origin[1]) / self.resolution)
        c = int((x - self.origin[0]) / self.resolution)
        return min(max(r, 0), self.distance.shape[0] - 1), min(max(c, 0), self.distance.shape[1] - 1)

    def center(self, r: int, c: int) -> tuple[float, float]:
        return self.origin[0] + (c + 0.5) * self.resolution, self.origin[1] + (r + 0.5) * self.resolution

    def _entry_cell(self, x: float, y: float, max_cells: int = 4) -> tuple[int, int] | None:
        """The point's cell if reachable, else the reachable cell nearby that minimises
        (straight step to it + its geodesic distance); None if none within ``max_cells``."""
        r, c = self.cell(x, y)
        if math.isfinite(self.distance[r, c]):
            return r, c
        r0, r1 = max(r - max_cells, 0), min(r + max_cells + 1, self.distance.shape[0])
        c0, c1 = max(c - max_cells, 0), min(c + max_cells + 1, self.distance.shape[1])
        window = self.distance[r0:r1, c0:c1]
        if not np.isfinite(window).any():
            return None
        rows, cols = np.mgrid[r0:r1, c0:c1]
        cx = self.origin[0] + (cols + 0.5) * self.resolution
        cy = self.origin[1] + (rows + 0.5) * self.resolution
        total = window + np.hypot(cx - x, cy - y)
        rr, cc = np.unravel_index(np.argmin(total), total.shape)
        return r0 + int(rr), c0 + int(cc)

    def lookup(self, x: float, y: float) -> float:
        """Geodesic distance at a point. Where the point's cell is blocked on the grid (close
        to an obstacle), the best nearby reachable cell plus the straight step to it, so the
        value stays finite wherever the robot can stand."""
        cell = self._entry_cell(x, y)
        if cell is None:
            return math.inf
        cx, cy = self.center(*cell)
        return float(self.distance[cell]) + (0.0 if cell == self.cell(x, y) else math.hypot(cx - x, cy - y))

    def path_from(self, x: float, y: float) -> list[tuple[float, float]]:
        """Cell-centre path from a point to the goal region (empty if unreachable)."""
        cell = self._entry_cell(x, y)
        if cell is None:
            return []
        cells = self.mcp.traceback(cell)  # goal ... start
        return [self.center(rr, cc) for rr, cc in reversed(cells)]


class LayoutError(RuntimeError):
    """The generator could not place a solvable room (parameters too tight)."""


def generate_layout(rng: np.random.Generator, config: LayoutConfig, max_tries: int = 50) -> Layout:
    """Draw a solvable room: the goal is reachable from the start with the planner's margin."""
    for _ in range(max_tries):
        layout = _draw_room(rng, config)
        if layout is not None:
            return layout
    raise LayoutError(f"no solvable layout in {max_tries} tries with {config}")


def _draw_room(rng: np.random.Generator, cfg: LayoutConfig) -> Layout | None:
    lo, hi = cfg.room_size
    width, depth = (float(v) for v in rng.uniform(lo, hi, size=2))
    t, hgt = cfg.wall_thickness, cfg.wall_height
    hw, hd = width / 2.0, depth / 2.0
    walls = [
        Wall(Footprint(0.0, hd + t / 2, hw + t, t / 2), hgt),
        Wall(Footprint(0.0, -hd - t / 2, hw + t, t / 2), hgt),
        Wall(Footprint(hw + t / 2, 0.0, t / 2, hd), hgt),
        Wall(Footprint(-hw - t / 2, 0.0, t / 2, hd), hgt),
    ]
    if rng.uniform() < cfg.partition_probability:
        walls += _partition(rng, width, depth, t, hgt)
    target = None
    for _ in range(50):
        tx, ty = float(rng.uniform(-hw + 0.8, hw - 0.8)), float(rng.uniform(-hd + 0.8, hd - 0.8))
        if min(w.footprint.distance(tx, ty) for w in walls) > 0.75:
            target = Pose2D(tx, ty, float(rng.uniform(-math.pi, math.pi)))
            break
    if target is None:
        return None
    obstacles: list[Obstacle] = []
    for _ in range(int(rng.integers(0, cfg.max_obstacles + 1))):
        for _attempt in range(20):
            ob = _draw_obstacle(rng, hw, hd)
            fp = ob.footprint
            if math.hypot(fp.x - target.x, fp.y - target.y) - fp.bounding_radius < 0.9:
                continue
            if min(w.footprint.distance(fp.x, fp.y) for w in walls) < fp.bounding_radius + 0.05:
                continue
            if any(
                math.hypot(fp.x - o.footprint.x, fp.y - o.footprint.y)
                < fp.bounding_radius + o.footprint.bounding_radius + 0.1
                for o in obstacles
            ):
                continue
            obstacles.append(ob)
            break
    layout = Layout(width, depth, walls, obstacles, target, Pose2D(0.0, 0.0, 0.0), cfg)
    plan = layout.plan_field
    reachable = np.isfinite(plan.distance) & (plan.distance >= cfg.min_start_distance)
    candidates = np.argwhere(reachable)
    if len(candidates) == 0:
        return None
    r, c = candidates[int(rng.integers(len(candidates)))]
    sx, sy = plan.center(int(r), int(c))
    sx += float(rng.uniform(-0.5, 0.5)) * GRID_RESOLUTION
    sy += float(rng.uniform(-0.5, 0.5)) * GRID_RESOLUTION
    if layout.clearance(sx, sy) <= cfg.robot_radius:
        return None
    layout.start = Pose2D(sx, sy, float(rng.uniform(-math.pi, math.pi)))
    return layout


def _partition(rng: np.random.Generator, width: float, depth: float, t: float, hgt: float) -> list[Wall]:
    """An interior wall across the room with one doorway."""
    along_x = bool(rng.uniform() < 0.5)  # wall runs along x (splits depth) or along y
    span = width if along_x else depth
    across = depth if along_x else width
    pos = float(rng.uniform(-0.15, 0.15)) * across
    door = float(rng.uniform(0.9, 1.3))
    door_c = float(rng.uniform(-span / 2 + door / 2 + 0.3, span / 2 - door / 2 - 0.3))
    walls = []
    for a, b in ((-span / 2, door_c - door / 2), (door_c + door / 2, span / 2)):
        if b - a < 0.05:
            continue
        mid, half = (a + b) / 2, (b - a) / 2
        fp = Footprint(mid, pos, half, t / 2) if along_x else Footprint(pos, mid, t / 2, half)
        walls.append(Wall(fp, hgt))
    return walls


def _draw_obstacle(rng: np.random.Generator, hw: float, hd: float) -> Obstacle:
    x, y = float(rng.uniform(-hw + 0.3, hw - 0.3)), float(rng.uniform(-hd + 0.3, hd - 0.3))
    height = float(rng.uniform(0.4, 1.2))
    if rng.uniform() < 0.5:
        hx, hy = (float(v) for v in rng.uniform(0.15, 0.4, size=2))
        return Obstacle("box", Footprint(x, y, hx, hy, float(rng.uniform(-math.pi, math.pi))), height)
    return Obstacle("cylinder", Footprint(x, y, radius=float(rng.uniform(0.12, 0.3))), height)
