"""The PE x SIMD array, simulated end to end on real layers: every output channel of many
output pixels, two foldings, with bias and requantizer, for fixed-point, MSQ (SP2 + fixed rows)
and codebook layers."""

from __future__ import annotations

import numpy as np
import pytest

from hwquant.core.errors import ConfigError
from hwquant.rtl import fixed_product, simulate
from hwquant.rtl.conv_array import array_stimulus, conv_array
from hwquant.rtl.golden import array_expected, node_arrays
from tests.goldens import requires_iverilog


def simulate_layer(golden, pe: int, simd: int, pixels: slice) -> list[str]:
    """Run every array of a layer on image 0's ``pixels``; assert the outputs are the engine's
    and return the arrays' lane kinds."""
    labels = []
    for array in node_arrays(golden.node, pe, simd):
        expected = array_expected(golden, array, pixels)
        result = simulate(
            array.unit, array_stimulus(array.unit, golden.patches[0, pixels], expected)
        )
        out = "acc" if golden.node.mult is None else "out"
        assert result.errors == 0 and result.checks == expected.size // pe
        assert np.array_equal(result.outputs[out].reshape(expected.shape), expected)
        assert result.outputs["valid"].all()
        labels.append(array.label)
    return labels


@requires_iverilog
@pytest.mark.parametrize(("pe", "simd", "pixels"), [(8, 16, slice(0, 64)), (4, 9, slice(20, 28))])
def test_fixed_layer_equals_the_engine(llsq_goldens, pe, simd, pixels):
    assert simulate_layer(llsq_goldens["features.1.0"], pe, simd, pixels) == ["fixed"]


@requires_iverilog
def test_signed_input_layer_and_last_layer(llsq_goldens):
    assert simulate_layer(llsq_goldens["features.0.0"], 4, 3, slice(0, 16)) == ["fixed"]  # signed
    assert simulate_layer(llsq_goldens["classifier"], 2, 32, slice(0, 1)) == ["fixed"]  # acc out


@requires_iverilog
def test_msq_layer_runs_as_sp2_and_fixed_arrays(msq_goldens):
    assert simulate_layer(msq_goldens["features.1.0"], 4, 16, slice(0, 8)) == ["sp2", "fixed"]


@requires_iverilog
def test_codebook_layer_equals_the_engine(nonuniform_goldens):
    assert simulate_layer(nonuniform_goldens["features.1.0"], 8, 8, slice(0, 6)) == ["codebook"]


def test_fold_is_cout_over_pe_times_k_over_simd():
    unit = conv_array(fixed_product(4, 4), np.zeros((12, 18), np.int64), pe=3, simd=6, acc_bits=16)
    assert unit.params["fold"] == (12 // 3) * (18 // 6)
    assert unit.port("x").width == 6 * 4 and unit.port("acc").width == 3 * 16


@pytest.mark.parametrize(
    ("pe", "simd", "match"), [(5, 6, "pe=5 does not divide the 12"), (3, 7, "1, 2, 3, 6, 9, 18")]
)
def test_folding_must_divide_the_layer(pe, simd, match):
    with pytest.raises(ConfigError, match=match):
        conv_array(fixed_product(4, 4), np.zeros((12, 18), np.int64), pe=pe, simd=simd, acc_bits=16)
