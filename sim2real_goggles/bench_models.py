"""``goggles bench translator`` and ``goggles bench train``: generator speed as JSON records.

Translator inference: every architecture x size x batch x backend x threads, with parameters,
MACs (counted by :class:`torch.utils.flop_counter.FlopCounterMode` on the real forward pass:
convolutions and transposed convolutions, one MAC = two FLOPs), p50/p95 latency per call and
frames/s. The resnet9 eager reference is measured in the same run, right before the other rows
of its (size, batch, threads) group, and every row carries ``speedup_vs_resnet9`` = its frames/s
over that reference's. Each row also carries ``max_abs_diff``: the largest difference between
its output and eager PyTorch's on the same input (in [-1, 1] units), so a fast backend that
computes something else shows.

Training: iterations/s of one full CycleGAN / VR-Goggles step (both generators, both
discriminators, semantic and shift terms) with the same code ``goggles train-translator`` runs.
"""

from __future__ import annotations

import copy
import logging
import os
import platform
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from sim2real_goggles.inference import CPU_BACKENDS, CUDA_BACKENDS, BackendUnavailable, make_runner
from sim2real_goggles.models.networks import GENERATOR_PRESETS, build_model, count_parameters
from sim2real_goggles.translation import resolve_device

log = logging.getLogger(__name__)

REFERENCE_ARCH = "resnet9"
REFERENCE_BACKEND = "eager"


def device_name(device: torch.device) -> str:
    """``cpu: <model>, N cores`` or ``cuda: <GPU name>``."""
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"cpu: {model}, {len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()} cores"


