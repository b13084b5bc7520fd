"""The sim-to-real transfer table: one sim-trained policy, every way of deploying it, every look.

Rows are methods, columns are real-like looks; a cell is the success rate (with its 95% Wilson
interval) over the same fixed-seed rooms for every cell. Methods:

- ``sim_on_sim``: the policy in the sim look it was trained in (upper bound; one value, shown in
  every column);
- ``no_goggles``: the policy straight on the real-like camera;
- ``cyclegan`` / ``vr_goggles`` / ``vr_goggles_distilled`` / ``cyclegan_masked``: the policy
  behind a real→sim translator trained *for that look* by the same recipe (found in the shipped
  manifest by method and real domain, ``distill`` for the compact students of the VR-Goggles
  teachers, or given with ``--translator METHOD:LOOK=CKPT``);
- ``domain_randomization`` / ``simgan`` / ``pixelda``: policies trained differently, straight on
  the camera: the shipped DR policy (trained on the ``randomized`` family, which holds neither
  evaluation look) for every look, and the shipped policies trained through a SimGAN refiner or
  a PixelDA generator trained on that look (found through the refiner's manifest entry); or
  given with ``--policy-dr`` / ``--policy-simgan`` / ``--policy-pixelda`` (``CKPT`` for every
  look, ``LOOK=CKPT`` for one).

A cell with no checkpoint for it is reported as missing, never guessed. Cells run in parallel
processes; per-frame latency of each method (translator + policy) is measured on the side. With
``reuse`` (earlier transfer.json tables), a cell of the same method, look, policy, translator,
episodes and seed is taken from it instead of run again, and marked ``reused``. "The same"
policy and translator means the same files: every cell records the SHA-256 of both, so a cell
measured with an earlier ``pretrained:policy`` is never taken for the current one.

A full table takes hours on a CPU, so ``on_cell`` sees the table so far after every measured
cell; the command writes it to ``OUT/transfer.json`` (``"complete": false``) each time, and
``--resume`` takes the cells of that file, so a run that is killed loses at most the cells that
were running.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

METHODS = (
    "sim_on_sim",
    "no_goggles",
    "cyclegan",
    "vr_goggles",
    "vr_goggles_distilled",
    "cyclegan_masked",
    "domain_randomization",
    "simgan",
    "pixelda",
)
TRANSLATOR_METHODS = ("cyclegan", "vr_goggles", "vr_goggles_distilled", "cyclegan_masked")
MANIFEST_METHOD = {"vr_goggles_distilled": "distill"}
"""Rows whose translators the manifest lists under another method name."""
ROW_TRANSLATOR = {"vr_goggles_distilled": "vr_goggles_fast"}
"""Rows whose manifest method has several shipped translators per look: the name of the one the
row's committed figures were measured with, on real_lab (another look's file adds ``_LOOK``)."""
REFINED_POLICY_METHODS = ("simgan", "pixelda")
"""Rows of policies trained through a sim->real refiner of that manifest method."""


@dataclass(frozen=True)
class Cell:
    method: str
    look: str
    policy: str
    translator: str | None
    profile: str
    """The look the episodes are rendered in (``sim`` for the upper bound)."""


def shipped_translator(method: str, look: str) -> str | None:
    """``pretrained:NAME`` of a shipped real→sim translator of ``method`` (a row name) trained
    on ``look``: the one :data:`ROW_TRANSLATOR` names for the row when it is shipped for the look,
    else the manifest's first entry of the row's method and look."""
    from sim2real_goggles.pretrained import load_manifest

    wanted = MANIFEST_METHOD.get(method, method)
    manifest = load_manifest()

    def fits(entry: dict[str, Any]) -> bool:
        domains = entry.get("domains") or {}
        return entry.get("method") == wanted and entry.get("direction") == "real->sim" and domains.get("real") == look

    if method in ROW_TRANSLATOR:  # by name, whatever the manifest's order
        stem = ROW_TRANSLATOR[method]
        name = stem if look == "real_lab" else f"{stem}_{look}"
        if name in manifest and fits(manifest[name]):
            return f"pretrained:{name}"
    for name, entry in manifest.items():  # the first of the method for the look
        if fits(entry):
            return f"pretrained:{name}"
    return None


POLICY_METHODS = ("bc_dagger",)
"""Manifest ``method`` of trained policies."""


def shipped_policy(method: str, look: str, manifest: dict[str, Any] | None = None) -> str | None:
    """``pretrained:NAME`` of a shipped baseline policy for ``look``: ``domain_randomization``
    (trained on the ``randomized`` family; any look), ``simgan`` or ``pixelda`` (trained through
    a refiner of that method trained on ``look``, as the refiner's manifest entry says, or, for a
    refiner that is not shipped, the policy's own record of it)."""
    from sim2real_goggles.pretrained import PREFIX, load_manifest

    manifest = load_manifest() if manifest is None else manifest
    for name, entry in manifest.items():
        domains = entry.get("domains") or {}
        if entry.get("method") not in POLICY_METHODS:
            continue
        if method == "domain_randomization" and str(domains.get("train", "")).startswith("randomized"):
            return f"pretrained:{name}"
        refiner = str(domains.get("refiner") or "")
        if method in REFINED_POLICY_METHODS and refiner:
            ref = (manifest.get(refiner[len(PREFIX) :]) if refiner.startswith(PREFIX) else entry.get("refiner")) or {}
            if ref.get("method") == method and (ref.get("domains") or {}).get("real") == look:
                return f"pretrained:{name}"
    return None


def _per_look(spec: str | dict[str, str] | None, look: str) -> str | None:
    """A policy given for every look (str) or per look (dict)."""
    return spec.get(look) if isinstance(spec, dict) else spec


def plan_cells(
    looks: list[str],
    policy: str,
    translators: dict[tuple[str, str], str] | None = None,
    policy_dr: str | dict[str, str] | None = None,
    policy_simgan: str | dict[str, str] | None = None,
    methods: list[str] | None = None,
    policy_pixelda: str | dict[str, str] | None = None,
) -> tuple[list[Cell], list[dict[str, str]]]:
    """The cells to run, and the ones that cannot run (with the reason); only the rows of
    ``methods`` when given."""
    from sim2real_goggles.appearance.profile import load_profile

    translators = translators or {}
    cells = [Cell("sim_on_sim", "sim", policy, None, "sim")]
    missing = []
    for look in looks:
        name = load_profile(look).name
        cells.append(Cell("no_goggles", name, policy, None, look))
        for method in TRANSLATOR_METHODS:
            ckpt = translators.get((method, name)) or shipped_translator(method, name)
            if ckpt is None:
                missing.append({"method": method, "look": name, "why": f"no {method} translator trained on {name}"})
            else:
                cells.append(Cell(method, name, policy, ckpt, look))
        baselines = (("domain_randomization", policy_dr), ("simgan", policy_simgan), ("pixelda", policy_pixelda))
        for method, given in baselines:
            other = _per_look(given, name) or shipped_policy(method, name)
            if other is None:
                missing.append({"method": method, "look": name, "why": f"no {method} policy for {name}"})
            else:
                cells.append(Cell(method, name, other, None, look))
    if methods is not None:
        unknown = sorted(set(methods) - set(METHODS))
        if unknown:
            raise ValueError(f"unknown method(s) {', '.join(unknown)} (choose from {', '.join(METHODS)})")
        cells = [c for c in cells if c.method in methods]
        missing = [m for m in missing if m["method"] in methods]
    return cells, missing


def _run_cell(cell: Cell, episodes: int, seed: int, device: str) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)  # cells run side by side, one core each
    from sim2real_goggles.evaluation.policy_eval import make_policy, run_episodes, summarize

    policy = make_policy(cell.policy, translator=cell.translator, device=device)
    t0 = time.perf_counter()
    results = run_episodes(policy, cell.profile, episodes, seed)
    summary = summarize(results, method=cell.method, look=cell.look, policy=cell.policy, translator=cell.translator)
    summary["minutes"] = round((time.perf_counter() - t0) / 60, 2)
    summary["latency_ms"] = _frame_latency_ms(policy)
    return summary


