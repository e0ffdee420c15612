"""The folding for a throughput target: the cheapest PE x SIMD per layer that meets it, and the
refusals of targets no folding meets."""

from __future__ import annotations

import dataclasses

import pytest

from hwquant.core.errors import ConfigError
from hwquant.hw.devices import get_device
from hwquant.hw.folding import Fold
from hwquant.rtl.network import build_design
from hwquant.rtl.network.folding import _candidates, _cost, _layer_shapes, target_folding
from hwquant.rtl.network.graph import network

SHAPE = (1, 8, 8)


@pytest.mark.parametrize("target", [1200, 2500, 5000])
def test_target_folding_is_the_cheapest_that_meets_the_interval(llsq_cnn, target):
    device = get_device("lfe5u-85f")
    folds = target_folding(llsq_cnn, SHAPE, device, {}, target)
    net = network(llsq_cnn, folds, SHAPE)
    assert net.ii_cycles <= target
    shapes = _layer_shapes(llsq_cnn, SHAPE)
    for node in llsq_cnn.weight_nodes():  # every cheaper fold of a layer misses the target
        cheaper = [
            f for f, _ in _candidates(llsq_cnn, node, shapes) if _cost(f) < _cost(folds[node.name])
        ]
        for fold in cheaper:
            trial = network(llsq_cnn, {**folds, node.name: fold}, SHAPE)
            assert trial.block(node.name).cycles > target, (node.name, fold)


def test_target_ii_recorded_and_given_folds_kept(llsq_cnn, tmp_path):
    design = build_design(
        llsq_cnn,
        "lfe5u-85f",
        tmp_path / "d",
        input_size=8,
        target_ii=3000,
        folding={"classifier": Fold(2, 1)},
    )
    blocks = {b["name"]: b for b in design.record["blocks"]}
    assert (blocks["classifier"]["pe"], blocks["classifier"]["simd"]) == (2, 1)
    assert design.ii_cycles <= 3000
    assert design.record["folding"] == {
        "given": ["classifier"],
        "chosen": "target_ii",
        "target_ii": 3000,
    }


def test_unreachable_targets_name_the_block_and_the_interval_that_works(llsq_cnn):
    device = get_device("lfe5u-85f")
    with pytest.raises(ConfigError, match=r"layer 'features.[01].0' takes at least 576 cycles"):
        target_folding(llsq_cnn, SHAPE, device, {}, 300)
    given = {n.name: Fold(1, 1) for n in llsq_cnn.weight_nodes()}
    with pytest.raises(ConfigError, match=r"block 'quant_input' \(input\) takes 64 cycles .* any"):
        target_folding(llsq_cnn, SHAPE, device, given, 63)
    small = dataclasses.replace(device, dsps=8)
    with pytest.raises(ConfigError, match=r"target_ii=1200: .* needs \d+ DSP multipliers .* has 8"):
        target_folding(llsq_cnn, SHAPE, small, {}, 1200)
