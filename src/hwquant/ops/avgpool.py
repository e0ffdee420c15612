"""Average pooling: the exact window sum, then requantization by ``mult >> shift``.

``AvgPool2d(k)`` with stride ``k`` or a global pool (``AdaptiveAvgPool2d(1)``):
``code = clamp((Σ_window x · M + 2^(s−1)) >> s, lo, hi)`` (:class:`~hwquant.qat.nn.QAvgPool`).

* IR node: :class:`~hwquant.ir.intmodel.AvgPoolNode` (``kernel_size`` None: global);
* lowering: a :class:`~hwquant.qat.nn.QAvgPool`; the example input fixes a global pool's window;
* engine: :func:`~hwquant.core.intmath.window_sum`, then the requantization;
* export: window sums by an all-ones depthwise ``Conv``, then the requantization plan;
* hardware: the pooling block of :mod:`hwquant.rtl.network.pool`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import fx, nn

from hwquant.core.errors import HwquantError
from hwquant.core.intmath import float_requant_exact, requantize, window_sum
from hwquant.engine.integer import RunContext
from hwquant.hw.folding import Fold
from hwquant.ir.intmodel import AvgPoolNode
from hwquant.ir.ops import OpHandler, register_op
from hwquant.qat.lower import out_scale
from hwquant.qat.nn import QAvgPool
from hwquant.rtl.network import pool
from hwquant.rtl.network.stream import Block, FeatureMap

if TYPE_CHECKING:  # the export needs the optional onnx package: imported on use
    from hwquant.export.graph import Graph, QuantStyle


def lower(node: fx.Node, mod: nn.Module | None, inputs: list[str], name: str) -> AvgPoolNode | None:
    """The AvgPoolNode of a QAT average pool (its window from the traced input shape)."""
    if not isinstance(mod, QAvgPool):
        return None
    shape = node.args[0].meta["tensor_meta"].shape
    window = shape[-1] * shape[-2] if mod.kernel_size is None else mod.kernel_size**2
    r = mod.integer_params(window)
    return AvgPoolNode(
        mod.qname,
        inputs,
        mod.kernel_size,
        window,
        int(r.mult[0]),
        int(r.shift[0]),
        r.lo,
        r.hi,
        out_scale(mod),
    )


def execute(node: AvgPoolNode, inputs: list[torch.Tensor], context: RunContext) -> torch.Tensor:
    """The engine's step (module docstring)."""
    (x,) = inputs
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


def export(
    g: Graph, node: AvgPoolNode, shapes: dict[str, tuple[int, ...]], style: QuantStyle
) -> None:
    """Window sums by an all-ones depthwise ``Conv``, then the requantization plan."""
    from hwquant.export.graph import activation_shape, refuse, requantize_codes
    from hwquant.export.requant import FLOAT32_EXACT

    shape = activation_shape(shapes[node.name])
    x = node.inputs[0]
    window_peak = node.window * g.peaks[x]
    fix = "use a smaller pooling window or lower the input's bits"
    if window_peak >= FLOAT32_EXACT:
        refuse(
            node.name,
            [f"its window sums can reach {window_peak}, beyond float32's exact 2^24"],
            fix,
        )
    # a global pool's window is the whole plane
    channels, height, width = shapes[x][1:]
    kernel = [height, width] if node.kernel_size is None else [node.kernel_size] * 2
    ones = g.f32(f"{node.name}/ones", np.ones((channels, 1, *kernel)))
    total = g.op(
        "Conv",
        [x, ones],
        f"{node.name}/sum",
        shape,
        kernel_shape=kernel,
        strides=kernel,
        pads=[0, 0, 0, 0],
        dilations=[1, 1],
        group=channels,
    )
    mults = [np.array([node.mult])]
    terms = [(total, window_peak)]
    requantize_codes(g, node.name, terms, mults, node.shift, node.lo, node.hi, shape, style, fix)


def block(node: AvgPoolNode, inputs: list[FeatureMap], fold: Fold, module: str) -> Block:
    """The network accelerator's average-pooling block."""
    return pool.emit_avg(node, inputs, module)


register_op(
    OpHandler("avgpool", AvgPoolNode, lower=lower, execute=execute, export=export, block=block)
)
