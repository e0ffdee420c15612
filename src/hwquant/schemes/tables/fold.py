"""Integer parameters of table units, computed once when a layer is lowered (methods.md §3.1).

**Table.** With activation levels ``a_i`` and weight levels ``w_j``, the table holds the
products as signed fixed-point integers of ``entry_bits``::

    s_T = max |a_i·w_j| / (2^(E−1) − 1),     T[i, j] = round(a_i·w_j / s_T)

so a convolution's accumulator ``acc = Σ_k T[x_k, w_k]`` stands for ``s_T·acc ≈ Σ a·w``.

**Thresholds** (BN, ReLU and the next layer's quantization in one step). The layer's real
pre-activation is affine in ``acc`` per output channel c: ``u = g_c·acc + h_c`` with, for a
layer with bias b and BN (γ, β, μ, σ²)::

    γ̂ = γ/√(σ²+ε),   g_c = γ̂·s_T,   h_c = γ̂·(b − μ) + β      (g = s_T, h = b without BN)

The next codebook has levels ``c_0 < … < c_{n−1}`` and midpoints ``m_k``; nearest-level
quantization of ``y = ReLU(u)`` gives index ``#{k : y ≥ m_k}``. Each term is one comparison on
the integer accumulator:

* with ReLU and ``m_k ≤ 0``: always true (``y ≥ 0 ≥ m_k``); with ReLU6 and ``m_k > 6``:
  never (``y ≤ 6``), else ``y ≥ m_k ⟺ u ≥ m_k`` as for ReLU;
* ``g_c > 0``: ``u ≥ m_k ⟺ acc ≥ τ = ⌈(m_k − h_c)/g_c⌉``;
* ``g_c < 0`` (negative BN scale): the inequality flips, ``acc ≤ τ = ⌊(m_k − h_c)/g_c⌋``;
* ``g_c = 0``: ``u = h_c``, true or false whatever ``acc`` is.

"Always" and "never" are stored as the sentinels ``±SENTINEL``, beyond any accumulator.
So the next index is the number of thresholds passed: no BN, no ReLU, no multiply at run time.

**Residual add** through a shared codebook: the output index of ``ReLU(a_i + b_j)`` is a
precomputed table ``S[i, j]`` (|A₁|·|A₂| entries); an elementwise product (a
squeeze-excitation gate ``x·g``) is the same table of ``a_i·b_j``. **Average pooling**: the
window sum of integer values ``V[i] = round(a_i / s_V)``, compared with ``⌈m_k·n_window / s_V⌉``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hwquant.core.errors import AccumulatorOverflowError, ConfigError
from hwquant.core.intmath import qrange, round_half_up
from hwquant.schemes.tables.codebooks import check_codebook, nearest_index

SENTINEL = 2**40  # beyond every accumulator (|acc| < 2^31 is checked)
ACC_LIMIT = 2**31 - 1  # the engine accumulates entries in 32-bit words


@dataclass(frozen=True)
class Affine:
    """Per-channel pre-activation ``u = gain·acc + offset`` (float64 [C]), its ReLU and the
    ReLU's upper clip ``ceiling`` (6 for ReLU6; None: none)."""

    gain: torch.Tensor
    offset: torch.Tensor
    relu: bool
    ceiling: float | None = None


def entry_limit(entry_bits: int) -> int:
    """Largest magnitude of a signed ``entry_bits`` table entry (symmetric: ``2^(E−1) − 1``)."""
    return qrange(entry_bits, signed=True)[1]


def product_table(
    act_levels: torch.Tensor, weight_levels: torch.Tensor, entry_bits: int
) -> tuple[torch.Tensor, float]:
    """``T[i, j] = round(a_i·w_j / s_T)`` (int64) and ``s_T``, with the codebooks checked."""
    check_codebook("A (activations)", act_levels)
    check_codebook("W (weights)", weight_levels)
    products = act_levels.double()[:, None] * weight_levels.double()[None, :]
    peak = float(products.abs().max())
    if entry_bits < 2 or peak == 0.0:
        raise ConfigError(
            f"entry_bits={entry_bits} cannot hold the products (peak |a·w| = {peak}). Fix: use "
            "entry_bits >= 2 and codebooks with a non-zero level."
        )
    scale = peak / entry_limit(entry_bits)
    return round_half_up(products / scale).to(torch.int64), scale


