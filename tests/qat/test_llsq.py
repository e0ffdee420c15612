"""LLSQ linear quantizer: levels, rounding, clipping, initialisation and gradient rules."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from hwquant.core.errors import ConfigError
from hwquant.qat.llsq import INIT_GRID, LinearQuantizer, llsq_scale_gradient, min_error_scale

bits_st = st.integers(1, 16)
finite = st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False, width=32)


def _quantizer(bits: int, signed: bool, scale: float, **kw) -> LinearQuantizer:
    q = LinearQuantizer(bits, signed, is_activation=kw.pop("is_activation", True), **kw)
    with torch.no_grad():
        q.scale.fill_(scale)
    q.initialized.fill_(True)
    return q


@given(
    bits=bits_st,
    signed=st.booleans(),
    scale=st.floats(1e-3, 1e2),
    values=st.lists(finite, min_size=1, max_size=50),
)
def test_codes_are_nearest_level_in_range(bits, signed, scale, values):
    q = _quantizer(bits, signed, scale).eval()
    x = torch.tensor(values)
    codes = q.codes(x)
    assert int(codes.min()) >= q.qmin and int(codes.max()) <= q.qmax
    alpha = float(q.scale_value().detach())
    xq = q(x)
    assert torch.allclose(xq, codes.float() * alpha, rtol=0, atol=0)
    inside = (x >= q.qmin * alpha) & (x <= q.qmax * alpha)
    # inside the range a value lands on the nearest level (ties rounding up)
    err = (x - xq).abs()[inside]
    assert bool((err <= alpha / 2 * (1 + 1e-5) + 1e-6).all())
    # outside the range a value is clipped to the end level
    assert bool((codes[x > q.qmax * alpha] == q.qmax).all())
    assert bool((codes[x < q.qmin * alpha] == q.qmin).all())


@given(bits=bits_st, signed=st.booleans())
def test_level_set(bits, signed):
    q = _quantizer(bits, signed, 0.5)
    levels = q.levels()[0]
    assert levels.numel() == 2**bits
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    assert levels[0].item() == lo * 0.5 and levels[-1].item() == hi * 0.5
    steps = levels[1:] - levels[:-1]
    assert torch.allclose(steps, torch.full_like(steps, 0.5))


@pytest.mark.parametrize("bits", [0, 17, -1])
def test_rejects_bad_bits(bits):
    with pytest.raises(ConfigError, match=r"1\.\.16"):
        LinearQuantizer(bits, True, is_activation=False)


def test_rejects_bad_gradient():
    with pytest.raises(ConfigError, match="llsq or lsq"):
        LinearQuantizer(4, True, is_activation=False, gradient="sgd")


def test_weight_initialisation_per_channel_and_tensor():
    w = torch.tensor([[1.0, -3.5], [0.25, 0.5], [0.0, 0.0]])
    per_ch = LinearQuantizer(4, True, channels=3, is_activation=False)
    per_ch.initialize(w)
    assert per_ch.scale.tolist() == pytest.approx([3.5 / 7, 0.5 / 7, 1.0])  # zero row -> 1
    per_t = LinearQuantizer(4, True, is_activation=False)
    per_t.initialize(w)
    assert per_t.scale.item() == pytest.approx(3.5 / 8)


@pytest.mark.parametrize(("bits", "divisor"), [(4, 16), (8, 256), (3, 14), (2, 6)])
def test_activation_initialisation(bits, divisor):
    q = LinearQuantizer(bits, False, is_activation=True)
    q(torch.tensor([0.0, 2.0, 7.0]))  # first batch initialises
    assert bool(q.initialized)
    assert q.scale.item() == pytest.approx(7.0 / divisor)


def _error(x: torch.Tensor, alpha: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """Mean squared error of each row of ``x`` at its scale (round half up, clamp)."""
    a = alpha.view(-1, 1)
    return (x - (x / a).clamp(lo, hi).add(0.5).floor() * a).square().mean(dim=1)


@given(
    bits=st.integers(1, 8),
    signed=st.booleans(),
    seed=st.integers(0, 2**16),
    spread=st.floats(1e-3, 1e3),
)
def test_min_error_scale_is_the_least_error_candidate(bits, signed, seed, spread):
    q = LinearQuantizer(bits, signed, channels=3, is_activation=False, init="min_error")
    x = torch.randn(3, 200, generator=torch.Generator().manual_seed(seed)) * spread
    x = x if signed else x.abs()
    peak_rule = LinearQuantizer(bits, signed, channels=3, is_activation=False)
    peak_rule.initialize(x)
    q.initialize(x)
    chosen = _error(x, q.scale.detach(), q.qmin, q.qmax)
    # never worse than the peak rule, and no grid candidate is better
    assert bool((chosen <= _error(x, peak_rule.scale.detach(), q.qmin, q.qmax)).all())
    top = x.abs().amax(dim=1) / max(q.qmax, 1)
    for k in range(1, INIT_GRID + 1, 7):
        assert bool((chosen <= _error(x, top * k / INIT_GRID, q.qmin, q.qmax)).all())


def test_min_error_init_leaves_fewer_2bit_weights_at_zero():
    """The dead start: at 2 bits (codes -2..1) LLSQ's peak rule makes the channel's largest
    weight one step, so most Gaussian weights round to 0; the least-error scale does not."""
    w = torch.randn(8, 576, generator=torch.Generator().manual_seed(0))
    zeros = {}
    for init in ("peak", "min_error"):
        q = LinearQuantizer(2, True, channels=8, is_activation=False, init=init)
        q.initialize(w)
        zeros[init] = float((q.codes(w) == 0).float().mean())
    assert zeros["peak"] > 0.9 and zeros["min_error"] < 0.5


def test_min_error_init_of_activations_and_constrained_scales():
    x = torch.rand(4, 1000, generator=torch.Generator().manual_seed(1)) * 6
    q = LinearQuantizer(2, False, is_activation=True, init="min_error", constraint="pow2")
    q(x)  # the first batch initialises: one scale for the tensor, on the pow2 grid
    alpha = q.scale_value().detach()
    assert float(alpha) == 2.0 ** round(math.log2(float(alpha)))
    assert float(_error(x.reshape(1, -1), alpha, 0, 3)) <= float(
        _error(x.reshape(1, -1), torch.tensor([6 / 6]), 0, 3)
    )  # the peak rule's max|x| / (2·Q_p)


def test_min_error_scale_keeps_the_start_of_a_zero_row():
    x = torch.zeros(2, 5)
    x[1, 0] = 1.0
    out = min_error_scale(x, torch.tensor([0.7, 0.7]), -2, 1, 2)
    assert out[0].item() == pytest.approx(0.7)


def test_rejects_bad_scale_init():
    with pytest.raises(ConfigError, match="peak, min_error"):
        LinearQuantizer(4, True, is_activation=False, init="max")


def test_activation_ste_masks_outside_range_weights_pass_everywhere():
    x = torch.tensor([-1.0, 0.3, 0.7, 5.0], requires_grad=True)
    act = _quantizer(2, False, 0.25).train()
    act(x).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 0.0]
    x.grad = None
    weight = _quantizer(2, True, 0.25, is_activation=False).train()
    weight(x).sum().backward()
    assert x.grad.tolist() == [1.0, 1.0, 1.0, 1.0]


def test_llsq_gradient_grows_a_small_scale_and_shrinks_a_large_one():
    x = torch.randn(10_000, generator=torch.Generator().manual_seed(0))
    small = llsq_scale_gradient(x, torch.tensor(1e-3), -8, 7, 2)
    large = llsq_scale_gradient(x, torch.tensor(10.0), -8, 7, 2)
    assert small.item() == pytest.approx(-((1e-3) ** 2))  # −α²: the scale grows
    assert large.item() == pytest.approx(10.0**2)  # +α²: the scale shrinks


def test_llsq_gradient_truth_table():
    # E(α/2)=E(α)=E(2α) gives g1=1, g2=0, g3=1: "small" by the table (101 -> small)
    x = torch.zeros(8)
    assert llsq_scale_gradient(x, torch.tensor(0.5), -8, 7, 2).item() == pytest.approx(0.25)


def test_llsq_gradient_is_per_channel():
    w = torch.stack([torch.full((16,), 100.0), torch.linspace(-0.1, 0.1, 16)])
    alpha = torch.tensor([1e-3, 1.0]).view(2, 1)
    g = llsq_scale_gradient(w, alpha, -8, 7, 2).flatten()
    assert g[0] < 0 < g[1]


def test_llsq_scale_learns_towards_the_data():
    torch.manual_seed(0)
    q = _quantizer(4, True, 5.0, is_activation=False, gradient="llsq")
    opt = torch.optim.SGD(q.parameters(), lr=0.05)
    x = torch.randn(4096)
    for _ in range(200):
        opt.zero_grad()
        q(x).sum().backward()
        opt.step()
    assert 0.1 < q.scale.item() < 1.0  # a 4-bit scale for N(0,1) data is about 0.3


@pytest.mark.parametrize("gradient", ["llsq", "lsq"])
def test_calibrated_scale_holds_its_first_batch_value(gradient):
    """A calibrated activation scale is set by its init rule on the first batch and then held
    under any optimizer step, while x keeps the trained quantizer's masked STE and forward."""
    torch.manual_seed(0)
    first = torch.rand(256) * 8  # x is narrower, and one value of it is out of range
    x = torch.cat([torch.rand(255) * 2, torch.tensor([20.0])]).requires_grad_()
    held = LinearQuantizer(4, False, is_activation=True, gradient=gradient, trained=False)
    trained = LinearQuantizer(4, False, is_activation=True, gradient=gradient)
    held.train(), trained.train()
    held(first), trained(first)
    start = held.scale.detach().clone()
    assert torch.equal(start, trained.scale.detach()) and not held.scale.requires_grad
    opt = torch.optim.SGD([*held.parameters(), *trained.parameters()], lr=0.5, momentum=0.9)
    for _ in range(5):
        opt.zero_grad()
        (held(x).square().sum() + trained(x).square().sum()).backward()
        opt.step()
    assert torch.equal(held.scale.detach(), start)
    assert not torch.equal(trained.scale.detach(), start)  # the trained one does move here
    x.grad = None
    with torch.no_grad():
        trained.scale.copy_(start)
    out_held, out_trained = held(x), trained(x)
    assert torch.equal(out_held, out_trained)
    out_held.sum().backward()
    inside = (x.detach() > 0) & (x.detach() < 15 * start)
    assert torch.equal(x.grad, inside.float())
    assert "calibrated" in repr(held)


