"""The codebook-decode MAC, simulated on the non-uniform small CNN's codebook layer."""

from __future__ import annotations

import numpy as np
import pytest

from hwquant.core.errors import ConfigError
from hwquant.rtl import mac_stimulus, simulate
from hwquant.schemes.nonuniform.rtl import codebook_mac, encode_codebook_indices
from tests.goldens import mac_cases, requires_iverilog


@requires_iverilog
@pytest.mark.parametrize("style", ["dsp", "lut"])
def test_sums_equal_the_engine_lookup(nonuniform_goldens, style):
    golden = nonuniform_goldens["features.1.0"]
    enc = golden.node.encoding
    codebook = enc.codebook[0].tolist()
    indices = encode_codebook_indices(enc.indices.reshape(len(golden.weight), -1), len(codebook))
    x, w, expected = mac_cases(golden, indices, np.arange(len(indices)), count=24)
    unit = codebook_mac(
        golden.node.in_bits, codebook, enc.grid_bits, golden.node.acc_bits, style=style
    )
    assert unit.port("w").width == enc.index_bits
    result = simulate(unit, mac_stimulus({"x": x, "w": w}, expected))
    assert result.errors == 0 and np.array_equal(result.outputs["acc"], expected)


def test_index_width_is_ceil_log2_of_the_levels():
    assert codebook_mac(4, [-3, 1, 2], 4, 12).port("w").width == 2
    assert codebook_mac(4, [5], 4, 12).port("w").width == 1
    assert codebook_mac(4, list(range(-8, 9)), 5, 12).port("w").width == 5


@pytest.mark.parametrize(
    ("codebook", "grid_bits", "match"),
    [([1, 2, 2], 4, "repeats a level"), ([-9, 1], 4, "outside -8..7"), ([], 4, "non-empty")],
)
def test_bad_codebooks_are_refused(codebook, grid_bits, match):
    with pytest.raises(ConfigError, match=match):
        codebook_mac(4, codebook, grid_bits, 16)


def test_out_of_range_indices_are_refused():
    with pytest.raises(ConfigError, match="codebook index"):
        encode_codebook_indices(np.array([0, 4]), 4)
