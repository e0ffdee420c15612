"""Bad input to the network generator: each refusal names the problem and the fix."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest

from hwquant.core.errors import ConfigError, UnsupportedLayerError
from hwquant.hw.devices import get_device
from hwquant.hw.folding import Fold
from hwquant.ir.intmodel import IntNode
from hwquant.rtl.network import build_design
from hwquant.rtl.network.registry import emitter, ops_with_blocks
from hwquant.rtl.network.weight_layer import accumulator_width
from tests.helpers import full_range_classifier, lowered_small_cnn
from tests.rtl.network.conftest import tiny_cnn


@dataclass
class GeluNode(IntNode):
    op = "gelu"


def test_op_without_block_is_named_with_those_that_have_one():
    with pytest.raises(UnsupportedLayerError) as err:
        emitter(GeluNode("act", ["x"]))
    message = str(err.value)
    assert "'act'" in message and "'gelu'" in message
    assert all(op in message for op in ops_with_blocks())


def test_network_over_the_block_ram_at_any_folding_names_resource_and_excess(tmp_path):
    import torch

    import hwquant
    from hwquant.models import build
    from hwquant.qat.recipe import Recipe
    from tests.helpers import trained_qat_model

    torch.manual_seed(0)
    x = torch.randn(4, 1, 8, 8)
    qat = trained_qat_model(build("small_cnn", in_channels=1, input_size=8), Recipe(), x)
    with pytest.raises(
        ConfigError,
        match=r"block RAM: .* ice40up5k has 120 Kbit \(\d+\.\d\dx, "
        r"\d+ Kbit over\) at any folding",
    ):
        build_design(hwquant.lower(qat, x), "ice40up5k", tmp_path / "d", input_size=8)
    assert not (tmp_path / "d" / "design.json").exists()


def test_too_few_multipliers_named(tmp_path):
    tiny = dataclasses.replace(get_device("lfe5u-25f"), dsps=2)
    with pytest.raises(ConfigError, match=r"DSP multipliers: .* needs 5 .* has 2 \(2\.50x over\)"):
        build_design(tiny_cnn(), tiny, tmp_path / "d", input_size=8)


def test_bad_folding_and_directory_refused(tmp_path):
    model = tiny_cnn()
    with pytest.raises(ConfigError, match="names conv9, which are no weight layers"):
        build_design(
            model, "lfe5u-85f", tmp_path / "a", folding={"conv9": Fold(1, 1)}, input_size=8
        )
    with pytest.raises(ConfigError, match="SIMD=3 must divide its 8 input channels"):
        build_design(
            model, "lfe5u-85f", tmp_path / "b", folding={"features.1.0": Fold(1, 3)}, input_size=8
        )
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not a hwquant design"):
        build_design(model, "lfe5u-85f", tmp_path / "c", input_size=8)
    build_design(model, "lfe5u-85f", tmp_path / "e", input_size=8)
    with pytest.raises(ConfigError, match="already holds a design"):
        build_design(model, "lfe5u-85f", tmp_path / "e", input_size=8)
    build_design(model, "lfe5u-85f", tmp_path / "e", input_size=8, overwrite=True)


def test_ambiguous_input_size_asks_for_it(tmp_path):
    with pytest.raises(ConfigError, match=r"cannot be inferred \(it runs on 8, 9\)"):
        build_design(tiny_cnn(), "lfe5u-85f", tmp_path / "d")


def test_raising_accumulator_is_built_at_the_width_lower_proves():
    """A layer trained for P = 16 whose L1 rule says 17 is built at 16 bits; one bit less is
    refused, naming the 16 bits the proved interval needs (issue 20)."""
    model, _ = lowered_small_cnn()
    node = full_range_classifier(model)
    model.set_accumulator(16, "raise", [node.name])
    assert accumulator_width(node) == 16
    model.set_accumulator(15, "raise", [node.name])
    with pytest.raises(
        UnsupportedLayerError, match=r"15-bit.*'raise'.*16 bits.*set_accumulator\(16\)"
    ):
        accumulator_width(node)