def count_macs(model: torch.nn.Module, x: torch.Tensor) -> int:
    """Multiply-accumulates of one forward pass on ``x``, counted by PyTorch's FLOP counter."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    return counter.get_total_flops() // 2


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(
    fn, x: torch.Tensor, device: torch.device, budget_s: float, min_reps: int, max_reps: int, warmup: int = 1
) -> np.ndarray:
    """Seconds per call of ``fn(x)``: ``warmup`` untimed calls, then at least ``min_reps`` timed
    calls and more until ``budget_s`` seconds are spent (at most ``max_reps``)."""
    for _ in range(warmup):
        fn(x)
    _sync(device)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max_reps and (len(times) < min_reps or time.perf_counter() - start < budget_s):
        t0 = time.perf_counter()
        fn(x)
        _sync(device)
        times.append(time.perf_counter() - t0)
    return np.asarray(times)


def bench_translator(
    archs: Iterable[str] | None = None,
    sizes: Iterable[int] = (64, 128, 256),
    batches: Iterable[int] = (1, 8),
    backends: Iterable[str] | None = None,
    threads: Iterable[int] = (1, 2),
    device: str = "cpu",
    half: bool | None = None,
    budget_s: float = 1.0,
    min_reps: int = 3,
    max_reps: int = 500,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Records for every (arch, size, batch, backend, threads); see the module docstring.
    ``archs`` are names of :data:`~sim2real_goggles.models.networks.GENERATOR_PRESETS`.

    Weights are random (speed does not depend on them); the same seed gives the same weights
    and inputs. A backend that cannot run here (e.g. torch.compile without a C++ compiler)
    gives a record with ``error`` instead of timings. ``half`` (default: true on CUDA) runs the
    non-reference rows in fp16; the resnet9 reference stays eager fp32, so ratios include the
    precision gain.
    """
    dev = resolve_device(device)
    archs = list(dict.fromkeys(archs or GENERATOR_PRESETS))
    unknown = [a for a in archs if a not in GENERATOR_PRESETS]
    if unknown:
        raise ValueError(f"unknown generator architecture(s) {unknown}: use {', '.join(GENERATOR_PRESETS)}")
    allowed = CUDA_BACKENDS if dev.type == "cuda" else CPU_BACKENDS
    backends = list(dict.fromkeys(backends or allowed))
    for b in backends:
        if b not in allowed:
            raise ValueError(f"backend {b!r} does not run on {dev.type}: use {', '.join(allowed)}")
    half = dev.type == "cuda" if half is None else half
    if half and dev.type != "cuda":
        raise ValueError("fp16 needs a CUDA device")
    thread_counts = list(dict.fromkeys(threads)) if dev.type == "cpu" else [torch.get_num_threads()]
    name = device_name(dev)
    models: dict[str, torch.nn.Module] = {}
    for arch in dict.fromkeys([REFERENCE_ARCH, *archs]):
        torch.manual_seed(seed)
        base, kwargs = GENERATOR_PRESETS[arch]
        models[arch] = build_model(base, **kwargs).eval()
    runners: dict[tuple[str, str, bool, int], Any] = {}
    records: list[dict[str, Any]] = []
    gen = torch.Generator().manual_seed(seed)
    for size in sizes:
        for batch in batches:
            x = (torch.rand(batch, 3, size, size, generator=gen) * 2 - 1).to(dev)
            expected: dict[str, torch.Tensor] = {}
            macs = {}
            for arch, model in models.items():
                model.to(dev)
                macs[arch] = count_macs(model, x)
                with torch.inference_mode():
                    expected[arch] = model(x).float()
            for n_threads in thread_counts:
                rows = [(REFERENCE_ARCH, REFERENCE_BACKEND, False)]
                rows += [(a, b, half) for a in archs for b in backends if (a, b, half) != rows[0]]
                reference_fps = None
                for arch, backend, fp16 in rows:
                    record: dict[str, Any] = {
                        "arch": arch,
                        "size": size,
                        "batch": batch,
                        "backend": backend,
                        "precision": "fp16" if fp16 else "fp32",
                        "threads": n_threads,
                        "device": name,
                        "params": count_parameters(models[arch]),
                        "macs": macs[arch],
                    }
                    if dev.type == "cpu":
                        torch.set_num_threads(n_threads)
                    # ONNX Runtime fixes its thread count per session; the others follow set_num_threads
                    key = (arch, backend, fp16, n_threads if backend == "onnxruntime" else 0)
                    t0 = time.perf_counter()
                    try:
                        if key not in runners:
                            # a copy each: backends convert weights in place (fp16, NHWC, frozen)
                            model = copy.deepcopy(models[arch])
                            runners[key] = make_runner(model, backend, dev, half=fp16, threads=n_threads)
                        runner = runners[key]
                        y = runner(x)  # builds per-shape state (compile, trace, graph) outside the timing
                        record["setup_s"] = round(time.perf_counter() - t0, 3)
                        record["max_abs_diff"] = float((y.float().to(dev) - expected[arch]).abs().max())
                        times = time_calls(runner, x, dev, budget_s, min_reps, max_reps)
                    except BackendUnavailable as exc:
                        record["error"] = str(exc)
                        log.warning("%s %s %dx%d batch %d: %s", arch, backend, size, size, batch, exc)
                        records.append(record)
                        continue
                    p50 = float(np.percentile(times, 50))
                    record.update(
                        p50_ms=round(p50 * 1e3, 3),
                        p95_ms=round(float(np.percentile(times, 95)) * 1e3, 3),
                        fps=round(batch / p50, 2),
                        reps=len(times),
                    )
                    if (arch, backend, fp16) == rows[0]:
                        reference_fps = record["fps"]
                    record["speedup_vs_resnet9"] = round(record["fps"] / reference_fps, 3) if reference_fps else None
                    log.info(
                        "%s %s %s %dx%d batch %d threads %d: p50 %.2f ms, %.1f fps, x%s",
                        arch,
                        backend,
                        record["precision"],
                        size,
                        size,
                        batch,
                        n_threads,
                        record["p50_ms"],
                        record["fps"],
                        record["speedup_vs_resnet9"],
                    )
                    records.append(record)
    return records


