"""Exact requantization in float32: which constants, and the proof that they are exact.

Every requantization of an IntModel is ``code = clamp(floor((N + 2^(s−1)) / 2^s), lo, hi)`` with
``N = Σ_t x_t·M_t`` (one term ``acc·M`` for a weight layer or a pool, two for a residual add;
``2^(s−1)`` is 0 when ``s = 0``): integers ``x_t`` with ``|x_t| <= A_t`` and integer multipliers
``M_t >= 0`` (per output channel, or one for the layer). ``N`` needs up to ~34 bits, more than
float32's exact 2^24, so the graph never forms it. Two forms compute the code exactly:

**One step** (:func:`one_step`), what hls4ml and FINN read as a scale, a bias and a quantizer::

    v = fl(fl(Σ_t fl(x_t · c_t)) + δ)        code = clamp(round(v), lo, hi)

with float32 scales ``c_t`` (``M_t·2^-s``, or a float32 next to it) and the offset
``δ = 2^-(k+1)``, ``k`` the fractional bits of the scales: in exact arithmetic ``Σ x_t·c_t`` lies
on the ``2^-k`` grid, so ``v`` is never a tie and every rounding rule (half-to-even, half-up,
FINN's thresholds, hls4ml's fixed-point rounding) gives the same integer. Float32 rounds the
product and the sums, so the form is *proved* exact by evaluation: for one term, ``v`` is a
monotone function of the integer ``acc`` (IEEE rounding is monotone), and so is the exact code,
a step function that steps at the thresholds ``T_k = ceil((k·2^s − 2^(s−1)) / M)``. Two monotone
functions agree on ``[−A, A]`` iff they agree at ``±A`` and at every ``T_k − 1, T_k`` inside
it; :func:`one_step` evaluates exactly those points — float32 in graph order, float32 with a
fused multiply-add, and exact real arithmetic, each with rounding half up and half down — and
accepts the constants only if every one gives the exact code (it tries float32 neighbours of
``M·2^-s`` when the first does not). Two terms (residual adds) are not monotone in one
variable, so they are proved by exhaustion: every pair of codes ``(x_0, x_1)`` in the bounds,
evaluated in every order a float32 consumer may use — graph order, a fused multiply-add of
either product into the sum — and in exact arithmetic (:func:`evaluations`); more than
:data:`PAIR_LIMIT` pairs, and the add gets limbs instead.

**Limbs** (:func:`limbs`), the fallback when no one-step constant passes: the multipliers are
split into ``w``-bit limbs at positions ``0 = e_0 < … < e_{L−1}`` and combined from the bottom
with exact floors (``floor((floor(a/p) + n)/q) = floor((a/p + n)/q)`` for integer ``n``)::

    T_j = Σ_t x_t·M_{t,j}                              M_{t,j} = (M_t >> e_j) mod 2^w
    G_0 = floor(T_0 · 2^-e_1)
    G_j = floor((G_{j−1} + T_j) · 2^-(e_{j+1}−e_j))    (0 < j < L−1)
    u   = (G_{L−2} + T_{L−1}) · 2^-(s − e_{L−1})       code = clamp(round(u + 2^-(k+1)), lo, hi)

exact by bounds: ``|G_j| <= Σ_t A_t``, ``|T_j| <= Σ_t A_t·(2^w − 1)``, ``Σ_t A_t·2^w < 2^23``,
so every value is an integer or a dyadic number below 2^24 in units of its grid, and ``u`` lies
on the grid ``2^-k``, ``k = s − e_{L−1} >= 1``. Its accumulator feeds several nodes (a fork).

**Exact arithmetic** (:func:`exact_step`), for a consumer that computes every product and sum
exactly, at whatever width it needs (fixed point, as hls4ml does with the types of
:mod:`hwquant.export.hls4ml`): the one-step form with the exact scales ``c_t = M_t·2^-s`` and
``δ = 2^-(k+1)``. Then ``u = Σ_t x_t·c_t = N·2^-s`` exactly, on the grid ``2^-k`` (``k <= s``
the fractional bits of the scales), so ``u + δ`` is never a tie, any rounding rule gives
``floor(u + 1/2) = floor((N + 2^(s−1)) / 2^s)``, and no bound on ``N`` is needed; only the
scales must be float32 numbers (``M_t < 2^24``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FLOAT32_EXACT = 2**24
"""Integers below this magnitude are float32 values; so are dyadic numbers with fewer
significant bits."""
NEIGHBOURS = 64
"""Float32 neighbours of ``M·2^-s`` tried on each side before falling back to limbs."""
PAIR_LIMIT = 2**20
"""Most code pairs a two-term one-step form is checked on (residual adds)."""
POINT_LIMIT = 2**22
"""Most threshold points (channels times levels) a one-term one-step form is checked on."""


@dataclass(frozen=True)
class OneStep:
    """``v = Σ_t x_t·scales[t] + offset``, ``code = clamp(round(v), lo, hi)`` (float32 arrays,
    one value per channel or one for the layer)."""

    scales: tuple[np.ndarray, ...]
    offset: np.ndarray


@dataclass(frozen=True)
class Limbs:
    """The limb split of the multipliers (see the module docstring)."""

    positions: tuple[int, ...]
    """Limb positions ``e_0 = 0 < … < e_{L−1}``."""

    def split(self, mult: np.ndarray) -> list[np.ndarray]:
        """``M_{t,j}`` of a multiplier array: ``(M >> e_j) mod 2^(e_{j+1} − e_j)``, the top
        limb unmasked."""
        mult = np.asarray(mult, np.int64)
        out = []
        for j, e in enumerate(self.positions):
            limb = mult >> e
            if j + 1 < len(self.positions):
                limb = limb & ((1 << (self.positions[j + 1] - e)) - 1)
            out.append(limb)
        return out


def exact_codes(
    xs: list[np.ndarray], mults: list[np.ndarray], shift: np.ndarray, lo: int, hi: int
) -> np.ndarray:
    """The engine's codes ``clamp((Σ_t x_t·M_t + 2^(s−1)) >> s, lo, hi)`` in int64."""
    total = sum(x.astype(np.int64) * m for x, m in zip(xs, mults, strict=True))
    half = np.left_shift(1, shift) >> 1
    return np.clip((total + half) >> shift, lo, hi)


