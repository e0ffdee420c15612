"""Fixtures of the RTL tests: real lowered models (LLSQ, MSQ, non-uniform, tables) and their
engine golden vectors; every simulation test skips only where iverilog is missing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import hwquant
from hwquant.models import build
from hwquant.qat.recipe import Recipe
from hwquant.rtl.golden import LayerGolden, layer_goldens
from hwquant.rtl.simulate import simulator_available
from tests.helpers import trained_qat_model

requires_iverilog = pytest.mark.skipif(
    not simulator_available(), reason="iverilog not found: apt-get install iverilog"
)


def lowered(scheme: str, **recipe) -> tuple[hwquant.IntModel, torch.Tensor]:
    """The 8x8 small CNN trained two QAT steps with ``scheme``, lowered, and its input codes."""
    torch.manual_seed(0)
    x = torch.randn(2, 1, 8, 8)
    model = build("small_cnn", in_channels=1, input_size=8)
    qat = trained_qat_model(model, Recipe(scheme=scheme, bn_freeze_step=1, **recipe), x)
    int_model = hwquant.lower(qat, x)
    return int_model, int_model.quantize_input(x)


@pytest.fixture(scope="session")
def llsq_goldens() -> dict[str, LayerGolden]:
    """Golden vectors of every layer of the LLSQ (fixed-point) small CNN."""
    return {g.name: g for g in layer_goldens(*lowered("llsq"))}


@pytest.fixture(scope="session")
def msq_goldens() -> dict[str, LayerGolden]:
    """Golden vectors of the MSQ small CNN (its inner conv has SP2 and fixed-point rows)."""
    return {g.name: g for g in layer_goldens(*lowered("msq"))}


@pytest.fixture(scope="session")
def nonuniform_goldens() -> dict[str, LayerGolden]:
    """Golden vectors of the non-uniform small CNN (its inner conv has a 16-level codebook)."""
    return {g.name: g for g in layer_goldens(*lowered("nonuniform", scale_constraint="pow2"))}


def mac_cases(
    golden: LayerGolden, words: np.ndarray, rows: np.ndarray, count: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``count`` real (image, pixel, channel) sums of a layer for a MAC: activations [count, K],
    weight port values [count, K] (``words`` holds those of channels ``rows``) and the engine's
    accumulator without bias [count]."""
    rng = np.random.default_rng(seed)
    n, p, _ = golden.patches.shape
    image, pixel = rng.integers(0, n, count), rng.integers(0, p, count)
    pick = rng.integers(0, len(rows), count)
    x = golden.patches[image, pixel]
    return x, words[pick], golden.dot[image, pixel, rows[pick]]


@pytest.fixture(scope="session")
def table_goldens() -> list[dict[str, np.ndarray]]:
    """Per conv unit of the 8x8 small CNN with 8x5 tables: the unit, its input windows
    [N, P, K] (padding at index |A|), the engine's accumulator [N, P, O] and output indices."""
    from hwquant.schemes.tables import lower_tables, run_tables
    from hwquant.schemes.tables.kernels import accumulate, compile_lookup, count_passed, patches
    from tests.schemes.tables.conftest import trained_tables

    torch.manual_seed(0)
    x = torch.randn(2, 1, 8, 8)
    qat = trained_tables(build("small_cnn", num_classes=10, in_channels=1, input_size=8), x)
    model = lower_tables(qat)
    traced = run_tables(model, model.quantize_input(x), trace=True)
    goldens = []
    for node in model.units():
        if node.op != "conv":
            continue
        table = torch.from_numpy(node.table)
        weight_index = torch.from_numpy(node.weight_index).reshape(node.weight_index.shape[0], -1)
        pad = table.shape[0]
        cols, _, _ = patches(
            traced[node.inputs[0]], node.weight_index.shape[-1], node.stride, node.padding, pad
        )
        acc = accumulate(compile_lookup(table, weight_index, 1), cols).to(torch.int64)
        out = count_passed(
            acc, torch.from_numpy(node.thresholds), torch.from_numpy(node.descending)
        )
        engine_out = traced[node.name].flatten(2).transpose(1, 2)
        assert torch.equal(out, engine_out)  # the accumulators are the engine's
        goldens.append(
            {
                "node": node,
                "patches": cols.numpy(),
                "weight_index": weight_index.numpy(),
                "acc": acc.numpy(),
                "output": engine_out.numpy(),
            }
        )
    return goldens
