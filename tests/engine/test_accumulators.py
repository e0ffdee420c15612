"""Smallest accumulator widths: no overflow at the width found, an overflow one bit narrower,
never above the worst-case bound, and the model unchanged."""

from __future__ import annotations

import copy

import pytest
import torch

from hwquant.core.errors import AccumulatorOverflowError
from hwquant.engine import run
from hwquant.engine.accumulators import accumulator_widths
from tests.helpers import lowered_small_cnn


@pytest.fixture(scope="module")
def lowered():
    model, x = lowered_small_cnn(16)
    return model, model.quantize_input(x)


def test_widths_are_the_smallest_without_overflow(lowered) -> None:
    model, x_int = lowered
    before = copy.deepcopy(model)
    widths = accumulator_widths(model, x_int)
    assert [w.layer for w in widths] == [n.name for n in model.weight_nodes()]
    assert [n.acc_bits for n in model.weight_nodes()] == [n.acc_bits for n in before.weight_nodes()]
    reference = run(model, x_int, backend="int64").output
    narrow = copy.deepcopy(model)
    for width in widths:
        assert 2 <= width.observed_bits <= width.worst_case_bits
        assert width.max_abs_acc < 2 ** (width.observed_bits - 1) + 1
        narrow.set_accumulator(width.observed_bits, "raise", layers=[width.layer])
    # every layer at its width at once: no overflow, the same output, bit for bit
    assert torch.equal(run(narrow, x_int, backend="int64").output, reference)
    for width in widths:
        tight = copy.deepcopy(narrow)
        tight.set_accumulator(width.observed_bits - 1, "raise", layers=[width.layer])
        with pytest.raises(AccumulatorOverflowError, match=width.layer):
            run(tight, x_int)


def test_fewer_inputs_never_need_more_bits(lowered) -> None:
    model, x_int = lowered
    full = accumulator_widths(model, x_int)
    part = accumulator_widths(model, x_int[:2])
    assert all(p.observed_bits <= f.observed_bits for p, f in zip(part, full, strict=True))
