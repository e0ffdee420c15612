"""The float32 requantization plans: exact on every accumulator, by evaluation and by bounds."""

from __future__ import annotations

import numpy as np
import pytest

import hwquant.export.graph as graph_module
from hwquant.core.errors import UnsupportedLayerError
from hwquant.core.intmath import qrange, requant_params
from hwquant.export import export_qdq, export_qonnx, run_onnxruntime, run_qonnx
from hwquant.export.requant import (
    OneStep,
    clip_range,
    exact_codes,
    exact_step,
    limbs,
    one_step,
    thresholds,
)
from tests.export.conftest import residual_net

RANGES = [(4, False), (4, True), (8, False), (2, True)]


def ratios(seed: int, channels: int = 12) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return requant_params(np.exp(rng.uniform(np.log(1e-4), np.log(0.7), channels)), 16)


def evaluate(step: OneStep, xs: list[np.ndarray], lo: int, hi: int) -> list[np.ndarray]:
    """The one-step form in float32, graph order, with three rounding rules."""
    v = sum(x.astype(np.float32) * c.reshape(-1, 1) for x, c in zip(xs, step.scales, strict=True))
    if step.offset.any():
        v = v + step.offset.reshape(-1, 1)
    wide = v.astype(np.float64)
    rules = (np.floor(wide + 0.5), np.ceil(wide - 0.5), np.round(v))
    return [np.clip(r, lo, hi) for r in rules]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("bits,signed", RANGES)
def test_one_step_is_exact_on_every_accumulator(seed, bits, signed):
    mult, shift = ratios(seed)
    lo, hi = qrange(bits, signed)
    bound = 2**15
    step = one_step([bound], [mult], shift, lo, hi)
    if step is None:  # some channel has no float32 constant: the graph uses limbs
        assert not isinstance(limbs([bound], [mult], shift), str)
        pytest.skip("no one-step constants for this draw")
    acc = np.arange(-bound, bound + 1).reshape(1, -1)
    want = exact_codes([acc], [mult.reshape(-1, 1)], shift.reshape(-1, 1), lo, hi)
    for got in evaluate(step, [acc], lo, hi):
        assert np.array_equal(got, want)


def test_two_term_one_step_is_exact_on_every_pair():
    mults, shift = np.array([46567]), np.array([22262])
    lo, hi = qrange(4, False)
    step = one_step([15, 15], [mults, shift], np.array([15]), lo, hi)
    assert step is not None
    a, b = (g.reshape(1, -1) for g in np.meshgrid(np.arange(-15, 16), np.arange(-15, 16)))
    want = exact_codes([a, b], [np.array([[46567]]), np.array([[22262]])], np.array(15), lo, hi)
    for got in [*evaluate(step, [a, b], lo, hi), *fused(step, a, b, lo, hi)]:
        assert np.array_equal(got, want)


def fused(step: OneStep, a: np.ndarray, b: np.ndarray, lo: int, hi: int) -> list[np.ndarray]:
    """The two-term form with a fused multiply-add of either product, rounded half up and half
    down: float64 holds each fused sum exactly (codes of at most 8 bits times float32 scales of
    similar size span fewer than 53 bits), so one cast rounds it once to float32, as the fused
    add does."""
    c0, c1 = (c.astype(np.float64).reshape(-1, 1) for c in step.scales)
    fl = [(a * c0).astype(np.float32), (b * c1).astype(np.float32)]
    sums = [(a * c0 + fl[1]).astype(np.float32), (fl[0] + b * c1).astype(np.float32)]
    if step.offset.any():
        sums = [s + step.offset.reshape(-1, 1) for s in sums]
    wide = [s.astype(np.float64) for s in sums]
    return [np.clip(r, lo, hi) for v in wide for r in (np.floor(v + 0.5), np.ceil(v - 0.5))]


def test_two_term_check_covers_a_fused_multiply_add():
    """Scales one float32 step above ``M·2^-s`` (found by search) give the exact codes in
    graph order, but not when a product is fused into the sum: the check rejects them, and the
    constants it picks hold in every order."""
    mults, shift = [np.array([5740]), np.array([4736])], np.array([19])
    lo, hi = qrange(8, False)
    a, b = (g.reshape(1, -1) for g in np.meshgrid(np.arange(-255, 256), np.arange(-255, 256)))
    want = exact_codes([a, b], [m.reshape(-1, 1) for m in mults], shift, lo, hi)
    up = [np.nextafter(np.float32(m * 2.0**-19), np.float32(np.inf)) for m in mults]
    nudged = OneStep(tuple(up), np.zeros(1, np.float32))
    assert all(np.array_equal(got, want) for got in evaluate(nudged, [a, b], lo, hi))
    assert not all(np.array_equal(got, want) for got in fused(nudged, a, b, lo, hi))
    step = one_step([255, 255], mults, shift, lo, hi)
    assert step is not None
    for got in [*evaluate(step, [a, b], lo, hi), *fused(step, a, b, lo, hi)]:
        assert np.array_equal(got, want)


