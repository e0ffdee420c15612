"""Data-parallel training across processes (``torchrun --nproc_per_node=N -m hwquant train``).

Each process (rank) trains a replica of the model on its shard of every global batch:

* ``train.batch_size`` stays the *global* batch; rank ``r`` of ``W`` takes rows
  ``[r·B/W, (r+1)·B/W)`` of it (:class:`hwquant.data.BatchLoader`'s ``shard``), so the data
  order, the steps per epoch and the learning-rate schedule are those of a one-process run;
* :class:`~torch.nn.parallel.DistributedDataParallel` averages the gradients, so every rank
  takes the same optimizer step (the mean of the shard gradients is the global-batch gradient,
  up to the order of the float sums); it broadcasts rank 0's buffers (quantizer state, BN
  running statistics) before each forward;
* batch-norm folding during QAT normalises with the *global* batch statistics
  (:func:`batch_norm_train`: per-channel sums all-reduced, differentiably), the effect of
  SyncBN; float models on CUDA get :class:`torch.nn.SyncBatchNorm` (torch has no CPU SyncBN: a
  float model trained with gloo normalises with each rank's own statistics);
* quantizers that initialise from their first batch do so on each rank's shard; after the first
  step :func:`broadcast_state` copies rank 0's parameters and buffers to every rank, so the
  ranks' quantizer states are identical from then on (and stay so: same gradients, same steps);
  it runs again at every epoch end, before evaluation and the checkpoint.

gloo serves CPUs, NCCL GPUs. Only rank 0 writes checkpoints and prints.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a (possibly one-process) run."""

    rank: int = 0
    """Index of this process, 0 .. world_size − 1."""
    world_size: int = 1
    """Number of processes."""
    local_rank: int = 0
    """Index of this process on its machine (its GPU)."""

    @property
    def enabled(self) -> bool:
        """True when more than one process trains."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files and prints."""
        return self.rank == 0

    def device(self) -> torch.device:
        """This rank's GPU when CUDA is available, else the CPU."""
        if torch.cuda.is_available():
            return torch.device("cuda", self.local_rank)
        return torch.device("cpu")


@contextlib.contextmanager
def process_group() -> Iterator[DistContext]:
    """Join the process group torchrun describes (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ...).

    Yields the one-process context when ``WORLD_SIZE`` is unset or 1. An already initialised
    group is used as it is; a group this function made is destroyed on exit.
    """
    if dist.is_available() and dist.is_initialized():
        local = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
        yield DistContext(dist.get_rank(), dist.get_world_size(), local)
        return
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        yield DistContext()
        return
    ctx = DistContext(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if torch.cuda.is_available():
        torch.cuda.set_device(ctx.local_rank)
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    try:
        yield ctx
    finally:
        dist.destroy_process_group()


def wrap(model: nn.Module, ctx: DistContext, quantized: bool) -> nn.Module:
    """``model`` in DistributedDataParallel (SyncBatchNorm for float models on CUDA)."""
    if not ctx.enabled:
        return model
    device = ctx.device()
    if device.type == "cuda" and not quantized:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, broadcast_buffers=True)


@torch.no_grad()
def broadcast_state(model: nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank (no-op in one process)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    for tensor in [*model.parameters(), *model.buffers()]:
        dist.broadcast(tensor.data, src=0)


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum of ``values`` over the ranks (``values`` itself in one process)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        values = values.clone()
        dist.all_reduce(values)
    return values


def batch_norm_train(z: torch.Tensor, bn: nn.modules.batchnorm._BatchNorm) -> torch.Tensor:
    """Training-mode batch norm of ``z`` with the statistics of the global batch.

    In one process this is :func:`torch.nn.functional.batch_norm`. Across processes the
    per-channel ``Σz`` and counts are all-reduced (differentiably, so the gradient is that of
    the global batch), ``μ = Σz/n``, then the centred ``Σ(z − μ)²`` is all-reduced for
    ``σ² = Σ(z − μ)²/n`` (two passes: ``Σz²/n − μ²`` cancels catastrophically in float32 for
    nearly constant channels and can go negative), and the running statistics
    move by ``momentum`` towards ``μ`` and the unbiased ``σ²·n/(n−1)``, as BatchNorm does.
    """
    momentum = bn.momentum if bn.momentum is not None else 0.1
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return F.batch_norm(
            z, bn.running_mean, bn.running_var, bn.weight, bn.bias, True, momentum, bn.eps
        )
    from torch.distributed.nn.functional import all_reduce

    dims = [d for d in range(z.dim()) if d != 1]
    count = torch.full((z.shape[1],), z.numel() / z.shape[1], dtype=z.dtype, device=z.device)
    sums = all_reduce(torch.stack([z.sum(dims), count]))
    n = sums[1]
    mean = sums[0] / n
    centred = z - mean.view(1, -1, *([1] * (z.dim() - 2)))
    var = all_reduce((centred * centred).sum(dims)) / n
    with torch.no_grad():
        bn.running_mean.lerp_(mean.detach(), momentum)
        bn.running_var.lerp_((var * n / (n - 1)).detach(), momentum)
    shape = [1, -1, *([1] * (z.dim() - 2))]
    out = centred * torch.rsqrt(var.view(shape) + bn.eps)
    if bn.weight is not None:
        out = out * bn.weight.view(shape) + bn.bias.view(shape)
    return out
