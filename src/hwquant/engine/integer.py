"""The integer engine: runs an :class:`~hwquant.intmodel.IntModel` with integer arithmetic.

Every tensor is int64 and every operation is exact: accumulation by :func:`int_conv2d` /
:func:`int_linear` (float units used only where a proven bound makes them exact, see
:mod:`hwquant.intmath`), requantization by integer multiply and shift, max pooling by
comparison. Each weight layer's accumulator is fitted to its width and overflow policy, and the
overflows are counted.

With ``four_bit=True`` each multiplication is done by 4-bit multipliers: both operands are split
into 4-bit digits (``x = Σ 16^i x_i``, ``w = Σ 16^j w_j``) and ``acc = Σ_ij 16^(i+j) (x_i ⋆ w_j)
+ b`` (LLSQ §4.3: 8-bit inputs as two 4-bit halves). The result is identical by linearity.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from hwquant.errors import HwquantError
from hwquant.intmath import Backend, bits_needed, int_conv2d, int_linear, requantize, split_nibbles
from hwquant.intmodel import (
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
) -> RunResult:
    """Execute ``model`` on integer input codes ``x_int``; see the module docstring."""
    if x_int.is_floating_point():
        raise HwquantError(
            "the integer engine takes integer codes, got a float tensor. Fix: pass "
            "int_model.quantize_input(x)."
        )
    values: dict[str, torch.Tensor] = {model.input.name: x_int.to(torch.int64)}
    stats: dict[str, LayerStats] = {}
    for node in model.nodes:
        args = [values[name] for name in node.inputs]
        if isinstance(node, WeightNode):
            stats[node.name] = LayerStats()
            values[node.name] = _weight_node(node, args[0], four_bit, backend, stats[node.name])
        else:
            values[node.name] = _EXECUTORS[type(node)](node, *args)
    output = values[model.output]
    return RunResult(output, stats, values if trace else {})


def _weight_node(
    node: WeightNode, x: torch.Tensor, four_bit: bool, backend: Backend, stats: LayerStats
) -> torch.Tensor:
    weight = torch.from_numpy(node.weight).to(x.device)
    bias = None if node.bias is None else torch.from_numpy(node.bias).to(x.device)
    if four_bit:
        x_digits = split_nibbles(x, node.in_bits)
        w_digits = split_nibbles(weight, node.weight_bits)
        acc = torch.zeros((), dtype=torch.int64, device=x.device)
        for i, xd in enumerate(x_digits):
            for j, wd in enumerate(w_digits):
                acc = acc + (_accumulate(node, xd, wd, None, backend) << (4 * (i + j)))
        if bias is not None:
            acc = acc + _channel_view(bias, acc.dim())
        multiplies_per_mac = len(x_digits) * len(w_digits)
    else:
        acc = _accumulate(node, x, weight, bias, backend)
        multiplies_per_mac = 1
    stats.macs = acc.numel() * node.fan_in()
    stats.four_bit_multiplies = stats.macs * multiplies_per_mac if four_bit else 0
    stats.max_abs_acc = int(acc.abs().max()) if acc.numel() else 0
    acc, stats.overflows = node.accumulator.apply(acc, node.name)
    if node.mult is None:
        return acc
    mult = _channel_view(torch.from_numpy(node.mult).to(x.device), acc.dim())
    shift = _channel_view(torch.from_numpy(node.shift).to(x.device), acc.dim())
    return requantize(acc, mult, shift, node.lo, node.hi)


def _accumulate(
    node: WeightNode, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, backend: Backend
) -> torch.Tensor:
    if isinstance(node, ConvNode):
        return int_conv2d(x, w, b, node.stride, node.padding, node.dilation, node.groups, backend)
    return int_linear(x, w, b, backend)


def _channel_view(t: torch.Tensor, ndim: int) -> torch.Tensor:
    return t.view(1, -1, *([1] * (ndim - 2))) if t.numel() > 1 else t.reshape(())


def _add(node: AddNode, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    acc = a * node.mults[0] + b * node.mults[1]
    one = torch.ones((), dtype=torch.int64, device=acc.device)
    return requantize(acc, one, one * node.shift, node.lo, node.hi)


def _avgpool(node: AvgPoolNode, x: torch.Tensor) -> torch.Tensor:
    if node.kernel_size is None:
        if x.shape[-1] * x.shape[-2] != node.window:
            raise HwquantError(
                f"layer '{node.name}' was lowered for a {node.window}-element global pool, got "
                f"{x.shape[-2]}x{x.shape[-1]}. Fix: lower the model with an example input of the "
                "size you run it on."
            )
        total = x.sum(dim=(-2, -1), keepdim=True)
    else:
        k = node.kernel_size
        n, c, h, w = x.shape
        total = x[..., : h - h % k, : w - w % k].reshape(n, c, h // k, k, w // k, k).sum((3, 5))
    one = torch.ones((), dtype=torch.int64, device=x.device)
    return requantize(total, one * node.mult, one * node.shift, node.lo, node.hi)


def _maxpool(node: MaxPoolNode, x: torch.Tensor) -> torch.Tensor:
    # Max pooling only compares; float64 holds every code exactly.
    out = F.max_pool2d(
        x.to(torch.float64),
        node.kernel_size,
        node.stride,
        node.padding,
        node.dilation,
        node.ceil_mode,
    )
    return out.to(torch.int64)


def _reshape(node: ReshapeNode, x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], *node.shape)


_EXECUTORS = {AddNode: _add, AvgPoolNode: _avgpool, MaxPoolNode: _maxpool, ReshapeNode: _reshape}
