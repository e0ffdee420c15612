"""The requantizer, simulated on the LLSQ small CNN's accumulators per channel."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hwquant.core.errors import ConfigError
from hwquant.core.intmath import code_format, qrange, requant_params, requantize
from hwquant.rtl import requantizer, simulate, stream_stimulus
from tests.goldens import requires_iverilog


@requires_iverilog
@pytest.mark.parametrize("layer", ["features.0.0", "features.1.0"])
def test_codes_equal_the_engine(llsq_goldens, layer):
    golden = llsq_goldens[layer]
    node = golden.node
    out_bits, out_signed = code_format(node.lo, node.hi)
    for c in (0, 5):
        acc = golden.acc[..., c].reshape(-1)
        expected = golden.output[..., c].reshape(-1)
        unit = requantizer(
            node.acc_bits,
            int(node.mult[c]),
            int(node.shift[c]),
            out_bits,
            out_signed=out_signed,
            relu=node.lo == 0,
            ceiling=node.hi,
        )
        result = simulate(unit, stream_stimulus({"acc": acc}, {"out": expected}))
        assert result.errors == 0 and np.array_equal(result.outputs["out"], expected)


@requires_iverilog
@settings(max_examples=3, deadline=None)
@given(
    st.floats(1e-4, 4.0),
    st.integers(4, 16),
    st.integers(2, 8),
    st.booleans(),
    st.booleans(),
    st.integers(0, 2**16),
)
def test_random_ratios_round_half_up_and_clamp(ratio, mbits, out_bits, signed, relu, seed):
    mult, shift = (int(v[0]) for v in requant_params(np.array([ratio]), mbits))
    acc = np.random.default_rng(seed).integers(-(2**15), 2**15, 200)
    acc[:4] = [0, -1, 1, 2**15 - 1]
    lo, hi = qrange(out_bits, signed)
    lo = 0 if relu else lo
    expected = requantize(torch.from_numpy(acc), torch.tensor(mult), torch.tensor(shift), lo, hi)
    unit = requantizer(16, mult, shift, out_bits, out_signed=signed, relu=relu)
    result = simulate(unit, stream_stimulus({"acc": acc}, {"out": expected.numpy()}))
    assert np.array_equal(result.outputs["out"], expected.numpy())


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ((16, 0, 3, 8), {}, "multiplier=0"),
        ((16, 5, -1, 8), {}, "shift=-1"),
        ((16, 5, 3, 0), {}, "out_bits=0"),
        ((16, 5, 3, 4), {"ceiling": 20}, "ceiling=20"),
    ],
)
def test_bad_parameters_are_refused(args, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        requantizer(*args, out_signed=False, relu=True, **kwargs)
