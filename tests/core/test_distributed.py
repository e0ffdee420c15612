"""Data-parallel training: 2 gloo processes against one process on the same global batches.

What is asserted:

* after training, the two ranks hold bit-identical parameters and buffers (quantizer scales and
  their ``initialized`` flags, BN running statistics, BN step counters), also when the
  activation scales train and were initialised from each rank's own shard;
* with the activation scales fixed, the DDP result equals the one-process run of the same
  global batches up to float rounding (``torch.testing.assert_close`` with rtol 1e-5, atol
  1e-6): DDP all-reduces the two half-batch gradient sums, and synced BN sums per-rank
  statistics, so the float additions happen in another order than in one process; nothing
  else differs (same data order, same augmentation draws, same global BN statistics).
  (LLSQ's activation-scale step is a direction computed from the data each rank sees, so it
  is averaged across ranks rather than taken on the global batch; the ranks stay identical.)
* resuming a checkpoint written by a different number of processes is a ConfigError.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import hwquant
from hwquant.app.config import TrainConfig
from hwquant.app.train import Trainer
from hwquant.core.distributed import DistContext
from hwquant.core.errors import ConfigError
from hwquant.data import BatchLoader
from hwquant.data.arrays import ArrayDataset
from hwquant.qat.llsq import LinearQuantizer
from hwquant.qat.recipe import Recipe

GLOBAL_BATCH, EXAMPLES = 8, 32
CONFIG = TrainConfig(epochs=1, batch_size=GLOBAL_BATCH, lr=0.05, weight_decay=0.0, amp=False)


def tiny_qat(init: Path | None = None) -> nn.Module:
    """Conv-BN-ReLU ×2 and a linear layer, prepared for QAT with BN statistics never frozen."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, bias=False),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1, bias=False),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 6 * 6, 3),
    )
    qat = hwquant.prepare(model, Recipe(bn_freeze_step=None))
    if init is not None:
        qat.load_state_dict(torch.load(init))
    return qat


def data() -> ArrayDataset:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (EXAMPLES, 6, 6, 1), dtype=np.uint8)
    return ArrayDataset(images, rng.integers(0, 3, EXAMPLES).astype(np.int64))


def train(init: Path, out: Path, ctx: DistContext, train_act_scales: bool) -> nn.Module:
    """Train one epoch (4 steps of the global batch) on this rank's shards."""
    qat = tiny_qat(init)
    for m in qat.modules():
        if isinstance(m, LinearQuantizer) and m.is_activation:
            m.scale.requires_grad_(train_act_scales)
    norm = {"mean": (0.5,), "std": (0.25,)}
    shard = (ctx.rank, ctx.world_size)
    loader = BatchLoader(
        data(), GLOBAL_BATCH, shuffle=True, augment=True, drop_last=True, shard=shard, **norm
    )
    test = BatchLoader(data(), 16, shuffle=False, augment=False, **norm)
    trainer = Trainer(qat, loader, test, CONFIG, out, progress=False, dist=ctx)
    trainer.fit()
    return trainer.module


def worker(rank: int, world: int, port: int, tmp: Path) -> None:
    """One DDP rank: both trainings, then a resume from the one-process checkpoint."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        ctx = DistContext(rank, world)
        for trains in (False, True):
            module = train(tmp / "init.pt", tmp / f"ddp_{trains}", ctx, trains)
            torch.save(module.state_dict(), tmp / f"rank{rank}_{trains}.pt")
        try:
            Trainer(
                tiny_qat(tmp / "init.pt"),
                *_loaders(ctx),
                CONFIG,
                tmp / "single",
                progress=False,
                resume=True,
                dist=ctx,
            )
        except ConfigError as exc:
            (tmp / f"resume_error{rank}.txt").write_text(str(exc))
    finally:
        dist.destroy_process_group()


def _loaders(ctx: DistContext) -> tuple[BatchLoader, BatchLoader]:
    norm = {"mean": (0.5,), "std": (0.25,)}
    return (
        BatchLoader(
            data(),
            GLOBAL_BATCH,
            shuffle=True,
            augment=False,
            drop_last=True,
            shard=(ctx.rank, ctx.world_size),
            **norm,
        ),
        BatchLoader(data(), 16, shuffle=False, augment=False, **norm),
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_ranks_match_each_other_and_one_process(tmp_path):
    qat = tiny_qat()
    with torch.no_grad():  # initialise every quantizer (and BN) once, shared by all runs
        qat(torch.randn(GLOBAL_BATCH, 1, 6, 6))
    torch.save(qat.state_dict(), tmp_path / "init.pt")
    single = train(tmp_path / "init.pt", tmp_path / "single", DistContext(), False).state_dict()

    mp.spawn(worker, args=(2, free_port(), tmp_path), nprocs=2, join=True)

    for trains in (False, True):
        ranks = [torch.load(tmp_path / f"rank{r}_{trains}.pt") for r in range(2)]
        assert ranks[0].keys() == ranks[1].keys()
        for key in ranks[0]:
            assert torch.equal(ranks[0][key], ranks[1][key]), key
    ddp = torch.load(tmp_path / "rank0_False.pt")
    assert ddp.keys() == single.keys()
    changed = [k for k in single if not torch.equal(single[k], torch.load(tmp_path / "init.pt")[k])]
    assert any("weight" in k for k in changed) and any("running_mean" in k for k in changed)
    for key in single:
        torch.testing.assert_close(ddp[key], single[key], rtol=1e-5, atol=1e-6, msg=key)
    for rank in range(2):
        message = (tmp_path / f"resume_error{rank}.txt").read_text()
        assert "written by a run of 1 processes; this one has 2" in message and "Fix" in message
    assert (tmp_path / "ddp_False" / "last.pt").exists()  # rank 0 wrote the checkpoint
