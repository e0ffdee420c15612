"""``benchmarks.msq_row_error``: each row's error on SP2 and fixed-point levels, and the splits
of the three row tests, on a freshly initialised ResNet-20."""

from __future__ import annotations

import json

import pytest
import torch
from benchmarks.common import RESULTS_DIR

from benchmarks import msq_row_error as bench
from hwquant.models import build
from hwquant.schemes.msq.quantizer import ASSIGNMENT_TESTS


@pytest.fixture(scope="module")
def measured():
    torch.manual_seed(0)
    model = build(bench.MODEL)
    return bench.measure(model.state_dict()), model


def test_the_committed_result_is_what_the_code_measures():
    """``benchmarks/results/msq_row_error.json`` (quoted by docs/msq.md) holds what
    :func:`measure` gives for the checkpoint it names, layer by layer."""
    stored = json.loads((RESULTS_DIR / f"{bench.NAME}.json").read_text())
    state, record = bench.fp32_state(stored["config"]["tier"])
    assert record["checkpoint_sha256"] == stored["config"]["fp32_checkpoint_sha256"]
    assert flat(bench.measure(state)) == pytest.approx(flat(stored["results"]), rel=1e-9)


def flat(tree: dict, prefix: str = "") -> dict[str, float]:
    """``{"a.b.c": leaf}`` of a nested dict (pytest.approx compares flat mappings)."""
    out: dict[str, float] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out |= flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_every_layer_and_the_network_have_both_starts_and_all_tests(measured):
    result, _ = measured
    assert set(result["network"]) == set(bench.STARTS)
    for record in [*result["layers"].values(), result["network"]]:
        for start in bench.STARTS:
            assert set(record[start]["msq_by_test"]) == set(ASSIGNMENT_TESTS)
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
