"""The integer engine: runs an :class:`~hwquant.ir.intmodel.IntModel` with integer arithmetic.

Every value is an integer and every operation is exact: accumulation by
:func:`~hwquant.core.intmath.int_conv2d` / :func:`~hwquant.core.intmath.int_linear`,
requantization by integer multiply and shift, max pooling by comparison. Each node runs the
executor its op registered (:mod:`hwquant.ir.ops`; the ops are declared in :mod:`hwquant.ops`);
this module holds the run loop and the machinery every weight op shares (:func:`weight_node`).
With ``backend="auto"`` codes travel in float32 registers and the float units do the work
wherever a bound proves it exact (see :mod:`hwquant.core.intmath`); ``backend="int64"`` does every
step in int64 arithmetic, the reference. Each weight layer's accumulator is fitted to its width
and overflow policy, and the overflows are counted.

A weight node whose :class:`~hwquant.ir.intmodel.WeightEncoding` has a registered handler
(:mod:`hwquant.ir.encodings`) is accumulated by its kernel, the way its scheme's hardware does
it: SP2 rows by shifts and adds, codebook weights by lookup. The result is the same integer.

With ``four_bit=True`` each multiplication is done by 4-bit multipliers: both operands are split
into 4-bit digits (``x = Σ 16^i x_i``, ``w = Σ 16^j w_j``) and ``acc = Σ_ij 16^(i+j) (x_i ⋆ w_j)
+ b`` (LLSQ §4.3: 8-bit inputs as two 4-bit halves). The result is identical by linearity.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from hwquant.core.errors import HwquantError
from hwquant.core.intmath import (
    Backend,
    bits_needed,
    channel_view,
    float_requant_exact,
    max_magnitude,
    qrange,
    requantize,
    split_nibbles,
    worst_case_bound,
)
from hwquant.ir.encodings import find_encoding
from hwquant.ir.intmodel import IntModel, WeightNode
from hwquant.ir.ops import get_op


@dataclass
class LayerStats:
    """What one weight layer's accumulator saw during a run."""

    overflows: int = 0
    max_abs_acc: int = 0
    macs: int = 0
    four_bit_multiplies: int = 0
    multiply_free_macs: int = 0  # MACs of rows the encoding runs by shifts and adds (SP2)

    @property
    def bits_used(self) -> int:
        """Signed accumulator bits the observed values needed."""
        return bits_needed(self.max_abs_acc)


@dataclass
class RunContext:
    """What every op's executor sees of a run besides its node and inputs: the run's options
    and the statistics of the weight layers run so far (filled by :func:`weight_node`)."""

    four_bit: bool = False
    backend: Backend = "auto"
    scan: bool = True
    """Scan every accumulator's range (``run(stats=True)``), not only where it can overflow."""
    stats: dict[str, LayerStats] = field(default_factory=dict)


@dataclass
class RunResult:
    """Output codes, per-layer accumulator statistics and (if traced) every node's output."""

    output: torch.Tensor
    stats: dict[str, LayerStats]
    values: dict[str, torch.Tensor] = field(default_factory=dict)


def run(
    model: IntModel,
    x_int: torch.Tensor,
    *,
    four_bit: bool = False,
    backend: Backend = "auto",
    trace: bool = False,
    stats: bool = True,
) -> RunResult:
    """Execute ``model`` on integer input codes ``x_int``; see the module docstring.

    ``stats=False`` skips the scan of each accumulator's range wherever the layer's worst-case
    bound already proves that it cannot overflow (the results are the same; only the
    ``max_abs_acc`` figures stay 0).
    """
    check_input_codes(model, x_int)
    code_dtype = torch.int64 if backend == "int64" else torch.float32
    values: dict[str, torch.Tensor] = {model.input.name: x_int.to(code_dtype)}
    context = RunContext(four_bit, backend, stats)
    for node in model.nodes:
        args = [values[name] for name in node.inputs]
        values[node.name] = get_op(node.op).execute(node, args, context)
    traced = {name: v.to(torch.int64) for name, v in values.items()} if trace else {}
    return RunResult(values[model.output].to(torch.int64), context.stats, traced)


