"""Goggles/NavToTarget-v0: Gymnasium API, determinism, vectorisation, motion, collisions,
success and the info dict."""

from __future__ import annotations

import math
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import sim2real_goggles  # noqa: F401 - registers the environments
from sim2real_goggles.envs.nav_to_target import FORWARD, TURN_LEFT, TURN_RIGHT

ENV_ID = "Goggles/NavToTarget-v0"
SIZE = 32


@pytest.fixture
def make_env():
    envs = []

    def _make(**kwargs):
        kwargs.setdefault("image_size", SIZE)
        env = gym.make(ENV_ID, **kwargs)
        envs.append(env)
        return env

    yield _make
    for env in envs:
        env.close()


def _wrap(angle: float) -> float:
    return math.atan2(math.sin(angle), math.cos(angle))


def _free_pose(env, min_clearance: float = 0.6) -> np.ndarray:
    """A pose of the current layout with at least ``min_clearance`` to everything."""
    layout = env.unwrapped.layout
    for x in np.linspace(-layout.width / 2 + 0.3, layout.width / 2 - 0.3, 25):
        for y in np.linspace(-layout.depth / 2 + 0.3, layout.depth / 2 - 0.3, 25):
            if layout.clearance(x, y) >= min_clearance:
                return np.array([x, y, 0.3])
    raise AssertionError("no free pose in the layout")


# --------------------------------------------------------------------------- Gymnasium API


@pytest.mark.parametrize("render_mode", [None, "rgb_array"])
def test_check_env_passes_without_warnings(make_env, render_mode):
    env = make_env(render_mode=render_mode)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    relevant = [w for w in caught if "pybullet" not in str(w.filename).lower()]
    assert relevant == [], [f"{w.category.__name__}: {w.message}" for w in relevant]


def _rollout(env, seed: int, actions) -> tuple[list, list, list]:
    obs, info = env.reset(seed=seed)
    observations, rewards, poses = [obs], [], [info["robot_pose"]]
    for a in actions:
        obs, reward, terminated, truncated, info = env.step(a)
        observations.append(obs)
        rewards.append(reward)
        poses.append(info["robot_pose"])
        if terminated or truncated:
            break
    return observations, rewards, poses


@pytest.mark.parametrize("profile", ["sim", "real_lab"])
def test_same_seed_same_actions_identical_episode(make_env, profile):
    actions = np.random.default_rng(123).choice([FORWARD, FORWARD, TURN_LEFT, TURN_RIGHT], size=40)
    runs = [_rollout(make_env(profile=profile), seed=7, actions=actions) for _ in range(2)]
    (obs_a, rew_a, pose_a), (obs_b, rew_b, pose_b) = runs
    assert len(obs_a) == len(obs_b) > 10
    for a, b in zip(obs_a, obs_b):
        assert np.array_equal(a, b)
    assert rew_a == rew_b
    for a, b in zip(pose_a, pose_b):
        assert np.array_equal(a, b)
    # The robot actually went somewhere and the views changed.
    assert not np.array_equal(pose_a[0], pose_a[-1])
    assert any(not np.array_equal(obs_a[0], o) for o in obs_a[1:])


@pytest.mark.parametrize("profile", ["sim", "real_lab"])
def test_different_seeds_different_first_observation(make_env, profile):
    env = make_env(profile=profile)
    first = [env.reset(seed=s)[0] for s in range(3)]
    assert not np.array_equal(first[0], first[1])
    assert not np.array_equal(first[1], first[2])


@pytest.mark.parametrize("profile", ["sim", "real_lab"])
def test_reset_with_same_seed_twice_repeats_first_observation(make_env, profile):
    env = make_env(profile=profile)
    obs1, info1 = env.reset(seed=11)
    for _ in range(5):
        env.step(FORWARD)
    obs2, info2 = env.reset(seed=11)
    assert np.array_equal(obs1, obs2)
    assert np.array_equal(info1["robot_pose"], info2["robot_pose"])
    assert np.array_equal(info1["target_pose"], info2["target_pose"])


