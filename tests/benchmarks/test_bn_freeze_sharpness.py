"""The BN-freeze trace: its steps train as the trainer's do, and a variant without a freeze is
refused before any data is read."""

from __future__ import annotations

import argparse
import copy
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

import hwquant
from benchmarks import bn_freeze_sharpness as sharpness
from hwquant.app.config import TrainConfig
from hwquant.app.train import Trainer, build_optimizer, build_scheduler, seed_everything
from hwquant.core.errors import ConfigError
from hwquant.qat.recipe import Recipe


class Batches:
    """Fixed batches in the trainer's batch-source form."""

    def __init__(self, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def set_epoch(self, epoch: int) -> None:
        pass

    def iter_from(self, step: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        yield from self.batches[step:]


def tiny_qat() -> tuple[torch.nn.Module, list[tuple[torch.Tensor, torch.Tensor]]]:
    """A prepared MLP with BN frozen from step 2, and four batches of 16."""
    torch.manual_seed(0)
    x, y = torch.randn(64, 6), torch.randint(3, (64,))
    model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    qat = hwquant.prepare(model, Recipe(bn_freeze_step=2), example_input=x[:4]).train()
    return qat, [(x[i : i + 16], y[i : i + 16]) for i in range(0, 64, 16)]


CONFIG = TrainConfig(epochs=1, lr=0.1, schedule="constant", bn_freeze_lr_factor=0.5)


def test_the_trace_trains_exactly_as_the_trainer(tmp_path: Path) -> None:
    qat, batches = tiny_qat()
    traced = copy.deepcopy(qat)
    Trainer(qat, Batches(batches), Batches(batches), CONFIG, tmp_path, progress=False).fit()
    seed_everything(CONFIG.seed)
    optimizer = build_optimizer(traced, CONFIG)
    scheduler = build_scheduler(optimizer, CONFIG, 4, lambda: sharpness.bn_frozen(traced))
    sharpness.train_steps(traced, optimizer, scheduler, batches, trace=False)
    for name, tensor in qat.state_dict().items():
        assert torch.equal(tensor, traced.state_dict()[name]), name


def test_the_trace_records_the_freeze_and_the_scaled_learning_rate() -> None:
    qat, batches = tiny_qat()
    optimizer = build_optimizer(qat, CONFIG)
    scheduler = build_scheduler(optimizer, CONFIG, 4, lambda: sharpness.bn_frozen(qat))
    records = sharpness.train_steps(qat, optimizer, scheduler, batches, trace=True)
    assert [r["bn_frozen"] for r in records] == [False, False, True, True]
    assert [r["lr"] for r in records] == [0.1, 0.1, 0.05, 0.05]
    assert set(records[0]["weight_grad_norm"]) == {"0", "3"}
    assert all(r["weight_grad_norm"]["0"] > 0 for r in records)


def test_a_variant_without_a_freeze_is_refused_before_reading_data():
    args = argparse.Namespace(variant="llsq_W4A4,bn_freeze_step=null", steps=585, before=6,
                              after=14, data_root=None)  # fmt: skip
    with pytest.raises(ConfigError, match=r"freezes BN at step None.*Fix: choose a variant"):
        sharpness.run(args)
