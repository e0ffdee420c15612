"""Integer arithmetic shared by the QAT model's eval path and the integer engine.

Everything that decides an integer result lives here once, so that the QAT model in eval mode
and :mod:`hwquant.engine` cannot drift apart:

* rounding: ``round_half_up(v) = floor(v + 1/2)`` everywhere;
* requantization (LLSQ §4.3, Jacob et al. 2018 eq. 5-6): a real ratio ``r = α_w·α_in/α_out`` is
  replaced by an integer multiplier and a right shift, ``r ≈ M / 2^s``, and an accumulator ``acc``
  becomes ``clamp(floor((acc·M + 2^(s-1)) / 2^s), lo, hi)``; a power-of-two ratio gives ``M = 1``,
  a pure shift;
* exact integer convolution and matrix products (see :func:`int_conv2d`);
* accumulator width and overflow policy (wrap, saturate, raise).

Integer values live in ``torch.int64`` tensors, or in float tensors wherever a bound proves
that every value, partial sum and product is an exactly representable integer (float32 below
2^24, float64 below 2^53). The float form is the fast one on CPUs and GPUs; the int64 form is
the reference, and the tests hold the two equal.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from hwquant.core.errors import AccumulatorOverflowError, ConfigError

OverflowPolicy = Literal["wrap", "saturate", "raise"]
OVERFLOW_POLICIES: tuple[str, ...] = ("wrap", "saturate", "raise")
Backend = Literal["auto", "int64"]
T = TypeVar("T")

_FLOAT32_EXACT = 2**24  # every integer of magnitude below this is a float32 value
_FLOAT64_EXACT = 2**53


def round_half_up(v: torch.Tensor) -> torch.Tensor:
    """``floor(v + 1/2)``: the one rounding rule of hwquant (ties go towards +∞).

    >>> round_half_up(torch.tensor([-1.5, -0.5, 0.5, 1.5, 2.4]))
    tensor([-1.,  0.,  1.,  2.,  2.])
    """
    return torch.floor(v + 0.5)


def qrange(bits: int, signed: bool) -> tuple[int, int]:
    """Integer range of a ``bits``-bit code: ``[-2^(b-1), 2^(b-1)-1]`` or ``[0, 2^b-1]``.

    >>> qrange(4, signed=True), qrange(4, signed=False), qrange(1, signed=True)
    ((-8, 7), (0, 15), (-1, 0))
    """
    if signed:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def max_magnitude(bits: int, signed: bool) -> int:
    """Largest |code| of a ``bits``-bit code.

    >>> max_magnitude(4, signed=True), max_magnitude(4, signed=False)
    (8, 15)
    """
    lo, hi = qrange(bits, signed)
    return max(-lo, hi)


def requant_params(ratio: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer multiplier ``M`` and shift ``s`` with ``ratio ≈ M / 2^s`` (element-wise).

    ``M`` has ``bits`` significant bits (``2^(bits-1) ≤ M ≤ 2^bits``), so the relative error is
    at most ``2^-bits``. An exact power of two ``2^k`` gives ``M = 1, s = -k``: requantization
    by a pure shift. A negative ``s`` (ratio ≥ 2^bits) is folded into ``M`` (then larger than
    ``2^bits``) so that ``s ≥ 0`` always.

    >>> requant_params(np.array([0.1, 0.25, 3.0]), 8)  # 0.1 ≈ 205/2^11; 1/4 is a shift by 2
    (array([205,   1, 192]), array([11,  2,  6]))
    """
    r = np.asarray(ratio, dtype=np.float64)
    if not np.all(np.isfinite(r)) or np.any(r <= 0):
        raise ConfigError(
            f"requantization ratio must be finite and > 0, got {r.ravel()[:4]}. Fix: check that "
            "no quantizer scale is zero, NaN or Inf (re-initialise the model's quantizers)."
        )
    mant, expo = np.frexp(r)  # r = mant · 2^expo, mant in [0.5, 1)
    pow2 = mant == 0.5
    shift = np.where(pow2, 1 - expo, bits - expo).astype(np.int64)
    mult = np.where(pow2, 1.0, np.floor(mant * 2.0**bits + 0.5)).astype(np.int64)
    carry = mult == 2**bits  # mantissa rounded up to the next power of two
    mult = np.where(carry, mult // 2, mult)
    shift = np.where(carry, shift - 1, shift)
    neg = shift < 0
    mult = np.where(neg, mult << np.where(neg, -shift, 0), mult)
    shift = np.where(neg, 0, shift)
    return mult.astype(np.int64), shift.astype(np.int64)


def aligned_requant_params(ratios: list[float], bits: int) -> tuple[np.ndarray, int]:
    """Multipliers ``M_i`` on one shared shift ``s`` with ``ratios[i] ≈ M_i / 2^s``.

    Used by residual adds: ``out = (a·M_a + b·M_b) >> s`` adds two operands whose scales differ
    (the scales are aligned before the add). The shift is set by the largest ratio.

    >>> aligned_requant_params([0.5, 0.125], 8)
    (array([128,  32]), 8)
    """
    r = np.asarray(ratios, dtype=np.float64)
    requant_params(r, bits)  # validates the ratios
    s = max(0, bits - int(np.frexp(r.max())[1]))  # the largest ratio gets `bits` bits
    mult = np.floor(r * 2.0**s + 0.5).astype(np.int64)
    return mult, s


def requantize(
    acc: torch.Tensor, mult: torch.Tensor, shift: torch.Tensor, lo: int, hi: int
) -> torch.Tensor:
    """``clamp(floor((acc·M + 2^(s-1)) / 2^s), lo, hi)`` (s may be 0); ``mult`` and ``shift``
    broadcast against ``acc`` (per-channel requantization).

    An int64 ``acc`` is requantized with integer multiply, add and arithmetic shift. A float
    ``acc`` (exact integers) is requantized as ``floor(acc·(M·2^-s) + 1/2)`` in float64, which
    is the same number when ``|acc|·M < 2^53`` (every product exact; the caller checks it with
    :func:`float_requant_exact`); the result is then float32 codes.

    Rounding is half up, so ``5·1/2 = 2.5`` becomes 3 and ``-5·1/2 = -2.5`` becomes -2:

    >>> one, shift = torch.ones(1, dtype=torch.int64), torch.ones(1, dtype=torch.int64)
    >>> requantize(torch.tensor([5, -5, 300]), one, shift, -8, 7)
    tensor([ 3, -2,  7])
    """
    if acc.is_floating_point():
        ratio = mult.to(torch.float64) * torch.exp2(-shift.to(torch.float64))
        # at least one dimension: a 0-dim float64 tensor would not promote a float32 `acc`
        ratio = ratio.reshape(ratio.shape or (1,))
        half = torch.full((), 0.5, dtype=torch.float64, device=acc.device)
        out = torch.addcmul(half, acc, ratio).floor_()
        return out.to(torch.float32).clamp_(lo, hi)
    half = torch.bitwise_right_shift(torch.bitwise_left_shift(torch.ones_like(shift), shift), 1)
    out = torch.bitwise_right_shift(acc * mult + half, shift)
    return out.clamp_(lo, hi)


def float_requant_exact(acc_bound: int, mult: torch.Tensor) -> bool:
    """True when :func:`requantize` on float accumulators bounded by ``acc_bound`` is exact."""
    return acc_bound * int(mult.max()) < _FLOAT64_EXACT


def channel_view(t: torch.Tensor, ndim: int) -> torch.Tensor:
    """Lay a per-channel vector (or a single value) along dimension 1 of an ``ndim`` tensor."""
    return t.view(1, -1, *([1] * (ndim - 2)))


def window_sum(x: torch.Tensor, kernel_size: int | None) -> torch.Tensor:
    """Exact sum of integer codes over each pooling window: the whole plane (``None``) or
    non-overlapping ``k×k`` windows (a remainder row or column is dropped, as in pooling).

    Float codes are summed in float64 (exact below 2^53), integer codes in int64.
    """
    dtype = torch.float64 if x.is_floating_point() else torch.int64
    if kernel_size is None:
        return x.sum(dim=(-2, -1), keepdim=True, dtype=dtype)
    k = kernel_size
    n, c, h, w = x.shape
    windows = x[..., : h - h % k, : w - w % k].reshape(n, c, h // k, k, w // k, k)
    return windows.sum((3, 5), dtype=dtype)


def to_codes(x: torch.Tensor, scale: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """Integer codes ``clamp(round_half_up(x / scale), lo, hi)`` as int64.

    >>> to_codes(torch.tensor([0.24, 0.25, -3.0]), torch.tensor(0.5), -4, 3)
    tensor([ 0,  1, -4])
    """
    return round_half_up(x / scale).clamp_(lo, hi).to(torch.int64)


def exact_dtype(bound: int, backend: Backend) -> torch.dtype | None:
    """Float dtype that computes a sum of integers bounded by ``bound`` exactly, else None.

    >>> exact_dtype(2**24 - 1, "auto"), exact_dtype(2**24, "auto"), exact_dtype(5, "int64")
    (torch.float32, torch.float64, None)
    """
    if backend == "int64":
        return None
    if bound < _FLOAT32_EXACT:
        return torch.float32
    if bound < _FLOAT64_EXACT:
        return torch.float64
    return None


def worst_case_bound(weight: torch.Tensor, x_max: int, bias: torch.Tensor | None) -> int:
    """Largest possible |accumulator|: ``max_c (Σ_k |w[c,k]| · max|x| + |b[c]|)``.

    Every partial sum of the accumulation is bounded by this number too, which is what makes a
    float accumulation exact when it is below ``2^24`` (float32) or ``2^53`` (float64).

    >>> worst_case_bound(torch.tensor([[1, -2], [3, 0]]), 15, torch.tensor([4, -1]))
    49
    """
    per_channel = weight.abs().reshape(weight.shape[0], -1).sum(dim=1) * int(x_max)
    if bias is not None:
        per_channel = per_channel + bias.abs()
    return int(per_channel.max()) if per_channel.numel() else 0


def int_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
    x_max: int,
    backend: Backend = "auto",
) -> torch.Tensor:
    """Exact integer 2-D convolution; returns the accumulator.

    ``x`` holds integer codes (int64, or float holding integers) bounded by ``x_max``. With
    ``backend="auto"`` the sum runs on the float units when the worst-case bound of every
    partial sum (:func:`worst_case_bound`) proves it exact (float32 below 2^24, float64 below
    2^53), and the accumulator comes back in that float dtype; otherwise, and with
    ``backend="int64"``, it runs as an int64 matrix product over unfolded patches (the
    reference path) and comes back as int64.
    """
    dtype = exact_dtype(worst_case_bound(weight, x_max, bias), backend)
    if dtype is not None:
        b = None if bias is None else bias.to(dtype)
        # neither autocast nor TF32 may round the operands: exactness needs true float products
        with (
            torch.autocast(x.device.type, enabled=False),
            torch.backends.cudnn.flags(enabled=True, allow_tf32=False),
        ):
            return F.conv2d(x.to(dtype), weight.to(dtype), b, stride, padding, dilation, groups)
    x = x.to(torch.int64)
    return _int64_conv2d(x, weight, bias, stride, padding, dilation, groups)


def _int64_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
) -> torch.Tensor:
    """Reference convolution in int64: unfold the patches, one integer matmul per group."""
    n, _, h, w = x.shape
    c_out, c_per_group, kh, kw = weight.shape
    h_out = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    w_out = (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    # unfold has no integer kernel; float64 holds the codes exactly (it only copies them).
    cols = F.unfold(x.to(torch.float64), (kh, kw), dilation, padding, stride).to(torch.int64)
    cols = cols.view(n, groups, c_per_group * kh * kw, h_out * w_out)
    wg = weight.reshape(groups, c_out // groups, c_per_group * kh * kw)
    out = torch.einsum("gok,ngkl->ngol", wg, cols).reshape(n, c_out, h_out, w_out)
    if bias is not None:
        out = out + channel_view(bias, 4)
    return out


def int_linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    x_max: int,
    backend: Backend = "auto",
) -> torch.Tensor:
    """Exact integer ``x @ weightᵀ + bias`` of integer codes (``x_max`` bounds |x|; the same
    backends and result types as :func:`int_conv2d`)."""
    dtype = exact_dtype(worst_case_bound(weight, x_max, bias), backend)
    if dtype is not None:
        b = None if bias is None else bias.to(dtype)
        with torch.autocast(x.device.type, enabled=False):
            return F.linear(x.to(dtype), weight.to(dtype), b)
    out = x.to(torch.int64) @ weight.t()
    return out if bias is None else out + bias


ACC_MIN_BITS, ACC_MAX_BITS = 2, 62
"""The accumulator widths the engine holds: int64 arithmetic leaves room for one carry."""


def check_accumulator_bits(name: str, bits: object) -> None:
    """Raise :class:`ConfigError` unless ``bits`` is an integer accumulator width in 2..62.

    >>> check_accumulator_bits("accumulator_bits", 62)
    >>> check_accumulator_bits("accumulator_bits", 63)
    Traceback (most recent call last):
        ...
    hwquant.core.errors.ConfigError: accumulator_bits=63 is not an accumulator width. Fix: ...
    """
    valid = isinstance(bits, int) and not isinstance(bits, bool)
    if not valid or not ACC_MIN_BITS <= bits <= ACC_MAX_BITS:
        raise ConfigError(
            f"{name}={bits!r} is not an accumulator width. Fix: use an integer in "
            f"{ACC_MIN_BITS}..{ACC_MAX_BITS} (signed bits of the accumulator)."
        )


@dataclass(frozen=True)
class Accumulator:
    """Width and overflow policy of one layer's accumulator.

    ``wrap`` is two's-complement arithmetic (the result modulo ``2^bits``, independent of the
    order of the additions); ``saturate`` clamps the finished sum to the range (a wide adder
    with a saturating write-back); ``raise`` stops with :class:`AccumulatorOverflowError`.
    """

    bits: int = 32
    policy: OverflowPolicy = "wrap"

    def __post_init__(self) -> None:
        valid = isinstance(self.bits, int) and not isinstance(self.bits, bool)
        if not valid or not ACC_MIN_BITS <= self.bits <= ACC_MAX_BITS:
            raise ConfigError(f"accumulator bits={self.bits!r}: use an integer in 2..62.")
        if self.policy not in OVERFLOW_POLICIES:
            raise ConfigError(
                f"overflow policy {self.policy!r} is not allowed. "
                f"Fix: use one of {', '.join(OVERFLOW_POLICIES)}."
            )

    @property
    def range(self) -> tuple[int, int]:
        """Smallest and largest value the accumulator holds."""
        return qrange(self.bits, signed=True)

    def apply(
        self, acc: torch.Tensor, layer: str, extremes: tuple[int, int] | None = None
    ) -> tuple[torch.Tensor, int]:
        """Fit ``acc`` to this accumulator; return the result and the overflow count.

        ``extremes`` is ``(min, max)`` of ``acc`` when the caller already has it.
        """
        lo, hi = self.range
        if acc.numel() == 0:
            return acc, 0
        low, high = extremes if extremes is not None else (int(v) for v in torch.aminmax(acc))
        if lo <= low and high <= hi:
            return acc, 0
        acc = acc.to(torch.int64)  # overflow handling is integer arithmetic
        count = int(((acc < lo) | (acc > hi)).sum())
        if self.policy == "raise":
            peak = max(-low, high)
            raise AccumulatorOverflowError(
                f"layer '{layer}': {count} accumulator value(s) exceed {self.bits} bits "
                f"(largest |acc| = {peak}, needs {bits_needed(peak)} bits). Fix: widen the "
                f"accumulator (set_accumulator(bits={bits_needed(peak)})) or choose policy "
                "'wrap' or 'saturate'."
            )
        if self.policy == "saturate":
            return acc.clamp(lo, hi), count
        modulus = 2**self.bits
        return torch.remainder(acc - lo, modulus) + lo, count


def bits_needed(peak: int) -> int:
    """Signed bits that hold every value of magnitude ≤ ``peak``.

    >>> bits_needed(127), bits_needed(128), bits_needed(0)
    (8, 9, 1)
    """
    return int(peak).bit_length() + 1 if peak > 0 else 1


def interval_bits(low: int, high: int) -> int:
    """Signed (two's-complement) bits of the narrowest register holding every integer in
    ``[low, high]``.

    >>> interval_bits(-38, 37), interval_bits(-64, 63), interval_bits(0, 64), interval_bits(0, 0)
    (7, 7, 8, 1)
    """
    return max(bits_needed(high), bits_needed(-low - 1) if low < 0 else 1)


def dot_interval(pos: T, neg: T, x_lo: T, x_hi: T) -> tuple[T, T]:
    """Range of ``Σ_k w_k·x_k`` over inputs ``x_k ∈ [x_lo, x_hi]``, from the sums of the
    positive and of the negative weights, ``pos = Σ max(w_k, 0)`` and ``neg = Σ max(−w_k, 0)``:
    ``(pos·x_lo − neg·x_hi, pos·x_hi − neg·x_lo)``. It is also the range of every partial sum
    when ``x_lo ≤ 0 ≤ x_hi``. Works element-wise on tensors and arrays, and on exact fractions.

    >>> dot_interval(5, 3, 0, 15)  # weights summing to +5 and -3, 4-bit unsigned inputs
    (-45, 75)
    """
    return pos * x_lo - neg * x_hi, pos * x_hi - neg * x_lo


def accumulator_interval(
    weight: torch.Tensor, bias: torch.Tensor | None, x_lo: int, x_hi: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(low, high)`` per output channel (row of ``weight``, flattened) of every partial sum of
    the accumulator ``Σ_k w_k·x_k + b`` over input codes ``x_k ∈ [x_lo, x_hi]`` (``x_lo ≤ 0 ≤
    x_hi``), in any order, with the bias added at any point: :func:`dot_interval` of the row,
    then ``high += max(b, 0)`` and ``low += min(b, 0)``. Both ends are reached (docs/llsq.md §5),
    so a two's-complement register of :func:`interval_bits` ``(low.min(), high.max())`` bits is
    the narrowest that never overflows: the bound ``lower`` proves and every consumer checks
    (engine, exports, RTL). float64 holding exact integers.

    >>> low, high = accumulator_interval(torch.tensor([[3, -2]]), torch.tensor([-4]), 0, 15)
    >>> low.tolist(), high.tolist()
    ([-34.0], [45.0])
    """
    q = weight.reshape(weight.shape[0], -1).double()
    low, high = dot_interval(q.clamp_min(0).sum(1), (-q).clamp_min(0).sum(1), x_lo, x_hi)
    if bias is not None:
        b = bias.double()
        high, low = high + b.clamp_min(0), low + b.clamp_max(0)
    return low, high


def signed_bits(values: Iterable[int] | np.ndarray) -> int:
    """Signed bits of the narrowest register holding each of ``values`` (and 0).

    >>> signed_bits([5, -8]), signed_bits(np.array([[127], [-128]])), signed_bits([])
    (4, 8, 1)
    """
    arr = np.asarray(list(values) if not isinstance(values, np.ndarray) else values)
    return interval_bits(int(arr.min(initial=0)), int(arr.max(initial=0)))


def code_format(lo: int, hi: int) -> tuple[int, bool]:
    """Bits and signedness of codes in ``lo..hi``: unsigned bits when ``lo >= 0``, else the
    signed bits of the interval.

    >>> code_format(0, 15), code_format(-8, 7), code_format(0, 0)
    ((4, False), (4, True), (1, False))
    """
    if lo >= 0:
        return max(1, int(hi).bit_length()), False
    return interval_bits(lo, hi), True


def accumulator_bits(weight_bits: int, act_bits: int, fan_in: int, act_signed: bool = False) -> int:
    """Worst-case accumulator width (methods.md §6): ``w + a + ⌈log2 fan_in⌉`` for signed
    ``w``-bit weights and unsigned ``a``-bit activations (one bit less for signed ones).

    >>> accumulator_bits(4, 4, 256)  # LLSQ's 16-bit accumulator at fan-in 256
    16
    >>> accumulator_bits(8, 8, 27, act_signed=True)
    20
    """
    if fan_in < 1:
        raise ConfigError(f"fan_in must be >= 1, got {fan_in}.")
    return weight_bits + act_bits - int(act_signed) + math.ceil(math.log2(fan_in))


def split_nibbles(v: torch.Tensor, bits: int) -> list[torch.Tensor]:
    """Split ``bits``-bit integers into 4-bit digits: ``v = Σ_k 16^k · d_k``.

    The low digits are unsigned (0..15); the top digit carries the sign (-8..7 for signed
    values, 0..15 for unsigned). Each digit is a 4-bit multiplier operand (LLSQ's 8-bit inputs
    split into two 4-bit halves, methods.md §4.3).

    >>> split_nibbles(torch.tensor([-100, 200]), 8)  # -100 = 16·(-7) + 12, 200 = 16·12 + 8
    [tensor([12,  8]), tensor([-7, 12])]
    """
    count = max(1, math.ceil(bits / 4))
    digits = [torch.bitwise_and(torch.bitwise_right_shift(v, 4 * k), 15) for k in range(count - 1)]
    digits.append(torch.bitwise_right_shift(v, 4 * (count - 1)))
    return digits
