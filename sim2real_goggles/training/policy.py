"""Train the image policy: behaviour cloning from the privileged expert with DAgger rounds.

Round 0 drives the expert and records (camera frame, expert action). Every later round drives
the *learner* (with probability ``beta ** round`` the expert's action is executed instead, as in
DAgger, Ross et al. AISTATS 2011, https://arxiv.org/abs/1011.0686), labels every visited frame
with what the expert would have done there, adds the frames to the aggregate and trains on all
of it. The learner so sees, and learns to recover from, its own mistakes, which plain cloning
never shows it.

Only the camera frame reaches the network (no privileged state), so the checkpoint runs on a
robot through :class:`~sim2real_goggles.policy.ImagePolicy` and the ROS policy node.
Baselines use the same loop: ``profile`` may list several looks (one drawn per episode), or be
``randomized``, the domain-randomisation family of :mod:`sim2real_goggles.appearance.randomize`
(a fresh random look every episode, never an evaluation look; validated on a fixed set of other
family members), and ``refiner`` passes every frame through a sim→real refiner first (SimGAN-
refined training).
"""

from __future__ import annotations

import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from sim2real_goggles.appearance.profile import Profile
from sim2real_goggles.appearance.randomize import (
    FAMILY,
    FAMILY_DESCRIPTION,
    random_profile,
    training_member,
    validation_member,
)
from sim2real_goggles.envs.expert import Expert
from sim2real_goggles.envs.nav_to_target import NavToTargetEnv
from sim2real_goggles.models.checkpoint import load_checkpoint, save_checkpoint
from sim2real_goggles.models.networks import PolicyNet, count_parameters, to_tensor
from sim2real_goggles.policy import ImagePolicy
from sim2real_goggles.training.base import config_from_overrides, interrupt_on_sigterm, summary_writer

ARCH = "policy_cnn"


@dataclass
class PolicyConfig:
    """Recipe of ``goggles train-policy --method bc`` (defaults are the shipped recipe)."""

    method: str = "bc"
    profile: str = "sim"
    """Training look, or several comma-separated (one drawn per episode). ``randomized``: a new
    member of the domain-randomisation family every episode (member
    ``training_member(seed, episode)``, so a resumed run sees the same looks)."""
    refiner: str = ""
    """Optional sim→real refiner checkpoint applied to every training frame (SimGAN baseline)."""
    image_size: int = 64
    frames: int = 1
    """Camera frames stacked as the network input."""
    width: int = 32
    """Channels of the first convolution (doubled after it). With the scanning expert, the best
    round at width 16 (200 expert episodes) reached 83.5% on the 200 sim evaluation rooms; at
    width 32 (400 expert episodes) 84.5%."""
    memory: int = 0
    """Units of a recurrent layer (GRU) between the encoder and the action head; 0 for a reactive
    policy. A recurrent policy trains on whole episodes, ``sequence_batch`` at a time."""
    sequence_batch: int = 4
    """Episodes per gradient step of a recurrent policy."""
    expert_scan: bool = True
    """Label with the scanning expert (:class:`~sim2real_goggles.envs.expert.Expert` ``scan``):
    while neither the chair nor its path's direction is in view it turns left, never towards a
    doorway the camera does not show. False: the plain planner (which the baseline policies
    shipped before it were cloned from)."""
    expert_episodes: int = 400
    """Round 0: episodes driven by the expert."""
    rounds: int = 2
    """DAgger rounds after round 0. (With the scanning expert the validation success did not
    rise after round 2: 78, 82, 90, 86% after rounds 0-3 at width 32; 86, 84, 80, 76, 84, 78,
    76% after rounds 0-6 at width 16.)"""
    episodes_per_round: int = 100
    beta: float = 0.5
    """In round r the expert's action is executed with probability beta**r."""
    max_steps: int = 250
    """Step limit of a training rollout (evaluation uses the env's 400)."""
    epochs: float = 4.0
    """Passes over the aggregated data after each round."""
    batch_size: int = 128
    lr: float = 5e-4
    seed: int = 0
    train_seed: int = 1_000_000
    """Training rooms use env seeds from here on (evaluation uses 0..; the eval set per round
    starts at ``eval_seed``)."""
    eval_episodes: int = 50
    """Validation rooms per round; the best round's weights are also written as OUT.best.pt."""
    eval_seed: int = 500_000
    sample: bool = True
    """Sample actions from the policy (True) or take the most likely one. Measured on 60 sim
    rooms after 4 rounds: sampling 80% success, greedy 28% (a reactive policy that always takes
    its most likely action turns left and right forever in front of a blank wall)."""


