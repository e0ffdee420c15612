"""The SP2 shift-add MAC: its weight-port layout and simulation on the MSQ small CNN's SP2 rows."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwquant.core.errors import ConfigError
from hwquant.core.intmath import qrange
from hwquant.rtl import mac_stimulus, simulate
from hwquant.schemes.msq.rtl import encode_sp2_weights, sp2_mac
from hwquant.schemes.msq.sp2 import SP2Levels, allowed_splits
from tests.goldens import mac_cases, requires_iverilog

SPLITS = [(m1, m2) for bits in range(2, 10) for m1, m2 in allowed_splits(bits)]


def sp2_weights(levels: SP2Levels, rng: np.random.Generator, shape: tuple[int, ...]):
    """Random SP2 weights: (sign, shift1, shift2) as MSQEncoding stores them, and values."""
    values = rng.choice(levels.integers().numpy(), shape)
    return (*levels.decompose(values), values)


def decode_word(word: int, m1: int, m2: int) -> int:
    """The value of a port word, read field by field as the module docstring lays it out."""
    levels = SP2Levels(m1 + m2 + 1, m1, m2)
    negative, c1, c2 = word >> (m1 + m2), (word >> m2) & ((1 << m1) - 1), word & ((1 << m2) - 1)
    value = (1 << (c1 - 1) if c1 else 0) + (1 << (c2 - 1 + levels.shifts2.start) if c2 else 0)
    return -value if negative else value


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(SPLITS), st.integers(0, 2**16))
def test_words_decode_to_the_weights(split, seed):
    m1, m2 = split
    levels = SP2Levels(m1 + m2 + 1, m1, m2)
    sign, shift1, shift2, values = sp2_weights(levels, np.random.default_rng(seed), (16,))
    words = encode_sp2_weights(sign, shift1, shift2, m1, m2)
    assert words.max() < 2 ** (m1 + m2 + 1)
    assert [decode_word(int(w), m1, m2) for w in words] == values.tolist()


@requires_iverilog
def test_sums_equal_the_engine_shift_add(msq_goldens):
    golden = msq_goldens["features.1.0"]
    enc = golden.node.encoding
    rows = np.flatnonzero(enc.sp2_rows)
    fields = (f.reshape(len(enc.sp2_rows), -1) for f in (enc.sign, enc.shift1, enc.shift2))
    words = encode_sp2_weights(*fields, enc.m1, enc.m2)
    x, w, expected = mac_cases(golden, words[rows], rows, count=24)
    unit = sp2_mac(golden.node.in_bits, enc.m1, enc.m2, golden.node.acc_bits)
    result = simulate(unit, mac_stimulus({"x": x, "w": w}, expected))
    assert result.errors == 0 and np.array_equal(result.outputs["acc"], expected)


@requires_iverilog
@settings(max_examples=3, deadline=None)
@given(st.sampled_from(SPLITS), st.integers(1, 8), st.booleans(), st.integers(0, 2**16))
def test_random_widths_simulate_exactly(split, act_bits, act_signed, seed):
    m1, m2 = split
    rng = np.random.default_rng(seed)
    levels = SP2Levels(m1 + m2 + 1, m1, m2)
    sign, shift1, shift2, values = sp2_weights(levels, rng, (6, 5))
    lo, hi = qrange(act_bits, act_signed)
    x = rng.integers(lo, hi + 1, (6, 5))
    expected = (x * values).sum(1)
    unit = sp2_mac(act_bits, m1, m2, 40, act_signed=act_signed)
    words = encode_sp2_weights(sign, shift1, shift2, m1, m2)
    result = simulate(unit, mac_stimulus({"x": x, "w": words}, expected))
    assert np.array_equal(result.outputs["acc"], expected)


def test_zero_sign_is_the_zero_word():
    words = encode_sp2_weights(np.array([0, 0]), np.array([-1, 1]), np.array([-1, 2]), 2, 1)
    assert words.tolist() == [0, 0]


def test_bad_splits_and_shifts_are_refused():
    with pytest.raises(ConfigError, match="m1=1, m2=2"):
        sp2_mac(4, 1, 2, 16)
    with pytest.raises(ConfigError, match="acc_bits=7 is too narrow"):
        sp2_mac(4, 2, 1, 7)  # 15 · 8 = 120 needs 8 signed bits
    with pytest.raises(ConfigError, match="shift1"):
        encode_sp2_weights(np.array([1]), np.array([3]), np.array([-1]), 2, 1)
    with pytest.raises(ConfigError, match="shift2"):
        encode_sp2_weights(np.array([1]), np.array([0]), np.array([1]), 2, 1)
