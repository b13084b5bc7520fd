"""Inference backends: every runtime computes the eager translation; batch-norm folding is exact."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from sim2real_goggles.inference import CPU_BACKENDS, BackendUnavailable, make_runner
from sim2real_goggles.models.checkpoint import save_checkpoint
from sim2real_goggles.models.networks import CompactGenerator, fold_batchnorm
from sim2real_goggles.translation import Translator


def batchnorm_generator(seed: int = 0) -> CompactGenerator:
    """A batch-norm generator with non-trivial running statistics and affine parameters."""
    torch.manual_seed(seed)
    model = CompactGenerator(ngf=4, n_blocks=1, norm="batch")
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(4, 3, 32, 32) * 3 - 1)  # running stats away from (0, 1)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    return model.eval()


def test_fold_batchnorm_is_exact_and_removes_every_batchnorm():
    model = batchnorm_generator()
    x = torch.rand(2, 3, 32, 40) * 2 - 1
    with torch.no_grad():
        before = model(x)
        fold_batchnorm(model)
        after = model(x)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert torch.allclose(before, after, atol=1e-5)


def test_fold_batchnorm_leaves_training_mode_and_instance_norm_alone():
    training = batchnorm_generator().train()
    fold_batchnorm(training)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in training.modules()) > 0
    instance = CompactGenerator(ngf=4, n_blocks=1).eval()
    state = {k: v.clone() for k, v in instance.state_dict().items()}
    fold_batchnorm(instance)
    assert all(torch.equal(v, instance.state_dict()[k]) for k, v in state.items())


@pytest.mark.parametrize("norm", ["instance", "batch"])
@pytest.mark.parametrize("backend", [b for b in CPU_BACKENDS if b != "compile"])
def test_cpu_backends_compute_the_eager_translation(backend, norm):
    model = batchnorm_generator() if norm == "batch" else CompactGenerator(ngf=4, n_blocks=1).eval()
    x = torch.rand(2, 3, 32, 48) * 2 - 1
    with torch.no_grad():
        expected = model(x)
    runner = make_runner(model, backend, "cpu", threads=1)
    # a second shape too: dynamic ONNX axes, per-shape traces
    assert torch.allclose(runner(x).float(), expected, atol=1e-4)
    y = torch.rand(1, 3, 16, 24) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(runner(y).float(), model(y), atol=1e-4)


@pytest.mark.slow
def test_torch_compile_backend_matches_eager_where_it_compiles():
    model = CompactGenerator(ngf=4, n_blocks=1).eval()
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        expected = model(x)
    try:
        out = make_runner(model, "compile", "cpu", threads=1)(x)
    except BackendUnavailable as exc:  # no C++ compiler on this machine: the bench records it
        pytest.skip(str(exc))
    assert torch.allclose(out, expected, atol=1e-4)


def test_backend_errors_name_the_problem():
    model = CompactGenerator(ngf=4, n_blocks=1)
    with pytest.raises(ValueError, match="unknown inference backend 'tensorrt'"):
        make_runner(model, "tensorrt", "cpu")
    with pytest.raises(BackendUnavailable, match="'cuda_graph' does not run on cpu"):
        make_runner(model, "cuda_graph", "cpu")
    with pytest.raises(BackendUnavailable, match="fp16 inference needs a CUDA device"):
        make_runner(model, "eager", "cpu", half=True)


def test_translator_backends_give_the_same_images(tmp_path):
    path = save_checkpoint(
        tmp_path / "bn.pt", batchnorm_generator(), "compact", {"ngf": 4, "n_blocks": 1, "norm": "batch"}
    )
    img = np.random.default_rng(0).integers(0, 256, size=(3, 37, 45, 3), dtype=np.uint8)
    eager = Translator.load(path, device="cpu")(img).astype(int)
    for backend in ("onnxruntime", "torchscript", "channels_last"):
        out = Translator.load(path, device="cpu", backend=backend, threads=1)(img)
        assert out.shape == img.shape
        assert np.abs(out.astype(int) - eager).max() <= 1, backend


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("backend", ["eager", "channels_last", "torchscript", "cuda_graph"])
def test_cuda_backends_in_fp16_match_cpu(backend):
    model = CompactGenerator(ngf=8, n_blocks=2).eval()
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        expected = model(x)
    runner = make_runner(copy.deepcopy(model), backend, "cuda", half=True)
    for _ in range(2):  # the CUDA graph replays on a fresh input
        out = runner(x.cuda()).float().cpu()
    assert (out - expected).abs().max() < 0.02