def test_non_square_observation(make_env):
    env = make_env(image_size=(48, 64))
    assert env.observation_space.shape == (48, 64, 3)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (48, 64, 3)
    assert obs.dtype == np.uint8
    assert env.observation_space.contains(obs)
    obs, *_ = env.step(FORWARD)
    assert obs.shape == (48, 64, 3)
    assert env.observation_space.contains(obs)


def test_render_rgb_array(make_env):
    env = make_env(render_mode="rgb_array", render_size=64)
    env.reset(seed=0)
    frame = env.render()
    assert isinstance(frame, np.ndarray)
    assert frame.dtype == np.uint8
    assert frame.ndim == 3 and frame.shape[0] == 64 and frame.shape[2] == 3
    assert frame.std() > 0


@pytest.mark.parametrize("action", [3, -1])
def test_invalid_action_raises(make_env, action):
    env = make_env()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="invalid action"):
        env.unwrapped.step(action)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_vector_envs(mode):
    envs = gym.make_vec(ENV_ID, num_envs=2, vectorization_mode=mode, image_size=SIZE)
    try:
        obs, info = envs.reset(seed=[0, 1])
        assert obs.shape == (2, SIZE, SIZE, 3) and obs.dtype == np.uint8
        assert not np.array_equal(obs[0], obs[1])
        single = gym.make(ENV_ID, image_size=SIZE)
        try:
            assert np.array_equal(obs[1], single.reset(seed=1)[0])  # same as a lone env, same seed
        finally:
            single.close()
        for _ in range(5):
            obs, rewards, terminated, truncated, info = envs.step(np.array([FORWARD, TURN_LEFT]))
            assert obs.shape == (2, SIZE, SIZE, 3)
            assert rewards.shape == (2,)
    finally:
        envs.close()


# --------------------------------------------------------------------------- motion and collisions


def test_forward_and_turn_step_sizes(make_env):
    env = make_env()
    env.reset(seed=0)
    u = env.unwrapped
    start = _free_pose(env)
    u.pose = start.copy()
    _, _, _, _, info = env.step(FORWARD)
    assert not info["collision"]
    moved = info["robot_pose"] - start
    step = u.forward_speed * u.control_period
    assert step == pytest.approx(0.1)
    assert math.hypot(moved[0], moved[1]) == pytest.approx(step, abs=1e-9)
    assert math.atan2(moved[1], moved[0]) == pytest.approx(start[2], abs=1e-9)
    assert moved[2] == pytest.approx(0.0, abs=1e-12)

    before = info["robot_pose"]
    _, _, _, _, info = env.step(TURN_LEFT)
    assert _wrap(info["robot_pose"][2] - before[2]) == pytest.approx(math.radians(15))
    assert info["robot_pose"][:2] == pytest.approx(before[:2])
    _, _, _, _, info = env.step(TURN_RIGHT)
    _, _, _, _, info = env.step(TURN_RIGHT)
    assert _wrap(info["robot_pose"][2] - before[2]) == pytest.approx(math.radians(-15))


def test_yaw_stays_wrapped(make_env):
    env = make_env()
    env.reset(seed=0)
    for _ in range(30):
        _, _, _, _, info = env.step(TURN_LEFT)
        assert -math.pi <= info["robot_pose"][2] <= math.pi


