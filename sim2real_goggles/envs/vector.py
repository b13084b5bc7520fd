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
import pickle
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space, create_empty_array, iterate

SPIN_SECONDS = 0.003
"""How long a waiting side polls before it sleeps. A process blocked in a pipe read is woken
through the scheduler, which on small VMs costs 0.1-0.5 ms per hand-over (measured here); a
shared-memory mailbox polled for a few milliseconds (about one step) hands over in
microseconds. Polling is only used while there is a core per process: with more envs than cores
it would steal time from the envs, so the workers then block on a pipe instead."""

MAILBOX_BYTES = 1 << 20
"""Capacity of each shared-memory mailbox; larger messages travel through the pipe."""


class _PipeLink:
    """Messages over a pipe (blocking reads); used when envs outnumber cores."""

    def __init__(self, conn):
        self.conn = conn

    def send(self, obj: Any, alive: Callable[[], bool]) -> None:
        self.conn.send(obj)

    def recv(self, alive: Callable[[], bool]) -> Any:
        while not self.conn.poll(0.5):
            if not alive():
                raise EOFError("the other side of the vector env link is gone")
        return self.conn.recv()


class _Mailbox:
    """One direction of a shared-memory link: a byte buffer and [sequence, length] counters.

    The lock is uncontended (taken only around the counters); it is there for its memory
    barrier, so a reader that sees the new sequence number also sees the payload on every
    architecture, not only on x86. It is never waited on without a liveness check: a process
    killed while holding it must not hang the other side.
    """

    def __init__(self, ctx: Any, capacity: int):
        self.data = ctx.RawArray("b", capacity)
        self.meta = ctx.RawArray("q", 2)
        self.lock = ctx.Lock()

    def attach(self) -> None:
        self.view = memoryview(self.data).cast("B")
        self.seen = self.meta[0]

    def put(self, payload: bytes, conn, alive: Callable[[], bool]) -> None:
        n = len(payload)
        if n <= len(self.view):
            self.view[:n] = payload
        else:
            conn.send_bytes(payload)
            n = -1
        while not self.lock.acquire(timeout=0.2):
            if not alive():
                raise EOFError("the other side of the vector env link is gone")
        try:
            self.meta[1] = n
            self.meta[0] += 1
        finally:
            self.lock.release()

    def take(self, conn, spin: float, alive: Callable[[], bool]) -> bytes:
        deadline = time.perf_counter() + spin
        pause = 2e-5
        while True:
            if self.lock.acquire(False):
                try:
                    fresh = self.meta[0] != self.seen
                    n = self.meta[1]
                finally:
                    self.lock.release()
                if fresh:
                    break
            if time.perf_counter() >= deadline:
                if not alive():
                    raise EOFError("the other side of the vector env link is gone")
                time.sleep(pause)
                pause = min(pause * 2, 2e-3)
        self.seen += 1
        return conn.recv_bytes() if n < 0 else bytes(self.view[:n])


class _ShmLink:
    """Messages through two shared-memory mailboxes (request, response), polled."""

    def __init__(self, conn, outbox: _Mailbox, inbox: _Mailbox, spin: float):
        self.conn, self.outbox, self.inbox, self.spin = conn, outbox, inbox, spin
        outbox.attach()
        inbox.attach()

    def send(self, obj: Any, alive: Callable[[], bool]) -> None:
        self.outbox.put(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL), self.conn, alive)

    def recv(self, alive: Callable[[], bool]) -> Any:
        return pickle.loads(self.inbox.take(self.conn, self.spin, alive))


