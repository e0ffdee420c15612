"""The narrowest accumulators a model needs on a data set, next to the worst-case bound.

A weight layer's accumulator must hold ``acc = W_int ⋆ x + b``.
:meth:`WeightNode.worst_case_bits` bounds it for every input in range (``Σ|w|·max|x| + |b|``,
:func:`hwquant.core.intmath.worst_case_bound`); real data use less. :func:`accumulator_widths` runs
the model on a batch with every accumulator at 62 bits (nothing overflows), reads each layer's
largest |accumulator| from the engine's statistics (``LayerStats.bits_used``), and confirms each
width by running again with that layer one bit narrower under the ``raise`` policy: the width
found is the smallest with no overflow on that data, and all layers at their widths at once
reproduce the wide run exactly (no layer's input changes, since none overflows).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from hwquant.core.errors import AccumulatorOverflowError
from hwquant.core.intmath import Backend
from hwquant.engine import run
from hwquant.ir.intmodel import IntModel, WeightNode

WIDEST = 62
"""The widest accumulator :class:`hwquant.core.intmath.Accumulator` allows (int64 headroom)."""
NARROWEST = 2


@dataclass(frozen=True)
class AccumulatorWidth:
    """One weight layer's accumulator: the bound and what the data needed."""

    layer: str
    worst_case_bits: int
    """Signed bits no input in range can overflow."""
    observed_bits: int
    """Smallest signed width with no overflow on the data given."""
    max_abs_acc: int
    """Largest |accumulator| seen on the data."""


def accumulator_widths(
    model: IntModel, x_int: torch.Tensor, backend: Backend = "auto"
) -> list[AccumulatorWidth]:
    """Per weight layer of ``model``: the smallest accumulator width with no overflow on the
    integer input batch ``x_int``, and the worst-case width. ``model`` is not changed."""
    wide = copy.deepcopy(model)
    wide.set_accumulator(WIDEST, "raise")
    stats = run(wide, x_int, backend=backend).stats
    widths = []
    for node in wide.weight_nodes():
        bits = max(NARROWEST, stats[node.name].bits_used)
        # bits_used bounds |acc|; a most-negative value -2^(b-1) fits in one bit less
        if bits > NARROWEST and _fits(wide, node, bits - 1, x_int, backend):
            bits -= 1
        widths.append(
            AccumulatorWidth(node.name, node.worst_case_bits(), bits, stats[node.name].max_abs_acc)
        )
    return widths


def _fits(
    model: IntModel, node: WeightNode, bits: int, x_int: torch.Tensor, backend: Backend
) -> bool:
    """True when ``node`` at ``bits`` (policy ``raise``) does not overflow on ``x_int``."""
    saved, node.acc_bits = node.acc_bits, bits
    try:
        run(model, x_int, backend=backend)
    except AccumulatorOverflowError:
        return False
    finally:
        node.acc_bits = saved
    return True
