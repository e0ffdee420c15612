"""The integer engine: overflow policies and counters, statistics, input checks."""

from __future__ import annotations

import pytest
import torch

import hwquant
from hwquant.core.errors import AccumulatorOverflowError, HwquantError
from hwquant.engine import run
from hwquant.models import build
from hwquant.qat.recipe import Recipe
from tests.helpers import lowered_small_cnn, trained_qat_model


@pytest.fixture(scope="module")
def lowered():
    int_model, x = lowered_small_cnn()
    return int_model, int_model.quantize_input(x)


def test_stats_report_macs_and_accumulator_use(lowered):
    int_model, x_int = lowered
    result = run(int_model, x_int, four_bit=True)
    first = int_model.weight_nodes()[0]
    stats = result.stats[first.name]
    assert stats.overflows == 0 and stats.max_abs_acc > 0
    assert stats.bits_used <= first.worst_case_bits()
    out_elements = result.output.numel()
    last = int_model.weight_nodes()[-1]
    assert result.stats[last.name].macs == out_elements * last.fan_in()
    # 8-bit input x 8-bit weights: two digits each, four 4-bit multiplies per MAC
    assert stats.four_bit_multiplies == 4 * stats.macs


def test_narrow_accumulator_overflows_are_counted_wrapped_or_saturated(lowered):
    int_model, x_int = lowered
    name = int_model.weight_nodes()[-1].name
    wide = run(int_model, x_int).output
    needed = run(int_model, x_int).stats[name].bits_used
    bits = needed - 2
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    expected_count = int(((wide < lo) | (wide > hi)).sum())
    assert expected_count > 0
    int_model.set_accumulator(bits, "wrap", layers=[name])
    wrapped = run(int_model, x_int)
    assert wrapped.stats[name].overflows == expected_count
    assert torch.equal(torch.remainder(wrapped.output - wide, 2**bits), torch.zeros_like(wide))
    int_model.set_accumulator(bits, "saturate", layers=[name])
    assert torch.equal(run(int_model, x_int).output, wide.clamp(lo, hi))
    int_model.set_accumulator(bits, "raise", layers=[name])
    with pytest.raises(AccumulatorOverflowError, match=rf"layer '{name}'.*needs {needed} bits"):
        run(int_model, x_int)
    int_model.set_accumulator(32, "wrap")


def test_float_input_is_refused(lowered):
    int_model, x_int = lowered
    with pytest.raises(HwquantError, match="quantize_input"):
        int_model.run(x_int.float())


def test_sixteen_bit_accumulators_suffice_for_w4a4_inner_layers():
    """LLSQ's claim, checked on ResNet-20: inner 4-bit layers fit 16-bit accumulators."""
    torch.manual_seed(0)
    x = torch.randn(4, 3, 32, 32)
    qat = trained_qat_model(build("resnet20"), Recipe(bn_freeze_step=1), x)
    int_model = hwquant.lower(qat, x)
    inner = [n for n in int_model.weight_nodes() if n.weight_bits == 4]
    observed = run(int_model, int_model.quantize_input(x)).stats
    assert all(observed[n.name].bits_used <= 16 for n in inner)


def test_skipping_the_range_scan_changes_no_result(lowered):
    int_model, x_int = lowered
    full = run(int_model, x_int, trace=True)
    fast = run(int_model, x_int, trace=True, stats=False)
    assert all(torch.equal(fast.values[k], v) for k, v in full.values.items())
    assert all(s.max_abs_acc == 0 for s in fast.stats.values())
    assert all(s.max_abs_acc > 0 for s in full.stats.values())
