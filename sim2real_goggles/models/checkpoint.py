"""The one checkpoint format for every network of the project.

A checkpoint is a single file readable with ``torch.load(path, weights_only=True)``::

    {
      "format": "sim2real_goggles.checkpoint",
      "format_version": 1,
      "arch": {"name": "compact", "kwargs": {"ngf": 32, ...}},
      "state_dict": {...},               # tensors only
      "metadata": {...},                 # plain types: method, domains, image_size,
                                         # iterations, metrics, code_version, ...
      "extra": {...}                     # optional: optimiser/RNG state for --resume
    }

It is written atomically (a temporary file in the same folder, then a rename), so a crash never
leaves a half-written checkpoint under the real name. Loading a truncated, foreign or newer file
raises :class:`CheckpointError` naming the file and the problem.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sim2real_goggles import __version__
from sim2real_goggles.models.networks import ARCHITECTURES, build_model

FORMAT = "sim2real_goggles.checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file is missing, damaged, foreign or too new; the message names it."""


@dataclass
class Checkpoint:
    """A loaded checkpoint."""

    arch: str
    arch_kwargs: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    metadata: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def build(self, device: str | torch.device = "cpu") -> nn.Module:
        """The network with these weights, in eval mode."""
        model = build_model(self.arch, **self.arch_kwargs)
        try:
            model.load_state_dict(self.state_dict)
        except RuntimeError as exc:
            raise CheckpointError(f"{self.path}: weights do not fit architecture {self.arch!r}: {exc}") from exc
        return model.to(device).eval()


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    arch: str,
    arch_kwargs: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` atomically; returns the path."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": {"name": arch, "kwargs": dict(arch_kwargs or {})},
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "metadata": {"code_version": __version__, **(metadata or {})},
        "extra": extra or {},
    }
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file normal permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read and validate a checkpoint (``weights_only=True``: no code runs from the file).
    ``path`` may be ``pretrained:NAME``, a checkpoint shipped with the package."""
    from sim2real_goggles.pretrained import resolve

    try:
        path = resolve(path)
    except (FileNotFoundError, ValueError) as exc:
        raise CheckpointError(str(exc)) from exc
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for damaged files
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or not a torch file): {exc}") from exc
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a sim2real_goggles checkpoint (no '{FORMAT}' format marker)")
    version = raw.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version} is newer than this sim2real_goggles "
            f"({__version__}) reads (up to {FORMAT_VERSION}); upgrade the package"
        )
    try:
        arch = raw["arch"]["name"]
        kwargs = dict(raw["arch"].get("kwargs", {}))
        state = raw["state_dict"]
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: checkpoint lacks {exc}") from exc
    if arch not in ARCHITECTURES:
        raise CheckpointError(f"{path}: unknown architecture {arch!r} (known: {', '.join(ARCHITECTURES)})")
    return Checkpoint(arch, kwargs, state, dict(raw.get("metadata", {})), dict(raw.get("extra", {})), path)
