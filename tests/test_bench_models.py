"""``goggles bench translator`` / ``bench train``: records, counted MACs, ratios to resnet9."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from torch import nn

from sim2real_goggles.bench_models import bench_train, bench_translator, count_macs, format_table

KEYS = {"arch", "size", "batch", "backend", "threads", "device", "params", "macs", "p50_ms", "p95_ms", "fps"}


def test_macs_are_counted_from_the_forward_pass():
    conv = nn.Conv2d(3, 8, 3, padding=1)
    assert count_macs(conv, torch.zeros(2, 3, 10, 12)) == 2 * 8 * 3 * 9 * 10 * 12
    up = nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1)
    assert count_macs(up, torch.zeros(1, 8, 5, 5)) == 8 * 4 * 9 * 5 * 5


def test_translator_records_with_the_resnet9_reference_first():
    records = bench_translator(
        archs=["compact"],
        sizes=[32],
        batches=[1, 2],
        backends=["eager", "onnxruntime"],
        threads=[1],
        budget_s=0.02,
        min_reps=3,
    )
    assert [(r["arch"], r["backend"], r["batch"]) for r in records] == [
        ("resnet9", "eager", 1),
        ("compact", "eager", 1),
        ("compact", "onnxruntime", 1),
        ("resnet9", "eager", 2),
        ("compact", "eager", 2),
        ("compact", "onnxruntime", 2),
    ]
    for r in records:
        assert KEYS <= r.keys() and "speedup_vs_resnet9" in r
        assert r["p95_ms"] >= r["p50_ms"] > 0 and r["reps"] >= 3
        assert r["fps"] == pytest.approx(r["batch"] * 1000 / r["p50_ms"], rel=0.01)
        assert r["max_abs_diff"] < 1e-4  # every backend computes the eager translation
    ref = records[0]
    assert ref["speedup_vs_resnet9"] == 1.0 and ref["params"] > 10_000_000
    compact = records[1]
    assert compact["speedup_vs_resnet9"] == pytest.approx(compact["fps"] / ref["fps"], rel=0.01)
    # resnet9 has ngf 64 and 9 blocks at 7x7 outer kernels: far more work than compact
    assert ref["macs"] > 10 * compact["macs"] and records[3]["macs"] == 2 * ref["macs"]
    table = format_table(records)
    assert table.count("\n") == len(records) + 1 and "| compact | 32 | 2 | onnxruntime |" in table


def test_translator_bench_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown generator architecture"):
        bench_translator(archs=["unet"], sizes=[32], batches=[1], threads=[1])
    with pytest.raises(ValueError, match="backend 'cuda_graph' does not run on cpu"):
        bench_translator(archs=["compact"], sizes=[32], batches=[1], backends=["cuda_graph"], threads=[1])


def test_cli_prints_a_json_list():
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "sim2real_goggles.cli",
            "bench",
            "translator",
            "--json",
            "--archs",
            "compact",
            "--sizes",
            "32",
            "--batches",
            "1",
            "--backends",
            "torchscript",
            "--threads",
            "1",
            "--budget",
            "0.02",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    records = json.loads(out.stdout)
    assert [(r["arch"], r["backend"]) for r in records] == [("resnet9", "eager"), ("compact", "torchscript")]


def test_train_bench_times_the_real_training_step():
    records = bench_train(
        methods=["cyclegan", "vr_goggles"], archs=["compact"], image_size=32, batch_size=2, iterations=2, frames=4
    )
    assert [(r["method"], r["arch"]) for r in records] == [("cyclegan", "compact"), ("vr_goggles", "compact")]
    for r in records:
        assert r["it_per_s"] > 0 and r["iterations"] == 2 and r["batch"] == 2 and r["size"] == 32
        assert r["ms_per_iteration"] == pytest.approx(1000 / r["it_per_s"], rel=0.01)
        assert 0 <= r["data_ms"] < r["ms_per_iteration"]
