"""A process-parallel vector env that also steps one env in the calling process.

``gymnasium.vector.AsyncVectorEnv`` keeps every env in a worker and the main process only
waits. On a small CPU (a 2-core robot computer, this project's CI machine) the two wake-ups per
step cost as much as a 64x64 render, so two workers reach only ~1.2x one env. Here env 0 runs
inline while the others step in their worker processes concurrently: n envs need n-1 workers,
and the main process does useful work instead of waiting. Semantics are those of
:class:`gymnasium.vector.SyncVectorEnv` (next-step autoreset, infos, seeding).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space, create_empty_array, iterate

SPIN_SECONDS = 0.003
"""How long a waiting side polls before it blocks. A blocked process is woken through the
scheduler, which on small VMs costs a few hundred microseconds per hand-over; polling for a few
milliseconds (about one step) keeps hand-overs in the microseconds. Only used while there is a
core per process: with more envs than cores, polling would steal time from the envs."""


def _spin_recv(conn, spin: float) -> Any:
    deadline = time.perf_counter() + spin
    while not conn.poll(0) and time.perf_counter() < deadline:
        pass
    return conn.recv()


def _worker(conn, env_fn: Callable[[], gym.Env], spin: float) -> None:
    env = None
    try:
        env = env_fn()
        conn.send(("ok", (env.observation_space, env.action_space, env.metadata, env.render_mode, env.spec)))
        while True:
            cmd, arg = _spin_recv(conn, spin)
            if cmd == "step":
                conn.send(("ok", env.step(arg)))
            elif cmd == "reset":
                conn.send(("ok", env.reset(**arg)))
            elif cmd == "render":
                conn.send(("ok", env.render()))
            elif cmd == "close":
                conn.send(("ok", None))
                break
    except (KeyboardInterrupt, EOFError):
        pass
    except Exception as exc:  # noqa: BLE001 - forwarded to the parent with its traceback
        conn.send(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
    finally:
        if env is not None:
            env.close()
        conn.close()


class _RemoteEnv:
    """Env proxy living in a worker process; ``begin`` sends a command ahead of time."""

    def __init__(self, env_fn: Callable[[], gym.Env], ctx: Any, spin: float):
        self.spin = spin
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker, args=(child, env_fn, spin), daemon=True)
        self.process.start()
        child.close()
        (self.observation_space, self.action_space, self.metadata, self.render_mode, self.spec) = self._recv()
        self._pending: tuple[str, Any] | None = None

    def _recv(self) -> Any:
        status, payload = _spin_recv(self.conn, self.spin)
        if status == "error":
            raise RuntimeError(f"vector env worker failed: {payload}")
        return payload

    def begin(self, cmd: str, arg: Any) -> None:
        assert self._pending is None, "a command is already in flight"
        self.conn.send((cmd, arg))
        self._pending = (cmd, arg)

    def _call(self, cmd: str, arg: Any) -> Any:
        if self._pending is not None:
            pending_cmd, pending_arg = self._pending
            self._pending = None
            result = self._recv()
            if pending_cmd == cmd and (cmd != "reset" or pending_arg == arg):
                return result
        self.conn.send((cmd, arg))
        return self._recv()

    def step(self, action: Any):
        return self._call("step", action)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        return self._call("reset", {"seed": seed, "options": options})

    def render(self):
        return self._call("render", None)

    def close(self) -> None:
        if self.process.is_alive():
            try:
                self._call("close", None)
            except (EOFError, BrokenPipeError, OSError, RuntimeError):
                pass
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
        self.conn.close()

    @property
    def unwrapped(self):  # pragma: no cover - the real env lives in another process
        raise AttributeError("the env runs in a worker process; use env 0 for unwrapped access")


class InlineAsyncVectorEnv(VectorEnv):
    """Vector env whose envs 1..n-1 step in worker processes in parallel with env 0, which
    steps in this process.

    Results, infos and autoreset behave as in :class:`gymnasium.vector.SyncVectorEnv` with the
    default ``next_step`` autoreset mode (or ``disabled``); the bookkeeping is kept lean because
    on a small CPU it is on the critical path of every step.

    Args:
        env_fns: env constructors; with the ``fork`` start method they need not be picklable.
        context: multiprocessing start method (default ``fork`` where available).
        copy: return a copy of the batched observations (as SyncVectorEnv does).
        autoreset_mode: ``next_step`` (default) or ``disabled``.
    """

    def __init__(
        self,
        env_fns: Sequence[Callable[[], gym.Env]],
        context: str | None = None,
        copy: bool = True,
        autoreset_mode: str | AutoresetMode = AutoresetMode.NEXT_STEP,
    ):
        super().__init__()
        self.autoreset_mode = AutoresetMode(autoreset_mode)
        if self.autoreset_mode == AutoresetMode.SAME_STEP:
            raise ValueError("InlineAsyncVectorEnv supports autoreset_mode 'next_step' and 'disabled'")
        if context is None:
            context = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
        ctx = mp.get_context(context)
        # Workers first: fork before this process opens its own PyBullet client.
        spin = SPIN_SECONDS if len(env_fns) <= (os.cpu_count() or 1) else 0.0
        self._remotes = [_RemoteEnv(fn, ctx, spin) for fn in env_fns[1:]]
        try:
            self._local = env_fns[0]()
        except BaseException:
            for remote in self._remotes:
                remote.close()
            raise
        self.envs: list[Any] = [self._local, *self._remotes]
        self.num_envs = len(self.envs)
        self.copy = copy
        self.metadata = dict(self._local.metadata)
        self.metadata["autoreset_mode"] = self.autoreset_mode
        self.render_mode = self._local.render_mode
        self.spec = self._local.spec
        self.single_observation_space = self._local.observation_space
        self.single_action_space = self._local.action_space
        for i, env in enumerate(self._remotes, start=1):
            if env.observation_space != self.single_observation_space:
                raise RuntimeError(
                    f"env {i} has observation space {env.observation_space}, env 0 {self.single_observation_space}"
                )
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._observations = create_empty_array(self.single_observation_space, n=self.num_envs, fn=np.zeros)
        self._rewards = np.zeros(self.num_envs, dtype=np.float64)
        self._terminations = np.zeros(self.num_envs, dtype=np.bool_)
        self._truncations = np.zeros(self.num_envs, dtype=np.bool_)
        self._autoreset_envs = np.zeros(self.num_envs, dtype=np.bool_)

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None):
        if seed is None or isinstance(seed, int):
            seeds = [None if seed is None else seed + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(f"{len(seeds)} seeds for {self.num_envs} envs")
        for i, remote in enumerate(self._remotes, start=1):
            remote.begin("reset", {"seed": seeds[i], "options": options})
        results = [self._local.reset(seed=seeds[0], options=options)]
        results += [remote.reset(seed=seeds[i], options=options) for i, remote in enumerate(self._remotes, start=1)]
        infos: dict[str, Any] = {}
        for i, (obs, info) in enumerate(results):
            self._observations[i] = obs
            infos = self._add_info(infos, info, i)
        self._terminations[:] = self._truncations[:] = self._autoreset_envs[:] = False
        return (self._observations.copy() if self.copy else self._observations), infos

    def step(self, actions: Any):
        acts = list(iterate(self.action_space, actions))
        resetting = self.autoreset_mode == AutoresetMode.NEXT_STEP and self._autoreset_envs
        for i, remote in enumerate(self._remotes, start=1):
            if resetting is not False and resetting[i]:
                remote.begin("reset", {"seed": None, "options": None})
            else:
                remote.begin("step", acts[i])
        infos: dict[str, Any] = {}
        for i, env in enumerate(self.envs):
            if resetting is not False and resetting[i]:
                obs, info = env.reset()
                self._rewards[i], self._terminations[i], self._truncations[i] = 0.0, False, False
            else:
                obs, self._rewards[i], self._terminations[i], self._truncations[i], info = env.step(acts[i])
            self._observations[i] = obs
            infos = self._add_info(infos, info, i)
        self._autoreset_envs = self._terminations | self._truncations
        return (
            self._observations.copy() if self.copy else self._observations,
            self._rewards.copy(),
            self._terminations.copy(),
            self._truncations.copy(),
            infos,
        )

    def render(self) -> tuple[Any, ...] | None:
        return tuple(env.render() for env in self.envs)

    def close_extras(self, **kwargs: Any) -> None:
        for env in self.envs:
            env.close()


def make_inline_vec(num_envs: int, env_id: str = "Goggles/NavToTarget-v0", **env_kwargs: Any) -> InlineAsyncVectorEnv:
    """``num_envs`` copies of ``env_id`` in ``num_envs`` processes (this one included)."""
    return InlineAsyncVectorEnv([lambda: gym.make(env_id, **env_kwargs)] * num_envs)


__all__ = ["InlineAsyncVectorEnv", "make_inline_vec"]
