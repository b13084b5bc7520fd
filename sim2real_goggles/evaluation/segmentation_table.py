"""The segmentation table: every way of adapting to a real-like look, judged by sem_miou on the
same paired frames (DESIGN §8, issue 9).

Rows are methods, columns are looks; a cell is the mIoU and per-class IoU of a segmenter on
``n`` frames of held-apart rooms (seeds from :data:`EVAL_SEED`, the frames of
``goggles eval-translator``), with the per-frame inference cost. Methods:

- ``no_adaptation``: the sim segmenter (``pretrained:segmenter``) straight on the real frames;
- ``cyclegan`` / ``vr_goggles`` / ``cyclegan_masked``: the sim segmenter behind the real→sim
  translator of that method trained on that look (pixel-level adaptation at run time);
- ``dann`` / ``advent``: a segmenter trained by ``goggles train-segmenter --adapt METHOD --real
  LOOK`` (feature- and output-level adaptation), straight on the real frames;
- ``pixelda``: a segmenter trained on PixelDA's sim→real images of that look, straight on the
  real frames;
- ``self_train``: the labeller after class-balanced self-training on that look's unlabelled
  frames (``goggles train-segmenter --adapt self_train --teacher GOGGLES --real LOOK``),
  straight on the real frames;
- ``sim_on_sim``: the sim segmenter on the paired *sim* frames (upper bound).

Checkpoints are the shipped ones, found in the manifest by method and real domain, unless given
with ``METHOD:LOOK=CKPT``; a cell with none is reported as missing, never guessed.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sim2real_goggles.evaluation.metrics import confusion_matrix, iou_from_confusion, miou, rounded
from sim2real_goggles.evaluation.translation_eval import EVAL_SEED, paired_frames

METHODS = (
    "no_adaptation",
    "cyclegan",
    "vr_goggles",
    "cyclegan_masked",
    "dann",
    "advent",
    "pixelda",
    "self_train",
    "sim_on_sim",
)
TRANSLATOR_METHODS = ("cyclegan", "vr_goggles", "cyclegan_masked")
SEGMENTER_METHODS = {
    "dann": "segmenter_dann",
    "advent": "segmenter_advent",
    "pixelda": "segmenter_pixelda",
    "self_train": "segmenter_self_train",
}
"""Row -> manifest ``method`` of the adapted segmenters."""
SIM_SEGMENTER = "pretrained:segmenter"


@dataclass(frozen=True)
class Row:
    method: str
    look: str
    translator: str | None
    segmenter: str


def shipped_segmenter(method: str, look: str) -> str | None:
    """``pretrained:NAME`` of a shipped segmenter adapted by ``method`` to ``look``."""
    from sim2real_goggles.pretrained import load_manifest

    want = SEGMENTER_METHODS[method]
    for name, entry in load_manifest().items():
        if entry.get("method") == want and (entry.get("domains") or {}).get("real") == look:
            return f"pretrained:{name}"
    return None


def plan_rows(
    looks: list[str],
    given: dict[tuple[str, str], str] | None = None,
    methods: list[str] | None = None,
    segmenter: str = SIM_SEGMENTER,
) -> tuple[list[Row], list[dict[str, str]]]:
    """The cells to evaluate per look and the missing ones (with the reason)."""
    from sim2real_goggles.appearance.profile import load_profile
    from sim2real_goggles.evaluation.transfer import shipped_translator

    chosen = list(METHODS) if methods is None else methods
    unknown = sorted(set(chosen) - set(METHODS))
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(unknown)} (choose from {', '.join(METHODS)})")
    given = given or {}
    rows, missing = [], []
    for look in looks:
        name = load_profile(look).name
        for method in chosen:
            if method in ("no_adaptation", "sim_on_sim"):
                rows.append(Row(method, name, None, segmenter))
            elif method in TRANSLATOR_METHODS:
                ckpt = given.get((method, name)) or shipped_translator(method, name)
                if ckpt is None:
                    missing.append({"method": method, "look": name, "why": f"no {method} translator trained on {name}"})
                else:
                    rows.append(Row(method, name, ckpt, segmenter))
            else:
                ckpt = given.get((method, name)) or shipped_segmenter(method, name)
                if ckpt is None:
                    missing.append({"method": method, "look": name, "why": f"no {method} segmenter for {name}"})
                else:
                    rows.append(Row(method, name, None, ckpt))
    return rows, missing


def _latency_ms(translator: Any, segmenter: torch.nn.Module, frames: np.ndarray) -> float:
    """Median cost of one frame (translator, if any, then segmenter), batch 1, one thread, ms
    (the first 5 frames are warm-up)."""
    from sim2real_goggles.models.networks import to_tensor

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    times = []
    try:
        with torch.no_grad():
            for img in frames:
                t0 = time.perf_counter()
                x = img if translator is None else translator(img)
                segmenter(to_tensor(x[None])).argmax(1)
                times.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads)
    return round(float(np.median(times[5:] or times)) * 1000, 3)


def segmentation_table(
    looks: list[str],
    n: int = 500,
    seed: int = EVAL_SEED,
    given: dict[tuple[str, str], str] | None = None,
    methods: list[str] | None = None,
    segmenter: str = SIM_SEGMENTER,
    image_size: int = 64,
) -> dict[str, Any]:
    """Evaluate every row of every look on the same paired frames (one render per look)."""
    from sim2real_goggles.appearance.profile import load_profile
    from sim2real_goggles.models.checkpoint import load_checkpoint
    from sim2real_goggles.training.segmenter import predict
    from sim2real_goggles.translation import Translator

    rows, missing = plan_rows(looks, given, methods, segmenter)
    cells = []
    frames: dict[str, dict[str, np.ndarray]] = {}
    for look in looks:
        frames[load_profile(look).name] = paired_frames(look, "sim", n, seed, image_size)
    for row in rows:
        data = frames[row.look]
        seg = load_checkpoint(row.segmenter).build("cpu").eval()
        translator = None if row.translator is None else Translator.load(row.translator, device="cpu")
        images = data["sim"] if row.method == "sim_on_sim" else data["real"]
        masks = data["mask_sim"] if row.method == "sim_on_sim" else data["mask_real"]
        if translator is not None:
            images = np.concatenate([translator(images[i : i + 64]) for i in range(0, len(images), 64)])
        per_class = iou_from_confusion(confusion_matrix(predict(seg, images), masks))
        cells.append(
            {
                "method": row.method,
                "look": row.look,
                "translator": row.translator,
                "segmenter": row.segmenter,
                "n": int(len(images)),
                "sem_miou": round(miou(per_class), 4),
                "per_class_iou": rounded(per_class),
                "latency_ms": _latency_ms(translator, seg, data["real"][:40]),
            }
        )
    return {"n": n, "seed": seed, "image_size": image_size, "looks": list(frames), "cells": cells, "missing": missing}


def to_markdown(table: dict[str, Any]) -> str:
    lines = [
        f"sem_miou and per-class IoU on {table['n']} paired frames of held-apart rooms per look (seeds from "
        f"{table['seed']}); latency = translator (if any) + segmenter per {table['image_size']}² frame, "
        "batch 1, one CPU thread.",
    ]
    for look in table["looks"]:
        cells = [c for c in table["cells"] if c["look"] == look]
        classes = list(cells[0]["per_class_iou"]) if cells else []
        lines += [
            "",
            f"| {look} | sem_miou | " + " | ".join(classes) + " | latency (ms) | checkpoint |",
            "|---|" + "---|" * (len(classes) + 3),
        ]
        for c in sorted(cells, key=lambda c: METHODS.index(c["method"])):
            iou = " | ".join("n/a" if v is None else f"{v:.3f}" for v in c["per_class_iou"].values())
            used = c["translator"] or c["segmenter"]
            lines.append(f"| {c['method']} | {c['sem_miou']:.4f} | {iou} | {c['latency_ms']} | {used} |")
    for m in table["missing"]:
        lines.append(f"\n- {m['method']} on {m['look']}: not run ({m['why']})")
    return "\n".join(lines) + "\n"


def write_outputs(table: dict[str, Any], out: Path) -> dict[str, str]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "segmentation.json", "markdown": out / "segmentation.md"}
    paths["json"].write_text(json.dumps(table, indent=1))
    paths["markdown"].write_text(to_markdown(table))
    return {k: str(v) for k, v in paths.items()}


__all__ = ["METHODS", "plan_rows", "segmentation_table", "shipped_segmenter", "to_markdown", "write_outputs"]
