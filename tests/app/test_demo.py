"""The quick demo, run once: exit code, demo.json, reports, plots and the saved IntModels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import hwquant
from hwquant.app.demo import accuracy, demo_settings, load_data, run_demo
from hwquant.app.report import HTML_FILE, MARKDOWN_FILE, load_results
from hwquant.app.report.html import data_uri
from hwquant.qat.recipe import bn_freeze_step_for

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    assert run_demo(out, quick=True) == 0
    return out


@pytest.fixture(scope="module")
def results(run_dir: Path) -> dict[str, Any]:
    return load_results(run_dir)


def _plots(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "plots").glob("*.png"))


def test_results_have_every_section(results: dict[str, Any]) -> None:
    expected = {"seed", "quick", "dataset", "model", "fp32", "variants", "acc16_bits", "timings"}
    assert expected | {"environment"} <= results.keys()
    assert results["quick"] is True
    assert results["dataset"]["name"] == "digits"
    assert [v["name"] for v in results["variants"]] == ["w4a4", "w2a2", "w4a4_acc16"]
    assert {"torch", "python", "platform"} <= results["environment"].keys()
    assert results["timings"]["total"] > 0


def test_accuracies_are_fractions_well_above_chance(results: dict[str, Any]) -> None:
    assert 0.5 < results["fp32"]["accuracy"] <= 1
    for variant in results["variants"]:
        acc = variant["accuracy"]
        assert 0.5 < acc["fake_quant"] <= 1
        assert 0.5 < acc["integer"] <= 1
        assert 0 <= acc["integer_acc16"] <= 1  # may collapse: 8-bit edge layers overflow 16 bits


def test_every_variant_ends_on_frozen_bn(results: dict[str, Any]) -> None:
    """BN freezes a fifth into each QAT run, so that its last steps train the deployed form
    (docs/llsq.md §1, "The end of a run"; the W2A2 variant lost 6.7 points in its last epoch
    when the freeze lay beyond the run)."""
    for variant in results["variants"]:
        steps, freeze = variant["train_steps"], variant["recipe"]["bn_freeze_step"]
        assert freeze == bn_freeze_step_for(steps) < steps, variant["name"]


def test_integer_engine_is_bit_exact(results: dict[str, Any]) -> None:
    for variant in results["variants"]:
        assert variant["accuracy"]["integer"] == variant["accuracy"]["fake_quant"]
        assert variant["integer_matches_qat"]
        assert variant["verify"]["exact"]
        assert variant["verify"]["mismatches"] == 0
        assert variant["verify"]["compared"] > 0


def test_accumulator_aware_variant_fits_16_bits(results: dict[str, Any]) -> None:
    """Every layer, first and last included, trained for 16-bit accumulators: proved to fit,
    no overflow on the test set, the same accuracy as with 32-bit accumulators."""
    (variant,) = (v for v in results["variants"] if v["name"] == "w4a4_acc16")
    assert variant["accuracy"]["integer_acc16"] == variant["accuracy"]["integer"]
    for layer in variant["layers"]:
        assert layer["acc_bits"] == 16 and layer["proved_acc_bits"] <= 16, layer["name"]
        assert layer["overflows_acc16"] == 0


def test_layer_bits_are_positive_ints(results: dict[str, Any]) -> None:
    for variant in results["variants"]:
        assert variant["layers"]
        for layer in variant["layers"]:
            for key in ("weight_bits", "in_bits", "worst_case_bits", "bits_used"):
                assert isinstance(layer[key], int) and layer[key] > 0, (layer["name"], key)
            assert layer["bits_used"] <= layer["worst_case_bits"]
            assert 0 <= layer["overflows_acc16"] <= layer["accumulations"]


def test_quantized_models_are_smaller(results: dict[str, Any]) -> None:
    sizes = [v["size_bits"] for v in results["variants"]]
    assert all(0 < size < results["fp32"]["size_bits"] for size in sizes)


def test_reports_reference_every_plot(run_dir: Path, results: dict[str, Any]) -> None:
    markdown = (run_dir / MARKDOWN_FILE).read_text(encoding="utf-8")
    html = (run_dir / HTML_FILE).read_text(encoding="utf-8")
    plots = _plots(run_dir)
    # accuracy, accumulator bits, one weight histogram per variant
    assert len(plots) == 2 + len(results["variants"])
    for plot in plots:
        assert f"(plots/{plot.name})" in markdown
        assert data_uri(plot.read_bytes()) in html


def test_plots_are_pngs(run_dir: Path) -> None:
    for plot in _plots(run_dir):
        data = plot.read_bytes()
        assert len(data) > len(PNG_SIGNATURE) and data.startswith(PNG_SIGNATURE), plot


def test_saved_int_models_reproduce_the_integer_accuracy(
    run_dir: Path, results: dict[str, Any]
) -> None:
    data = load_data(demo_settings(quick=True))
    for variant in results["variants"]:
        model = hwquant.load(run_dir / variant["model_file"])
        logits = model.dequantize(model.run(model.quantize_input(data.x_test)))
        assert accuracy(logits, data.y_test) == variant["accuracy"]["integer"]
