"""ONNX export matches PyTorch (ONNX Runtime), with dynamic batch and size."""

from __future__ import annotations

import json

import pytest
import torch

from sim2real_goggles.cli import main
from sim2real_goggles.export import PARITY_TOLERANCE, export_onnx, onnx_parity
from sim2real_goggles.models.checkpoint import CheckpointError, save_checkpoint
from sim2real_goggles.models.networks import CompactGenerator, SegmenterNet


def test_onnx_export_matches_pytorch(tmp_path, capsys):
    torch.manual_seed(0)
    ckpt = save_checkpoint(
        tmp_path / "g.pt",
        CompactGenerator(ngf=8, n_blocks=2),
        "compact",
        {"ngf": 8, "n_blocks": 2},
        {"image_size": 32, "input_scale": 1.5},
    )
    assert main(["export", str(ckpt), "--onnx", str(tmp_path / "g.onnx")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["ok"] and result["max_abs_diff"] <= PARITY_TOLERANCE
    import onnx

    props = {p.key: p.value for p in onnx.load(str(tmp_path / "g.onnx")).metadata_props}
    assert props == {"image_size": "32", "input_scale": "1.5"}  # the scaling a deployer must apply
    # Dynamic axes: batch and sizes other than the example's.
    assert onnx_parity(ckpt, tmp_path / "g.onnx", shapes=((3, 3, 40, 56),)) <= PARITY_TOLERANCE


def test_only_translators_export(tmp_path):
    seg = save_checkpoint(tmp_path / "s.pt", SegmenterNet(base=8), "segmenter", {"base": 8})
    with pytest.raises(CheckpointError, match="only translators"):
        export_onnx(seg, tmp_path / "s.onnx")
