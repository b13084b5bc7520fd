"""The inline-async vector env behaves exactly like gymnasium's SyncVectorEnv."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from sim2real_goggles.envs.vector import InlineAsyncVectorEnv, make_inline_vec


@pytest.mark.parametrize("handoff", ["shm", "pipe"])
def test_inline_vector_matches_sync_vector_through_autoreset(handoff):
    kwargs = dict(image_size=32, max_episode_steps=25)
    inline = InlineAsyncVectorEnv([lambda: gym.make("Goggles/NavToTarget-v0", **kwargs)] * 2, handoff=handoff)
    sync = gym.vector.SyncVectorEnv([lambda: gym.make("Goggles/NavToTarget-v0", **kwargs)] * 2)
    try:
        oa, ia = inline.reset(seed=11)
        ob, ib = sync.reset(seed=11)
        assert np.array_equal(oa, ob)
        assert np.array_equal(ia["robot_pose"], ib["robot_pose"])
        rng = np.random.default_rng(0)
        resets = 0
        for _ in range(60):  # crosses the 25-step truncation, so autoreset is exercised
            actions = rng.integers(0, 3, size=2)
            ra, rb = inline.step(actions), sync.step(actions)
            for x, y in zip(ra[:4], rb[:4]):
                assert np.array_equal(x, y)
            assert np.array_equal(ra[4]["robot_pose"], rb[4]["robot_pose"])
            resets += int(ra[3].sum())
        assert resets >= 2
    finally:
        inline.close()
        sync.close()


def test_worker_error_is_reported():
    def broken():
        raise RuntimeError("camera driver missing")

    with pytest.raises(RuntimeError, match="camera driver missing"):
        InlineAsyncVectorEnv([lambda: gym.make("Goggles/NavToTarget-v0", image_size=32), broken])


@pytest.mark.parametrize("handoff", ["shm", "pipe"])
def test_three_envs_and_a_dead_worker_is_reported(handoff):
    vec = InlineAsyncVectorEnv([lambda: gym.make("Goggles/NavToTarget-v0", image_size=32)] * 3, handoff=handoff)
    try:
        obs, _ = vec.reset(seed=0)
        assert obs.shape == (3, 32, 32, 3)
        vec._remotes[0].process.kill()
        vec._remotes[0].process.join()
        with pytest.raises((EOFError, RuntimeError, OSError)):
            vec.step(np.zeros(3, dtype=np.int64))
    finally:
        vec.close()


def test_close_stops_workers():
    vec = make_inline_vec(2, image_size=32)
    vec.reset(seed=0)
    procs = [r.process for r in vec._remotes]
    vec.close()
    assert all(not p.is_alive() for p in procs)
