"""Train the image policy with PPO (stable-baselines3) on vectorised envs (``--method ppo``).

The network is the project's :class:`~sim2real_goggles.models.networks.PolicyNet`, split the
way stable-baselines3 builds an actor-critic: its convolutional encoder (up to the 256-unit
hidden layer) is the shared features extractor, and with ``net_arch=[]`` SB3's ``action_net``
and ``value_net`` are exactly PolicyNet's ``action_head`` and ``value_head``. So every
checkpoint written here is an ordinary ``policy_cnn`` checkpoint that
:class:`~sim2real_goggles.policy.ImagePolicy`, ``eval-policy`` and the ROS policy node load
unchanged. Observations are the env's uint8 camera frames: SB3 scales them to [0, 1] and the
extractor maps that to the [-1, 1] the encoder expects.

Episodes run in ``n_envs`` processes (``SubprocVecEnv``; env ``i`` starts at room
``train_seed + i``). ``init`` warm-starts from a policy checkpoint (e.g. a behaviour-cloned
``runs/policy.best.pt``; ``pretrained:policy`` is an ensemble of three, so one of its members),
the usual way to make on-policy RL affordable on a CPU. The SB3 state
(optimiser, timestep count) is kept next to the checkpoint as ``OUT.sb3.zip`` so ``--resume``
continues; Ctrl-C and SIGTERM save both first.
"""

from __future__ import annotations

import signal
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
from torch import nn
from tqdm import tqdm

from sim2real_goggles.models.checkpoint import load_checkpoint, save_checkpoint
from sim2real_goggles.models.networks import PolicyNet, count_parameters
from sim2real_goggles.training.base import config_from_overrides, interrupt_on_sigterm

ARCH = "policy_cnn"


@dataclass
class PPOConfig:
    """Recipe of ``goggles train-policy --method ppo`` (``--set KEY=VALUE`` overrides)."""

    method: str = "ppo"
    profile: str = "sim"
    image_size: int = 64
    width: int = 16
    n_envs: int = 2
    """Env processes (SubprocVecEnv); 1 runs in this process (DummyVecEnv)."""
    total_timesteps: int = 200_000
    n_steps: int = 256
    """Steps per env between updates."""
    batch_size: int = 128
    n_epochs: int = 4
    lr: float = 2.5e-4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_range: float = 0.2
    ent_coef: float = 0.01
    init: str = ""
    """Policy checkpoint to start from ('' = random weights); its width replaces ``width``."""
    seed: int = 0
    train_seed: int = 1_000_000
    checkpoint_every: int = 10_000
    """Timesteps between checkpoints."""

    def __post_init__(self) -> None:
        if self.method != "ppo":
            raise ValueError(f"PPOConfig is for method ppo, not {self.method!r}")
        if self.n_envs < 1 or self.n_steps * self.n_envs < self.batch_size:
            raise ValueError(
                f"n_steps x n_envs ({self.n_steps} x {self.n_envs}) must be at least batch_size ({self.batch_size})"
            )


def load_ppo_recipe(overrides: dict[str, Any] | None = None) -> PPOConfig:
    return config_from_overrides(PPOConfig, overrides, "ppo")


def _make_env(profile: str, image_size: int):
    def thunk() -> gym.Env:
        import sim2real_goggles  # noqa: F401 - registers the env in the worker process

        return gym.make("Goggles/NavToTarget-v0", image_size=image_size, profile=profile)

    return thunk


def _sb3():
    try:
        import stable_baselines3
        from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise RuntimeError("--method ppo needs stable-baselines3 (pip install stable-baselines3)") from exc
    return stable_baselines3, BaseFeaturesExtractor


def policy_encoder_class():
    """The features extractor: PolicyNet's encoder on SB3's [0, 1] images."""
    _, BaseFeaturesExtractor = _sb3()

    class PolicyEncoder(BaseFeaturesExtractor):
        def __init__(self, observation_space: gym.spaces.Box, width: int = 16):
            net = PolicyNet(frames=1, width=width)
            super().__init__(observation_space, features_dim=net.action_head.in_features)
            self.encoder = net.encoder

        def forward(self, observations: torch.Tensor) -> torch.Tensor:
            return self.encoder(observations * 2.0 - 1.0)

    return PolicyEncoder


def to_policy_net(sb3_policy: nn.Module, width: int) -> PolicyNet:
    """The SB3 actor-critic's weights as a PolicyNet (same function on [-1, 1] images)."""
    net = PolicyNet(frames=1, width=width)
    net.encoder.load_state_dict(sb3_policy.features_extractor.encoder.state_dict())
    net.action_head.load_state_dict(sb3_policy.action_net.state_dict())
    net.value_head.load_state_dict(sb3_policy.value_net.state_dict())
    return net


def load_into_sb3(sb3_policy: nn.Module, net: PolicyNet) -> None:
    sb3_policy.features_extractor.encoder.load_state_dict(net.encoder.state_dict())
    sb3_policy.action_net.load_state_dict(net.action_head.state_dict())
    sb3_policy.value_net.load_state_dict(net.value_head.state_dict())


