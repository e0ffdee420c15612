"""The narrowest accumulators a model needs on a data set, next to the worst-case bound.

A weight layer's accumulator must hold ``acc = W_int ⋆ x + b``.
:meth:`WeightNode.worst_case_bits` bounds it for every input in range (``Σ|w|·max|x| + |b|``,
:func:`hwquant.core.intmath.worst_case_bound`); real data use less. :func:`accumulator_widths` runs
the model on a batch with every accumulator at 62 bits (nothing overflows), reads each layer's
largest |accumulator| from the engine's statistics (``LayerStats.bits_used``), and confirms each
width by running again with that layer one bit narrower under the ``raise`` policy: the width
found is the smallest with no overflow on that data, and all layers at their widths at once
reproduce the wide run exactly (no layer's input changes, since none overflows).

:func:`adversarial_run` runs one layer on the inputs that reach its proved extremes
(:func:`adversarial_inputs`: every input code at the end of its range that the weight's sign
favours), the check of accumulator-aware training's bound (docs/llsq.md §5).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from hwquant.core.errors import AccumulatorOverflowError
from hwquant.core.intmath import Backend, qrange
from hwquant.engine import RunResult, run
from hwquant.ir.intmodel import InputSpec, IntModel, WeightNode

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


def adversarial_inputs(node: WeightNode) -> torch.Tensor:
    """Input codes that drive every output channel of ``node`` to its extremes.

    Row ``c`` sets each input of channel ``c``'s window to ``x_hi`` where the channel's weight is
    positive and to ``x_lo`` where it is negative (the largest sum), row ``C + c`` the reverse
    (the smallest); inputs with a zero weight, and the other groups' channels, are 0. A
    convolution gets one (dilated) kernel-sized window, so its output is 1x1.
    """
    x_lo, x_hi = qrange(node.in_bits, node.in_signed)
    w = torch.from_numpy(node.weight)
    high = torch.where(w > 0, x_hi, torch.where(w < 0, x_lo, 0))
    low = torch.where(w > 0, x_lo, torch.where(w < 0, x_hi, 0))
    extremes = torch.cat([high, low])  # [2C, C_in/groups, (kh, kw)]
    if not node.spatial:
        return extremes.to(torch.int64)
    c_out, c_group, kh, kw = node.weight.shape
    dh, dw = node.dilation
    x = torch.zeros(2 * c_out, c_group * node.groups, dh * (kh - 1) + 1, dw * (kw - 1) + 1)
    group = (torch.arange(2 * c_out) % c_out) // (c_out // node.groups)
    for row in range(2 * c_out):
        first = int(group[row]) * c_group
        x[row, first : first + c_group, ::dh, ::dw] = extremes[row].double()
    return x.to(torch.int64)


def adversarial_run(
    node: WeightNode, *, four_bit: bool = False, backend: Backend = "auto"
) -> RunResult:
    """Run ``node`` alone (its accumulator width and policy, no requantization) on
    :func:`adversarial_inputs`; the output ``[2C, C]`` (``[2C, C, 1, 1]`` for a convolution)
    holds channel ``c``'s largest sum at ``[c, c]`` and its smallest at ``[C + c, c]``."""
    alone = dataclasses.replace(
        node, inputs=["adversary"], mult=None, shift=None, out_scale=None, encoding=None
    )
    if alone.spatial:
        alone.padding, alone.stride = (0, 0), (1, 1)
    spec = InputSpec("adversary", 1.0, node.in_bits, node.in_signed)
    model = IntModel(spec, [alone], alone.name, np.ones(node.weight.shape[0]))
    return run(model, adversarial_inputs(node), four_bit=four_bit, backend=backend)
