"""Gymnasium environments; importing ``sim2real_goggles`` registers them.

Registration names the entry point as a string, so importing the package does not load PyBullet
until an environment is made.
"""

from __future__ import annotations

import gymnasium as gym

ENV_IDS = ("Goggles/NavToTarget-v0",)


def register_envs() -> None:
    """Register every environment once (idempotent)."""
    if "Goggles/NavToTarget-v0" not in gym.registry:
        gym.register(
            id="Goggles/NavToTarget-v0",
            entry_point="sim2real_goggles.envs.nav_to_target:NavToTargetEnv",
            max_episode_steps=400,
        )


__all__ = ["ENV_IDS", "register_envs"]