def _frame_latency_ms(policy: Any, frames: int = 200) -> float:
    """Median per-frame cost (translator + policy) on 64x64 frames, ms."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (frames, 64, 64, 3), dtype=np.uint8)
    times = []
    for img in images:
        t0 = time.perf_counter()
        policy.act(img)
        times.append(time.perf_counter() - t0)
    return round(float(np.median(times)) * 1000, 3)


def transfer_table(
    looks: list[str],
    policy: str = "pretrained:policy",
    episodes: int = 200,
    seed: int = 0,
    workers: int = 2,
    translators: dict[tuple[str, str], str] | None = None,
    policy_dr: str | dict[str, str] | None = None,
    policy_simgan: str | dict[str, str] | None = None,
    device: str = "cpu",
    reuse: list[dict[str, Any]] | None = None,
    methods: list[str] | None = None,
    policy_pixelda: str | dict[str, str] | None = None,
    on_cell: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """The table: ``{"episodes", "seed", "looks", "cells", "missing", "complete"}``.
    ``on_cell(table)``, if given, is called after each cell measured here with the table of the
    cells finished so far (``complete`` false until the last one)."""
    from sim2real_goggles.appearance.profile import load_profile

    cells, missing = plan_cells(looks, policy, translators, policy_dr, policy_simgan, methods, policy_pixelda)
    earlier = {
        _cell_key(r): r
        for table in reuse or []
        if table.get("episodes") == episodes and table.get("seed") == seed
        for r in table.get("cells", [])
    }
    keys = [_cell_key(c) for c in cells]  # hashes each checkpoint file once, before any cell runs
    results: list[dict[str, Any] | None] = [earlier.get(key) for key in keys]
    for r in results:
        if r is not None:
            r["reused"] = True
    todo = [i for i, r in enumerate(results) if r is None]
    looks_named = [load_profile(look).name for look in looks]

    def table() -> dict[str, Any]:
        return {
            "episodes": episodes,
            "seed": seed,
            "looks": looks_named,
            "cells": [r for r in results if r is not None],
            "missing": missing,
            "complete": all(r is not None for r in results),
        }

    with ProcessPoolExecutor(max_workers=max(1, min(workers, len(todo) or 1))) as pool:
        futures = {pool.submit(_run_cell, cells[i], episodes, seed, device): i for i in todo}
        for future in as_completed(futures):
            i = futures[future]
            *_, policy_sha256, translator_sha256 = keys[i]
            results[i] = {**future.result(), "policy_sha256": policy_sha256, "translator_sha256": translator_sha256}
            if on_cell is not None:
                on_cell(table())
    return table()


def checkpoint_digest(spec: str | None) -> str | None:
    """SHA-256 of the checkpoint file behind ``spec`` (a path or ``pretrained:NAME``)."""
    if spec is None:
        return None
    from sim2real_goggles.pretrained import resolve, sha256

    return sha256(resolve(spec))


def _cell_key(cell: Cell | dict[str, Any]) -> tuple[Any, ...]:
    """What makes two cells the same experiment (with the same episodes and seed): method,
    look, and the policy and translator by name and by file content. A cell recorded without
    the digests (an older table) matches nothing."""
    if isinstance(cell, Cell):
        return (
            cell.method,
            cell.look,
            cell.policy,
            cell.translator,
            checkpoint_digest(cell.policy),
            checkpoint_digest(cell.translator),
        )
    return (
        cell.get("method"),
        cell.get("look"),
        cell.get("policy"),
        cell.get("translator"),
        cell.get("policy_sha256", "unrecorded"),
        cell.get("translator_sha256", "unrecorded"),
    )


def _cell_text(r: dict[str, Any] | None) -> str:
    if r is None:
        return "n/a"
    low, high = r["ci95"]
    return f"{r['success_rate']:.1%} ({low:.0%}–{high:.0%})"


def to_markdown(table: dict[str, Any]) -> str:
    looks = table["looks"]
    by = {(r["method"], r["look"]): r for r in table["cells"]}
    sim = by.get(("sim_on_sim", "sim"))
    lines = [
        f"Success rate (95% CI) over {table['episodes']} fixed rooms (seeds {table['seed']}–"
        f"{table['seed'] + table['episodes'] - 1}); latency = translator + policy per 64×64 frame on CPU.",
        "",
        "| method | " + " | ".join(looks) + " | latency (ms) |",
        "|---|" + "---|" * (len(looks) + 1),
    ]
    for method in METHODS:
        cells = [sim if method == "sim_on_sim" else by.get((method, look)) for look in looks]
        if not any(cells):
            continue
        latency = next((c["latency_ms"] for c in cells if c), None)
        lines.append(f"| {method} | " + " | ".join(_cell_text(c) for c in cells) + f" | {latency} |")
    for m in table["missing"]:
        lines.append(f"\n- {m['method']} on {m['look']}: not run ({m['why']})")
    return "\n".join(lines) + "\n"


def plotted_methods(table: dict[str, Any]) -> list[str]:
    """The rows that have a bar in the plot: those with a cell (sim on sim has its one cell in
    the sim look, drawn in every look's group), in table order."""
    cells = {(r["method"], r["look"]) for r in table["cells"]}
    return [
        m
        for m in METHODS
        if (("sim_on_sim", "sim") in cells if m == "sim_on_sim" else any((m, lk) in cells for lk in table["looks"]))
    ]


def plot(table: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    looks = table["looks"]
    by = {(r["method"], r["look"]): r for r in table["cells"]}
    methods = plotted_methods(table)
    # the legend goes right of the axes, where it cannot cover a bar
    fig, ax = plt.subplots(figsize=(3.4 + 1.4 * len(looks) * max(1, len(methods)) / 3, 3.2))
    width = 0.8 / max(1, len(methods))
    for i, method in enumerate(methods):
        rows = [by.get(("sim_on_sim", "sim")) if method == "sim_on_sim" else by.get((method, lk)) for lk in looks]
        xs = [j + i * width for j, r in enumerate(rows) if r]
        ys = [r["success_rate"] for r in rows if r]
        err = np.array([[r["success_rate"] - r["ci95"][0], r["ci95"][1] - r["success_rate"]] for r in rows if r]).T
        ax.bar(xs, ys, width, yerr=err if len(ys) else None, capsize=2, label=method)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(looks))], looks)
    ax.set_ylim(0, 1)
    ax.set_ylabel("success rate")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_progress(table: dict[str, Any], out: Path) -> Path:
    """The table so far as ``OUT/transfer.json``, replaced atomically (a kill mid-write leaves
    the previous version)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "transfer.json"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(table, indent=1))
    tmp.replace(path)
    return path


def write_outputs(table: dict[str, Any], out: Path) -> dict[str, str]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": write_progress(table, out), "markdown": out / "transfer.md", "plot": out / "transfer.png"}
    paths["markdown"].write_text(to_markdown(table))
    plot(table, paths["plot"])
    return {k: str(v) for k, v in paths.items()}


__all__ = [
    "METHODS",
    "checkpoint_digest",
    "plan_cells",
    "plotted_methods",
    "shipped_policy",
    "shipped_translator",
    "to_markdown",
    "transfer_table",
    "write_outputs",
    "write_progress",
]
