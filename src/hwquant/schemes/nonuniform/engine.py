"""Codebook weights in the integer engine: decode by lookup, then multiply integers
(Liss et al. 2018; methods.md §1.2(b), §7.1 step 5).

A layer quantized with a codebook stores each weight as a b-bit index ``j`` and the layer's table
of ``k = 2^b`` integers ``c`` on a B-bit grid. The hardware reads ``c_j`` from the table (a
k-entry LUT) and feeds it to an ordinary B-bit multiplier::

    W_int = c[j]                         (lookup; one table row per layer or per output channel)
    acc   = W_int ⋆ x + b_int            (exact integer multiply-accumulate)

which is the plain integer path on the decoded weights, so the result is the same integer.
"""

from __future__ import annotations

import torch

from hwquant.core.intmath import Backend, max_magnitude
from hwquant.ir.intmodel import CodebookEncoding, WeightNode


def lookup(encoding: CodebookEncoding, device: torch.device) -> torch.Tensor:
    """``codebook[row, indices]`` on ``device``: the integer weights (int64) an encoding holds."""
    codebook = torch.from_numpy(encoding.codebook).to(device)
    indices = torch.from_numpy(encoding.indices).to(device)
    flat = indices.reshape(indices.shape[0], -1)
    table = codebook.expand(flat.shape[0], -1) if codebook.shape[0] == 1 else codebook
    return table.gather(1, flat).reshape(indices.shape)


def codebook_accumulate(
    node: WeightNode, x: torch.Tensor, bias: torch.Tensor | None, backend: Backend
) -> torch.Tensor:
    """The exact accumulator of a codebook-encoded node: look the weights up, then MAC."""
    weight = lookup(node.encoding, x.device)
    x_max = max_magnitude(node.in_bits, node.in_signed)
    return node.product(x, weight, bias, x_max, backend)
