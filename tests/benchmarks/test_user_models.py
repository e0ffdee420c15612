"""A fast subset of the user-model acceptance suite (benchmarks/user_models.py): models using
the concatenation, transposed convolution, Conv1d and grouped convolution ops are accepted
(verify exact, export exact) and models outside what hwquant computes are refused with an
error, never a crash or a silent difference."""

from __future__ import annotations

import pytest
from benchmarks.user_models import MODELS, RECIPES, run_one, summarize

ACCEPTED = [
    ("densenet_post_activation", "llsq"),
    ("unet_convtranspose_cat", "llsq"),
    ("audio_conv1d", "msq"),
    ("mobilenet_v1_depthwise", "nonuniform"),
    ("mlp_functional", "tables"),
    ("unet_upsample_cat", "tables"),
]
REFUSED = [
    ("shared_module_twice", "llsq", "UnsupportedLayerError", "module 'conv' (Conv2d) is called"),
    ("unet_bilinear", "llsq", "UnsupportedLayerError", "mode='bilinear'"),
    ("unet_bilinear", "tables", "UnsupportedLayerError", "mode='bilinear'"),
]


def test_the_suite_has_thirty_user_models_across_families():
    assert len(MODELS) >= 30
    assert {"MLP", "ResNet", "MobileNet", "DenseNet", "U-Net", "Conv1d", "SE"} <= {
        m.kind for m in MODELS.values()
    }


@pytest.mark.parametrize(("model", "scheme"), ACCEPTED)
def test_user_model_is_accepted(model, scheme):
    outcome = run_one(model, scheme)
    assert outcome["outcome"] == "accepted", outcome
    assert outcome["export"] == ("n/a" if scheme == "tables" else "exact")


@pytest.mark.parametrize(("model", "scheme", "error", "names"), REFUSED)
def test_user_model_is_refused_with_an_error(model, scheme, error, names):
    outcome = run_one(model, scheme)
    assert (outcome["outcome"], outcome["error"]) == ("refused", error), outcome
    assert names in outcome["message"]


def test_summary_counts_each_outcome():
    outcomes = {
        "a": {"llsq": {"outcome": "accepted"}},
        "b": {"llsq": {"outcome": "refused"}},
        "c": {"llsq": {"outcome": "CRASH"}},
    }
    line = summarize(outcomes)["llsq"]
    assert (line["accepted"], line["refused"], line["crash"], line["models"]) == (1, 1, 1, 3)
    assert not line["meets_target"]
    assert set(summarize(outcomes)) == set(RECIPES)
