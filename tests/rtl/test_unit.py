"""Port words and the shared checks of every emitter."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hwquant.core.errors import ConfigError
from hwquant.core.intmath import qrange
from hwquant.rtl import fixed_mac, from_words, to_words
from hwquant.rtl.testbench import mem_text, pack_words
from hwquant.rtl.unit import Port, index_bits, literal


@given(st.integers(1, 62), st.booleans(), st.data())
def test_words_round_trip(width, signed, data):
    lo, hi = qrange(width, signed)
    values = data.draw(st.lists(st.integers(lo, hi), min_size=1, max_size=20))
    words = to_words(values, width, signed)
    assert (words >= 0).all() and (words < 2**width).all()
    assert from_words(words, width, signed).tolist() == values


@given(st.integers(2, 40), st.data())
def test_literals_are_twos_complement(width, data):
    lo, hi = qrange(width, True)
    value = data.draw(st.integers(lo, hi))
    text = literal(value, width)
    assert text.startswith(f"{width}'sh")
    assert from_words([int(text.split("'sh")[1], 16)], width, True)[0] == value


def test_lanes_pack_low_first():
    port = Port("x", "input", 8, True)
    assert pack_words(np.array([[1, -1]]), port, 2) == [0xF1]
    assert mem_text([0xF1, 2], 8) == "f1\n02\n"


def test_index_bits():
    assert [index_bits(n) for n in (1, 2, 3, 4, 5, 16, 17)] == [1, 1, 2, 2, 3, 4, 5]


def test_out_of_range_values_are_refused():
    with pytest.raises(ConfigError, match=r"outside 0\.\.15"):
        to_words([16], 4, signed=False)


def test_tops_are_unique_per_parameter_set():
    tops = {fixed_mac(a, w, 20, act_signed=s).top for a in (3, 4) for w in (3, 4) for s in (0, 1)}
    assert len(tops) == 8
