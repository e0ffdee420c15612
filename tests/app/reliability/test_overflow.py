"""Overflow semantics: wrap, saturate and raise against their definitions (Python integers,
exact), and the engine's overflow count against a count made by hand."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hwquant.app.reliability.faults import sample_int_model
from hwquant.core.errors import AccumulatorOverflowError, ConfigError
from hwquant.core.intmath import Accumulator, channel_view, int_conv2d, max_magnitude, requantize
from hwquant.engine import run

BITS = st.integers(2, 62)


@st.composite
def accumulations(draw: st.DrawFn) -> tuple[int, list[int]]:
    bits = draw(BITS)
    bound = 2 ** (bits + 1)  # values up to 4x past the range, both signs
    values = draw(st.lists(st.integers(-bound, bound), min_size=0, max_size=20))
    return bits, values


def wrap(v: int, bits: int) -> int:
    """Two's complement: the representative of v modulo 2^bits in [-2^(b-1), 2^(b-1))."""
    half = 2 ** (bits - 1)
    return (v + half) % 2**bits - half


@settings(max_examples=300)
@given(accumulations(), st.sampled_from(["wrap", "saturate", "raise"]))
def test_policies_match_their_definitions(case: tuple[int, list[int]], policy: str) -> None:
    bits, values = case
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    outside = sum(not lo <= v <= hi for v in values)
    acc = torch.tensor(values, dtype=torch.int64)
    accumulator = Accumulator(bits, policy)
    if policy == "raise" and outside:
        with pytest.raises(AccumulatorOverflowError, match=rf"{outside} accumulator value"):
            accumulator.apply(acc, "layer")
        return
    out, count = accumulator.apply(acc, "layer")
    assert count == outside
    expected = {
        "wrap": [wrap(v, bits) for v in values],
        "saturate": [min(max(v, lo), hi) for v in values],
        "raise": values,
    }[policy]
    assert out.tolist() == expected


@settings(max_examples=100)
@given(accumulations())
def test_float_accumulators_are_handled_as_integers(case: tuple[int, list[int]]) -> None:
    bits, values = case
    small = [v for v in values if abs(v) < 2**24]  # exact in float32, as the fast path holds
    as_float, count_f = Accumulator(bits, "wrap").apply(
        torch.tensor(small, dtype=torch.float32), "l"
    )
    as_int, count_i = Accumulator(bits, "wrap").apply(torch.tensor(small, dtype=torch.int64), "l")
    assert count_f == count_i
    assert as_float.to(torch.int64).tolist() == as_int.tolist()


@pytest.mark.parametrize("bits", [1, 63, 2.5, True])
def test_widths_past_the_limits_are_refused(bits: object) -> None:
    with pytest.raises(ConfigError, match=r"use an integer in 2\.\.62"):
        Accumulator(bits)  # type: ignore[arg-type]


@pytest.mark.parametrize("policy", ["wrap", "saturate"])
def test_engine_counts_the_overflows_of_a_narrow_layer(policy: str) -> None:
    model = sample_int_model()
    x = model.quantize_input(torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(1)))
    first = model.weight_nodes()[0]
    weight, bias = torch.from_numpy(first.weight), torch.from_numpy(first.bias)
    acc = int_conv2d(
        x,
        weight,
        bias,
        first.stride,
        first.padding,
        first.dilation,
        first.groups,
        max_magnitude(first.in_bits, first.in_signed),
        backend="int64",
    )
    narrow = copy.deepcopy(model)
    narrow.set_accumulator(10, policy, layers=[first.name])
    result = run(narrow, x, backend="int64", trace=True)
    lo, hi = -(2**9), 2**9 - 1
    assert result.stats[first.name].overflows == int(((acc < lo) | (acc > hi)).sum()) > 0
    assert result.stats[first.name].max_abs_acc == int(acc.abs().max())
    fitted, _ = Accumulator(10, policy).apply(acc, first.name)
    mult = channel_view(torch.from_numpy(first.mult), 4)
    shift = channel_view(torch.from_numpy(first.shift), 4)
    expected = requantize(fitted, mult, shift, first.lo, first.hi)
    assert torch.equal(result.values[first.name], expected)
    wide = run(model, x, backend="int64", trace=True)
    assert not torch.equal(result.values[first.name], wide.values[first.name])
    fast = run(narrow, x, trace=True)  # the float fast path counts and fits the same way
    assert torch.equal(fast.values[first.name], expected)
    assert fast.stats[first.name].overflows == result.stats[first.name].overflows
