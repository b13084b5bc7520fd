"""Gymnasium environments; importing ``sim2real_goggles`` registers them."""

from __future__ import annotations

import gymnasium as gym

from sim2real_goggles.envs.nav_to_target import NavToTargetEnv

ENV_IDS = ("Goggles/NavToTarget-v0",)


def register_envs() -> None:
    """Register every environment once (idempotent)."""
    if "Goggles/NavToTarget-v0" not in gym.registry:
        gym.register(
            id="Goggles/NavToTarget-v0",
            entry_point="sim2real_goggles.envs.nav_to_target:NavToTargetEnv",
            max_episode_steps=400,
        )


__all__ = ["ENV_IDS", "NavToTargetEnv", "register_envs"]
