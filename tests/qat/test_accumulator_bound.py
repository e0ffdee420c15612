"""Accumulator-aware weights: the bound, the projection, prepare/lower and the engine at P bits."""

from __future__ import annotations

import itertools
import tomllib

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import hwquant
from hwquant.app.config import RunConfig
from hwquant.core.errors import AccumulatorOverflowError, ConfigError, FileFormatError
from hwquant.core.intmath import interval_bits, qrange, round_half_up, split_nibbles
from hwquant.engine import run
from hwquant.engine.accumulators import adversarial_run
from hwquant.ir.intmodel import InputSpec, IntModel, LinearNode
from hwquant.models import build
from hwquant.qat.accumulator_bound import (
    AccumulatorBound,
    BoundedLinearQuantizer,
    accumulator_interval,
)
from hwquant.qat.nn.bn_fold import fold_bn
from hwquant.qat.nn.weight_layer import QuantWeightLayer
from hwquant.qat.recipe import Recipe
from tests.helpers import trained_qat_model


@st.composite
def layers(draw):
    """A layer's float codes ``v`` (clamped to the weight range), bias, input bits and P."""
    weight_bits = draw(st.integers(2, 8))
    in_bits = draw(st.integers(2, 8))
    in_signed = draw(st.booleans())
    rows, fan_in = draw(st.integers(1, 4)), draw(st.integers(1, 40))
    lo, hi = qrange(weight_bits, True)
    seed = draw(st.integers(0, 2**16))
    gen = torch.Generator().manual_seed(seed)
    v = (torch.randn(rows, fan_in, generator=gen) * draw(st.floats(0.3, 3 * hi))).clamp(lo, hi)
    if draw(st.booleans()):  # many ties: weights saturated at the range's ends
        v = v.sign() * hi
    bound = AccumulatorBound(16, in_bits, in_signed, weight_bits if draw(st.booleans()) else None)
    bits = draw(st.integers(bound.smallest_bits(), 24))
    bias = None
    b_lo, b_hi = qrange(bits, True)
    kind = draw(st.sampled_from(["none", "inside", "extremes"]))
    if kind == "inside":
        bias = torch.randint(b_lo // 2, b_hi // 2 + 1, (rows,), generator=gen).double()
    elif kind == "extremes":  # at and next to the P-bit ends: one sign's budget is 0 or ~0
        ends = [b_lo, b_lo + 1, b_hi - 1, b_hi, 0]
        bias = torch.tensor([draw(st.sampled_from(ends)) for _ in range(rows)]).double()
    bound = AccumulatorBound(bits, in_bits, in_signed, bound.weight_bits)
    return v, bias, bound


@settings(max_examples=60)
@given(layers())
def test_projected_codes_fit_for_every_input(layer):
    """The theorem on the integers the projection returns: the interval fits P, every random
    input's partial sums lie inside it, the adversarial input reaches it, and with digit planes
    every plane's sums fit P too."""
    v, bias, bound = layer
    codes = bound.project(v, bias)
    lazy = torch.floor(v.double() + 0.5)
    assert torch.equal(codes, codes.round()) and bool((codes.abs() <= lazy.abs()).all())
    assert bool((codes * lazy >= 0).all())  # never a sign flip: units are only taken away
    low, high = bound.interval(codes, bias)
    p_lo, p_hi = qrange(bound.bits, True)
    assert bool((low >= p_lo).all() and (high <= p_hi).all())
    x_lo, x_hi = bound.x_range
    b = torch.zeros(len(codes), dtype=torch.float64) if bias is None else bias
    x = torch.randint(x_lo, x_hi + 1, (64, codes.shape[1])).double()
    prefix = (codes[None] * x[:, None]).cumsum(-1)  # every partial sum, in order
    assert bool((prefix.amax((0, 2)) <= high).all() and (prefix.amin((0, 2)) >= low).all())
    assert bool(((prefix[..., -1] + b) <= high).all() and ((prefix[..., -1] + b) >= low).all())
    started = prefix + b[None, :, None]  # an accumulator that starts from the bias
    assert bool((started.amax((0, 2)) <= high).all() and (started.amin((0, 2)) >= low).all())
    worst = torch.where(codes > 0, float(x_hi), float(x_lo))  # the adversary reaches the bound
    best = torch.where(codes > 0, float(x_lo), float(x_hi))
    assert torch.equal((codes * worst).sum(1) + b.clamp_min(0), high)
    assert torch.equal((codes * best).sum(1) + b.clamp_max(0), low)
    if bound.weight_bits is not None:
        for xd, wd in itertools.product(
            split_nibbles(x.to(torch.int64), bound.in_bits),
            split_nibbles(codes.to(torch.int64), bound.weight_bits),
        ):
            sums = (wd[None] * xd[:, None]).cumsum(-1)
            assert p_lo <= int(sums.min()) and int(sums.max()) <= p_hi


@settings(max_examples=30)
@given(layers())
def test_projection_keeps_llsq_codes_where_they_fit_and_fills_the_budget(layer):
    v, bias, bound = layer
    codes = bound.project(v, bias)
    lazy = torch.floor(v.double() + 0.5)
    if bool(bound.holds(lazy, bias).all()):
        assert torch.equal(codes, lazy)
    if bound.in_signed or bound.weight_bits is not None:
        return
    # unsigned inputs: each sign keeps min(budget, LLSQ's units) units (ties filled)
    budget_pos, budget_neg = bound.budgets(bias, len(v))
    for sign, budget in ((1, budget_pos), (-1, budget_neg)):
        kept = (sign * codes).clamp_min(0).sum(1)
        wanted = (sign * lazy).clamp_min(0).sum(1)
        assert torch.equal(kept, torch.minimum(wanted, budget.double()))


def test_interval_of_a_known_layer():
    codes = torch.tensor([[3.0, -2.0, 0.0]])
    # unsigned 4-bit inputs: high = 15·3, low = −15·2; the bias widens its own side only
    assert accumulator_interval(codes, torch.tensor([-5.0]), 0, 15) == (
        torch.tensor([-35.0]),
        torch.tensor([45.0]),
    )
    # signed 4-bit inputs: x in [-8, 7]
    low, high = accumulator_interval(codes, None, -8, 7)
    assert (int(low), int(high)) == (-38, 37)
    assert interval_bits(-38, 37) == 7 and interval_bits(-64, 63) == 7 and interval_bits(0, 64) == 8


@pytest.mark.parametrize(
    ("in_bits", "signed", "weight_bits", "smallest"),
    [(4, False, 4, 5), (8, False, 8, 9), (8, True, 8, 8), (8, True, None, 8), (2, False, 2, 3)],
)
def test_smallest_accumulator(in_bits, signed, weight_bits, smallest):
    assert AccumulatorBound(16, in_bits, signed, weight_bits).smallest_bits() == smallest


# -- recipe and prepare ------------------------------------------------------------------------
def test_recipe_validates_the_accumulator_fields():
    with pytest.raises(ConfigError, match="accumulator_bits=1"):
        Recipe(accumulator_bits=1)
    with pytest.raises(ConfigError, match="classifier"):
        Recipe(layer_accumulator_bits={"classifier": 99})
    with pytest.raises(ConfigError, match="scheme='msq'"):
        Recipe(scheme="msq", accumulator_bits=16)
    with pytest.raises(ConfigError, match="needs an accumulator width"):
        Recipe(accumulator_digit_planes=True)


def test_per_layer_accumulator_bits_round_trip_through_toml(tmp_path):
    table = {
        "model": {"name": "small_cnn"},
        "data": {"name": "digits"},
        "recipe": {"accumulator_bits": 12, "layer_accumulator_bits": {"features.0.0": 20}},
    }
    config = RunConfig.from_dict(table)
    assert config.recipe.layer_accumulator_bits == {"features.0.0": 20}
    assert RunConfig.from_dict(tomllib.loads(config.to_toml())) == config
    with pytest.raises(ConfigError, match=r"layer_accumulator_bits\.features\.0\.0"):
        RunConfig.from_dict(
            table | {"recipe": {"layer_accumulator_bits": {"features.0.0": "wide"}}}
        )


def _small(seed: int = 0) -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(seed)
    return build("small_cnn", in_channels=1, input_size=8), torch.randn(16, 1, 8, 8)


def test_prepare_names_the_layer_and_the_smallest_width():
    model, _ = _small()
    with pytest.raises(ConfigError, match=r"layer 'features.0.0'.*smallest accumulator_bits.*8"):
        hwquant.prepare(model, Recipe(weight_bits=8, act_bits=8, accumulator_bits=7))
    # a middle layer (4-bit unsigned inputs) named by its own override: 15·1 needs 5 bits
    middle = Recipe(accumulator_bits=16, layer_accumulator_bits={"features.1.0": 4})
    with pytest.raises(ConfigError, match=r"layer 'features.1.0'.*4-bit unsigned.*is 5\."):
        hwquant.prepare(model, middle)
    with pytest.raises(ConfigError, match="'conv9'"):
        hwquant.prepare(model, Recipe(layer_accumulator_bits={"conv9": 16}))
    with pytest.raises(ConfigError, match="keeps float weights"):
        hwquant.prepare(model, Recipe(first_layer_bits=None, accumulator_bits=16))


@pytest.mark.parametrize(
    "recipe",
    [
        Recipe(
            weight_bits=4,
            act_bits=4,
            first_layer_bits=4,
            last_layer_bits=4,
            accumulator_bits=10,
            bn_freeze_step=1,
        ),
        Recipe(
            weight_bits=8,
            act_bits=8,
            accumulator_bits=13,
            accumulator_digit_planes=True,
            bn_freeze_step=1,
        ),
        Recipe(
            accumulator_bits=11,
            layer_accumulator_bits={"classifier": 14},
            bn_freeze_step=1,
            scale_gradient="lsq",
        ),
    ],
    ids=["w4a4-p10", "w8a8-p13-planes", "default-p11-override"],
)
def test_trained_model_never_overflows_its_accumulators(recipe):
    """Every layer, first and last included, trained for P: lowered at P bits under 'raise',
    bit-exact against the QAT model, no overflow on data, on 4-bit multipliers, or on the
    adversarial inputs, which reach the proved extremes exactly."""
    model, x = _small()
    qat = trained_qat_model(model, recipe, x, steps=3)
    int_model = hwquant.lower(qat, x)
    for node in int_model.weight_nodes():
        want = recipe.layer_accumulator_bits.get(node.name, recipe.accumulator_bits)
        assert (node.acc_bits, node.overflow) == (want, "raise")
        assert interval_bits(*node.acc_interval) <= want
        if recipe.accumulator_digit_planes:
            assert interval_bits(*node.plane_interval) <= want
    report = hwquant.verify(qat, int_model, x * 4)  # saturating inputs too
    assert report.exact, str(report)
    x_int = int_model.quantize_input(x * 4)
    out = int_model.run(x_int)
    assert len(torch.unique(out)) > 1
    four_bit_weights = recipe.weight_bits == recipe.first_layer_bits == recipe.last_layer_bits == 4
    if recipe.accumulator_digit_planes or four_bit_weights:  # planes proved (§5.3)
        assert torch.equal(int_model.run(x_int, four_bit=True), out)
    for node in int_model.weight_nodes():
        result = adversarial_run(node).output
        acc = result.reshape(result.shape[0], result.shape[1])
        channels = torch.arange(node.weight.shape[0])
        w = torch.from_numpy(node.weight).reshape(len(channels), -1)
        low, high = accumulator_interval(w, None, *qrange(node.in_bits, node.in_signed))
        b = 0 if node.bias is None else torch.from_numpy(node.bias)
        assert torch.equal(acc[channels, channels], (high + b).to(torch.int64))
        assert torch.equal(acc[channels + len(channels), channels], (low + b).to(torch.int64))


def test_unbounded_layers_keep_llsq_and_record_their_interval():
    """At 32 bits nothing binds: every bounded layer's codes are LLSQ's at its own scale."""
    model, x = _small()
    plain = trained_qat_model(model, Recipe(bn_freeze_step=1), x, steps=2)
    bounded = trained_qat_model(model, Recipe(bn_freeze_step=1, accumulator_bits=32), x, steps=2)
    assert isinstance(bounded.classifier.weight_quant, BoundedLinearQuantizer)
    a, b = hwquant.lower(plain, x), hwquant.lower(bounded, x)
    for na, nb in zip(a.weight_nodes(), b.weight_nodes(), strict=True):
        layer = bounded.get_submodule(nb.name)
        w, _ = fold_bn(layer.weight, layer.bias, layer.bn)
        alpha = layer.weight_quant.scale_value().detach().view(-1, *[1] * (w.dim() - 1))
        quant = layer.weight_quant
        llsq = round_half_up(w.detach() / alpha).clamp(quant.qmin, quant.qmax)
        assert np.array_equal(nb.weight, llsq.to(torch.int64).numpy())
        assert (na.acc_bits, na.overflow) == (32, "wrap")
        assert (nb.acc_bits, nb.overflow) == (32, "raise")
        assert nb.acc_interval == nb.proved_interval()
        assert interval_bits(*na.acc_interval) <= na.worst_case_bits()


def _binding_bn_layer() -> tuple[torch.nn.Module, torch.Tensor, QuantWeightLayer, torch.Tensor]:
    """small_cnn at W4A4, P = 10, BN never frozen, after a training step, with its input; a
    layer with BN folded in whose projection changes codes, and that layer's input."""
    model, x = _small()
    recipe = Recipe(weight_bits=4, act_bits=4, accumulator_bits=10, bn_freeze_step=None)
    qat = trained_qat_model(model, recipe, x, steps=1).train()
    inputs = {}
    layer = qat.get_submodule("features.1.0")
    handle = layer.register_forward_pre_hook(lambda m, args: inputs.update(x=args[0]))
    with torch.no_grad():
        qat(x)
    handle.remove()
    quant = layer.weight_quant
    w, _ = fold_bn(layer.weight, layer.bias, layer.bn)
    lazy = round_half_up(w / quant._broadcast(quant.scale_value(), w)).clamp(-8, 7)
    assert layer.bn is not None and quant.relative
    assert not torch.equal(quant.codes(w).double(), lazy.double())  # the projection binds
    return qat, x, layer, inputs["x"]


def test_bn_folded_codes_and_output_do_not_depend_on_the_fold():
    """The BN fold's loop (docs/llsq.md §5.2) is gone by construction: a bounded layer with BN
    quantizes ``s·W`` at ``α = |s|·a``, so ``s`` eight times larger (γ and β times 8: exact in
    floating point, the folded bias times 8 too) gives the same integer codes, and before the
    freeze the same ``z = op(x, Q(s·W))/s``, hence exactly 8 times the batch-normalised output.
    With an absolute scale the codes of ``8·s·W`` would be thresholded anew."""
    _, _, layer, x = _binding_bn_layer()
    quant, bn = layer.weight_quant, layer.bn
    bn.momentum = 0.0  # the forwards below keep the running statistics
    with torch.no_grad():
        codes = quant.codes(fold_bn(layer.weight, layer.bias, bn)[0])
        out = layer._forward_batch_stats(x)
        bn.weight.mul_(8)
        bn.bias.mul_(8)
        assert torch.equal(quant.codes(fold_bn(layer.weight, layer.bias, bn)[0]), codes)
        assert torch.equal(layer._forward_batch_stats(x), out * 8)


def test_relative_scale_takes_llsq_step_on_a():
    """LLSQ's scale rule acts on the learned ``a`` of ``α = |s|·a``: its gradient is
    ``−a²``, ``+a²`` or 0 per channel; a scale 4 times too coarse shrinks (``+a²``)."""
    qat, x, layer, _ = _binding_bn_layer()
    qat.zero_grad()
    with torch.no_grad():
        layer.weight_quant.scale.mul_(4)
    qat(x).square().mean().backward()
    a = layer.weight_quant.scale.detach().abs()
    grad = layer.weight_quant.scale.grad
    assert int((grad > 0).sum()) > len(grad) // 2
    torch.testing.assert_close(grad.abs(), torch.where(grad != 0, a.square(), 0.0))


def _demo_mlp() -> tuple[torch.nn.Module, torch.Tensor]:
    """The interop MLP's shape on 8x8 images (Linear-BN-ReLU twice, then a classifier)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Flatten(),
        torch.nn.Linear(64, 32),
        torch.nn.BatchNorm1d(32),
        torch.nn.ReLU(),
        torch.nn.Linear(32, 16),
        torch.nn.BatchNorm1d(16),
        torch.nn.ReLU(),
        torch.nn.Linear(16, 10),
    )
    with torch.no_grad():
        model[-1].bias.uniform_(-3.0, 3.0)  # biases of thousands of accumulator units
    return model, torch.randn(32, 1, 8, 8)


def test_demo_recipe_at_16_bits_lowers_exports_and_never_overflows():
    """The demo's recipe (W4A4, 8-bit first and last layers, ``accumulator_bits=16``) on an
    MLP: after training, every layer's proved interval (bias included) fits 16 bits, where the
    L1 rule ``Σ|w|·max|x| + |b|`` asks for 17 in the classifier, so the QONNX export (which
    refuses an accumulator that can overflow) takes it and computes the engine's integers, and
    the engine at 16 bits under 'raise' runs the adversarial inputs to the proved ends."""
    pytest.importorskip("qonnx")
    from hwquant.export import export_qonnx, run_qonnx

    model, x = _demo_mlp()
    recipe = Recipe(weight_bits=4, act_bits=4, accumulator_bits=16, bn_freeze_step=1)
    int_model = hwquant.lower(trained_qat_model(model, recipe, x, steps=3), x)
    nodes = int_model.weight_nodes()
    for node in nodes:
        assert (node.acc_bits, node.overflow) == (16, "raise")
        assert node.proved_bits() <= 16
    classifier = nodes[-1]
    assert classifier.worst_case_bits() == 17  # the bound binds, the bias on one side only
    assert int(np.abs(classifier.bias).max()) > 1000
    p_lo, p_hi = qrange(16, True)
    for node in nodes:
        result = adversarial_run(node).output  # raises on an overflow
        acc = result.reshape(result.shape[0], result.shape[1])
        channels = torch.arange(node.weight.shape[0])
        w = torch.from_numpy(node.weight).reshape(len(channels), -1)
        low, high = accumulator_interval(w, None, *qrange(node.in_bits, node.in_signed))
        b = torch.from_numpy(node.bias)
        assert torch.equal(acc[channels, channels], (high + b).to(torch.int64))
        assert torch.equal(acc[channels + len(channels), channels], (low + b).to(torch.int64))
        # the proved interval is their hull with the bias-free partial sums, inside 16 bits
        proved = node.proved_interval()
        assert proved == (
            int(torch.minimum(low, low + b).min()),
            int(torch.maximum(high, high + b).max()),
        )
        assert p_lo <= proved[0] and proved[1] <= p_hi
    x_wide = x * 4  # saturating input codes too
    want = int_model.run(int_model.quantize_input(x_wide)).numpy()
    got = run_qonnx(export_qonnx(int_model, tuple(x.shape)), x_wide.numpy())
    assert np.array_equal(got, want)


def test_engine_bounds_each_digit_plane():
    """8-bit weights −1 on inputs 15: the sum is −30 but the low-digit plane sums 15·15·2."""
    node = LinearNode(
        "fc",
        ["x"],
        np.full((1, 2), -1, np.int64),
        None,
        np.ones(1),
        weight_bits=8,
        in_bits=8,
        in_signed=True,
        acc_bits=9,
        overflow="raise",
    )
    model = IntModel(InputSpec("x", 1.0, 8, True), [node], "fc", np.ones(1))
    x = torch.full((1, 2), 15, dtype=torch.int64)
    assert int(run(model, x).output) == -30
    with pytest.raises(AccumulatorOverflowError, match="digit plane '0,0'"):
        run(model, x, four_bit=True)
    node.overflow = "wrap"  # the plane wraps, then the combined sum: the result stays exact
    wrapped = run(model, x, four_bit=True)
    assert int(wrapped.output) == -30 and wrapped.stats["fc"].overflows == 2


def test_a_bias_beyond_the_accumulator_is_clipped_to_it_in_training_and_deployment():
    """A bounded layer's bias lives in its P-bit accumulator (bias_bits = min(bias_bits, P)):
    the layer's function clips it there, in the training forward (zero gradient beyond) and in
    the integer form alike, so a bias that has grown past P bits still lowers, exactly, with
    every sum inside P bits (before, the trainer's first evaluation refused such a bias)."""
    model, x = _demo_mlp()
    recipe = Recipe(weight_bits=4, act_bits=4, accumulator_bits=16, bn_freeze_step=1)
    qat = trained_qat_model(model, recipe, x, steps=1)
    layer = qat.get_submodule(hwquant.lower(qat, x).weight_nodes()[-1].name)
    assert layer.bias_bits == 16 and layer.bias_clipped
    with torch.no_grad():
        layer.bias[:3] = torch.tensor([1e6, -1e6, 0.0])
    lo, hi = qrange(16, True)
    biased = layer.bias.detach().clone().requires_grad_()
    clipped = layer._quant_bias(biased)
    scale = (layer.weight_quant.scale_value() * layer.input_quants[0].scale_value()).detach()
    assert torch.equal(clipped[:2], torch.tensor([hi, lo], dtype=clipped.dtype) * scale)
    clipped.sum().backward()
    assert biased.grad[:2].tolist() == [0.0, 0.0] and float(biased.grad[2]) == 1.0
    int_model = hwquant.lower(qat, x)
    node = int_model.weight_nodes()[-1]
    assert (int(node.bias[0]), int(node.bias[1])) == (hi, lo)
    assert node.proved_bits() <= 16
    report = hwquant.verify(qat, int_model, x * 4)
    assert report.exact, str(report)
    adversarial_run(node)  # raises on an overflow


def test_a_bias_narrower_than_the_accumulator_is_refused_not_clipped():
    """``Recipe.bias_bits`` below P is the user's width: a bias beyond it is refused, naming
    bias_bits (widening the accumulator would not widen it), as in an unbounded layer, never
    clipped."""
    model, x = _demo_mlp()
    recipe = Recipe(weight_bits=4, act_bits=4, accumulator_bits=16, bias_bits=15, bn_freeze_step=1)
    qat = trained_qat_model(model, recipe, x, steps=1)
    layer = qat.get_submodule(hwquant.lower(qat, x).weight_nodes()[-1].name)
    assert layer.bias_bits == 15 and not layer.bias_clipped
    biased = layer.bias.detach().clone().requires_grad_()
    layer._quant_bias(biased).sum().backward()  # the plain straight-through rounding
    assert torch.equal(biased.grad, torch.ones_like(biased))
    with torch.no_grad():
        layer.bias.fill_(1e6)
    with pytest.raises(ConfigError, match=r"15-bit bias range.*set bias_bits=16 \(or more\)"):
        hwquant.lower(qat, x)


def test_a_checkpoint_of_the_other_scale_kind_is_refused():
    """A relative scale stores ``a``, an absolute one ``α``: a state dict of the other kind
    (or one written before relative scales, with no ``relative_scale``) is refused naming the
    layer, so ``a`` is never read as ``α``; the same kind loads."""
    qat, _, layer, _ = _binding_bn_layer()
    state = qat.state_dict()
    key = "features.1.0.weight_quant.relative_scale"
    assert bool(state[key]) and layer.weight_quant.relative
    qat.load_state_dict(state)  # the same kind
    older = {k: v for k, v in state.items() if k != key}
    with pytest.raises(FileFormatError, match=r"'features\.1\.0'.*no relative_scale marker"):
        qat.load_state_dict(older)
    absolute = dict(state) | {key: torch.tensor(False)}
    with pytest.raises(FileFormatError, match=r"absolute \(α\); this model's is relative"):
        qat.load_state_dict(absolute)
    # an absolute layer (no BN folded in: the classifier) loads a state without the marker
    assert not qat.get_submodule("classifier").weight_quant.relative
    del older["classifier.weight_quant.relative_scale"]
    older[key] = state[key]
    qat.load_state_dict(older)
    # a partial load (strict=False) checks only the layers whose scale it holds
    classifier = {k: v for k, v in older.items() if k.startswith("classifier.")}
    qat.load_state_dict(classifier, strict=False)