def _worker(conn, env_fn: Callable[[], gym.Env], boxes: tuple[_Mailbox, _Mailbox] | None, spin: float) -> None:
    env = None
    link: Any = _PipeLink(conn) if boxes is None else _ShmLink(conn, boxes[1], boxes[0], spin)
    parent = os.getppid()

    def parent_alive() -> bool:
        return os.getppid() == parent

    try:
        env = env_fn()
        link.send(
            ("ok", (env.observation_space, env.action_space, env.metadata, env.render_mode, env.spec)), parent_alive
        )
        while True:
            cmd, arg = link.recv(parent_alive)
            if cmd == "step":
                link.send(("ok", env.step(arg)), parent_alive)
            elif cmd == "reset":
                link.send(("ok", env.reset(**arg)), parent_alive)
            elif cmd == "render":
                link.send(("ok", env.render()), parent_alive)
            elif cmd == "close":
                link.send(("ok", None), parent_alive)
                break
    except (KeyboardInterrupt, EOFError):
        pass
    except Exception as exc:  # noqa: BLE001 - forwarded to the parent with its traceback
        link.send(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"), parent_alive)
    finally:
        if env is not None:
            env.close()
        conn.close()


class _RemoteEnv:
    """Env proxy living in a worker process; ``begin`` sends a command ahead of time."""

    def __init__(self, env_fn: Callable[[], gym.Env], ctx: Any, spin: float):
        self.conn, child = ctx.Pipe()
        boxes = (_Mailbox(ctx, MAILBOX_BYTES), _Mailbox(ctx, MAILBOX_BYTES)) if spin > 0 else None
        self.process = ctx.Process(target=_worker, args=(child, env_fn, boxes, spin), daemon=True)
        self.process.start()
        child.close()
        self.link: Any = _PipeLink(self.conn) if boxes is None else _ShmLink(self.conn, boxes[0], boxes[1], spin)
        (self.observation_space, self.action_space, self.metadata, self.render_mode, self.spec) = self._recv()
        self._pending: tuple[str, Any] | None = None

    def _recv(self) -> Any:
        status, payload = self.link.recv(self.process.is_alive)
        if status == "error":
            raise RuntimeError(f"vector env worker failed: {payload}")
        return payload

    def begin(self, cmd: str, arg: Any) -> None:
        assert self._pending is None, "a command is already in flight"
        self.link.send((cmd, arg), self.process.is_alive)
        self._pending = (cmd, arg)

    def _call(self, cmd: str, arg: Any) -> Any:
        if self._pending is not None:
            pending_cmd, pending_arg = self._pending
            self._pending = None
            result = self._recv()
            if pending_cmd == cmd and (cmd != "reset" or pending_arg == arg):
                return result
        self.link.send((cmd, arg), self.process.is_alive)
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
        handoff: ``shm`` (polled shared-memory mailboxes), ``pipe`` (blocking pipes) or
            ``auto``: shm while every process has a core of its own, else pipe.
        copy: return a copy of the batched observations (as SyncVectorEnv does).
        autoreset_mode: ``next_step`` (default) or ``disabled``.
    """

    def __init__(
        self,
        env_fns: Sequence[Callable[[], gym.Env]],
        context: str | None = None,
        handoff: str = "auto",
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
        if handoff not in ("auto", "shm", "pipe"):
            raise ValueError(f"handoff must be 'auto', 'shm' or 'pipe', not {handoff!r}")
        if handoff == "auto":
            handoff = "shm" if len(env_fns) <= (os.cpu_count() or 1) else "pipe"
        spin = SPIN_SECONDS if handoff == "shm" else 0.0
        self.handoff = handoff
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
        self._discrete = isinstance(self.single_action_space, gym.spaces.Discrete)

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
        if self._discrete:  # a Python int pickles 10x faster than a numpy scalar
            acts = [int(a) for a in acts]
        # next_step autoreset: an env that ended on the last step is reset instead of stepped.
        resetting = (
            self._autoreset_envs if self.autoreset_mode == AutoresetMode.NEXT_STEP else np.zeros(self.num_envs, bool)
        )
        for i, remote in enumerate(self._remotes, start=1):
            if resetting[i]:
                remote.begin("reset", {"seed": None, "options": None})
            else:
                remote.begin("step", acts[i])
        infos: dict[str, Any] = {}
        for i, env in enumerate(self.envs):
            if resetting[i]:
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
