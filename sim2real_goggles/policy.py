"""Policy runtime: load an image-policy checkpoint and act on uint8 camera frames.

``ImagePolicy.load("pretrained:policy")`` gives an object that maps an (H, W, 3) uint8 RGB frame
to one of the env's discrete actions (0 forward, 1 turn left, 2 turn right). Frames of another
size are resized to the size the policy was trained at. A policy trained with ``frames > 1``
keeps the last frames itself, and one with memory (a recurrent network) its state;
:meth:`ImagePolicy.reset` starts a new episode.

Actions are drawn from the policy's distribution with a seeded generator (``sample=True``, the
default: a reactive policy that always takes its most likely action can turn left and right
forever in front of a blank wall), or greedily with ``sample=False``.
The ROS policy node and ``goggles eval-policy`` both use this class, so a policy behaves the same
in both.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from sim2real_goggles.models.checkpoint import CheckpointError, load_checkpoint
from sim2real_goggles.models.networks import to_tensor
from sim2real_goggles.translation import resolve_device

POLICY_ARCHS = ("policy_cnn", "policy_ensemble")


class ImagePolicy:
    """A trained image policy (see the module docstring)."""

    def __init__(
        self,
        model: torch.nn.Module,
        image_size: int,
        frames: int = 1,
        device: torch.device | str = "cpu",
        sample: bool = True,
        seed: int = 0,
        metadata: dict[str, Any] | None = None,
        path: Path | None = None,
    ):
        self.model = model.to(device).eval()
        self.image_size = int(image_size)
        self.frames = int(frames)
        self.device = torch.device(device)
        self.sample = sample
        self.metadata = metadata or {}
        self.path = path
        self._rng = np.random.default_rng(seed)
        self._stack: deque[np.ndarray] = deque(maxlen=self.frames)
        self._state: torch.Tensor | None = None

    @classmethod
    def load(cls, spec: str | Path, device: str = "auto", sample: bool = True, seed: int = 0) -> ImagePolicy:
        """A policy checkpoint by path or ``pretrained:NAME``; errors name the file."""
        ckpt = load_checkpoint(spec)
        if ckpt.arch not in POLICY_ARCHS:
            raise CheckpointError(
                f"{ckpt.path}: holds a {ckpt.arch!r} network, not a policy ({', '.join(POLICY_ARCHS)})"
            )
        model = ckpt.build(resolve_device(device))
        size = int(ckpt.metadata.get("image_size", 64))
        return cls(
            model,
            size,
            int(getattr(model, "frames", 1)),
            resolve_device(device),
            sample,
            seed,
            ckpt.metadata,
            ckpt.path,
        )

    def reset(self, seed: int | None = None) -> None:
        """Start a new episode: forget stacked frames and memory; reseed the action sampler if
        ``seed``."""
        self._stack.clear()
        self._state = None
        if seed is not None:
            self._rng = np.random.default_rng(seed)

    def prepare(self, rgb: np.ndarray) -> np.ndarray:
        """The frame as the network sees it: (size, size, 3) uint8."""
        img = np.asarray(rgb)
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3 or 0 in img.shape:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {img.shape} {img.dtype}")
        if img.shape[:2] != (self.image_size, self.image_size):
            img = cv2.resize(img, (self.image_size, self.image_size), interpolation=cv2.INTER_AREA)
        return img

    @torch.no_grad()
    def probabilities(self, rgb: np.ndarray) -> np.ndarray:
        """Action probabilities (3,) for the newest frame (updates the frame stack and the
        memory: call once per control step)."""
        frame = self.prepare(rgb)
        if not self._stack:
            self._stack.extend([frame] * self.frames)
        else:
            self._stack.append(frame)
        x = to_tensor(self.network_input()[None]).to(self.device)
        logits, self._state = self.model.step(x, self._state)
        probs = torch.softmax(logits.float(), dim=1)[0].cpu().numpy().astype(np.float64)
        if not np.all(np.isfinite(probs)):
            raise FloatingPointError("policy produced non-finite action probabilities")
        return probs

    def network_input(self) -> np.ndarray:
        """The stacked frames the newest decision was made on: (size, size, 3·frames) uint8."""
        return np.concatenate(list(self._stack), axis=2)

    def act(self, rgb: np.ndarray) -> int:
        probs = self.probabilities(rgb)
        if self.sample:
            return int(self._rng.choice(len(probs), p=probs / probs.sum()))
        return int(np.argmax(probs))


__all__ = ["ImagePolicy", "POLICY_ARCHS"]
