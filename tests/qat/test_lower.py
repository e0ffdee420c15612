"""The invariant: the integer engine equals the QAT model in eval mode, bit for bit."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import hwquant
from hwquant.core.errors import HwquantError, UnsupportedLayerError
from hwquant.engine import run
from hwquant.models import build
from hwquant.qat.nn import capture_codes
from hwquant.qat.recipe import Recipe
from tests.helpers import RandomNet, trained_qat_model

RECIPES = {
    "w4a4": Recipe(weight_bits=4, act_bits=4, bn_freeze_step=1),
    "w2a2-pow2-tensor": Recipe(
        weight_bits=2,
        act_bits=2,
        scale_constraint="pow2",
        weight_granularity="tensor",
        bn_freeze_step=1,
    ),
    "w3a3-fixed-lsq": Recipe(
        weight_bits=3, act_bits=3, scale_constraint="fixed", scale_gradient="lsq", bn_freeze_step=1
    ),
}


def _check_exact(qat, x: torch.Tensor) -> None:
    int_model = hwquant.lower(qat, x)
    report = hwquant.verify(qat, int_model, x)
    assert report.exact, str(report)
    with capture_codes(qat) as codes:
        qat(x)
    x_int = int_model.quantize_input(x)
    out = int_model.run(x_int)
    assert torch.equal(out, codes[int_model.output])
    assert torch.equal(int_model.run(x_int, four_bit=True), out)
    assert torch.equal(run(int_model, x_int, backend="int64").output, out)
    # the network's float output is the engine's output times its scale
    assert torch.allclose(int_model.dequantize(out).float(), qat(x), rtol=1e-6, atol=1e-6)
    assert len(torch.unique(out)) > 1, "a degenerate test: every output is the same"


@pytest.mark.parametrize("recipe", RECIPES.values(), ids=RECIPES.keys())
@pytest.mark.parametrize("name", ["resnet20", "vgg_small", "mobilenetv2"])
def test_models_are_bit_exact(name: str, recipe: Recipe):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    qat = trained_qat_model(build(name), recipe, x)
    _check_exact(qat, x)


block = st.one_of(
    st.tuples(
        st.just("conv"),
        st.integers(2, 6),
        st.sampled_from([1, 3]),
        st.integers(1, 2),
        st.booleans(),
        st.booleans(),
        st.sampled_from([None, "relu", "relu6"]),
        st.booleans(),
    ),
    st.tuples(st.just("residual"), st.sampled_from([None, "relu", "relu6"])),
    st.tuples(st.just("maxpool")),
)


@settings(max_examples=40)
@given(
    in_channels=st.integers(1, 3),
    size=st.integers(4, 9),
    blocks=st.lists(block, min_size=1, max_size=5),
    global_pool=st.booleans(),
    weight_bits=st.integers(2, 8),
    act_bits=st.integers(2, 16),
    requant_bits=st.sampled_from([16, 24, 31]),
    edge_bits=st.sampled_from([4, 8]),
    granularity=st.sampled_from(["tensor", "channel"]),
    constraint=st.sampled_from(["free", "pow2", "fixed"]),
    gradient=st.sampled_from(["llsq", "lsq"]),
    seed=st.integers(0, 2**16),
)
def test_random_models_are_bit_exact(
    in_channels,
    size,
    blocks,
    global_pool,
    weight_bits,
    act_bits,
    edge_bits,
    granularity,
    constraint,
    gradient,
    seed,
    requant_bits,
):
    torch.manual_seed(seed)
    model = RandomNet(in_channels, blocks, 5, global_pool, size)
    recipe = Recipe(
        weight_bits=weight_bits,
        act_bits=act_bits,
        first_layer_bits=edge_bits,
        last_layer_bits=edge_bits,
        weight_granularity=granularity,
        scale_constraint=constraint,
        scale_gradient=gradient,
        requant_bits=requant_bits,
        bn_freeze_step=1,
    )
    x = torch.randn(3, in_channels, size, size)
    qat = trained_qat_model(model, recipe, x)
    int_model = hwquant.lower(qat, x)
    report = hwquant.verify(qat, int_model, x)
    assert report.exact, str(report)
    x_int = int_model.quantize_input(x)
    out = int_model.run(x_int)
    assert torch.equal(int_model.run(x_int, four_bit=True), out)
    assert torch.equal(run(int_model, x_int, backend="int64").output, out)


def test_lower_rejects_a_float_model():
    with pytest.raises(HwquantError, match=r"hwquant.prepare\(\)"):
        hwquant.lower(torch.nn.Linear(2, 2), torch.zeros(1, 2))


def test_lower_rejects_float_first_layer():
    torch.manual_seed(0)
    x = torch.randn(2, 1, 8, 8)
    qat = hwquant.prepare(
        build("small_cnn", in_channels=1, input_size=8), Recipe(first_layer_bits=None)
    )
    qat.eval()
    qat(x)  # a float first layer still runs in eval
    with pytest.raises(UnsupportedLayerError, match=r"keeps float weights.*first_layer_bits"):
        hwquant.lower(qat, x)


def test_global_pool_size_is_checked_by_the_engine():
    torch.manual_seed(0)
    qat = trained_qat_model(build("resnet20"), RECIPES["w4a4"], torch.randn(2, 3, 32, 32))
    int_model = hwquant.lower(qat, torch.randn(1, 3, 32, 32))
    with pytest.raises(HwquantError, match="example input of the size"):
        int_model.run(int_model.quantize_input(torch.randn(1, 3, 16, 16)))


def test_integer_logits_rank_like_float_logits():
    """The last layer has one output scale, so argmax of the integer output is the prediction."""
    torch.manual_seed(0)
    x = torch.randn(16, 3, 32, 32)
    qat = trained_qat_model(build("resnet20"), RECIPES["w4a4"], x)
    int_model = hwquant.lower(qat, x)
    assert len(set(int_model.output_scale.tolist())) == 1
    out = int_model.run(int_model.quantize_input(x))
    assert torch.equal(out.argmax(1), qat(x).argmax(1))


def test_eval_under_bf16_autocast_stays_bit_exact():
    """Trainers evaluate under autocast on GPUs; the integer eval path must not be rounded."""
    torch.manual_seed(0)
    x = torch.randn(4, 3, 32, 32)
    qat = trained_qat_model(build("resnet20"), RECIPES["w4a4"], x)
    int_model = hwquant.lower(qat, x)
    with torch.autocast("cpu", dtype=torch.bfloat16), capture_codes(qat) as codes:
        qat(x)
    engine = run(int_model, int_model.quantize_input(x), trace=True).values
    assert all(torch.equal(engine[name], value) for name, value in codes.items())