def test_lsq_gradient_matches_its_formula():
    x = torch.tensor([-3.0, -0.26, 0.1, 0.74, 3.0], requires_grad=True)
    q = _quantizer(2, True, 0.5, is_activation=True, gradient="lsq").train()
    q(x).sum().backward()
    v = x.detach() / 0.5
    codes = torch.floor(v + 0.5).clamp(-2, 1)
    inside = (v >= -2) & (v <= 1)
    expected = torch.where(inside, codes - v, codes).sum() / math.sqrt(5 * 1)
    assert q.scale.grad.item() == pytest.approx(expected.item(), rel=1e-6)


@given(values=st.lists(finite, min_size=1, max_size=40))
def test_error_sampling_takes_at_most_the_requested_count(values):
    q = LinearQuantizer(4, True, is_activation=True, error_samples=7)
    sample = q._error_sample(torch.tensor(values))
    assert sample.numel() == min(len(values), 7) or len(values) <= 7


def test_export_matches_scale():
    q = _quantizer(3, False, 0.125)
    spec = q.export()
    assert (spec.bits, spec.signed, spec.qmin, spec.qmax) == (3, False, 0, 7)
    assert spec.scale.tolist() == [0.125]


def test_llsq_implements_the_quantizer_protocol():
    from hwquant.qat.quantizer import Quantizer

    q = _quantizer(4, True, 0.5)
    assert isinstance(q, Quantizer)
    assert not isinstance(torch.nn.ReLU(), Quantizer)
