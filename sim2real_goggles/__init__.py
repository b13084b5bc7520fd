"""sim2real_goggles: VR-Goggles for robots, real camera look -> sim look, on ROS 2."""

from __future__ import annotations

__version__ = "0.1.0"

from sim2real_goggles.envs import ENV_IDS, register_envs

register_envs()

__all__ = ["ENV_IDS", "__version__", "register_envs"]
