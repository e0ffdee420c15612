"""Multiply-free integer kernels of table units (methods.md §3.1, §7.3 item 4).

Every function here takes and returns integer tensors and uses only indexing, gathers,
additions, comparisons and reshapes: no multiplication, no division, no float. Index
arithmetic that a lookup needs is done with precomputed vectors (``digit[j][x] = x·B^j``, made
with ``arange`` steps when the layer is compiled), so even the addresses are lookups and adds.

**Grouped lookups.** A layer's accumulator is ``acc[o] = Σ_k T[x_k, w[o,k]]``. Per input
position k the column ``G[k, x, o] = T[x, w[o,k]]`` holds every output channel's entry for
input index x, so one row gather serves all outputs. Grouping g consecutive positions,
``G_g[q, d_0 + d_1·B + … , o] = Σ_j G[q·g + j, d_j, o]`` is precomputed by additions, and one
gather of a row of ``G_g`` replaces g; ``B = |A| + 1`` counts the zero row that stands for the
convolution's zero padding (its index is ``|A|``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from hwquant.qat.options import pair

ROW_BUDGET = 2**22  # entries of a compiled lookup table (16 MiB of int32)
MAX_GROUP = 4
GATHER_CHUNK = 2**23  # gathered entries per chunk of a batch


@dataclass(frozen=True)
class LookupPlan:
    """A layer's compiled grouped lookup: rows ``[(K'/g)·B^g, O]`` (int32) and the address
    vectors ``digit[j]`` (``x·B^j``) and ``base`` (``q·B^g``); ``pad_index = B − 1``."""

    rows: torch.Tensor
    digits: tuple[torch.Tensor, ...]
    base: torch.Tensor
    group: int
    fan_in: int
    pad_index: int


def choose_group(
    entries_per_row: int, fan_in: int, outputs: int, block_budget: int | None = None
) -> int:
    """Largest group g ≤ MAX_GROUP whose table ``B^g·⌈K/g⌉·O`` fits :data:`ROW_BUDGET` and,
    given ``block_budget``, whose block of one group ``B^g·O`` fits it (a tighter, cache-sized
    bound: :func:`hwquant.schemes.tables.native.choose_group`)."""
    group = 1
    for g in range(2, MAX_GROUP + 1):
        block = entries_per_row**g * outputs
        if block * -(-fan_in // g) <= ROW_BUDGET and block <= (block_budget or block):
            group = g
    return group


def compile_lookup(table: torch.Tensor, weight_index: torch.Tensor, group: int) -> LookupPlan:
    """Precompute the grouped rows of ``table`` [|A|, |W|] for ``weight_index`` [O, K]."""
    entries = table.shape[0] + 1
    outputs, fan_in = weight_index.shape
    padded = torch.cat([table, torch.zeros_like(table[:1])]).to(torch.int32)  # zero pad row
    columns = padded[:, weight_index].permute(2, 0, 1)  # [K, B, O]: G[k, x, o]
    extra = -fan_in % group
    columns = torch.cat([columns, torch.zeros_like(columns[:1]).expand(extra, -1, -1)])
    groups = columns.shape[0] // group
    columns = columns.reshape(groups, group, entries, outputs)
    rows = columns[:, 0]
    for j in range(1, group):
        rows = (columns[:, j, :, None, :] + rows[:, None, :, :]).reshape(groups, -1, outputs)
    digits = tuple(
        torch.arange(0, entries ** (j + 1), entries**j, dtype=torch.int64) for j in range(group)
    )
    stride = entries**group
    base = torch.arange(0, groups * stride, stride, dtype=torch.int64)
    return LookupPlan(
        rows.reshape(-1, outputs).contiguous(), digits, base, group, fan_in, entries - 1
    )


def accumulate(plan: LookupPlan, columns: torch.Tensor) -> torch.Tensor:
    """``acc[n, p, o] = Σ_k T[x[n,p,k], w[o,k]]`` for input indices ``columns`` [N, P, K]."""
    n, p, k = columns.shape
    extra = plan.base.numel() * plan.group - k
    columns = F.pad(columns, (0, extra), value=plan.pad_index)
    columns = columns.reshape(n, p, -1, plan.group)
    address = plan.base + plan.digits[0][columns[..., 0]]
    for j in range(1, plan.group):
        address = address + plan.digits[j][columns[..., j]]
    outputs = plan.rows.shape[1]
    per_image = max(1, p * address.shape[2] * outputs)
    chunk = max(1, GATHER_CHUNK // per_image)
    parts = []
    for start in range(0, n, chunk):
        part = address[start : start + chunk]
        gathered = plan.rows.index_select(0, part.flatten())
        # exact in 32 bits: fold.check_table bounds |acc| by 2^31 − 1
        parts.append(gathered.view(*part.shape, outputs).sum(2, dtype=torch.int32))
    return torch.cat(parts)


Pair = tuple[int, int]


def _windows(
    x: torch.Tensor,
    kernel: Pair,
    stride: Pair,
    dilation: Pair = (1, 1),
    spatial: tuple[int, int] = (2, 3),
) -> tuple[list[torch.Tensor], int, int]:
    """The ``k_h·k_w`` strided shifts of ``x`` over its two ``spatial`` dimensions (one per
    window offset ``(d_h·u, d_w·v)``, each with those dimensions cut to Ho, Wo), and Ho, Wo."""
    dim_h, dim_w = spatial
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    out_h = (x.shape[dim_h] - dh * (kh - 1) - 1) // sh + 1
    out_w = (x.shape[dim_w] - dw * (kw - 1) - 1) // sw + 1
    span_h, span_w = sh * (out_h - 1) + 1, sw * (out_w - 1) + 1
    shifts = [
        x.narrow(dim_h, dy, span_h).narrow(dim_w, dx, span_w)[
            (slice(None),) * dim_h + (slice(None, None, sh),)
        ][(slice(None),) * dim_w + (slice(None, None, sw),)]
        for dy in range(0, dh * kh, dh)
        for dx in range(0, dw * kw, dw)
    ]
    return shifts, out_h, out_w


def patches(
    x: torch.Tensor,
    kernel: int | Pair,
    stride: int | Pair,
    padding: int | Pair,
    pad_index: int,
    dilation: int | Pair = 1,
) -> tuple[torch.Tensor, int, int]:
    """Input indices of every convolution window, ``[N, Ho·Wo, C·k_h·k_w]`` ordered as the
    flattened weight ``[O, C, k_h, k_w]``, the padding filled with ``pad_index``; and Ho, Wo.
    ``kernel``, ``stride``, ``padding`` and ``dilation`` are one number or ``(h, w)``."""
    ph, pw = pair(padding)
    if ph or pw:
        x = F.pad(x, (pw, pw, ph, ph), value=pad_index)
    shifts, out_h, out_w = _windows(
        x.permute(0, 2, 3, 1), pair(kernel), pair(stride), pair(dilation), spatial=(1, 2)
    )
    cols = torch.stack(shifts, dim=-1)  # [N, Ho, Wo, C, kh·kw]: one copy, already window-major
    return cols.reshape(x.shape[0], out_h * out_w, -1), out_h, out_w


def count_passed(acc: torch.Tensor, tau: torch.Tensor, descending: torch.Tensor) -> torch.Tensor:
    """Next index = number of thresholds passed: ``#{k: acc ≥ τ_k}``, or ``#{k: acc ≤ τ_k}``
    on descending channels. ``acc`` is channel-last ``[..., O]``, ``tau`` is ``[O, n−1]``."""
    value = acc.unsqueeze(-1)
    passed = torch.where(descending[:, None], value <= tau, value >= tau)
    return passed.sum(-1)


def lookup_add(table: torch.Tensor, row_start: torch.Tensor, a: torch.Tensor, b: torch.Tensor):
    """``S[a, b]`` read from the flattened add table at ``row_start[a] + b``."""
    return table.flatten()[row_start[a] + b]


def window_max(
    x: torch.Tensor,
    kernel: int | Pair,
    stride: int | Pair,
    padding: int | Pair,
    dilation: int | Pair = 1,
    ceil_mode: bool = False,
) -> torch.Tensor:
    """Max pooling of indices (levels are increasing, so the max index is the max level;
    padding with index 0 never wins); sizes are one number or ``(h, w)``. With ``ceil_mode``
    the last window may run past the padded input (PyTorch's rule: it starts inside the input
    or its left padding), its missing positions padding too."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = map(pair, (kernel, stride, padding, dilation))
    extra = [0, 0]
    if ceil_mode:
        for axis, (size, k, s, p, d) in enumerate(
            ((x.shape[2], kh, sh, ph, dh), (x.shape[3], kw, sw, pw, dw))
        ):
            span = d * (k - 1) + 1
            out = -(-(size + 2 * p - span) // s) + 1
            if (out - 1) * s >= size + p:
                out -= 1
            extra[axis] = max(0, (out - 1) * s + span - (size + 2 * p))
    if ph or pw or any(extra):
        x = F.pad(x, (pw, pw + extra[1], ph, ph + extra[0]), value=0)
    shifts, _, _ = _windows(x, (kh, kw), (sh, sw), (dh, dw))
    result = shifts[0]
    for part in shifts[1:]:
        result = torch.maximum(result, part)
    return result
