"""MSQ row-wise quantizer: assignment, levels per row, gradients, freeze, state and errors."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

import hwquant
from hwquant.core.errors import ConfigError
from hwquant.models import build
from hwquant.qat.quantizer import WeightQuantizer
from hwquant.qat.recipe import MSQOptions, Recipe
from hwquant.schemes.msq.quantizer import (
    MixedSchemeQuantizer,
    assign_sp2_rows,
    msq_weight_quantizer,
    row_scores,
    sp2_row_count,
)

share_st = st.floats(0, 1)
bits_st = st.integers(2, 9)


def _weights(rows: int, cols: int, seed: int) -> torch.Tensor:
    """Rows of varied shapes: Gaussian, uniform and heavy-tailed, at varied scales."""
    g = torch.Generator().manual_seed(seed)
    kinds = [
        torch.randn(cols, generator=g),
        torch.rand(cols, generator=g) * 2 - 1,
        torch.randn(cols, generator=g) ** 3,
    ]
    return torch.stack([kinds[r % 3] * (0.1 + r) for r in range(rows)])


def _quantizer(bits: int, rows: int, share: float, **kw) -> MixedSchemeQuantizer:
    return MixedSchemeQuantizer(bits, rows, sp2_share=share, **kw)


@given(rows=st.integers(1, 64), share=share_st, seed=st.integers(0, 99))
def test_share_is_exact_and_takes_the_lowest_scores(rows, share, seed):
    scores = torch.rand(rows, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    mask = assign_sp2_rows(scores, share)
    n = math.floor(share * rows + 0.5)  # round half up
    assert int(mask.sum()) == n == sp2_row_count(rows, share)
    if 0 < n < rows:
        assert scores[mask].max() <= scores[~mask].min()


def test_share_rounds_half_up():
    assert [sp2_row_count(3, 0.5), sp2_row_count(4, 0.125), sp2_row_count(10, 0.25)] == [2, 1, 3]


def test_variance_test_sends_peaked_rows_to_sp2():
    g = torch.Generator().manual_seed(0)
    gaussian = torch.randn(4, 512, generator=g)
    uniform = torch.rand(4, 512, generator=g) * 2 - 1
    w = torch.cat([uniform, gaussian])  # rows 4..7 are Gaussian-like
    for test in ("variance", "kurtosis"):
        scores = row_scores(w, test)
        assert assign_sp2_rows(scores, 0.5).tolist() == [False] * 4 + [True] * 4
    # variance of the max-normalised row, as defined
    row = w[0] / w[0].abs().max()
    assert torch.isclose(row_scores(w, "variance")[0], row.double().var(unbiased=False))


@given(
    bits=bits_st,
    rows=st.integers(1, 7),
    share=share_st,
    seed=st.integers(0, 99),
    per_row=st.booleans(),
    constraint=st.sampled_from(["free", "pow2", "fixed"]),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_error_assignment_minimises_the_layers_weight_error(
    bits, rows, share, seed, per_row, constraint, dtype
):
    """Of every assignment with the share's row count, the ``error`` test's has the least
    squared error of the fake-quantized weights (the exchange argument of the module
    docstring), per-row or per-tensor α, under a scale constraint too, on float32 weights
    (as trained) and float64."""
    assume(0 < sp2_row_count(rows, share) < rows)  # else one split only: nothing to choose
    w = _weights(rows, 9, seed).to(dtype)
    q = _quantizer(
        bits, rows, share, assignment="error", channels=rows if per_row else 1,
        constraint=constraint,
    ).eval()  # fmt: skip
    with torch.no_grad():
        q(w)  # initialises α and the assignment
    chosen = q.sp2_rows.clone()

    def error(mask: torch.Tensor) -> float:
        q.sp2_rows.copy_(mask)
        with torch.no_grad():
            return float((q(w) - w).square().sum())

    k = sp2_row_count(rows, share)
    assert int(chosen.sum()) == k
    masks = []
    for sp2 in itertools.combinations(range(rows), k):
        mask = torch.zeros(rows, dtype=torch.bool)
        mask[list(sp2)] = True
        masks.append(mask)
    least = min(error(m) for m in masks)
    assert error(chosen) <= least * (1 + 1e-12)  # the same sums up to their rounding


def test_error_test_needs_the_quantizer():
    with pytest.raises(ConfigError, match=r"distribution test 'error'.*variance, kurtosis"):
        row_scores(torch.ones(2, 3), "error")


@given(bits=bits_st, share=share_st, seed=st.integers(0, 99), per_row=st.booleans())
def test_fake_quant_is_scale_times_codes_on_each_rows_levels(bits, share, seed, per_row):
    w = _weights(7, 9, seed)
    q = _quantizer(bits, 7, share, channels=7 if per_row else 1)
    assert isinstance(q, WeightQuantizer)
    out = q.train()(w.clone().requires_grad_())
    codes = q.codes(w)
    unit = q.scale_value().detach()
    assert torch.equal(out.detach(), codes * unit.view(-1, 1))
    assert torch.equal(q.eval()(w), out.detach())
    for r in range(7):
        scheme = q.sp2 if q.sp2_rows[r] else q.fixed
        assert bool(torch.isin(codes[r], scheme.integers()).all())
        # nearest level of the row's set (ties up), and every row reaches ±α_r at most
        v = (w[r] / unit[r]).double()
        ints = scheme.integers().double()
        best = (v.view(-1, 1) - ints.view(1, -1)).abs().amin(dim=1)
        assert torch.allclose((v - codes[r]).abs(), best, rtol=0, atol=1e-4)
    assert q.int_bits >= max(int(codes.abs().max()).bit_length() + 1, 1)


@given(bits=bits_st, share=share_st, seed=st.integers(0, 99))
def test_encode_decodes_to_the_codes(bits, share, seed):
    w = _weights(6, 10, seed).view(6, 10, 1, 1)
    q = _quantizer(bits, 6, share)
    q(w)
    enc = q.encode(w)
    assert np.array_equal(enc.decode(), q.codes(w).numpy())
    assert np.array_equal(enc.sp2_rows, q.sp2_rows.numpy())
    assert (enc.bits, enc.m1, enc.m2) == (bits, q.sp2.m1, q.sp2.m2)
    assert not enc.fixed[enc.sp2_rows].any() and not enc.sign[~enc.sp2_rows].any()
    assert enc.multiply_free_rows() == sp2_row_count(6, share)


def test_int_bits_per_share():
    assert [_quantizer(4, 8, s).int_bits for s in (0.0, 0.5, 1.0)] == [4, 5, 5]
    assert [_quantizer(3, 8, s).int_bits for s in (0.0, 1.0)] == [3, 3]


def test_scale_gradient_is_lsq_per_row_and_weights_get_the_masked_ste():
    torch.manual_seed(0)
    w = torch.randn(4, 16)
    q = _quantizer(4, 4, 0.5).train()
    q(w)  # initialise: α_r = max|w_r|
    with torch.no_grad():
        q.scale.mul_(0.8)  # some weights now lie outside ±α_r
    wg = w.clone().requires_grad_()
    grad_out = torch.randn(4, 16)
    q(wg).backward(grad_out)
    unit = q.scale_value().detach().view(-1, 1)
    d = q.divisors().view(-1, 1)
    v = w / unit
    codes = q.codes(w).float()
    inside = v.abs() <= d
    assert torch.equal(wg.grad, grad_out * inside)
    slope = torch.where(inside, codes - v, codes)
    grad_unit = (grad_out * slope).sum(dim=1) / torch.sqrt(16 * d.view(-1))
    expected = grad_unit / d.view(-1)  # u_r = α_r / D_r
    assert torch.allclose(q.scale.grad, expected, rtol=1e-5, atol=1e-7)


def test_assignment_refreshes_then_freezes():
    w = _weights(6, 32, 0)
    q = _quantizer(4, 6, 0.5, refresh_steps=2, freeze_step=4).train()
    q(w)
    first = q.sp2_rows.clone()
    flipped = w.flip(0)  # the same rows in the opposite order
    q(flipped)  # step 1: no refresh
    assert torch.equal(q.sp2_rows, first)
    q(flipped)  # step 2: refresh
    assert torch.equal(q.sp2_rows, first.flip(0))
    q(w)
    q(w)  # step 4: frozen
    assert q.assignment_frozen and torch.equal(q.sp2_rows, first.flip(0))
    assert int(q.step) == 5


def test_freeze_assignment_now():
    w = _weights(6, 32, 1)
    q = _quantizer(4, 6, 0.5, refresh_steps=1, freeze_step=100).train()
    q(w)
    q.freeze_assignment()
    kept = q.sp2_rows.clone()
    q(w.flip(0))
    assert q.assignment_frozen and torch.equal(q.sp2_rows, kept)


def test_state_dict_round_trip_keeps_assignment_scales_and_step():
    w = _weights(6, 12, 2)
    q = _quantizer(4, 6, 0.5, freeze_step=1).train()
    q(w)
    q(w)
    other = _quantizer(4, 6, 0.5, freeze_step=1).train()
    other.load_state_dict(q.state_dict())
    assert set(q.state_dict()) == {"scale", "sp2_rows", "initialized", "step", "freeze_at"}
    assert other.assignment_frozen and int(other.step) == 2
    other(w.flip(0))  # frozen, and initialised already: nothing is re-set
    assert torch.equal(other.sp2_rows, q.sp2_rows)
    assert torch.equal(other.scale, q.scale)
    assert torch.equal(other.codes(w), q.codes(w))


def test_levels_pad_sp2_rows_with_nan():
    q = _quantizer(4, 4, 0.5)
    q(_weights(4, 8, 3))
    levels = q.levels()
    assert levels.shape == (4, 15)
    sp2 = q.sp2_rows
    assert bool(levels[~sp2].isfinite().all())
    assert bool(levels[sp2, 13:].isnan().all()) and bool(levels[sp2, :13].isfinite().all())
    unit = q.scale_value().double()
    assert torch.equal(levels[sp2, 12], unit[sp2] * 8)  # the top SP2 level is α_r
    spec = q.export()
    assert np.array_equal(spec.sp2_rows, sp2.numpy()) and spec.scale.shape == (4,)
    assert np.allclose(spec.alpha, q.scale.detach().double().numpy())


@pytest.mark.parametrize(
    ("options", "match"),
    [
        (dict(sp2_share=1.5), r"sp2_share=1.5 is outside \[0, 1\].*Fix"),
        (dict(sp2_share=-0.1), r"outside \[0, 1\]"),
        (dict(sp2_share=float("nan")), r"outside \[0, 1\]"),
        (dict(sp2_share=None), r"needs a device.*Fix: set device"),
        (dict(assignment="ks"), r"assignment='ks' is not allowed.*variance, kurtosis, error"),
        (dict(refresh_steps=0), r"refresh_steps=0: use an integer >= 1"),
        (dict(freeze_step=-1), r"freeze_step=-1: use an integer >= 0"),
        (dict(sp2_m1=0), r"sp2_m1=0: use an integer >= 1"),
    ],
)
def test_bad_options_are_refused(options, match):
    with pytest.raises(ConfigError, match=match):
        MSQOptions(**options)


def test_bad_split_is_refused_at_prepare_with_the_allowed_splits():
    recipe = Recipe(scheme="msq", msq=MSQOptions(sp2_m1=1))
    model = build("small_cnn", in_channels=1, input_size=8)
    with pytest.raises(ConfigError, match=r"m1=1, m2=2.*\(m1=2, m2=1\), \(m1=3, m2=0\)"):
        hwquant.prepare(model, recipe)


def test_error_assignment_through_the_recipe_assigns_and_reassigns_by_error():
    """``MSQOptions(assignment="error")`` reaches every inner layer's quantizer, whose rows are
    the error test's split of the weights it is given, at the start and at each refresh."""
    recipe = Recipe(scheme="msq", msq=MSQOptions(assignment="error", refresh_steps=1))
    qat = hwquant.prepare(build("small_cnn", in_channels=1, input_size=28), recipe).train()
    inner = [m for m in qat.modules() if isinstance(m, MixedSchemeQuantizer)]
    assert len(inner) == 2 and all(q.assignment == "error" for q in inner)
    seen = {}
    for q in inner:
        q.register_forward_hook(lambda q, args, out: seen.__setitem__(q, args[0].detach()))
    x = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.SGD(qat.parameters(), lr=0.5)
    for _ in range(2):  # the first forward assigns; the second re-assigns the stepped weights
        qat(x).square().mean().backward()
        for q in inner:
            expected = assign_sp2_rows(q.error_scores(seen[q]), q.sp2_share)
            assert torch.equal(q.sp2_rows, expected)
        optimizer.step()
        optimizer.zero_grad()


