"""Benchmarks (``goggles bench ...``): JSON records, ratios measured in one run."""

from __future__ import annotations

import time
from typing import Any

import gymnasium as gym
import numpy as np
import pybullet as pb

from sim2real_goggles.envs.vector import InlineAsyncVectorEnv


def _timed_steps(env: gym.Env | gym.vector.VectorEnv, actions: np.ndarray, seed: int | list[int]) -> float:
    """Seconds spent stepping ``actions`` after a (untimed) reset with ``seed``. Episodes that
    end are reset without a seed, as vector autoreset does, so a single env fed one column of
    a vector's actions walks through exactly the rooms and poses of that vector env."""
    env.reset(seed=seed)
    elapsed = 0.0
    vector = isinstance(env, gym.vector.VectorEnv)
    for a in actions:
        t0 = time.perf_counter()
        _, _, term, trunc, _ = env.step(a)
        elapsed += time.perf_counter() - t0
        if not vector and (term or trunc):
            t0 = time.perf_counter()
            env.reset()
            elapsed += time.perf_counter() - t0
    return elapsed


def bench_env(
    steps: int = 3000, image_size: int = 64, profile: str = "sim", seed: int = 0, round_steps: int = 100
) -> dict[str, Any]:
    """Env step cost against the bare PyBullet render of the same camera at the same poses,
    and env throughput of one process against vectors of 2 processes (random actions).

    Three measurements in one run: (1) each env step is followed by a bare ``getCameraImage``
    of the same client, scene, camera and pose, timed separately (``overhead_ratio``);
    (2) one env alone, steps per second (``steps_per_s``); (3) the same work (same rooms, same
    actions) in :class:`InlineAsyncVectorEnv` and in gymnasium's ``AsyncVectorEnv`` with 2 envs
    each, alternating with (2) in rounds of ``round_steps`` steps per env: this machine's speed
    drifts by +-20% over seconds, and fine alternation keeps both sides of a ratio under the
    same conditions.
    """
    env = gym.make("Goggles/NavToTarget-v0", image_size=image_size, profile=profile)
    core = env.unwrapped
    rng = np.random.default_rng(seed)
    actions = rng.integers(0, 3, size=steps)
    env.reset(seed=seed)
    for a in actions[:50]:  # warm-up
        env.step(a)
    env.reset(seed=seed)
    renderer = core.renderer
    rh, rw = renderer.camera.render_size
    step_time = bare = 0.0
    resets = 0
    for a in actions:
        t0 = time.perf_counter()
        _, _, term, trunc, _ = env.step(a)
        t1 = time.perf_counter()
        # The bare render: the same client, scene, camera and pose, straight after the step.
        pb.getCameraImage(
            rw,
            rh,
            core.view_matrix(),
            renderer.projection,
            renderer=pb.ER_TINY_RENDERER,
            flags=pb.ER_NO_SEGMENTATION_MASK,
            physicsClientId=renderer.client,
            **renderer._light_kwargs,
        )
        t2 = time.perf_counter()
        step_time += t1 - t0
        bare += t2 - t1
        if term or trunc:
            env.reset()
            resets += 1
    # Throughput on identical work: each round, a 2-env vector steps rooms (seed, seed + 1)
    # with an action column each; the single env then steps the same two rooms with the same
    # actions one after the other. Rounds alternate so both sides see the same machine state.
    make = lambda: gym.make("Goggles/NavToTarget-v0", image_size=image_size, profile=profile)  # noqa: E731
    inline = InlineAsyncVectorEnv([make] * 2)
    gym_async = gym.vector.AsyncVectorEnv([make] * 2)
    per_round = max(1, min(round_steps, steps // 2))
    rounds = max(1, steps // (2 * per_round))
    single_s = inline_s = gym_async_s = 0.0
    try:
        for r in range(rounds):
            seeds = [seed + 2 * r, seed + 2 * r + 1]
            acts = rng.integers(0, 3, size=(per_round, 2))
            inline_s += _timed_steps(inline, acts, seeds)
            gym_async_s += _timed_steps(gym_async, acts, seeds)
            single_s += _timed_steps(env, acts[:, 0], seeds[0]) + _timed_steps(env, acts[:, 1], seeds[1])
    finally:
        env.close()
        inline.close()
        gym_async.close()
    work = 2 * per_round * rounds
    sps = work / single_s
    vec_sps = work / inline_s
    gym_vec_sps = work / gym_async_s

    env_step_ms = step_time / steps * 1e3
    bare_ms = bare / steps * 1e3
    return {
        "benchmark": "env",
        "image_size": image_size,
        "profile": profile,
        "steps": steps,
        "resets": resets,
        "env_step_ms": round(env_step_ms, 4),
        "bare_render_ms": round(bare_ms, 4),
        "overhead_ratio": round(env_step_ms / bare_ms, 4),
        "steps_per_s": round(sps, 1),
        "vector2_steps_per_s": round(vec_sps, 1),
        "vector2_speedup": round(vec_sps / sps, 3),
        "vector2_impl": "InlineAsyncVectorEnv (env 0 in this process, env 1 in a worker)",
        "gym_async2_steps_per_s": round(gym_vec_sps, 1),
        "gym_async2_speedup": round(gym_vec_sps / sps, 3),
        "rounds": rounds,
        "targets": {"overhead_ratio_max": 1.3, "vector2_speedup_min": 1.6},
        "meets_targets": bool(env_step_ms / bare_ms <= 1.3 and vec_sps / sps >= 1.6),
    }
