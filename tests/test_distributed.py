"""Data-parallel training under torchrun: two CPU processes (gloo) end with identical weights."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).parent / "helpers" / "ddp_worker.py"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_gloo_processes_train_identical_weights(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    proc = subprocess.run([*cmd, str(WORKER), str(tmp_path)], env=env, capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert (r0["rank"], r1["rank"], r0["world_size"]) == (0, 1, 2)
    # each rank trained on its own batches ...
    assert r0["losses"] != r1["losses"]
    # ... yet the averaged gradients keep both ranks' networks identical, and they did learn
    for name in ("G_rs", "D_sim"):
        for key, tensor in r0[name].items():
            assert torch.equal(tensor, r1[name][key]), f"{name}.{key} differs between ranks"
    assert any(not torch.equal(r0["initial"][k], r0["G_rs"][k]) for k in r0["initial"])
    # rank 0 wrote the checkpoint, with the world size in its metadata
    from sim2real_goggles.models.checkpoint import load_checkpoint

    ckpt = load_checkpoint(tmp_path / "cg.pt")
    assert ckpt.metadata["world_size"] == 2 and ckpt.metadata["iterations"] == 3
    for key, tensor in ckpt.state_dict.items():
        assert torch.equal(tensor, r0["G_rs"][key])