def check_input_codes(model: IntModel, x_int: object) -> None:
    """Raise unless ``x_int`` is a tensor of integer codes inside the input quantizer's range."""
    fix = "Fix: pass int_model.quantize_input(x) of a float torch tensor x."
    if not isinstance(x_int, torch.Tensor):
        raise HwquantError(
            f"the integer engine takes a torch tensor of integer codes, got "
            f"{type(x_int).__name__}. {fix}"
        )
    if x_int.is_floating_point() or x_int.dtype == torch.bool:
        raise HwquantError(f"the integer engine takes integer codes, got {x_int.dtype}. {fix}")
    lo, hi = qrange(model.input.bits, model.input.signed)
    if x_int.numel() and (int(x_int.min()) < lo or int(x_int.max()) > hi):
        raise HwquantError(
            f"input codes span [{int(x_int.min())}, {int(x_int.max())}], outside the "
            f"{model.input.bits}-bit input range [{lo}, {hi}] of '{model.input.name}'. {fix}"
        )


def weight_node(node: WeightNode, x: torch.Tensor, context: RunContext) -> torch.Tensor:
    """The output of weight layer ``node`` on codes ``x``: its accumulator ``W_int ⋆ x + b``
    (:meth:`~hwquant.ir.intmodel.WeightNode.product`: the op's geometry), fitted to the node's
    accumulator width and overflow policy, then requantized (module docstring); its statistics
    go to ``context.stats``."""
    four_bit, backend = context.four_bit, context.backend
    stats = context.stats[node.name] = LayerStats()
    weight = torch.from_numpy(node.weight).to(x.device)
    bias = None if node.bias is None else torch.from_numpy(node.bias).to(x.device)
    x_max = max_magnitude(node.in_bits, node.in_signed)
    free_rows = 0  # output channels accumulated without multiplies (shift-add SP2 rows)
    plane_overflows = 0  # digit-plane sums beyond the accumulator (four_bit)
    if four_bit:
        x_digits = split_nibbles(x.to(torch.int64), node.in_bits)
        w_digits = split_nibbles(weight, node.weight_bits)
        acc = torch.zeros((), dtype=torch.int64, device=x.device)
        plane_overflows = 0
        for i, xd in enumerate(x_digits):
            for j, wd in enumerate(w_digits):
                partial = node.product(xd, wd, None, 15, backend).to(torch.int64)
                # each digit plane is summed in the layer's accumulator too
                partial, count = node.accumulator.apply(
                    partial, f"{node.name}' digit plane '{i},{j}"
                )
                plane_overflows += count
                acc = acc + (partial << (4 * (i + j)))
        if bias is not None:
            acc = acc + channel_view(bias, acc.dim())
        multiplies_per_mac = len(x_digits) * len(w_digits)
    elif (handler := find_encoding(type(node.encoding))) is not None:
        acc = handler.accumulate(node, x, bias, backend)
        multiplies_per_mac = 1
        free_rows = node.encoding.multiply_free_rows()
    else:
        acc = node.product(x, weight, bias, x_max, backend)
        multiplies_per_mac = 1
    stats.macs = acc.numel() * node.fan_in()
    stats.multiply_free_macs = stats.macs // max(node.weight.shape[0], 1) * free_rows
    stats.four_bit_multiplies = stats.macs * multiplies_per_mac if four_bit else 0
    peak = worst_case_bound(weight, x_max, bias)
    if acc.numel() and (context.scan or bits_needed(peak) > node.acc_bits):
        extremes = tuple(int(v) for v in torch.aminmax(acc))
        stats.max_abs_acc = peak = max(-extremes[0], extremes[1])
        acc, stats.overflows = node.accumulator.apply(acc, node.name, extremes)
    stats.overflows += plane_overflows
    if node.mult is None:
        return acc
    mult = channel_view(torch.from_numpy(node.mult).to(x.device), acc.dim())
    shift = channel_view(torch.from_numpy(node.shift).to(x.device), acc.dim())
    if acc.is_floating_point() and not float_requant_exact(peak, mult):
        acc = acc.to(torch.int64)
    return requantize(acc, mult, shift, node.lo, node.hi)