class PPOTrainer:
    """PPO on the NavToTarget env with the project's policy network (see the module docstring)."""

    def __init__(self, cfg: PPOConfig, out: str | Path, device: str = "cpu"):
        sb3, _ = _sb3()
        from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

        init = None
        if cfg.init:
            init = load_checkpoint(cfg.init)
            if init.arch == "policy_ensemble":
                members = ", ".join(m["source"] for m in init.metadata.get("members", []))
                raise ValueError(
                    f"{cfg.init}: an ensemble of policies; PPO fine-tunes one network, so init from one "
                    f"of its members ({members or 'see its metadata'})"
                )
            if init.arch != ARCH or init.arch_kwargs.get("frames", 1) != 1 or init.arch_kwargs.get("memory", 0):
                raise ValueError(f"{cfg.init}: init must be a single-frame {ARCH} checkpoint without memory")
            cfg = replace(cfg, width=int(init.arch_kwargs.get("width", cfg.width)))  # the network it starts from
        self.cfg, self.out, self.device = cfg, Path(out), device
        self.state_path = Path(str(self.out) + ".sb3.zip")
        thunks = [_make_env(cfg.profile, cfg.image_size) for _ in range(cfg.n_envs)]
        self.env = SubprocVecEnv(thunks) if cfg.n_envs > 1 else DummyVecEnv(thunks)
        self.env.seed(cfg.train_seed)  # env i: rooms from train_seed + i on
        self.model = sb3.PPO(
            "CnnPolicy",
            self.env,
            learning_rate=cfg.lr,
            n_steps=cfg.n_steps,
            batch_size=cfg.batch_size,
            n_epochs=cfg.n_epochs,
            gamma=cfg.gamma,
            gae_lambda=cfg.gae_lambda,
            clip_range=cfg.clip_range,
            ent_coef=cfg.ent_coef,
            seed=cfg.seed,
            device=device,
            verbose=0,
            policy_kwargs={
                "features_extractor_class": policy_encoder_class(),
                "features_extractor_kwargs": {"width": cfg.width},
                "net_arch": [],
                "share_features_extractor": True,
            },
        )
        self.train_seconds = 0.0
        if init is not None:
            net = PolicyNet(**init.arch_kwargs)
            net.load_state_dict(init.state_dict)
            load_into_sb3(self.model.policy, net)

    @property
    def timesteps(self) -> int:
        return int(self.model.num_timesteps)

    def save(self, final: bool = False) -> Path:
        cfg = self.cfg
        net = to_policy_net(self.model.policy, cfg.width)
        metadata = {
            "method": "ppo",
            "domains": {"train": cfg.profile},
            "image_size": cfg.image_size,
            "config": asdict(cfg),
            "iterations": self.timesteps,
            "timesteps": self.timesteps,
            "complete": final,
            "train_minutes": round(self.train_seconds / 60, 2),
            "parameters": count_parameters(net),
        }
        self.model.save(self.state_path)
        return save_checkpoint(self.out, net, ARCH, {"frames": 1, "width": cfg.width}, metadata)

    def restore(self, path: str | Path) -> None:
        sb3, _ = _sb3()
        state = Path(str(path) + ".sb3.zip")
        if not state.is_file():
            raise ValueError(f"{path}: no PPO training state next to it ({state.name} missing)")
        ckpt = load_checkpoint(path)
        self.model = sb3.PPO.load(state, env=self.env, device=self.device)
        self.train_seconds = float(ckpt.metadata.get("train_minutes", 0.0)) * 60

    def train(self, progress: bool = True) -> dict[str, Any]:
        from stable_baselines3.common.callbacks import BaseCallback

        trainer = self

        bar = tqdm(
            total=self.cfg.total_timesteps,
            initial=self.timesteps,
            desc="train policy (PPO timesteps)",
            disable=not progress,
        )

        class Checkpoints(BaseCallback):
            def __init__(self):
                super().__init__()
                self.last = trainer.timesteps

            def _on_step(self) -> bool:
                bar.update(self.num_timesteps - bar.n)
                if self.num_timesteps - self.last >= trainer.cfg.checkpoint_every:
                    self.last = self.num_timesteps
                    trainer.save()
                return True

        previous_term = interrupt_on_sigterm()
        t0 = time.perf_counter()
        remaining = max(0, self.cfg.total_timesteps - self.timesteps)
        try:
            if remaining:
                self.model.learn(remaining, callback=Checkpoints(), reset_num_timesteps=False, progress_bar=False)
        except KeyboardInterrupt:
            self.train_seconds += time.perf_counter() - t0
            self.save()
            raise
        finally:
            bar.close()
            if previous_term is not None:
                signal.signal(signal.SIGTERM, previous_term)
        self.train_seconds += time.perf_counter() - t0
        path = self.save(final=self.timesteps >= self.cfg.total_timesteps)
        self.env.close()
        return {"checkpoint": str(path), "timesteps": self.timesteps, "minutes": round(self.train_seconds / 60, 2)}


__all__ = ["PPOConfig", "PPOTrainer", "load_ppo_recipe", "to_policy_net"]
