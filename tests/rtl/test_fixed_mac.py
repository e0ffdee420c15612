"""The fixed-point MAC, simulated on the LLSQ small CNN's real sums."""

from __future__ import annotations

import numpy as np
import pytest

from hwquant.core.errors import ConfigError
from hwquant.rtl import encode_fixed_weights, fixed_mac, from_words, mac_stimulus, simulate
from tests.goldens import mac_cases, requires_iverilog


@requires_iverilog
@pytest.mark.parametrize(
    ("layer", "style"), [("features.0.0", "dsp"), ("features.1.0", "lut"), ("classifier", "dsp")]
)
def test_sums_equal_the_engine(llsq_goldens, layer, style):
    golden = llsq_goldens[layer]
    node = golden.node
    weights = golden.weight  # the signed port takes the integer codes themselves
    x, w, expected = mac_cases(golden, weights, np.arange(len(weights)), count=24)
    unit = fixed_mac(
        node.in_bits, node.weight_bits, node.acc_bits, act_signed=node.in_signed, style=style
    )
    result = simulate(unit, mac_stimulus({"x": x, "w": w}, expected))
    assert result.errors == 0 and result.checks == len(expected)
    assert np.array_equal(result.outputs["acc"], expected)


@requires_iverilog
def test_accumulator_wraps_like_the_engine():
    """A 10-bit accumulator wraps modulo 2^10, as Accumulator(policy="wrap")."""
    x = np.full((3, 40), 15)
    w = np.full((3, 40), -8)
    total = (x * w).sum(1)
    wrapped = (total + 512) % 1024 - 512
    result = simulate(fixed_mac(4, 4, 10), mac_stimulus({"x": x, "w": w}, wrapped))
    assert np.array_equal(result.outputs["acc"], wrapped)


def test_style_sets_the_dsp_attribute():
    assert '(* use_dsp = "yes" *)' in fixed_mac(4, 4, 16).verilog
    lut = fixed_mac(4, 4, 16, style="lut")
    assert '(* use_dsp = "no" *)' in lut.verilog and lut.params["style"] == "lut"
    assert fixed_mac(4, 4, 16).top != lut.top


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ((0, 4, 16), {}, "act_bits=0"),
        ((4, -1, 16), {}, "weight_bits=-1"),
        ((4, 4, 7), {}, "acc_bits=7 is too narrow"),
        ((4, 4, 16), {"style": "bram"}, "dsp, lut"),
    ],
)
def test_bad_widths_are_refused(args, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        fixed_mac(*args, **kwargs)


def test_weight_words_are_twos_complement():
    codes = np.arange(-8, 8)
    words = encode_fixed_weights(codes, 4)
    assert words.tolist() == [*range(8, 16), *range(8)]
    assert np.array_equal(from_words(words, 4, signed=True), codes)
    with pytest.raises(ConfigError, match=r"outside -8\.\.7"):
        encode_fixed_weights(np.array([8]), 4)
