"""Recipe validation: every bad field is named with its fix."""

from __future__ import annotations

import pytest

from hwquant.core.errors import ConfigError
from hwquant.qat.recipe import Recipe, bn_freeze_step_for


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"weight_bits": 0}, r"weight_bits=0.*1\.\.16"),
        ({"act_bits": 17}, r"act_bits=17"),
        ({"weight_bits": 4.0}, r"weight_bits=4.0"),
        ({"weight_bits": True}, r"weight_bits=True"),
        ({"first_layer_bits": 0}, r"or None"),
        ({"scale_gradient": "adam"}, "llsq, lsq"),
        ({"scale_init": "max"}, "peak, min_error"),
        ({"act_scales": "fixed"}, "trained, calibrated"),
        ({"scheme": "tables", "act_scales": "calibrated"}, "act_scales='calibrated'.*'tables'"),
        ({"scale_constraint": "log"}, "free, pow2, fixed"),
        ({"weight_granularity": "row"}, "tensor, channel"),
        ({"llsq_norm": 3}, "1 or 2"),
        ({"requant_bits": 40}, r"2\.\.31"),
        ({"bn_freeze_step": -2}, ">= 0, or None"),
    ],
)
def test_bad_fields(fields, message):
    with pytest.raises(ConfigError, match=message):
        Recipe(**fields)


def test_from_dict_rejects_unknown_fields_by_name():
    with pytest.raises(ConfigError, match=r"unknown field 'recipe.wieght_bits'.*weight_bits"):
        Recipe.from_dict({"wieght_bits": 4})


def test_round_trip():
    recipe = Recipe(weight_bits=3, act_bits=3, first_layer_bits=None)
    assert Recipe.from_dict(recipe.to_dict()) == recipe


def test_scheme_options_round_trip_through_toml(tmp_path):
    from hwquant.app.config import load_config

    text = """
[model]
name = "small_cnn"
[data]
name = "digits"
[recipe]
scheme = "msq"
[recipe.msq]
sp2_share = 0.25
"""
    path = tmp_path / "run.toml"
    path.write_text(text)
    config = load_config(path)
    assert config.recipe.scheme == "msq" and config.recipe.msq.sp2_share == 0.25
    path.write_text(config.to_toml())
    assert load_config(path) == config


def test_unknown_scheme_names_the_choices():
    with pytest.raises(ConfigError, match=r"scheme='sp3'.*'llsq', 'msq', 'nonuniform', 'tables'"):
        Recipe(scheme="sp3")


def test_bn_freeze_step_for_freezes_after_a_fifth_of_the_run():
    assert [bn_freeze_step_for(n) for n in (1, 5, 124, 248, 585)] == [0, 1, 25, 50, 117]
    with pytest.raises(ConfigError, match="qat_steps=0"):
        bn_freeze_step_for(0)
