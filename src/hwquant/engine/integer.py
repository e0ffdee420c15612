"""The integer engine: runs an :class:`~hwquant.ir.intmodel.IntModel` with integer arithmetic.

Every value is an integer and every operation is exact: accumulation by :func:`int_conv2d` /
:func:`int_linear`, requantization by integer multiply and shift, max pooling by comparison.
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

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from hwquant.core.errors import HwquantError
from hwquant.core.intmath import (
    Backend,
    bits_needed,
    channel_view,
    float_requant_exact,
    int_conv2d,
    int_linear,
    max_magnitude,
    qrange,
    requantize,
    split_nibbles,
    window_sum,
    worst_case_bound,
)
from hwquant.ir.encodings import find_encoding
from hwquant.ir.intmodel import (
    AddNode,
    AvgPoolNode,
    ConvNode,
    IntModel,
    MaxPoolNode,
    ReshapeNode,
    WeightNode,
)


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
    layer_stats: dict[str, LayerStats] = {}
    for node in model.nodes:
        args = [values[name] for name in node.inputs]
        if isinstance(node, WeightNode):
            _check_layer_input(node, args[0])
            layer_stats[node.name] = LayerStats()
            values[node.name] = _weight_node(
                node, args[0], four_bit, backend, layer_stats[node.name], scan=stats
            )
        else:
            values[node.name] = _EXECUTORS[type(node)](node, *args)
    traced = {name: v.to(torch.int64) for name, v in values.items()} if trace else {}
    return RunResult(values[model.output].to(torch.int64), layer_stats, traced)


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


def _check_layer_input(node: WeightNode, x: torch.Tensor) -> None:
    """Raise, naming the layer, when ``x`` does not have the channels/features it takes."""
    if isinstance(node, ConvNode):
        expected, got, what = node.weight.shape[1] * node.groups, x.shape[1], "channels"
        if x.dim() != 4:
            expected, got, what = "a 4-D (N, C, H, W) batch", f"{x.dim()}-D", "input"
    else:
        expected, got, what = node.weight.shape[1], x.shape[-1], "features"
    if expected != got:
        raise HwquantError(
            f"layer '{node.name}' takes {expected} {what}, got {got}. Fix: give the model "
            "input of the shape it was lowered with (channels and image size)."
        )


def _weight_node(
    node: WeightNode,
    x: torch.Tensor,
    four_bit: bool,
    backend: Backend,
    stats: LayerStats,
    scan: bool,
) -> torch.Tensor:
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
                partial = _accumulate(node, xd, wd, None, 15, backend).to(torch.int64)
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
        acc = _accumulate(node, x, weight, bias, x_max, backend)
        multiplies_per_mac = 1
    stats.macs = acc.numel() * node.fan_in()
    stats.multiply_free_macs = stats.macs // max(node.weight.shape[0], 1) * free_rows
    stats.four_bit_multiplies = stats.macs * multiplies_per_mac if four_bit else 0
    peak = worst_case_bound(weight, x_max, bias)
    if acc.numel() and (scan or bits_needed(peak) > node.acc_bits):
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


def _accumulate(
    node: WeightNode,
    x: torch.Tensor,
    w: torch.Tensor,
    b: torch.Tensor | None,
    x_max: int,
    backend: Backend,
) -> torch.Tensor:
    if isinstance(node, ConvNode):
        return int_conv2d(
            x, w, b, node.stride, node.padding, node.dilation, node.groups, x_max, backend
        )
    return int_linear(x, w, b, x_max, backend)


def _add(node: AddNode, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if a.is_floating_point():
        # floor((a·M_a + b·M_b)/2^s + 1/2) in float64: codes below 2^16 times multipliers below
        # 2^31 and their sum stay below 2^53, so every step is exact
        ra, rb = (m * 2.0**-node.shift for m in node.mults)
        total = a.to(torch.float64).mul_(ra).add_(b, alpha=rb).add_(0.5).floor_()
        return total.to(torch.float32).clamp_(node.lo, node.hi)
    acc = a * node.mults[0] + b * node.mults[1]
    one = torch.ones(1, dtype=torch.int64, device=acc.device)
    return requantize(acc, one, one * node.shift, node.lo, node.hi)


def _avgpool(node: AvgPoolNode, x: torch.Tensor) -> torch.Tensor:
    if node.kernel_size is None and x.shape[-1] * x.shape[-2] != node.window:
        raise HwquantError(
            f"layer '{node.name}' was lowered for a {node.window}-element global pool, got "
            f"{x.shape[-2]}x{x.shape[-1]}. Fix: lower the model with an example input of the "
            "size you run it on."
        )
    total = window_sum(x, node.kernel_size)
    one = torch.ones(1, dtype=torch.int64, device=x.device)
    mult = one * node.mult
    if total.is_floating_point() and not float_requant_exact(int(total.abs().max()), mult):
        total = total.to(torch.int64)
    return requantize(total, mult, one * node.shift, node.lo, node.hi)


def _maxpool(node: MaxPoolNode, x: torch.Tensor) -> torch.Tensor:
    # Max pooling only compares; float64 holds every int64 code exactly.
    work = x if x.is_floating_point() else x.to(torch.float64)
    out = F.max_pool2d(
        work, node.kernel_size, node.stride, node.padding, node.dilation, node.ceil_mode
    )
    return out.to(x.dtype)


def _reshape(node: ReshapeNode, x: torch.Tensor) -> torch.Tensor:
    if x[0].numel() != math.prod(node.shape):
        raise HwquantError(
            f"node '{node.name}' reshapes {math.prod(node.shape)} values per sample into "
            f"{node.shape}, got {tuple(x.shape[1:])}. Fix: give the model input of the shape "
            "it was lowered with (channels and image size)."
        )
    return x.reshape(x.shape[0], *node.shape)


_EXECUTORS = {AddNode: _add, AvgPoolNode: _avgpool, MaxPoolNode: _maxpool, ReshapeNode: _reshape}