def check_table(table: torch.Tensor, entry_bits: int, fan_in: int, name: str) -> None:
    """Refuse entries beyond ``entry_bits`` or accumulators beyond 32 bits."""
    peak = int(table.abs().max())
    if peak > entry_limit(entry_bits):
        raise ConfigError(
            f"layer {name}: table entry {peak} overflows entry_bits={entry_bits} (limit "
            f"±{entry_limit(entry_bits)}). Fix: raise entry_bits or rescale the table."
        )
    if peak * fan_in > ACC_LIMIT:
        raise AccumulatorOverflowError(
            f"layer {name}: {fan_in} entries of up to {peak} can reach {peak * fan_in}, beyond "
            f"the 32-bit accumulator. Fix: lower entry_bits (now {entry_bits})."
        )


def midpoints(levels: torch.Tensor) -> torch.Tensor:
    """Decision boundaries of nearest-level quantization."""
    return (levels[1:] + levels[:-1]) / 2


def thresholds(affine: Affine, next_levels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer thresholds ``τ`` [C, n−1] (int64) and the per-channel flag ``descending`` [C]
    (compare ``acc ≤ τ`` instead of ``acc ≥ τ``); see the module docstring."""
    check_codebook("of the next layer", next_levels)
    m = midpoints(next_levels.double())[None, :]
    g, h = affine.gain.double()[:, None], affine.offset.double()[:, None]
    descending = affine.gain < 0
    safe_g = torch.where(g == 0, torch.ones_like(g), g)
    bound = (m - h) / safe_g
    tau = torch.where(descending[:, None], torch.floor(bound), torch.ceil(bound))
    tau = tau.clamp(-SENTINEL, SENTINEL)
    always = torch.where(descending[:, None], SENTINEL, -SENTINEL).to(torch.float64)
    never = -always
    tau = torch.where(g == 0, torch.where(h >= m, always, never), tau)
    if affine.relu:
        tau = torch.where(m <= 0, always, tau)
    if affine.ceiling is not None:  # y = min(ReLU(u), ceiling) never reaches m > ceiling
        tau = torch.where(m > affine.ceiling, never, tau)
    return tau.to(torch.int64), descending


def add_table(
    left: torch.Tensor,
    right: torch.Tensor,
    out_levels: torch.Tensor,
    relu: bool,
    ceiling: float | None = None,
    product: bool = False,
) -> torch.Tensor:
    """``S[i, j]`` = index of ``act(left_i + right_j)`` (``left_i·right_j`` with ``product``)
    in ``out_levels`` (int64); ``act`` is ReLU clipped at ``ceiling`` (ReLU6: 6), or none."""
    left, right = left.double()[:, None], right.double()[None, :]
    total = left * right if product else left + right
    if relu:
        total = total.clamp(0.0, ceiling)
    return nearest_index(total, out_levels.double())


def pool_form(
    levels: torch.Tensor, out_levels: torch.Tensor, window: int, entry_bits: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Values ``V[i] = round(a_i/s_V)`` and thresholds ``⌈m_k·window/s_V⌉`` of average pooling
    (mean ≥ m_k ⟺ Σ V ≥ m_k·window/s_V, s_V > 0)."""
    check_codebook("of the pooled input", levels)
    scale = float(levels.double().abs().max()) / entry_limit(entry_bits)
    values = round_half_up(levels.double() / scale).to(torch.int64)
    tau = torch.ceil(midpoints(out_levels.double()) * window / scale).to(torch.int64)
    return values, tau
