"""Inference backends for generators: one call ``runner(x) -> y`` over several runtimes.

A runner takes a float32 batch (N, 3, H, W) in [-1, 1] on the runner's device and returns the
translated batch (float32, or float16 with ``half``). The backends compute the same function
(the bench and the tests check the largest difference against eager); they differ in speed:

==================  =========  ============================================================
backend             devices    what it does
==================  =========  ============================================================
``eager``           cpu, cuda  the module as it is, under ``torch.inference_mode``
``channels_last``   cpu, cuda  weights and input in NHWC memory order (oneDNN / cuDNN prefer it)
``compile``         cpu, cuda  ``torch.compile`` (Inductor: fused norm/ReLU/padding kernels);
                               compiled once per input shape (tens of seconds on a small CPU)
``torchscript``     cpu, cuda  traced, frozen and ``optimize_for_inference`` (conv + oneDNN
                               layout passes), once per input shape
``onnxruntime``     cpu        exported to ONNX (:mod:`sim2real_goggles.export`), run by ONNX
                               Runtime's CPU provider with all graph optimisations
``cuda_graph``      cuda       the whole forward captured once per shape as a CUDA graph and
                               replayed: no per-kernel launch cost
==================  =========  ============================================================

Every backend first folds eval-mode batch norm into the preceding convolutions
(:func:`~sim2real_goggles.models.networks.fold_batchnorm`). Threads: the CPU backends use ``threads`` intra-op threads (``torch.set_num_threads`` is
process-wide, so a runner sets it; ONNX Runtime gets its own ``intra_op_num_threads``).
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable

import torch
from torch import nn

from sim2real_goggles.models.networks import fold_batchnorm

BACKENDS = ("eager", "channels_last", "compile", "torchscript", "onnxruntime", "cuda_graph")
CPU_BACKENDS = ("eager", "channels_last", "compile", "torchscript", "onnxruntime")
CUDA_BACKENDS = ("eager", "channels_last", "compile", "torchscript", "cuda_graph")

Runner = Callable[[torch.Tensor], torch.Tensor]


class BackendUnavailable(RuntimeError):
    """The backend cannot run here (wrong device, missing package, no compiler)."""


def check_backend(backend: str, device: torch.device) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"unknown inference backend {backend!r}: use one of {', '.join(BACKENDS)}")
    allowed = CUDA_BACKENDS if device.type == "cuda" else CPU_BACKENDS
    if backend not in allowed:
        raise BackendUnavailable(f"backend {backend!r} does not run on {device.type} (there: {', '.join(allowed)})")


class _PerShape:
    """Builds a specialised callable the first time each input shape is seen."""

    def __init__(self, build: Callable[[torch.Tensor], Runner]):
        self.build = build
        self.cache: dict[tuple[int, ...], Runner] = {}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        key = tuple(x.shape)
        fn = self.cache.get(key)
        if fn is None:
            fn = self.cache[key] = self.build(x)
        return fn(x)


def _onnx_session(model: nn.Module, threads: int | None) -> Runner:
    try:
        import onnxruntime as ort
    except ImportError as exc:  # pragma: no cover - onnxruntime is a dependency
        raise BackendUnavailable("backend 'onnxruntime' needs the onnxruntime package") from exc
    from sim2real_goggles.export import ONNX_OPSET

    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter announces its own deprecation
        torch.onnx.export(
            model,
            (torch.zeros(1, 3, 64, 64),),
            buffer,
            dynamo=False,
            input_names=["image"],
            output_names=["translated"],
            dynamic_axes={"image": {0: "b", 2: "h", 3: "w"}, "translated": {0: "b", 2: "h", 3: "w"}},
            opset_version=ONNX_OPSET,
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads or torch.get_num_threads())
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])

    def run(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {"image": x.detach().contiguous().numpy()})[0])

    return run


def _cuda_graph(model: nn.Module, x: torch.Tensor) -> Runner:
    static_in = x.clone()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream), torch.inference_mode():
        for _ in range(3):  # warm-up outside the graph (cuDNN picks its algorithms here)
            model(static_in)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), torch.inference_mode():
        static_out = model(static_in)

    def run(inp: torch.Tensor) -> torch.Tensor:
        static_in.copy_(inp)
        graph.replay()
        return static_out.clone()

    return run


def set_cpu_threads(threads: int | None, device: str | torch.device) -> None:
    """Use ``threads`` intra-op threads for PyTorch on a CPU ``device`` (process-wide); None or 0
    leaves PyTorch's setting, and a CUDA device ignores it."""
    if threads and torch.device(device).type == "cpu":
        torch.set_num_threads(int(threads))


def make_runner(
    model: nn.Module,
    backend: str = "eager",
    device: str | torch.device = "cpu",
    half: bool = False,
    threads: int | None = None,
) -> Runner:
    """A callable running ``model`` (a generator) with ``backend`` on ``device``.

    :param half: fp16 weights and activations (CUDA only).
    :param threads: CPU intra-op threads (None: leave PyTorch's setting).
    :raises BackendUnavailable: the backend cannot run on this device or machine.
    """
    device = torch.device(device)
    check_backend(backend, device)
    if half and device.type != "cuda":
        raise BackendUnavailable("fp16 inference needs a CUDA device")
    model = fold_batchnorm(model.to(device).eval())
    for p in model.parameters():
        p.requires_grad_(False)
    if half:
        model = model.half()
    set_cpu_threads(threads, device)
    dtype = torch.float16 if half else torch.float32

    def cast(x: torch.Tensor) -> torch.Tensor:
        return x.to(device=device, dtype=dtype)

    if backend == "eager":

        def eager(x: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode():
                return model(cast(x))

        return eager
    if backend == "channels_last":
        model = model.to(memory_format=torch.channels_last)

        def nhwc(x: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode():
                return model(cast(x).contiguous(memory_format=torch.channels_last))

        return nhwc
    if backend == "onnxruntime":
        return _onnx_session(model, threads)
    if backend == "torchscript":

        def trace(x: torch.Tensor) -> Runner:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                scripted = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(model, cast(x))))

            def run(inp: torch.Tensor) -> torch.Tensor:
                with torch.no_grad():
                    return scripted(cast(inp))

            return run

        return _PerShape(trace)
    if backend == "compile":
        compiled = torch.compile(model, dynamic=False, mode="reduce-overhead" if device.type == "cuda" else None)

        def build(x: torch.Tensor) -> Runner:
            def run(inp: torch.Tensor) -> torch.Tensor:
                with torch.inference_mode():
                    return compiled(cast(inp))

            try:
                run(x)  # compiles for this shape now, so a failure says so here
            except Exception as exc:  # noqa: BLE001 - Inductor raises many types (no compiler, ...)
                raise BackendUnavailable(f"torch.compile failed: {type(exc).__name__}: {exc}".splitlines()[0]) from exc
            return run

        return _PerShape(build)
    # cuda_graph
    return _PerShape(lambda x: _cuda_graph(model, cast(x)))


__all__ = [
    "BACKENDS",
    "CPU_BACKENDS",
    "CUDA_BACKENDS",
    "BackendUnavailable",
    "Runner",
    "check_backend",
    "make_runner",
    "set_cpu_threads",
]
