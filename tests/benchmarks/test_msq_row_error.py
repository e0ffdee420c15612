"""``benchmarks.msq_row_error``: each row's error on SP2 and fixed-point levels, and the splits
of the three row tests, on a freshly initialised ResNet-20."""

from __future__ import annotations

import pytest
import torch

from benchmarks import msq_row_error as bench
from hwquant.models import build
from hwquant.schemes.msq.quantizer import ASSIGNMENT_TESTS


@pytest.fixture(scope="module")
def measured():
    torch.manual_seed(0)
    model = build(bench.MODEL)
    return bench.measure(model.state_dict()), model


def test_the_error_split_is_the_least_of_the_three_in_every_layer(measured):
    result, _ = measured
    assert set(result["network"]) == set(bench.STARTS)
    for record in [*result["layers"].values(), result["network"]]:
        for start in bench.STARTS:
            errors = record[start]["msq_by_test"]
            assert set(errors) == set(ASSIGNMENT_TESTS)
            assert all(errors["error"] <= errors[test] for test in ASSIGNMENT_TESTS)
            assert record[start]["fixed_only"] > 0 and record[start]["sp2_only"] > 0
            assert 0 <= record[start]["rows_sp2_fits_better"] <= record[start]["rows"]
    assert result["network"]["alpha_max"]["rows"] == sum(
        r["alpha_max"]["rows"] for r in result["layers"].values()
    )


def test_the_least_error_clip_is_no_worse_than_the_peak(measured):
    result, _ = measured
    for record in result["layers"].values():
        for scheme in ("fixed_only", "sp2_only"):
            assert record["alpha_least_error"][scheme] <= record["alpha_max"][scheme]


def test_the_error_split_at_the_peak_is_the_quantizers_own(measured):
    """The benchmark's ``error`` split at ``α = max|w|`` is the assignment the row's quantizer
    makes with ``assignment = "error"`` (the same error, summed the same way)."""
    result, model = measured
    for name, (w, quantizer) in bench.folded_layers(model).items():
        quantizer.assignment = "error"
        quantizer.initialize(w.float())
        with torch.no_grad():
            error = float((quantizer(w) - w).square().sum() / w.square().sum())
        assert error == pytest.approx(result["layers"][name]["alpha_max"]["msq_by_test"]["error"])
