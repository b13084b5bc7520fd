"""What the adversarial trainers share: the loop, checkpoints with full training state, exact
resume, Ctrl-C saves, TensorBoard, data-parallel ranks and AMP on CUDA.

A subclass sets up its networks, optimisers and data, and provides :meth:`step` (one iteration,
returning a dict of floats), :meth:`state_objects` (everything with a ``state_dict`` that resume
needs), :meth:`main_network` (what the checkpoint's ``state_dict`` holds, loadable by
:class:`~sim2real_goggles.translation.Translator`), :meth:`metadata` and :meth:`sample_grid`.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from sim2real_goggles.data.domains import load_arrays
from sim2real_goggles.models.checkpoint import load_checkpoint, save_checkpoint
from sim2real_goggles.models.networks import to_tensor
from sim2real_goggles.training import distributed


@dataclass
class AdversarialConfig:
    """Fields every adversarial recipe has (TranslatorConfig, SimGANConfig add their own)."""

    method: str = "cyclegan"
    real: str = "real_lab"
    """Real domain: profile name/path, image folder or rosbag2 recording (BAG[:TOPIC])."""
    sim: str = "sim"
    """Sim domain: profile name/path, image folder (masks/ needed for vr_goggles) or bag."""
    image_size: int = 64
    frames: int = 2000
    """Images drawn from each domain (rendered or read once, held in memory)."""
    frame_stride: int = 1
    """Profile domains: keep every frame_stride-th view of each room's 32-step drive, so the
    same number of frames comes from about frame_stride times as many rooms, with the same
    mix of views (folders and bags ignore it)."""
    arch: str = "compact"
    """Generator architecture: compact | resnet9."""
    ngf: int = 16
    n_blocks: int = 6
    ndf: int = 64
    iterations: int = 1600
    batch_size: int = 8
    """Per process: under torchrun the effective batch is batch_size x processes."""
    lr: float = 2e-4
    beta1: float = 0.5
    seed: int = 0
    amp: bool = True
    """Mixed precision (fp16 autocast + loss scaling) when training on CUDA; ignored on CPU."""
    checkpoint_every: int = 200
    sample_every: int = 200
    log_dir: str = ""
    """TensorBoard folder ('' = next to the checkpoint, <out>.runs)."""

    def __post_init__(self) -> None:
        if self.image_size % 4:
            raise ValueError(f"image_size must be a multiple of 4, got {self.image_size}")


def config_from_overrides(config_cls: type, overrides: dict[str, Any] | None, what: str) -> Any:
    """``config_cls`` (a dataclass of defaults) with ``overrides`` applied, each value converted
    to the type of its field's default (``--set rounds=3`` arrives as text or YAML). An unknown
    key is an error naming ``what`` recipe and the known keys."""
    known = config_cls.__dataclass_fields__
    values = {}
    for key, value in (overrides or {}).items():
        if key not in known:
            raise ValueError(f"unknown {what} recipe key {key!r} (known: {', '.join(known)})")
        default = known[key].default
        values[key] = type(default)(value) if default is not None else value
    return config_cls(**values)


def config_dict(cfg: Any) -> dict[str, Any]:
    """A recipe dataclass as the plain dict a checkpoint's metadata records (tuples as lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}


def lr_lambda(iterations: int, decay_start: float):
    """Constant learning rate, then linear decay to zero from ``decay_start * iterations``."""
    start = int(iterations * decay_start)

    def factor(it: int) -> float:
        if it < start:
            return 1.0
        return max(0.0, 1.0 - (it - start) / max(1, iterations - start))

    return factor


def summary_writer(log_dir: str):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # pragma: no cover - tensorboard is a dependency; keep training without it
        return None
    return SummaryWriter(log_dir=log_dir)


