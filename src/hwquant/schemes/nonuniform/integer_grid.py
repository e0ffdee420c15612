"""Single-scale integer codebooks: non-uniform levels on a power-of-two integer grid.

Liss et al. 2018 (methods.md §1.2(a, b), §7.1 step 5) write each tensor as ``s · x_int`` with one
power-of-two scale ``s = 2^e`` per tensor; the ``k`` non-uniform levels ``q_i`` are snapped onto
the signed ``B``-bit grid of that scale::

    s     = 2^⌈log2( max_i |q_i| / (2^(B−1) − 1) )⌉          (the smallest power of two
                                                              that keeps every level on the grid)
    c_i   = round_half_up(q_i / s)  ∈  [−(2^(B−1) − 1), 2^(B−1) − 1]

so a layer holds a codebook of ``k`` B-bit integers and each weight a ``b``-bit index, and the
multiplier sees an ordinary B-bit integer. The scale is fitted to the levels, not to max|W| as in
methods.md §1.2(a) [D]: only the levels have to fit on the grid, and fitting them spends the grid's
resolution where the levels are.

Snapping can merge levels when the grid is too coarse for the codebook (``B`` too small for
``k = 2^b``, or a fit whose levels crowd together); that is an error, never a silent merge.
"""

from __future__ import annotations

import math

import torch

from hwquant.core.errors import ConfigError
from hwquant.core.intmath import qrange, round_half_up

_TINY = 1e-30


def grid_limit(grid_bits: int) -> int:
    """Largest magnitude on the symmetric signed ``grid_bits``-bit grid: ``2^(B−1) − 1``."""
    return qrange(grid_bits, signed=True)[1]


def check_codebook_fits(index_bits: int, grid_bits: int) -> None:
    """Raise :class:`ConfigError` when ``2^b`` levels cannot be distinct on ``2^B − 1`` values."""
    if 2**index_bits > 2 * grid_limit(grid_bits) + 1:
        raise ConfigError(
            f"a codebook of k = 2^{index_bits} = {2**index_bits} levels (weight_bits b = "
            f"{index_bits}) cannot have distinct levels on a {grid_bits}-bit grid "
            f"(grid_bits B = {grid_bits}: {2 * grid_limit(grid_bits) + 1} values). Fix: set "
            f"recipe.nonuniform.grid_bits >= {index_bits + 1} (8 is the default) or lower "
            "weight_bits."
        )


def pow2_grid_scale(levels: torch.Tensor, grid_bits: int) -> torch.Tensor:
    """``2^⌈log2(max|q| / (2^(B−1) − 1))⌉`` as a shape-[1] float32 tensor."""
    peak = levels.detach().abs().max().double().clamp_min(_TINY)
    exponent = torch.ceil(torch.log2(peak / grid_limit(grid_bits)))
    return torch.exp2(exponent).float().reshape(1)


def snap_levels(
    levels: torch.Tensor, grid_bits: int, layer: str = ""
) -> tuple[torch.Tensor, torch.Tensor]:
    """The integer codebook ``c`` (int64 [k], ascending) and the scale ``s`` ([1]) of ``levels``.

    Raises:
        ConfigError: two levels snap onto the same integer (the grid is too coarse).
    """
    scale = pow2_grid_scale(levels, grid_bits)
    limit = grid_limit(grid_bits)
    codebook = round_half_up(levels.detach().double() / scale.double()).clamp_(-limit, limit)
    codebook = codebook.to(torch.int64)
    if bool((codebook[1:] <= codebook[:-1]).any()):
        k = levels.numel()
        where = f"layer '{layer}': " if layer else ""
        raise ConfigError(
            f"{where}the k = {k} levels (weight_bits b = {int(math.log2(k))}) collapse on the "
            f"{grid_bits}-bit grid (grid_bits B = {grid_bits}): codebook {codebook.tolist()} "
            "has repeated integers. Fix: raise recipe.nonuniform.grid_bits (e.g. to "
            f"{grid_bits + 2}) or lower weight_bits."
        )
    return codebook, scale
