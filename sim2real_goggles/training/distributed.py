"""Data-parallel training across processes (``torchrun``): gloo on CPU, nccl on CUDA.

Every rank holds the same networks, draws its own batches and, after each backward pass, the
gradients are averaged over ranks before the optimiser step, which is what
``DistributedDataParallel`` does. The adversarial trainers run a generator several times per
iteration (translation, cycle, identity, shift) before one backward pass, which DDP's hooks do
not allow; averaging the gradients explicitly, in one flat all-reduce per optimiser, keeps the
ranks' weights identical with the same arithmetic.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import torch
import torch.distributed as dist


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def init_from_env(device: torch.device) -> tuple[int, int]:
    """Join the process group torchrun describes in the environment; ``(rank, world_size)``.
    Without torchrun, ``(0, 1)`` and nothing is initialised."""
    if not launched_by_torchrun():
        return 0, 1
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    return dist.get_rank(), dist.get_world_size()


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def broadcast_parameters(modules: Iterable[torch.nn.Module]) -> None:
    """Copy rank 0's parameters and buffers to every rank."""
    if world_size() == 1:
        return
    for module in modules:
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)


def average_gradients(params: Iterable[torch.nn.Parameter]) -> None:
    """All-reduce the gradients of ``params`` (one flat buffer) and divide by the world size."""
    n = world_size()
    if n == 1:
        return
    params = list(params)
    for p in params:  # a term switched off on one rank must not change the buffer's layout
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    grads = [p.grad for p in params]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= n
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


__all__ = [
    "average_gradients",
    "barrier",
    "broadcast_parameters",
    "init_from_env",
    "launched_by_torchrun",
    "rank",
    "shutdown",
    "world_size",
]
