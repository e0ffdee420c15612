"""UNIQ's gradual schedule: float → noisy → quantized, block by block (methods.md §1.1 step 4)."""

from __future__ import annotations

import pytest

from hwquant.core.errors import ConfigError
from hwquant.qat.recipe import NonUniformOptions, Recipe
from hwquant.schemes.nonuniform.gradual import parse_blocks, schedule_blocks, stage_at

LAYERS = ["conv2", "conv3", "conv4", "fc1", "fc2"]


@pytest.mark.parametrize(
    ("step", "block", "expected"),
    [
        (0, 0, "noisy"),
        (9, 0, "noisy"),
        (10, 0, "quantized"),
        (9, 1, "float"),
        (10, 1, "noisy"),
        (19, 1, "noisy"),
        (20, 1, "quantized"),
        (29, 3, "float"),
    ],
)
def test_stage_transitions(step, block, expected):
    assert stage_at(step, block, 10) == expected


def test_zero_steps_per_stage_quantizes_from_the_start():
    assert {stage_at(step, block, 0) for step in range(3) for block in range(3)} == {"quantized"}


def test_default_is_one_block_per_layer_in_graph_order():
    assert schedule_blocks(LAYERS, NonUniformOptions()) == {n: i for i, n in enumerate(LAYERS)}


def test_stages_split_the_layers_into_contiguous_blocks():
    blocks = schedule_blocks(LAYERS, NonUniformOptions(stages=2))
    assert list(blocks.values()) == [0, 0, 0, 1, 1]
    assert schedule_blocks(LAYERS, NonUniformOptions(stages=9)) == schedule_blocks(
        LAYERS, NonUniformOptions()
    )


def test_all_at_once_is_one_block():
    options = NonUniformOptions(schedule="all_at_once", stages=3)
    assert set(schedule_blocks(LAYERS, options).values()) == {0}


def test_explicit_blocks():
    options = NonUniformOptions(blocks="fc1, fc2; conv2,conv3 ;conv4")
    assert parse_blocks(options.blocks) == [["fc1", "fc2"], ["conv2", "conv3"], ["conv4"]]
    assert schedule_blocks(LAYERS, options) == {
        "fc1": 0,
        "fc2": 0,
        "conv2": 1,
        "conv3": 1,
        "conv4": 2,
    }


@pytest.mark.parametrize(
    ("blocks", "problem"),
    [
        ("conv2,conv3,conv4,fc1,fc2;conv9,fcx", "no such inner layer: conv9, fcx"),
        ("conv2,conv3;conv4,fc1,fc2,conv2", "named twice: conv2"),
        ("conv2;conv3", "in no block: conv4, fc1, fc2"),
    ],
)
def test_blocks_that_do_not_partition_the_layers_are_an_error(blocks, problem):
    with pytest.raises(ConfigError, match=problem) as info:
        schedule_blocks(LAYERS, NonUniformOptions(blocks=blocks))
    assert "inner layers are: conv2, conv3, conv4, fc1, fc2" in str(info.value)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("steps_per_stage", -1, "steps_per_stage=-1"),
        ("stages", 0, "stages=0"),
        ("cdf", "laplace", "cdf='laplace'"),
        ("schedule", "sudden", "schedule='sudden'"),
        ("grid_bits", 40, "grid_bits=40"),
    ],
)
def test_options_are_validated(field, value, message):
    with pytest.raises(ConfigError, match=message):
        NonUniformOptions(**{field: value})


def test_options_round_trip_through_a_recipe_table():
    recipe = Recipe(
        scheme="nonuniform",
        scale_constraint="pow2",
        nonuniform=NonUniformOptions(cdf="empirical", stages=2, blocks="a;b", steps_per_stage=7),
    )
    assert Recipe.from_dict(recipe.to_dict()) == recipe
