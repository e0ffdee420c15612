"""The accumulator-aware benchmarks' inputs: committed FP32 starts and the curve's recipes."""

from __future__ import annotations

import dataclasses

import pytest

from benchmarks import accumulator_aware_cifar10 as cifar
from benchmarks import accumulator_aware_fashion_mnist as fashion
from hwquant.core.provenance import file_sha256


def test_fashion_mnist_starts_from_the_committed_fp32_weights():
    """The published rows name their start by a scratch path; the committed file is the same
    weights (its sha256 is the one the docs quote), and parts from either path merge."""
    assert file_sha256(fashion.FP32_START) == fashion.FP32_START_SHA256
    args = fashion.parse_args(["--rows", "W4A4_P20"])
    assert args.init_fp32 == fashion.FP32_START and args.selected == ["W4A4_P20"]
    assert fashion.parse_args(["--train-fp32"]).init_fp32 is None
    scratch = "/tmp/a2q/fp32_small_cnn_epoch1.pt"
    assert fashion.start_name(scratch) == fashion.start_name(str(fashion.FP32_START))


def test_cifar10_rows_are_the_cpu_full_row_with_a_bound():
    """Each point is the cpu-full llsq_W4A4 recipe with only the accumulator fields added."""
    steps = 585
    base = cifar.BASE_ROW.recipe(steps)
    recipe = cifar.recipe_at(14, steps)
    assert (recipe.accumulator_bits, recipe.accumulator_digit_planes) == (14, True)
    assert (
        dataclasses.replace(recipe, accumulator_bits=None, accumulator_digit_planes=False) == base
    )
    assert (base.weight_bits, base.first_layer_bits, base.last_layer_bits) == (4, 8, 8)
    with pytest.raises(SystemExit):
        cifar.parse_args(["--acc-bits", "15"])
    with pytest.raises(SystemExit):
        cifar.parse_args(["--quick"])  # a smoke run never writes the published file
    with pytest.raises(SystemExit):
        cifar.parse_args(["--quick", "--out", str(cifar.OUTPUTS["cpu-full"])])
    assert cifar.parse_args([]).out == cifar.OUTPUTS["cpu-long"]
    assert cifar.parse_args(["--tier", "cpu-full"]).out == cifar.OUTPUTS["cpu-full"]


def test_a_stored_cifar10_row_of_another_recipe_is_refused_not_skipped():
    """The published cpu-full rows trained their activation scales; the row's recipe now holds
    them, so a resume into that file names the field instead of mixing two recipes."""
    stored = {"acc_bits": 14, "recipe": cifar.recipe_at(14, 585).to_dict()}
    cifar.check_stored_row("W4A4_P14", stored, 585)  # the same recipe: skipped
    stored["recipe"].pop("act_scales")  # a row from before the field: its default, "trained"
    with pytest.raises(SystemExit, match=r"W4A4_P14.*fields act_scales"):
        cifar.check_stored_row("W4A4_P14", stored, 585)