def test_toml_table_builds_the_options():
    recipe = Recipe.from_dict(
        {"scheme": "msq", "msq": {"sp2_share": 1, "assignment": "kurtosis", "sp2_m1": 3}}
    )
    assert recipe.msq == MSQOptions(sp2_share=1.0, assignment="kurtosis", sp2_m1=3)


def test_prepare_gives_inner_layers_msq_and_edges_llsq():
    recipe = Recipe(scheme="msq", weight_granularity="tensor", msq=MSQOptions(sp2_share=0.25))
    qat = hwquant.prepare(build("small_cnn", in_channels=1, input_size=28), recipe)
    kinds = [type(m.weight_quant).__name__ for m in qat.modules() if hasattr(m, "weight_quant")]
    assert kinds == ["LinearQuantizer", "MixedSchemeQuantizer", "MixedSchemeQuantizer",
                     "LinearQuantizer"]  # fmt: skip
    inner = [m.weight_quant for m in qat.modules() if hasattr(m, "weight_quant")][1:3]
    assert [q.scale.numel() for q in inner] == [1, 1]  # one α per tensor, as asked


def test_share_solved_from_a_device():
    hw = pytest.importorskip("hwquant.hw", reason="the FPGA cost model (hwquant.hw) is absent")
    if not hasattr(hw, "sp2_share_for"):
        pytest.skip("hwquant.hw has no sp2_share_for yet")
    recipe = Recipe(scheme="msq", msq=MSQOptions(sp2_share=None, device="xc7z020"))
    q = msq_weight_quantizer(recipe, 4, torch.zeros(10, 3, 3, 3), True)
    assert q.sp2_share == hw.sp2_share_for("xc7z020", 4)