def load_domain_tensors(
    spec: str, n: int, size: int, seed: int, frame_stride: int = 1
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Up to ``n`` images of a domain (profile, folder or bag) as a [-1, 1] tensor, and their
    masks as int64 class ids when every image has one."""
    images, masks = load_arrays(spec, n, size, seed, frame_stride=frame_stride)
    return to_tensor(images), None if masks is None else torch.from_numpy(masks.astype(np.int64))


def frozen_network(spec: str | Path, device: torch.device) -> nn.Module:
    """A checkpoint's network (path or pretrained:NAME) in eval mode with gradients off: the
    frozen segmenters, labellers and teachers that training losses look through."""
    model = load_checkpoint(spec).build(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) in [-1, 1] -> (N, H, W, 3) uint8."""
    return ((images.detach().float().permute(0, 2, 3, 1).cpu().numpy() + 1.0) * 127.5).clip(0, 255).astype(np.uint8)


class AdversarialTrainer:
    """Base of :class:`TranslatorTrainer` and :class:`SimGANTrainer` (see module docstring)."""

    method: str
    arch: str
    arch_kwargs: dict[str, Any]

    def load_domain(self, spec: str, seed_offset: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The recipe's frames of one domain (:func:`load_domain_tensors` with the config's
        ``frames``, ``image_size`` and ``frame_stride``; rooms from ``seed + seed_offset``)."""
        cfg = self.cfg
        return load_domain_tensors(spec, cfg.frames, cfg.image_size, cfg.seed + seed_offset, cfg.frame_stride)

    def __init__(self, cfg: Any, out: str | Path, device: str = "cpu"):
        self.cfg = cfg
        self.out = Path(out)
        self.device = torch.device(device)
        self.rank, self.world_size = distributed.init_from_env(self.device)
        torch.manual_seed(cfg.seed)  # same initial weights on every rank
        # batches differ per rank, like a distributed sampler
        self.gen = torch.Generator().manual_seed(cfg.seed + 1_000_003 * self.rank)
        self.iteration = 0
        self.train_seconds = 0.0
        """Wall-clock training time over all sessions of this run (resumes included)."""
        self.history: list[dict[str, float]] = []
        self.amp = bool(getattr(cfg, "amp", False)) and self.device.type == "cuda"
        self.scalers: dict[str, torch.amp.GradScaler] = {}

    # ------------------------------------------------------------------ subclass interface
    def step(self) -> dict[str, float]:  # pragma: no cover - abstract
        raise NotImplementedError

    def state_objects(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def main_network(self) -> nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError

    def metadata(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def sample_grid(self, n: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    # ------------------------------------------------------------------ helpers for step()
    def autocast(self):
        """fp16 autocast on CUDA when ``amp`` is set; a no-op otherwise."""
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=torch.float16)

    def scaler(self, name: str) -> torch.amp.GradScaler:
        if name not in self.scalers:
            self.scalers[name] = torch.amp.GradScaler("cuda", enabled=self.amp)
        return self.scalers[name]

    def optimise(self, name: str, optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        """Backward, average gradients over ranks, step; with loss scaling under AMP."""
        scaler = self.scaler(name)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        params = [p for group in optimizer.param_groups for p in group["params"]]
        distributed.average_gradients(params)
        scaler.step(optimizer)
        scaler.update()

    def sync_initial_weights(self, modules: list[nn.Module]) -> None:
        distributed.broadcast_parameters(modules)

    # ------------------------------------------------------------------ state
    def save(self, path: Path | None = None, final: bool = False) -> Path:
        """Write the checkpoint (rank 0 only; other ranks hold the same weights)."""
        path = Path(path or self.out)
        if self.rank != 0:
            return path
        recent = self.history[-50:]
        metadata = self.metadata()
        metadata.update(
            {
                "iterations": self.iteration,
                "complete": final,
                "world_size": self.world_size,
                "train_minutes": round(self.train_seconds / 60, 2),
                "losses": {
                    k: round(float(np.mean([h[k] for h in recent if k in h])), 5)
                    for k in (recent[-1] if recent else {})
                },
            }
        )
        extra: dict[str, Any] = {name: obj.state_dict() for name, obj in self.state_objects().items()}
        extra.update(self._run_state())
        return save_checkpoint(path, self.main_network(), self.arch, self.arch_kwargs, metadata, extra)

    def _run_state(self) -> dict[str, Any]:
        """What a checkpoint's ``extra`` holds beside the ``state_objects``: loss scalers, RNG
        streams, the iteration and the training time."""
        return {
            "scalers": {name: s.state_dict() for name, s in self.scalers.items()},
            "gen_state": self.gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "iteration": self.iteration,
            "train_seconds": self.train_seconds,
        }

    def restore(self, path: str | Path) -> None:
        """Load a checkpoint written by :meth:`save` and continue from it."""
        ckpt = load_checkpoint(path)
        if ckpt.metadata.get("method") != self.method or ckpt.arch != self.arch:
            raise ValueError(
                f"{path}: was trained with {ckpt.metadata.get('method')}/{ckpt.arch}, not {self.method}/{self.arch}"
            )
        if "iteration" not in ckpt.extra:
            raise ValueError(f"{path}: holds no training state to resume from (a stripped, shipped checkpoint?)")
        e = ckpt.extra
        objects = self.state_objects()
        # both checks come before anything is loaded, so a refused resume changes nothing
        unexpected = sorted(set(e) - set(objects) - set(self._run_state()))
        if unexpected:
            # e.g. a run saved with ema_decay resumed without it: its state_dict is the average
            raise ValueError(
                f"{path}: holds training state for {', '.join(unexpected)} that this recipe does not have "
                "(resume with the recipe the run was started with)"
            )
        missing = [name for name in objects if name not in e]
        if missing:
            raise ValueError(f"{path}: training state lacks {missing[0]!r}")
        self.main_network().load_state_dict(ckpt.state_dict)
        for name, obj in objects.items():
            obj.load_state_dict(e[name])
        for name, state in e.get("scalers", {}).items():
            self.scaler(name).load_state_dict(state)
        if self.world_size == 1 or ckpt.metadata.get("world_size", 1) == 1:
            self.gen.set_state(e["gen_state"])
        torch.set_rng_state(e["torch_rng"])
        self.iteration = int(e["iteration"])
        self.train_seconds = float(e.get("train_seconds", 0.0))

    # ------------------------------------------------------------------ loop
    def train(self, progress: bool = True, stop_after: int | None = None) -> dict[str, Any]:
        """Run to ``cfg.iterations`` (or ``stop_after`` more iterations). Ctrl-C or SIGTERM
        saves a checkpoint first (then KeyboardInterrupt propagates); ``--resume`` continues."""
        cfg = self.cfg
        main = self.rank == 0
        writer = summary_writer(cfg.log_dir or str(self.out) + ".runs") if main else None
        target = cfg.iterations if stop_after is None else min(cfg.iterations, self.iteration + stop_after)
        t0 = time.perf_counter()
        bar = tqdm(total=target, initial=self.iteration, desc=f"train {self.method}", disable=not (progress and main))
        previous_term = interrupt_on_sigterm()
        try:
            while self.iteration < target:
                t_step = time.perf_counter()
                log = self.step()
                self.train_seconds += time.perf_counter() - t_step
                self.history.append(log)
                if writer is not None:
                    for k, v in log.items():
                        writer.add_scalar(f"train/{k}", v, self.iteration)
                    if self.iteration % cfg.sample_every == 0:
                        writer.add_image("samples", self.sample_grid(4), self.iteration, dataformats="HWC")
                if self.iteration % cfg.checkpoint_every == 0:
                    self.save()
                bar.update(1)
                bar.set_postfix({k: f"{log[k]:.3f}" for k in self.progress_keys if k in log})
        except KeyboardInterrupt:
            self.save()
            bar.close()
            raise
        finally:
            if previous_term is not None:
                signal.signal(signal.SIGTERM, previous_term)
            if writer is not None:
                writer.close()
        bar.close()
        path = self.save(final=self.iteration >= cfg.iterations)
        return {
            "checkpoint": str(path),
            "iterations": self.iteration,
            "minutes": round((time.perf_counter() - t0) / 60, 2),
            "world_size": self.world_size,
            "losses_first": self.history[0] if self.history else {},
            "losses_last": self.history[-1] if self.history else {},
        }

    progress_keys: tuple[str, ...] = ("G_total", "D_sim", "D_real")


def _raise_interrupt(signum, frame):  # noqa: ARG001 - signal handler signature
    raise KeyboardInterrupt(f"signal {signum}")


def interrupt_on_sigterm():
    """Make SIGTERM (``kill``, job schedulers, a closing terminal's shell) act like Ctrl-C, so a
    killed run saves its checkpoint; returns the handler to restore (None off the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _raise_interrupt)


__all__ = [
    "AdversarialConfig",
    "AdversarialTrainer",
    "config_dict",
    "config_from_overrides",
    "frozen_network",
    "load_domain_tensors",
    "lr_lambda",
    "summary_writer",
    "to_uint8",
]
