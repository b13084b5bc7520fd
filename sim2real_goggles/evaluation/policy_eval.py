"""Fixed-seed policy evaluation: success rate with a 95% Wilson interval, steps, collisions.

Episode ``i`` of an evaluation with seed ``S`` resets the environment with seed ``S + i``, so
every method is scored on the same rooms, starts and targets.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import gymnasium as gym
import numpy as np
from tqdm import tqdm

from sim2real_goggles.envs.expert import Expert, random_action
from sim2real_goggles.envs.nav_to_target import NavToTargetEnv
from sim2real_goggles.policy import ImagePolicy

if TYPE_CHECKING:
    from sim2real_goggles.translation import Translator


class Policy(Protocol):
    """What an evaluated policy provides: one discrete action per observation."""

    def reset(self, env: NavToTargetEnv, rng: np.random.Generator) -> None: ...

    def act(self, obs: np.ndarray) -> int: ...


class ExpertPolicy:
    """The privileged expert (reads the layout; upper bound and sanity check)."""

    name = "expert"
    scan = False

    def reset(self, env: NavToTargetEnv, rng: np.random.Generator) -> None:
        self._expert = Expert(env, scan=self.scan)

    def act(self, obs: np.ndarray) -> int:
        return self._expert.act()


class ScanningExpertPolicy(ExpertPolicy):
    """The scanning expert the policy is cloned from (turns left while nothing in view shows
    the way; :class:`~sim2real_goggles.envs.expert.Expert` ``scan``)."""

    name = "expert_scan"
    scan = True


class RandomPolicy:
    """Uniform random actions (lower bound)."""

    name = "random"

    def reset(self, env: NavToTargetEnv, rng: np.random.Generator) -> None:
        self._rng = rng

    def act(self, obs: np.ndarray) -> int:
        return random_action(self._rng)


class LearnedPolicy:
    """A trained image policy, optionally behind goggles: each camera frame is translated
    (real look -> sim look) before the policy sees it."""

    def __init__(self, policy: ImagePolicy, translator: Translator | None = None, name: str = "learned"):
        self.policy = policy
        self.translator = translator
        self.name = name

    def reset(self, env: NavToTargetEnv, rng: np.random.Generator) -> None:
        self.policy.reset(seed=int(rng.integers(2**31)))

    def act(self, obs: np.ndarray) -> int:
        return self.policy.act(obs if self.translator is None else self.translator(obs))


POLICIES: dict[str, Callable[[], Policy]] = {
    "expert": ExpertPolicy,
    "expert_scan": ScanningExpertPolicy,
    "random": RandomPolicy,
}


def make_policy(spec: str, translator: str | None = None, device: str = "auto") -> Policy:
    """``expert``, ``expert_scan``, ``random``, or a policy checkpoint (path or ``pretrained:NAME``), optionally
    behind a translator checkpoint (the goggles)."""
    if spec in POLICIES:
        if translator:
            raise ValueError(f"--translator applies to learned image policies, not to {spec!r}")
        return POLICIES[spec]()
    spec = str(spec)
    if not spec.startswith("pretrained:") and not Path(spec).is_file():
        raise ValueError(
            f"unknown policy {spec!r}: expected {', '.join(POLICIES)}, a policy checkpoint file or pretrained:NAME"
        )
    from sim2real_goggles.translation import Translator

    goggles = Translator.load(translator, device=device, resize=True) if translator else None
    return LearnedPolicy(ImagePolicy.load(spec, device=device), goggles, name=str(spec))


@dataclass
class EpisodeResult:
    seed: int
    success: bool
    steps: int
    collisions: int
    final_distance: float


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion (sound at 0% and 100%)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def run_episodes(
    policy: Policy,
    profile: str | Path,
    episodes: int,
    seed: int,
    image_size: int = 64,
    progress: bool = False,
    env_kwargs: dict[str, Any] | None = None,
) -> list[EpisodeResult]:
    env = gym.make("Goggles/NavToTarget-v0", image_size=image_size, profile=profile, **(env_kwargs or {}))
    results = []
    try:
        for i in tqdm(range(episodes), desc=f"eval {profile}", disable=not progress, unit="ep"):
            s = seed + i
            obs, info = env.reset(seed=s)
            policy.reset(env.unwrapped, np.random.default_rng(s))
            steps, terminated, truncated = 0, False, False
            while not (terminated or truncated):
                obs, _, terminated, truncated, info = env.step(policy.act(obs))
                steps += 1
            results.append(
                EpisodeResult(s, bool(info["is_success"]), steps, int(info["collisions"]), float(info["distance"]))
            )
    finally:
        env.close()
    return results


def summarize(results: list[EpisodeResult], **extra: Any) -> dict[str, Any]:
    n = len(results)
    wins = [r for r in results if r.success]
    low, high = wilson_interval(len(wins), n)
    return {
        **extra,
        "episodes": n,
        "success_rate": len(wins) / n if n else 0.0,
        "ci95": [round(low, 4), round(high, 4)],
        "mean_steps": float(np.mean([r.steps for r in wins])) if wins else None,
        "collisions": int(sum(r.collisions for r in results)),
        "collision_episodes": int(sum(r.collisions > 0 for r in results)),
        "failed_seeds": [r.seed for r in results if not r.success][:50],
    }
