"""Checkpoints shipped inside the package, found by name: ``pretrained:NAME``.

``manifest.yaml`` beside this file lists every shipped checkpoint with how it was made (the exact
command, seed, training time), what it scored (the evaluation command and its figures) and the
file's SHA-256. Shipped files hold the network only: the training state that ``--resume`` needs
is stripped (:func:`register`), which keeps them small. ``scripts/make_pretrained.sh`` remakes them
all with the project's own commands.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import yaml

PREFIX = "pretrained:"
PRETRAINED_DIR = Path(__file__).resolve().parent
MANIFEST = PRETRAINED_DIR / "manifest.yaml"


def load_manifest(path: Path | None = None) -> dict[str, dict[str, Any]]:
    """Entries by name; {} when nothing is shipped yet."""
    path = path or MANIFEST
    if not path.is_file():
        return {}
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from exc
    entries = raw.get("checkpoints", {}) if isinstance(raw, dict) else None
    if not isinstance(entries, dict):
        raise ValueError(f"{path}: expected a mapping 'checkpoints: {{NAME: entry}}'")
    return entries


def is_pretrained(spec: str | Path) -> bool:
    return str(spec).startswith(PREFIX)


def resolve(spec: str | Path) -> Path:
    """The file behind ``pretrained:NAME``; any other spec is returned as a path."""
    if not is_pretrained(spec):
        return Path(spec)
    name = str(spec)[len(PREFIX) :]
    entries = load_manifest()
    if name not in entries:
        known = ", ".join(f"{PREFIX}{n}" for n in sorted(entries)) or "none shipped"
        raise FileNotFoundError(f"unknown pretrained checkpoint {spec!r} (known: {known})")
    return MANIFEST.parent / entries[name]["file"]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _train_minutes(meta: dict[str, Any], given: float | None, source: Path) -> float | None:
    recorded = meta.get("train_minutes")
    if recorded is not None and given is not None and abs(float(recorded) - given) > 0.01:
        raise ValueError(f"{source}: records {recorded} training minutes, not {given}")
    return recorded if recorded is not None else given


def strip_training_state(source: Path, target: Path, fp16_weights: bool = False) -> Path:
    """Copy of a checkpoint with the network and metadata only (no optimiser, pools, RNG);
    weights stored in half precision stay so, and ``fp16_weights`` stores them so (half the
    file; the runtimes compute in float32 after loading, so what a user gets is what was
    measured on the shipped file)."""
    import torch

    from sim2real_goggles.models.checkpoint import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(source)
    model = ckpt.build()
    if fp16_weights or {v.dtype for v in ckpt.state_dict.values() if v.is_floating_point()} == {torch.float16}:
        model.half()
    return save_checkpoint(target, model, ckpt.arch, ckpt.arch_kwargs, ckpt.metadata)


def register(
    name: str,
    source: Path,
    description: str,
    command: str,
    evaluation: dict[str, Any] | None = None,
    manifest: Path | None = None,
    train_minutes: float | None = None,
    fp16_weights: bool = False,
) -> dict[str, Any]:
    """Ship ``source`` as ``pretrained:NAME``: strip it into the manifest's folder and record it.
    ``train_minutes`` is recorded when the checkpoint does not carry its training time (trainer
    versions before the time was written into the metadata); otherwise it must agree.
    ``fp16_weights`` ships the weights in half precision (see :func:`strip_training_state`)."""
    manifest = manifest or MANIFEST
    from sim2real_goggles.models.checkpoint import load_checkpoint

    target = manifest.parent / f"{name}.pt"
    strip_training_state(Path(source), target, fp16_weights)
    meta = load_checkpoint(target).metadata
    config = meta.get("config", {})
    entry: dict[str, Any] = {
        "file": target.name,
        "description": description,
        "method": meta.get("method"),
        "direction": meta.get("direction"),
        "domains": meta.get("domains"),
        "image_size": meta.get("image_size"),
        # a translator that runs on frames enlarged by this (recorded only when it is not 1)
        **({"input_scale": meta["input_scale"]} if meta.get("input_scale", 1.0) != 1.0 else {}),
        "iterations": meta.get("iterations"),
        "seed": config.get("seed"),
        "train_minutes": _train_minutes(meta, train_minutes, source),
        "command": command,
        "code_version": meta.get("code_version"),
        "bytes": target.stat().st_size,
        "sha256": sha256(target),
    }
    refiner = str((meta.get("domains") or {}).get("refiner") or "")
    if refiner and not is_pretrained(refiner):
        # a policy trained through a refiner that is not shipped: what the refiner was, so the
        # transfer table still finds the policy for its look
        if not Path(refiner).is_file():
            raise ValueError(f"{source}: was trained through the refiner {refiner}, which is not there to record")
        ref_meta = load_checkpoint(refiner).metadata
        entry["refiner"] = {
            "file": refiner,
            "method": ref_meta.get("method"),
            "domains": ref_meta.get("domains"),
            "sha256": sha256(Path(refiner)),
        }
    evaluation = evaluation or meta.get("metrics")  # segmenters evaluate themselves after training
    if evaluation:
        entry["evaluation"] = evaluation
    entries = load_manifest(manifest)
    entries[name] = entry
    header = (
        "# Shipped checkpoints, found as pretrained:NAME. Written by `goggles pretrained add`;\n"
        "# scripts/make_pretrained.sh remakes every file with the commands recorded here.\n"
    )
    manifest.write_text(header + yaml.safe_dump({"checkpoints": entries}, sort_keys=False, width=100))
    return entry


__all__ = ["MANIFEST", "PREFIX", "is_pretrained", "load_manifest", "register", "resolve", "sha256"]