def clip_range(mult: np.ndarray, shift: np.ndarray, lo: int, hi: int) -> tuple[int, int]:
    """``(low, high)``: clipping an accumulator to it leaves every channel's code unchanged.

    With ``half = 2^(s−1)`` (0 for ``s = 0``), code >= ``hi`` iff ``acc·M + half >= hi·2^s``,
    so ``T_hi = ceil((hi·2^s − half) / M)``; code <= ``lo`` iff ``acc < T_{lo+1}``. The clip
    uses the widest of the channels.
    """
    first, last = (_thresholds(mult, shift, np.array([[k]])) for k in (lo + 1, hi))
    return int(first.min()) - 1, int(last.max())


def thresholds(mult: np.ndarray, shift: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """``T[c, i]``: the smallest accumulator whose code is ``lo + 1 + i`` (int64 ``[C, hi−lo]``)."""
    return _thresholds(mult, shift, np.arange(lo + 1, hi + 1, dtype=np.int64).reshape(1, -1))


def _thresholds(mult: np.ndarray, shift: np.ndarray, k: np.ndarray) -> np.ndarray:
    mult = np.asarray(mult, np.int64).reshape(-1, 1)
    shift = np.broadcast_to(np.asarray(shift, np.int64).reshape(-1, 1), mult.shape)
    numerator = k * np.left_shift(1, shift) - (np.left_shift(1, shift) >> 1)
    return -((-numerator) // mult)  # ceil division


def one_step(
    bounds: list[int], mults: list[np.ndarray], shift: np.ndarray, lo: int, hi: int
) -> OneStep | None:
    """One-step constants proved exact at every check point (module docstring), or None."""
    shift = np.asarray(shift, np.int64).reshape(-1)
    mults = [np.asarray(m, np.int64).reshape(-1) for m in mults]
    if len(mults) == 1:
        if mults[0].size * (hi - lo) > POINT_LIMIT:
            return None
        return _one_term(bounds[0], mults[0], shift, lo, hi)
    if np.prod([2 * b + 1 for b in bounds]) > PAIR_LIMIT or shift.size != 1:
        return None
    grids = np.meshgrid(*(np.arange(-b, b + 1) for b in bounds), indexing="ij")
    xs = [grid.reshape(1, -1) for grid in grids]
    base = [_float32(m.reshape(-1, 1) * np.exp2(-shift.astype(np.float64))) for m in mults]
    want = exact_codes(xs, [m.reshape(-1, 1) for m in mults], shift, lo, hi)
    for scales, offset in _candidates(base):
        if _agrees(xs, scales, offset, want, lo, hi).all():
            return OneStep(tuple(c.reshape(-1) for c in scales), offset.reshape(-1))
    return None


def exact_step(mults: list[np.ndarray], shift: np.ndarray) -> OneStep | str:
    """The exact-arithmetic one-step form (module docstring), or the reason the scales are not
    float32 numbers."""
    shift = np.asarray(shift, np.int64).reshape(-1)
    scales = []
    for m in mults:
        m = np.asarray(m, np.int64).reshape(-1)
        widest = int(np.abs(m).max(initial=0))
        if widest >= FLOAT32_EXACT:
            return f"its multiplier {widest} has more than 24 bits, no float32 scale"
        scales.append(_float32(m * np.exp2(-shift.astype(np.float64))))
    return OneStep(tuple(scales), _offset(scales))


def _candidates(base: list[np.ndarray]):
    """Scales and offsets to try, in order: offset-free scales from ``M·2^-s`` upwards (a
    scale a little above ``M·2^-s`` breaks every tie upwards, as ``floor(v + 1/2)`` does), then
    ``M·2^-s`` itself with the offset ``2^-(k+1)``."""
    zero = np.zeros(base[0].shape, np.float32)
    scales = base
    for _ in range(NEIGHBOURS):
        yield scales, zero
        scales = [np.nextafter(c, np.float32(np.inf)) for c in scales]
    yield base, _offset(base)


def _one_term(bound: int, mult: np.ndarray, shift: np.ndarray, lo: int, hi: int) -> OneStep | None:
    """Per channel, the first float32 scale from ``M·2^-s`` outwards that passes the check."""
    mult = mult.reshape(-1, 1)
    shift = np.broadcast_to(shift.reshape(-1, 1), mult.shape)
    t = thresholds(mult, shift, lo, hi)
    points = np.clip(
        np.concatenate(
            [t - 1, t, np.full_like(t[:, :1], -bound), np.full_like(t[:, :1], bound)], 1
        ),
        -bound,
        bound,
    )
    want = exact_codes([points], [mult], shift, lo, hi)
    base = _float32(mult * np.exp2(-shift.astype(np.float64)))
    chosen = np.full(base.shape, np.nan, np.float32)
    offsets = np.zeros(base.shape, np.float32)
    for (scale,), offset in _candidates([base]):
        open_ = np.isnan(chosen[:, 0])
        if not open_.any():
            break
        ok = _agrees([points[open_]], [scale[open_]], offset[open_], want[open_], lo, hi)
        rows = np.flatnonzero(open_)[ok]
        chosen[rows], offsets[rows] = scale[rows], offset[rows]
    if np.isnan(chosen).any():
        return None
    return OneStep((chosen.reshape(-1),), offsets.reshape(-1))


def _float32(values: np.ndarray) -> np.ndarray:
    return np.asarray(values, np.float64).astype(np.float32)


def _offset(scales: list[np.ndarray]) -> np.ndarray:
    """``2^-(k+1)``, ``k >= 1`` the fractional bits of the scales (per row)."""
    frac = np.max([_fraction_bits(s) for s in scales], axis=0)
    return np.exp2(-(np.maximum(frac, 1) + 1.0)).astype(np.float32)


def _fraction_bits(values: np.ndarray) -> np.ndarray:
    """Fractional bits of float32 values: the smallest ``k`` with ``values·2^k`` integer."""
    mant, expo = np.frexp(values.astype(np.float64))
    integer = (mant * 2.0**24).astype(np.int64)
    trailing = np.zeros_like(integer)
    nonzero = integer != 0
    low = integer & -integer
    trailing[nonzero] = np.log2(low[nonzero]).astype(np.int64)
    return np.where(nonzero, 24 - expo - trailing, 0)


def _agrees(
    xs: list[np.ndarray],
    scales: list[np.ndarray],
    offset: np.ndarray,
    want: np.ndarray,
    lo: int,
    hi: int,
) -> np.ndarray:
    """Per row: whether every evaluation of the one-step form at the points ``xs`` gives the
    codes ``want``, rounded half up and half down (:func:`evaluations`)."""
    values, representable = evaluations(xs, scales, offset)
    ok = representable
    for v in values:
        for rounded in (np.floor(v + 0.5), np.ceil(v - 0.5)):
            ok = ok & (np.clip(rounded, lo, hi) == want).all(axis=-1)
    return ok


def evaluations(
    xs: list[np.ndarray], scales: list[np.ndarray], offset: np.ndarray
) -> tuple[list[np.ndarray], np.ndarray]:
    """Every value ``v = Σ_t x_t·c_t + δ`` (one or two terms) can take, and per row whether
    float64 held the computation exactly.

    With ``p_t = x_t·c_t`` and ``fl`` rounding to float32, the values are: the graph order
    ``fl(fl(Σ_t fl(p_t)) + δ)``; a fused multiply-add of any one product into its sum —
    ``fl(p + δ)`` for one term, ``fl(fl(p_0 + fl(p_1)) + δ)`` and ``fl(fl(fl(p_0) + p_1) + δ)``
    for two; and the exact ``Σ_t p_t + δ`` (a fixed-point consumer wide enough computes it).
    They are computed in float64, then rounded once to float32: exact, because each ``p_t`` is
    an integer below 2^24 times a 24-bit significand (48 bits), every operand (a rounded
    ``fl(p_t)`` too: rounding moves a value onto a coarser grid) is a multiple of ``g``, the
    finest grid of the scales and the offset, and the second value is ``False`` for a row
    where the magnitudes could reach ``2^52·g``, beyond float64's exact range.
    """
    products = [
        x.astype(np.float64) * c.astype(np.float64) for x, c in zip(xs, scales, strict=True)
    ]
    delta = offset.astype(np.float64)
    frac = np.max([_fraction_bits(c) for c in (*scales, offset)], axis=0)
    magnitude = sum(np.abs(p) for p in products) + np.abs(delta)
    representable = (magnitude / np.exp2(-frac.astype(np.float64))).max(axis=-1) < 2.0**52
    rounded = [_to_float32(p) for p in products]
    if len(products) == 1:
        sums = [rounded[0], products[0]]  # graph order; fused with the offset's add
    else:
        first, second = products
        sums = [
            _to_float32(rounded[0] + rounded[1]),
            _to_float32(first + rounded[1]),
            _to_float32(rounded[0] + second),
        ]
    values = [_to_float32(s + delta) for s in sums] if offset.any() else sums
    values.append(sum(products) + delta)
    return values, representable.reshape(-1)


def _to_float32(values: np.ndarray) -> np.ndarray:
    """``fl(values)``: rounded to nearest float32 (ties to even), kept as float64."""
    return values.astype(np.float32).astype(np.float64)


def limbs(bounds: list[int], mults: list[np.ndarray], shift: np.ndarray) -> Limbs | str:
    """The limb split with the fewest limbs for terms bounded by ``bounds``, or the reason
    none is exact in float32."""
    total = sum(bounds)
    s_min = int(np.min(shift))
    top = max(int(np.max(m)) for m in mults)
    width = ((FLOAT32_EXACT // 2 - 1) // max(total, 1)).bit_length() - 1
    if width < 1:
        return (
            f"its requantization inputs reach {total}, too wide to split into float32-exact "
            "limbs (below 2^22 needed)"
        )
    positions = tuple(range(0, max(top.bit_length(), 1), width))
    if len(positions) > 1 and positions[-1] > s_min - 1:
        return (
            f"its multipliers ({top.bit_length()} bits) need limbs up to bit {positions[-1]}, "
            f"beyond its shift s = {s_min} minus 1"
        )
    return Limbs(positions)