def test_a_wrong_scale_fails_the_check():
    """The check can fail: a scale 2^-12 off gives wrong codes, and one_step never picks it."""
    mult, shift = ratios(0, 4)
    lo, hi = qrange(8, False)
    step = one_step([2**15], [mult], shift, lo, hi)
    off = OneStep((step.scales[0] * np.float32(1 + 2**-12),), step.offset)
    acc = np.arange(-(2**15), 2**15 + 1).reshape(1, -1)
    want = exact_codes([acc], [mult.reshape(-1, 1)], shift.reshape(-1, 1), lo, hi)
    assert not np.array_equal(evaluate(off, [acc], lo, hi)[0], want)


@pytest.mark.parametrize("bits,signed", RANGES)
def test_thresholds_and_clip_range(bits, signed):
    mult, shift = ratios(3, 5)
    lo, hi = qrange(bits, signed)
    t = thresholds(mult, shift, lo, hi)
    for c in range(len(mult)):
        at = exact_codes([t[c]], [mult[c]], shift[c], lo, hi)
        below = exact_codes([t[c] - 1], [mult[c]], shift[c], lo, hi)
        assert np.array_equal(at, np.arange(lo + 1, hi + 1))
        assert np.array_equal(below, np.arange(lo, hi))
    low, high = clip_range(mult, shift, lo, hi)
    acc = np.arange(low - 50, high + 50).reshape(1, -1)
    m, s = mult.reshape(-1, 1), shift.reshape(-1, 1)
    clipped = np.clip(acc, low, high)
    assert np.array_equal(
        exact_codes([clipped], [m], s, lo, hi), exact_codes([acc], [m], s, lo, hi)
    )


@pytest.mark.parametrize("bits,signed", RANGES)
def test_exact_step_is_exact_beyond_float32(bits, signed):
    """In exact arithmetic (a fixed-point consumer), ``acc·M·2^-s + 2^-(k+1)`` rounds to the
    engine's code under either tie rule, at every threshold of accumulators up to 2^30 (where
    float32 would need limbs)."""
    from fractions import Fraction

    mult, shift = ratios(5, 6)
    lo, hi = qrange(bits, signed)
    step = exact_step([mult], shift)
    assert np.array_equal(step.scales[0].astype(np.float64), mult * np.exp2(-shift))
    t = thresholds(mult, shift, lo, hi)
    bound = 2**30
    for c in range(len(mult)):
        acc = np.concatenate([t[c] - 1, t[c], [-bound, bound]])
        want = exact_codes([acc], [mult[c]], shift[c], lo, hi)
        scale, offset = Fraction(float(step.scales[0][c])), Fraction(float(step.offset[c]))
        values = [a * scale + offset for a in acc.tolist()]
        assert all(v.denominator != 2 for v in values)  # never a tie
        assert [min(max(round(v), lo), hi) for v in values] == want.tolist()


def test_exact_step_needs_float32_scales():
    assert "more than 24 bits" in exact_step([np.array([2**24])], np.array([30]))


def test_limbs_need_room_below_the_shift():
    assert limbs([2**10], [np.array([65535])], np.array([20])).positions == (0, 12)
    assert "too wide" in limbs([2**23], [np.array([3])], np.array([20]))
    assert "beyond its shift" in limbs([2**10], [np.array([65535])], np.array([10]))


@pytest.mark.parametrize("form,execute", [(export_qdq, run_onnxruntime), (export_qonnx, run_qonnx)])
def test_limb_graphs_are_exact(monkeypatch, form, execute):
    """Every requantization forced onto limbs (no one-step constants) stays exact."""
    pytest.importorskip("qonnx")
    pytest.importorskip("onnxruntime")
    from hwquant.engine import run

    model, x = residual_net()
    monkeypatch.setattr(graph_module, "one_step", lambda *args: None)
    proto = form(model, tuple(x.shape))
    assert any("/limb1" in n.name for n in proto.graph.node)
    want = run(model, model.quantize_input(x)).output.numpy()
    assert np.array_equal(execute(proto, x.numpy()), want)


def test_no_exact_form_is_refused(monkeypatch):
    model, x = residual_net()
    monkeypatch.setattr(graph_module, "one_step", lambda *args: None)
    node = model.weight_nodes()[0]
    node.shift = np.zeros_like(node.shift)  # limbs need shifts above their positions
    node.mult = node.mult << 8
    with pytest.raises(UnsupportedLayerError, match=rf"'{node.name}'.*beyond its shift.*Fix"):
        export_qdq(model, tuple(x.shape))