def test_driving_into_a_wall(make_env):
    env = make_env(max_obstacles=0, partition_probability=0.0)
    env.reset(seed=4)
    u = env.unwrapped
    layout = u.layout
    radius = u.layout_config.robot_radius
    target = layout.target
    # A lane parallel to x that keeps well clear of the chair, heading for the east wall.
    y = target.y + 1.0 if target.y + 1.0 < layout.depth / 2 - 0.5 else target.y - 1.0
    u.pose = np.array([-layout.width / 2 + 0.5, y, 0.0])
    env.step(TURN_LEFT)
    prev_geodesic = env.step(TURN_RIGHT)[4]["geodesic_distance"]  # heading +x again, no motion

    collided_steps = 0
    for _ in range(int(layout.width / 0.1) + 15):
        _, reward, terminated, truncated, info = env.step(FORWARD)
        assert not terminated
        assert layout.clearance(*info["robot_pose"][:2]) > radius
        assert info["robot_pose"][0] < layout.width / 2 - radius
        if info["collision"]:
            collided_steps += 1
            expected = (
                u.progress_weight * (prev_geodesic - info["geodesic_distance"]) - u.step_cost - u.collision_penalty
            )
            assert reward == pytest.approx(expected)
        assert info["collisions"] == collided_steps
        prev_geodesic = info["geodesic_distance"]
    assert collided_steps >= 10  # it keeps pushing against the wall at the end
    # It stopped at the wall, close to contact, and never went through.
    assert info["robot_pose"][0] > layout.width / 2 - radius - 0.1
    # Turning away is not a collision and the counter keeps its value.
    _, _, _, _, info = env.step(TURN_LEFT)
    assert not info["collision"] and info["collisions"] == collided_steps


def test_collision_counter_resets_on_reset(make_env):
    env = make_env(max_obstacles=0, partition_probability=0.0)
    env.reset(seed=4)
    u = env.unwrapped
    u.pose = np.array(
        [u.layout.width / 2 - 0.25, u.layout.target.y + 1.0 if u.layout.target.y < 0 else u.layout.target.y - 1.0, 0.0]
    )
    _, _, _, _, info = env.step(FORWARD)
    assert info["collision"] and info["collisions"] == 1
    _, info = env.reset(seed=5)
    assert info["collisions"] == 0 and not info["collision"]


# --------------------------------------------------------------------------- success


def _approach(env, distance: float, facing: bool) -> np.ndarray | None:
    """A pose ``distance`` from the chair, facing it (or away), clear of everything else."""
    u = env.unwrapped
    t = u.layout.target
    for a in np.linspace(-math.pi, math.pi, 36, endpoint=False):
        x, y = t.x + distance * math.cos(a), t.y + distance * math.sin(a)
        if u.layout.clearance(x, y) <= u.layout_config.robot_radius + 0.02:
            continue
        yaw = _wrap(a + math.pi) if facing else a
        return np.array([x, y, yaw])
    return None


def test_success_requires_distance_and_facing(make_env):
    env = make_env()
    checked = 0
    for seed in range(3):
        env.reset(seed=seed)
        u = env.unwrapped
        for distance, facing, expected in ((0.5, True, True), (0.5, False, False), (0.8, True, False)):
            pose = _approach(env, distance, facing)
            assert pose is not None
            u.pose = pose
            assert u.is_success() is expected, (seed, distance, facing)
            checked += 1
        # Facing within the tolerance (30 degrees) still counts; beyond does not.
        pose = _approach(env, 0.5, True)
        u.pose = pose + np.array([0.0, 0.0, math.radians(25)])
        assert u.is_success()
        u.pose = pose + np.array([0.0, 0.0, math.radians(40)])
        assert not u.is_success()
    assert checked == 9


def test_step_into_success_terminates_with_bonus(make_env):
    env = make_env()
    env.reset(seed=2)
    u = env.unwrapped
    pose = _approach(env, 0.68, True)
    assert pose is not None
    # Start 15 degrees off and turn to face the chair: no motion, not yet in range.
    u.pose = pose + np.array([0.0, 0.0, math.radians(15)])
    _, _, terminated, _, info = env.step(TURN_RIGHT)
    assert not terminated and not info["is_success"]
    prev_geodesic = info["geodesic_distance"]
    _, reward, terminated, truncated, info = env.step(FORWARD)
    assert not info["collision"]
    assert info["distance"] == pytest.approx(0.58, abs=1e-6)
    assert terminated and not truncated
    assert info["is_success"]
    expected = u.progress_weight * (prev_geodesic - info["geodesic_distance"]) - u.step_cost + u.success_bonus
    assert reward == pytest.approx(expected)
    assert reward > 0.9 * u.success_bonus