def load_policy_recipe(overrides: dict[str, Any] | None = None) -> PolicyConfig:
    return config_from_overrides(PolicyConfig, overrides, "policy")


def episode_spans(starts: np.ndarray) -> list[tuple[int, int]]:
    """(first, end) frame indices of each episode, from per-frame episode-start flags."""
    first = np.flatnonzero(starts)
    if len(starts) and (not len(first) or first[0] != 0):
        raise ValueError("episode data must begin with an episode's first frame")
    return list(zip(first.tolist(), [*first[1:].tolist(), len(starts)], strict=True))


def sequence_batch(obs: np.ndarray, spans: list[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Episodes ``spans`` of ``obs`` as one zero-padded network input (T, N, C, H, W) and the
    (T, N) mask of real frames."""
    longest = max(b - a for a, b in spans)
    x = torch.zeros(longest, len(spans), obs.shape[3], obs.shape[1], obs.shape[2])
    valid = torch.zeros(longest, len(spans), dtype=torch.bool)
    for j, (a, b) in enumerate(spans):
        x[: b - a, j] = to_tensor(obs[a:b])
        valid[: b - a, j] = True
    return x, valid


class PolicyTrainer:
    """Behaviour cloning + DAgger (see the module docstring)."""

    def __init__(self, cfg: PolicyConfig, out: str | Path, device: str = "cpu"):
        if cfg.method != "bc":
            raise ValueError(f"unknown policy training method {cfg.method!r} (available: bc)")
        self.cfg = cfg
        self.out = Path(out)
        self.data_dir = Path(str(self.out) + ".dagger")
        self.device = torch.device(device)
        torch.manual_seed(cfg.seed)
        self.arch_kwargs = {"frames": cfg.frames, "width": cfg.width, "memory": cfg.memory}
        self.model = PolicyNet(**self.arch_kwargs).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        self.rng = np.random.default_rng(cfg.seed)
        self.round = 0  # rounds completed
        self.episode = 0  # training episodes driven so far (their env seeds follow)
        self.train_seconds = 0.0
        self.history: list[dict[str, float]] = []
        self.looks = [p.strip() for p in cfg.profile.split(",") if p.strip()]
        if not self.looks:
            raise ValueError("profile: give at least one look")
        self._envs: dict[str, NavToTargetEnv] = {}
        self.refiner = None
        if cfg.refiner:
            from sim2real_goggles.translation import Translator

            self.refiner = Translator.load(cfg.refiner, device=str(self.device))
        self.obs: list[np.ndarray] = []
        self.actions: list[np.ndarray] = []
        self.starts: list[np.ndarray] = []
        """Per round, True at the first frame of each episode (a recurrent policy trains on
        whole episodes)."""
        self.episode_looks: list[str] = []
        """Profile name of each training episode driven by this process (not restored)."""

    # ------------------------------------------------------------------ data
    def env(self, look: str) -> NavToTargetEnv:
        """The env of ``look``; the family's one env changes its look at every reset."""
        if look not in self._envs:
            first = random_profile(0) if look == FAMILY else look  # replaced at every reset
            self._envs[look] = gym.make(
                "Goggles/NavToTarget-v0", image_size=self.cfg.image_size, profile=first
            ).unwrapped
        return self._envs[look]

    def episode_profile(self, look: str, episode: int) -> str | Profile:
        """The look of training episode ``episode``: ``look`` itself, or for the family the
        member drawn from (run seed, episode) alone."""
        return random_profile(training_member(self.cfg.seed, episode)) if look == FAMILY else look

    def view(self, obs: np.ndarray) -> np.ndarray:
        """The frame as the policy is trained on it (refined for the SimGAN baseline)."""
        return obs if self.refiner is None else self.refiner(obs)

    def rollout(self, episodes: int, expert_probability: float) -> dict[str, float]:
        """Drive ``episodes`` episodes, recording every frame with the expert's action."""
        cfg = self.cfg
        learner = ImagePolicy(self.model, cfg.image_size, cfg.frames, self.device, cfg.sample)
        frames, labels, starts, successes, steps_total = [], [], [], 0, 0
        for _ in range(episodes):
            look = self.looks[int(self.rng.integers(len(self.looks)))]
            env = self.env(look)
            options = {"profile": self.episode_profile(look, self.episode)} if look == FAMILY else None
            obs, _ = env.reset(seed=cfg.train_seed + self.episode, options=options)
            self.episode_looks.append(env.profile.name)
            self.episode += 1
            expert = Expert(env, scan=cfg.expert_scan)
            learner.reset(seed=int(self.rng.integers(2**31)))
            self.model.eval()
            for step in range(cfg.max_steps):
                seen = self.view(obs)
                label = expert.act()
                action = learner.act(seen)  # also keeps the learner's frame stack and memory current
                frames.append(learner.network_input())
                labels.append(label)
                starts.append(step == 0)
                if self.rng.random() < expert_probability:
                    action = label
                obs, _, terminated, truncated, _ = env.step(action)
                steps_total += 1
                if terminated or truncated:
                    successes += int(terminated)
                    break
        self.obs.append(np.stack(frames))
        self.actions.append(np.asarray(labels, np.uint8))
        self.starts.append(np.asarray(starts, bool))
        self._save_round_data(self.round, self.obs[-1], self.actions[-1], self.starts[-1])
        return {"rollout_success": successes / max(episodes, 1), "rollout_frames": float(len(frames))}

    def _save_round_data(self, r: int, obs: np.ndarray, actions: np.ndarray, starts: np.ndarray) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.data_dir / f".round_{r:02d}.tmp.npz"
        np.savez_compressed(tmp, obs=obs, actions=actions, starts=starts)
        tmp.replace(self.data_dir / f"round_{r:02d}.npz")

    # ------------------------------------------------------------------ learning
    def fit(self) -> float:
        """``epochs`` passes over all data gathered so far; returns the mean loss."""
        cfg = self.cfg
        obs = np.concatenate(self.obs)
        actions = torch.from_numpy(np.concatenate(self.actions).astype(np.int64))
        n = len(obs)
        if self.model.recurrent:
            return self._fit_episodes(obs, actions)
        steps = max(1, int(cfg.epochs * n / cfg.batch_size))
        self.model.train()
        losses = []
        for _ in range(steps):
            idx = self.rng.integers(n, size=cfg.batch_size)
            x = to_tensor(obs[idx]).to(self.device)
            loss = F.cross_entropy(self.model(x), actions[idx].to(self.device))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            losses.append(float(loss.detach()))
        self.model.eval()
        return float(np.mean(losses[-max(1, len(losses) // 4) :]))

    def _fit_episodes(self, obs: np.ndarray, actions: torch.Tensor) -> float:
        """The recurrent policy's ``fit``: each step draws ``sequence_batch`` whole episodes and
        runs the network over them from their first frame, as it runs on the robot."""
        cfg = self.cfg
        spans = episode_spans(np.concatenate(self.starts))
        steps = max(1, int(cfg.epochs * len(spans) / cfg.sequence_batch))
        self.model.train()
        losses = []
        for _ in range(steps):
            chosen = [spans[i] for i in self.rng.integers(len(spans), size=cfg.sequence_batch)]
            x, valid = sequence_batch(obs, chosen)
            y = torch.zeros(valid.shape, dtype=torch.int64)
            for j, (a, b) in enumerate(chosen):
                y[: b - a, j] = actions[a:b]
            logits = self.model.forward_sequence(x.to(self.device))
            loss = F.cross_entropy(logits[valid.to(self.device)], y[valid].to(self.device))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            self.optimizer.step()
            losses.append(float(loss.detach()))
        self.model.eval()
        return float(np.mean(losses[-max(1, len(losses) // 4) :]))

    @torch.no_grad()
    def predictions(self, obs: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """The policy's most likely action on each frame, a recurrent one running each episode
        from its first frame."""
        self.model.eval()
        if not self.model.recurrent:
            return np.concatenate(
                [
                    self.model(to_tensor(obs[i : i + 512]).to(self.device)).argmax(1).cpu().numpy()
                    for i in range(0, len(obs), 512)
                ]
            )
        pred = np.zeros(len(obs), np.int64)
        spans = episode_spans(starts)
        for k in range(0, len(spans), 8):
            chosen = spans[k : k + 8]
            x, valid = sequence_batch(obs, chosen)
            best = self.model.forward_sequence(x.to(self.device)).argmax(-1).cpu().numpy()
            for j, (a, b) in enumerate(chosen):
                pred[a:b] = best[: b - a, j]
        return pred

    @torch.no_grad()
    def accuracy(self) -> float:
        """Agreement with the expert on the newest round's frames (before training on them)."""
        return float((self.predictions(self.obs[-1], self.starts[-1]) == self.actions[-1]).mean())

    def evaluate(self) -> float:
        """Success rate over ``eval_episodes`` fixed rooms in the first training look; for the
        ``randomized`` family, room ``i`` in member ``validation_member(i)`` (a fixed set of
        looks that no training episode draws, and never an evaluation look)."""
        from sim2real_goggles.evaluation.policy_eval import LearnedPolicy, run_episodes

        cfg = self.cfg
        if cfg.eval_episodes <= 0:
            return float("nan")
        policy = LearnedPolicy(ImagePolicy(self.model, cfg.image_size, cfg.frames, self.device, cfg.sample))
        if self.refiner is not None:
            policy.translator = self.refiner
        if self.looks[0] == FAMILY:
            results = [
                r
                for i in range(cfg.eval_episodes)
                for r in run_episodes(policy, f"{FAMILY}:{validation_member(i)}", 1, cfg.eval_seed + i, cfg.image_size)
            ]
        else:
            results = run_episodes(policy, self.looks[0], cfg.eval_episodes, cfg.eval_seed, cfg.image_size)
        return sum(r.success for r in results) / len(results)

    # ------------------------------------------------------------------ state
    def metadata(self, **fields: Any) -> dict[str, Any]:
        """What every policy checkpoint of this run records (``fields`` added or overriding)."""
        cfg = self.cfg
        return {
            "method": "bc_dagger",
            "kind": "policy",
            "domains": {
                "train": cfg.profile,
                **(
                    {"family": f"{FAMILY}: {FAMILY_DESCRIPTION}", "validation": self.validation_looks}
                    if FAMILY in self.looks
                    else {}
                ),
                **({"refiner": cfg.refiner} if cfg.refiner else {}),
            },
            "image_size": cfg.image_size,
            "config": asdict(cfg),
            "rounds": self.round,
            "iterations": self.round,
            "train_minutes": round(self.train_seconds / 60, 2),
            "parameters": count_parameters(self.model),
            **fields,
        }

    @property
    def validation_looks(self) -> str:
        """What the per-round validation renders in, as recorded in the checkpoint."""
        cfg = self.cfg
        if cfg.eval_episodes <= 0:
            return "none"
        if self.looks[0] != FAMILY:
            return self.looks[0]
        first, last = validation_member(0), validation_member(cfg.eval_episodes - 1)
        return f"{FAMILY}:{first}..{last} (room eval_seed + i in member {first} + i)"

    def save(self, final: bool = False) -> Path:
        metadata = self.metadata(
            frames_seen=int(sum(len(a) for a in self.actions)),
            complete=final,
            metrics=self.history[-1] if self.history else {},
        )
        extra = {
            "optimizer": self.optimizer.state_dict(),
            "round": self.round,
            "episode": self.episode,
            "rng": self.rng.bit_generator.state["state"]["state"].to_bytes(16, "little").hex(),
            "rng_inc": self.rng.bit_generator.state["state"]["inc"].to_bytes(16, "little").hex(),
            "torch_rng": torch.get_rng_state(),
            "train_seconds": self.train_seconds,
            "history": [{k: float(v) for k, v in h.items()} for h in self.history],
        }
        return save_checkpoint(self.out, self.model, ARCH, self.arch_kwargs, metadata, extra)

    @property
    def best_path(self) -> Path:
        return self.out.with_name(self.out.stem + ".best" + self.out.suffix)

    def save_best(self) -> Path:
        """The weights of the round with the best evaluation so far, as ``OUT.best.pt`` (no
        training state). Later DAgger rounds fit the expert's labels ever better yet can drive
        worse: measured on 50 validation rooms after rounds 1-6, 0.86 0.84 0.86 0.76 0.70."""
        metadata = self.metadata(
            complete=True, metrics={"validation_success": self.history[-1]["eval_success"], "round": self.round}
        )
        return save_checkpoint(self.best_path, self.model, ARCH, self.arch_kwargs, metadata)

    def restore(self, path: str | Path) -> None:
        ckpt = load_checkpoint(path)
        if ckpt.arch != ARCH or "round" not in ckpt.extra:
            raise ValueError(f"{path}: not a policy training checkpoint with state to resume from")
        e = ckpt.extra
        self.model.load_state_dict(ckpt.state_dict)
        self.optimizer.load_state_dict(e["optimizer"])
        self.round, self.episode = int(e["round"]), int(e["episode"])
        state = self.rng.bit_generator.state
        state["state"] = {
            "state": int.from_bytes(bytes.fromhex(e["rng"]), "little"),
            "inc": int.from_bytes(bytes.fromhex(e["rng_inc"]), "little"),
        }
        self.rng.bit_generator.state = state
        torch.set_rng_state(e["torch_rng"])
        self.train_seconds = float(e["train_seconds"])
        self.history = [dict(h) for h in e.get("history", [])]
        self.obs, self.actions, self.starts = [], [], []
        for r in range(self.round):
            f = self.data_dir / f"round_{r:02d}.npz"
            if not f.is_file():
                raise ValueError(f"{path}: resume needs the DAgger data {f}, which is missing")
            with np.load(f) as data:
                self.obs.append(data["obs"])
                self.actions.append(data["actions"])
                if "starts" in data.files:
                    self.starts.append(data["starts"])
                elif self.model.recurrent:
                    raise ValueError(f"{f}: holds no episode starts, which a recurrent policy trains on")
                else:  # data of a reactive run from before episode starts were recorded
                    self.starts.append(np.zeros(len(data["actions"]), bool))

    # ------------------------------------------------------------------ loop
    def train(self, progress: bool = True) -> dict[str, Any]:
        """Rounds 0..``rounds``; the checkpoint is written after each. Ctrl-C or SIGTERM stops
        (the round in progress is redone by ``--resume``)."""
        cfg = self.cfg
        writer = summary_writer(str(self.out) + ".runs")
        total = cfg.rounds + 1
        bar = tqdm(total=total, initial=self.round, desc="train policy (DAgger rounds)", disable=not progress)
        previous_term = interrupt_on_sigterm()
        t_start = time.perf_counter()
        try:
            while self.round < total:
                t0 = time.perf_counter()
                expert_p = 1.0 if self.round == 0 else cfg.beta**self.round
                episodes = cfg.expert_episodes if self.round == 0 else cfg.episodes_per_round
                log = self.rollout(episodes, expert_p)
                log["expert_agreement"] = self.accuracy() if self.round > 0 else float("nan")
                log["loss"] = self.fit()
                log["eval_success"] = self.evaluate()
                log["frames_total"] = float(sum(len(a) for a in self.actions))
                self.train_seconds += time.perf_counter() - t0
                self.history.append(log)
                self.round += 1
                if writer is not None:
                    for k, v in log.items():
                        if np.isfinite(v):
                            writer.add_scalar(f"train/{k}", v, self.round)
                self.save(final=self.round >= total)
                if cfg.eval_episodes > 0 and log["eval_success"] >= max(h["eval_success"] for h in self.history):
                    self.save_best()
                bar.update(1)
                bar.set_postfix(loss=f"{log['loss']:.3f}", success=f"{log['eval_success']:.2f}")
        finally:
            if previous_term is not None:
                signal.signal(signal.SIGTERM, previous_term)
            if writer is not None:
                writer.close()
            bar.close()
        return {
            "checkpoint": str(self.out),
            "best": str(self.best_path) if self.best_path.is_file() else None,
            "rounds": self.round,
            "minutes": round((time.perf_counter() - t_start) / 60, 2),
            "history": self.history,
        }


def write_ensemble(members: list[str | Path], out: str | Path, fp16_weights: bool = False) -> Path:
    """Join trained policies (paths or ``pretrained:NAME``) into one ``policy_ensemble``
    checkpoint at ``out``: it acts on the mean of their action distributions
    (:class:`~sim2real_goggles.models.networks.PolicyEnsemble`). The members must be single
    policies of one image size and frame stack; each is recorded in the metadata (source,
    SHA-256, how it was trained, its validation score). ``fp16_weights`` stores the weights in
    half precision (half the file; they are computed in float32 again when loaded)."""
    from sim2real_goggles.models.networks import PolicyEnsemble
    from sim2real_goggles.pretrained import resolve, sha256

    loaded = [load_checkpoint(m) for m in members]
    for ckpt in loaded:
        if ckpt.arch != ARCH:
            raise ValueError(f"{ckpt.path}: holds a {ckpt.arch!r} network; ensemble members are single {ARCH} policies")
    sizes = {int(c.metadata.get("image_size", 64)) for c in loaded}
    if len(sizes) != 1:
        raise ValueError(
            f"ensemble members were trained at different image sizes {sorted(sizes)}: {list(map(str, members))}"
        )
    model = PolicyEnsemble([dict(c.arch_kwargs) for c in loaded])  # checks the count and the frame stacks
    for member, ckpt in zip(model.members, loaded, strict=True):
        member.load_state_dict(ckpt.state_dict)
    trains = sorted({str(c.metadata.get("domains", {}).get("train")) for c in loaded})
    metadata = {
        "method": "ensemble",
        "kind": "policy",
        "domains": {"train": trains[0] if len(trains) == 1 else ",".join(trains)},
        "image_size": sizes.pop(),
        "iterations": sum(int(c.metadata.get("iterations", 0)) for c in loaded),
        "train_minutes": round(sum(float(c.metadata.get("train_minutes", 0.0)) for c in loaded), 2),
        "parameters": count_parameters(model),
        "config": {"seed": [c.metadata.get("config", {}).get("seed") for c in loaded]},
        "members": [
            {
                "source": str(spec),
                "sha256": sha256(resolve(spec)),
                "method": c.metadata.get("method"),
                "config": c.metadata.get("config", {}),
                "metrics": c.metadata.get("metrics", {}),
            }
            for spec, c in zip(members, loaded, strict=True)
        ],
        "weights_dtype": "float16" if fp16_weights else "float32",
        "complete": True,
    }
    arch_kwargs = {"members": [dict(c.arch_kwargs) for c in loaded]}
    return save_checkpoint(out, model.half() if fp16_weights else model, "policy_ensemble", arch_kwargs, metadata)


__all__ = ["PolicyConfig", "PolicyTrainer", "load_policy_recipe", "write_ensemble"]
