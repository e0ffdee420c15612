"""Shift-add execution of MSQ weight nodes (Mix and Match; methods.md §2.1, §7.2).

A node carrying an :class:`~hwquant.ir.intmodel.MSQEncoding` is accumulated row group by row
group, the way an MSQ accelerator splits its rows between LUT and DSP processing elements:

* **SP2 rows** (LUTs): the weight ``sign·(2^shift1 + 2^shift2)`` times an activation ``x`` is
  ``±((x << shift1) + (x << shift2))``. Gathering the terms by shift value gives, for each
  output ``r``::

      acc_r = Σ_t Σ_s ( Σ_{k : shift_t[r,k] = s} sign[r,k] · x_k ) << s        (t = 1, 2)

  The inner sums are signed selections: each runs as one exact convolution (or matrix
  product) of ``x`` with a plane of weights in {−1, 0, +1} (``int_conv2d`` / ``int_linear``;
  PyTorch's kernels do multiply by ±1 and 0 here, which in hardware is an add, a subtract or
  nothing). The shifts are real int64 ``torch.bitwise_left_shift`` operations, and the planes
  are summed with int64 adds. There are at most ``2^m1 − 1 + 2^m2 − 1`` planes (4 at 4 bits).
* **Fixed-point rows** (DSPs): one exact integer convolution with their integer weights.

The two row sets are written back into their output channels (``index_copy``); grouped
convolutions run group by group. The result equals ``int_conv2d(x, node.weight, bias, …)``
exactly (tests/schemes/msq/test_engine.py). The engine counts the SP2 rows' MACs as
``LayerStats.multiply_free_macs``.
"""

from __future__ import annotations

import numpy as np
import torch

from hwquant.core.intmath import (
    Backend,
    channel_view,
    exact_dtype,
    int_conv2d,
    int_linear,
    max_magnitude,
    worst_case_bound,
)
from hwquant.ir.intmodel import MSQEncoding, WeightNode


def _exact_op(node: WeightNode, x: torch.Tensor, w: torch.Tensor, backend: Backend) -> torch.Tensor:
    """``w ⋆ x`` (one group, no bias) as an exact int64 accumulator."""
    x_max = max_magnitude(node.in_bits, node.in_signed)
    if node.spatial:
        out = int_conv2d(x, w, None, node.stride, node.padding, node.dilation, 1, x_max, backend)
    else:
        out = int_linear(x, w, None, x_max, backend)
    return out.to(torch.int64)


def _shift_add_rows(
    node: WeightNode,
    x: torch.Tensor,
    sign: torch.Tensor,
    shifts: tuple[torch.Tensor, torch.Tensor],
    backend: Backend,
) -> torch.Tensor:
    """SP2 rows: Σ over both terms and every shift value s of (signed selection of x) << s."""
    acc = None
    for shift in shifts:
        for s in torch.unique(shift[shift >= 0]).tolist():
            plane = torch.where(shift == s, sign, torch.zeros_like(sign))
            term = torch.bitwise_left_shift(_exact_op(node, x, plane, backend), s)
            acc = term if acc is None else acc + term
    return acc if acc is not None else _exact_op(node, x, torch.zeros_like(sign), backend)


def _group_accumulate(
    node: WeightNode, x: torch.Tensor, rows: slice, backend: Backend
) -> torch.Tensor:
    """Accumulator of output channels ``rows`` (one convolution group) from input ``x``."""
    enc = node.encoding
    assert isinstance(enc, MSQEncoding)

    def take(a: np.ndarray, index: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a[rows])).to(torch.int64)[index].to(x.device)

    on_sp2 = torch.from_numpy(np.ascontiguousarray(enc.sp2_rows[rows]))
    parts = []
    fixed_index = torch.nonzero(~on_sp2).flatten()
    if fixed_index.numel():
        parts.append((fixed_index, _exact_op(node, x, take(enc.fixed, fixed_index), backend)))
    sp2_index = torch.nonzero(on_sp2).flatten()
    if sp2_index.numel():
        shifts = (take(enc.shift1, sp2_index), take(enc.shift2, sp2_index))
        acc = _shift_add_rows(node, x, take(enc.sign, sp2_index), shifts, backend)
        parts.append((sp2_index, acc))
    first = parts[0][1]
    out = first.new_empty((first.shape[0], on_sp2.numel(), *first.shape[2:]))
    for index, acc in parts:
        out.index_copy_(1, index.to(x.device), acc)
    return out


def shift_add_accumulate(
    node: WeightNode, x: torch.Tensor, bias: torch.Tensor | None, backend: Backend
) -> torch.Tensor:
    """``W_int ⋆ x + b`` of an MSQ node: SP2 rows by shifts and adds, fixed rows by multiplies.

    Returns int64 with ``backend="int64"`` (and int64 codes); on the float path the exact
    accumulator in the float dtype that holds it (as :func:`hwquant.core.intmath.int_conv2d`).
    """
    groups = node.groups
    per_group, c_in = node.weight.shape[0] // groups, x.shape[1] // groups
    acc = torch.cat(
        [
            _group_accumulate(
                node,
                x[:, g * c_in : (g + 1) * c_in] if groups > 1 else x,
                slice(g * per_group, (g + 1) * per_group),
                backend,
            )
            for g in range(groups)
        ],
        dim=1,
    )
    if bias is not None:
        acc = acc + channel_view(bias.to(torch.int64), acc.dim())
    x_max = max_magnitude(node.in_bits, node.in_signed)
    bound = worst_case_bound(torch.from_numpy(node.weight), x_max, bias)
    dtype = exact_dtype(bound, backend) if x.is_floating_point() else None
    return acc if dtype is None else acc.to(dtype)
