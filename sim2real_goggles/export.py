"""Export a translator checkpoint to ONNX (for ONNX Runtime, TensorRT and other runtimes).

The graph takes ``image``: float32 (N, 3, H, W) in [-1, 1] with dynamic batch, height and
width (multiples of 4) and returns ``translated`` of the same shape. Pre- and post-processing
(uint8 <-> [-1, 1], padding, and the scaling by the checkpoint's ``input_scale``) are the
caller's, as in :class:`sim2real_goggles.translation.Translator`: the model's metadata
(``metadata_props``) records ``image_size`` and ``input_scale`` for it.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from sim2real_goggles.models.checkpoint import CheckpointError, load_checkpoint
from sim2real_goggles.translation import GENERATOR_ARCHS

ONNX_OPSET = 17
PARITY_TOLERANCE = 1e-4
"""Max |ONNX - PyTorch| on [-1, 1] outputs that ``goggles export`` checks (about 0.013 grey
levels out of 255)."""


def export_onnx(checkpoint: str | Path, out: str | Path, size: int | None = None) -> Path:
    """Write the generator of ``checkpoint`` as ONNX to ``out``; returns ``out``."""
    ckpt = load_checkpoint(checkpoint)
    if ckpt.arch not in GENERATOR_ARCHS:
        raise CheckpointError(
            f"{ckpt.path}: holds a {ckpt.arch!r} network; only translators ({', '.join(GENERATOR_ARCHS)}) export"
        )
    model = ckpt.build("cpu")
    side = size or int(ckpt.metadata.get("image_size", 64))
    example = torch.zeros(1, 3, side, side)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter announces its own deprecation
        torch.onnx.export(
            model,
            (example,),
            str(out),
            dynamo=False,
            input_names=["image"],
            output_names=["translated"],
            dynamic_axes={
                "image": {0: "batch", 2: "height", 3: "width"},
                "translated": {0: "batch", 2: "height", 3: "width"},
            },
            opset_version=ONNX_OPSET,
        )
    import onnx

    graph = onnx.load(str(out))
    scaling = {"image_size": str(side), "input_scale": str(ckpt.metadata.get("input_scale", 1.0))}
    onnx.helper.set_model_props(graph, {p.key: p.value for p in graph.metadata_props} | scaling)
    onnx.save(graph, str(out))
    return out


def onnx_parity(
    checkpoint: str | Path, onnx_path: str | Path, shapes=((1, 3, 64, 64), (2, 3, 48, 80)), seed: int = 0
) -> float:
    """Largest |ONNX Runtime - PyTorch| over random inputs of ``shapes``."""
    import numpy as np
    import onnxruntime as ort

    model = load_checkpoint(checkpoint).build("cpu")
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(seed)
    worst = 0.0
    for shape in shapes:
        x = torch.rand(*shape, generator=gen) * 2 - 1
        with torch.no_grad():
            ref = model(x).numpy()
        got = session.run(None, {"image": x.numpy()})[0]
        worst = max(worst, float(np.abs(got - ref).max()))
    return worst
