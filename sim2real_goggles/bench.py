"""Benchmarks (``goggles bench ...``): JSON records, ratios measured in one run."""

from __future__ import annotations

import time
from typing import Any

import gymnasium as gym
import numpy as np
import pybullet as pb

from sim2real_goggles.envs.vector import InlineAsyncVectorEnv


def _vector_steps_per_s(venv: gym.vector.VectorEnv, vec_steps: int, rng: np.random.Generator) -> float:
    """Env steps per second of a 2-env vector over ``vec_steps`` vector steps (after warm-up)."""
    for _ in range(10):
        venv.step(rng.integers(0, 3, size=2))
    t0 = time.perf_counter()
    for _ in range(vec_steps):
        venv.step(rng.integers(0, 3, size=2))
    return 2 * vec_steps / (time.perf_counter() - t0)


def _single_steps_per_s(env: gym.Env, actions: np.ndarray, seed: int) -> float:
    """Steps per second of one env in this process, resets included."""
    env.reset(seed=seed)
    t0 = time.perf_counter()
    for a in actions:
        _, _, term, trunc, _ = env.step(a)
        if term or trunc:
            env.reset()
    return len(actions) / (time.perf_counter() - t0)


def bench_env(
    steps: int = 3000, image_size: int = 64, profile: str = "sim", seed: int = 0, rounds: int = 3
) -> dict[str, Any]:
    """Env step cost against the bare PyBullet render of the same camera at the same poses,
    and env throughput of one process against vectors of 2 processes (random actions).

    Three measurements in one run: (1) each env step is followed by a bare ``getCameraImage``
    of the same client, scene, camera and pose, timed separately (``overhead_ratio``);
    (2) one env alone, steps per second with resets (``steps_per_s``); (3) the same number of
    env steps in :class:`InlineAsyncVectorEnv` and in gymnasium's ``AsyncVectorEnv``, 2 envs
    each. (2) and (3) alternate over ``rounds`` rounds; the medians are reported.
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
    # Throughput: single env and 2-env vectors in alternating rounds (this machine's speed
    # drifts between seconds; alternating keeps each ratio's two sides close in time).
    make = lambda: gym.make("Goggles/NavToTarget-v0", image_size=image_size, profile=profile)  # noqa: E731
    inline = InlineAsyncVectorEnv([make] * 2)
    gym_async = gym.vector.AsyncVectorEnv([make] * 2)
    single, inline_sps, gym_async_sps = [], [], []
    try:
        for venv in (inline, gym_async):
            venv.reset(seed=seed)
        for r in range(rounds):
            single.append(_single_steps_per_s(env, actions[: steps // rounds], seed + r))
            inline_sps.append(_vector_steps_per_s(inline, steps // rounds // 2, rng))
            gym_async_sps.append(_vector_steps_per_s(gym_async, steps // rounds // 2, rng))
    finally:
        env.close()
        inline.close()
        gym_async.close()
    sps = float(np.median(single))
    vec_sps = float(np.median(inline_sps))
    gym_vec_sps = float(np.median(gym_async_sps))

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