def test_reward_is_progress_minus_step_cost(make_env):
    env = make_env()
    _, info = env.reset(seed=1)
    u = env.unwrapped
    prev = info["geodesic_distance"]
    for a in (TURN_LEFT, FORWARD, FORWARD, TURN_RIGHT, FORWARD):
        _, reward, terminated, _, info = env.step(a)
        assert not terminated
        penalty = u.collision_penalty if info["collision"] else 0.0
        assert reward == pytest.approx(prev - info["geodesic_distance"] - u.step_cost - penalty)
        prev = info["geodesic_distance"]


# --------------------------------------------------------------------------- info


INFO_KEYS = {
    "robot_pose",
    "target_pose",
    "distance",
    "geodesic_distance",
    "collision",
    "collisions",
    "is_success",
    "profile",
}


def test_info_keys(make_env):
    env = make_env(profile="real_office")
    _, info = env.reset(seed=0)
    assert INFO_KEYS <= set(info)
    assert "mask" not in info and "paired" not in info
    _, _, _, _, info = env.step(FORWARD)
    assert INFO_KEYS <= set(info)
    assert info["profile"] == "real_office"
    assert info["robot_pose"].shape == (3,) and info["target_pose"].shape == (3,)
    dx, dy = info["target_pose"][:2] - info["robot_pose"][:2]
    assert info["distance"] == pytest.approx(math.hypot(dx, dy))
    assert info["geodesic_distance"] >= info["distance"] - 0.6  # goal region radius
    assert isinstance(info["collision"], bool) and isinstance(info["is_success"], bool)


def test_info_mask(make_env):
    env = make_env(info_mask=True, image_size=(32, 48))
    _, info = env.reset(seed=0)
    floor_seen = 0
    for _ in range(6):
        mask = info["mask"]
        assert mask.shape == (32, 48) and mask.dtype == np.uint8
        assert set(np.unique(mask).tolist()) <= {0, 1, 2, 3, 255}
        floor_seen += int((mask == 0).any())
        _, _, _, _, info = env.step(TURN_LEFT)
    assert floor_seen >= 5  # the camera looks down a little: floor is in (nearly) every view


def test_info_paired(make_env):
    env = make_env(info_mask=True, paired_profiles=["real_lab"])
    obs, info = env.reset(seed=0)
    assert set(info["paired"]) == {"real_lab"}
    assert set(info["paired_mask"]) == {"real_lab"}
    paired = info["paired"]["real_lab"]
    assert paired.shape == obs.shape and paired.dtype == np.uint8
    assert not np.array_equal(paired, obs)
    assert info["paired_mask"]["real_lab"].shape == (SIZE, SIZE)


def test_paired_without_mask_has_no_paired_mask(make_env):
    env = make_env(paired_profiles=["real_office"])
    _, info = env.reset(seed=0)
    assert set(info["paired"]) == {"real_office"}
    assert "paired_mask" not in info and "mask" not in info


def test_a_look_renders_the_same_as_observation_or_as_paired_view():
    main = gym.make("Goggles/NavToTarget-v0", image_size=32, profile="real_lab")
    paired = gym.make(
        "Goggles/NavToTarget-v0", image_size=32, profile="sim", paired_profiles=["real_office", "real_lab"]
    )
    try:
        for seed in (0, 1):
            obs, _ = main.reset(seed=seed)
            _, info = paired.reset(seed=seed)
            assert np.array_equal(obs, info["paired"]["real_lab"])
            for action in (0, 1, 0, 2):
                obs, *_ = main.step(action)
                *_, info = paired.step(action)
                assert np.array_equal(obs, info["paired"]["real_lab"])
        # Autoreset-style resets without a seed walk the same rooms either way.
        main.reset()
        paired.reset()
        assert np.array_equal(main.unwrapped.pose, paired.unwrapped.pose)
    finally:
        main.close()
        paired.close()