def format_table(records: list[dict[str, Any]]) -> str:
    """A Markdown table of :func:`bench_translator` records."""
    head = "| arch | size | batch | backend | threads | MMACs | p50 ms | p95 ms | frames/s | vs resnet9 |"
    lines = [head, "|---" * (head.count("|") - 1) + "|"]
    for r in records:
        if "error" in r:
            lines.append(
                f"| {r['arch']} | {r['size']} | {r['batch']} | {r['backend']} | {r['threads']} | "
                f"{r['macs'] / 1e6:.0f} | n/a | n/a | n/a | {r['error'][:60]} |"
            )
            continue
        backend = r["backend"] + (" fp16" if r["precision"] == "fp16" else "")
        lines.append(
            f"| {r['arch']} | {r['size']} | {r['batch']} | {backend} | {r['threads']} | {r['macs'] / 1e6:.0f} | "
            f"{r['p50_ms']:.2f} | {r['p95_ms']:.2f} | {r['fps']:.1f} | {r['speedup_vs_resnet9']:.1f}x |"
        )
    return "\n".join(lines)


def bench_train(
    methods: Iterable[str] = ("cyclegan", "vr_goggles"),
    archs: Iterable[str] = ("compact", "resnet9"),
    image_size: int = 128,
    batch_size: int | None = None,
    iterations: int = 10,
    frames: int = 64,
    device: str = "cpu",
    threads: int | None = None,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Training iterations/s of ``goggles train-translator``'s own step, per method and arch,
    with the shipped recipe (config/training/METHOD.yaml) at ``image_size``.

    Each record: ``it_per_s`` and ``ms_per_iteration`` (median of ``iterations`` timed steps
    after 2 untimed ones), ``data_ms`` (the part of a step spent gathering the batch and moving
    it to the device), ``setup_s`` (rendering ``frames`` images per domain and building the
    networks, paid once per run), ``images_per_s`` (real + sim images through the step).
    """
    from sim2real_goggles.resources import share_path
    from sim2real_goggles.training.translator import TranslatorTrainer, load_recipe

    dev = resolve_device(device)
    if threads and dev.type == "cpu":
        torch.set_num_threads(int(threads))
    name = device_name(dev)
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        for method in methods:
            for arch in archs:
                overrides: dict[str, Any] = {
                    "method": method,
                    "arch": arch,
                    "image_size": image_size,
                    "frames": frames,
                    "iterations": iterations + 2,
                    "seed": seed,
                    "log_dir": str(Path(tmp) / "runs"),
                    "batch_size": batch_size,
                    "checkpoint_every": 10**9,
                    "sample_every": 10**9,
                }
                if arch == "resnet9":
                    overrides.update(ngf=64, n_blocks=9)
                # the shipped recipe, as `goggles train-translator --method METHOD` runs it
                cfg = load_recipe(share_path("config", "training", f"{method}.yaml"), **overrides)
                t0 = time.perf_counter()
                trainer = TranslatorTrainer(cfg, Path(tmp) / f"{method}_{arch}.pt", device=str(dev))
                setup = time.perf_counter() - t0
                gather = trainer._batch
                data_times: list[float] = []

                def timed_batch(gather=gather, data_times=data_times):
                    t = time.perf_counter()
                    out = gather()
                    _sync(dev)
                    data_times.append(time.perf_counter() - t)
                    return out

                trainer._batch = timed_batch
                steps = []
                for i in range(iterations + 2):
                    _sync(dev)
                    t = time.perf_counter()
                    trainer.step()
                    _sync(dev)
                    if i >= 2:
                        steps.append(time.perf_counter() - t)
                step = float(np.median(steps))
                records.append(
                    {
                        "method": method,
                        "arch": arch,
                        "size": image_size,
                        "batch": cfg.batch_size,
                        "device": name,
                        "threads": torch.get_num_threads() if dev.type == "cpu" else None,
                        "params_G": count_parameters(trainer.G_rs),
                        "iterations": len(steps),
                        "it_per_s": round(1.0 / step, 3),
                        "ms_per_iteration": round(step * 1e3, 1),
                        "images_per_s": round(2 * cfg.batch_size / step, 2),
                        "data_ms": round(float(np.median(data_times[2:])) * 1e3, 3),
                        "setup_s": round(setup, 2),
                    }
                )
                log.info("train %s %s %dx%d: %.2f it/s", method, arch, image_size, image_size, 1.0 / step)
    return records


__all__ = ["bench_train", "bench_translator", "count_macs", "device_name", "format_table", "time_calls"]
