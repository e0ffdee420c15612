"""The BN-freeze trace: its step matches the trainer's, and a variant without a freeze is
refused before any data is read."""

from __future__ import annotations

import argparse

import pytest
import torch
from torch import nn

import hwquant
from benchmarks import bn_freeze_sharpness as sharpness
from hwquant.app.config import TrainConfig
from hwquant.app.train import build_optimizer, build_scheduler
from hwquant.core.errors import ConfigError
from hwquant.qat.recipe import Recipe


def test_the_trace_records_the_freeze_and_the_scaled_learning_rate():
    torch.manual_seed(0)
    x, y = torch.randn(64, 6), torch.randint(3, (64,))
    model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    qat = hwquant.prepare(model, Recipe(bn_freeze_step=2), example_input=x[:4]).train()
    config = TrainConfig(epochs=1, lr=0.1, schedule="constant", bn_freeze_lr_factor=0.5)
    optimizer = build_optimizer(qat, config)
    scheduler = build_scheduler(optimizer, config, 4, lambda: sharpness.bn_frozen(qat))
    batches = [(x[i : i + 16], y[i : i + 16]) for i in range(0, 64, 16)]
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
