"""Average pooling: the exact window sum, then requantization by ``mult >> shift``.

``AvgPool2d(k)`` with stride ``k`` or a global pool (``AdaptiveAvgPool2d(1)``):
``code = clamp((Σ_window x · M + 2^(s−1)) >> s, lo, hi)`` (:class:`~hwquant.qat.nn.QAvgPool`).

* IR node: :class:`~hwquant.ir.intmodel.AvgPoolNode` (``kernel_size`` None: global);
* QAT: ``prepare`` makes ``AvgPool2d(k)`` / ``F.avg_pool2d(x, k)`` with stride k,
  ``AdaptiveAvgPool2d(1)`` / ``F.adaptive_avg_pool2d(x, 1)`` and ``x.mean((2, 3))`` (then a
  flatten, without ``keepdim``) a :class:`~hwquant.qat.nn.QAvgPool`;
* lowering: a QAvgPool; the example input fixes a global pool's window;
* engine: :func:`~hwquant.core.intmath.window_sum`, then the requantization;
* export: window sums by an all-ones depthwise ``Conv``, then the requantization plan;
* hardware: the pooling block of :mod:`hwquant.rtl.network.pool`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from hwquant.core.errors import HwquantError, UnsupportedLayerError
from hwquant.core.intmath import float_requant_exact, requantize, window_sum
from hwquant.engine.integer import RunContext
from hwquant.hw.folding import Fold
from hwquant.ir.intmodel import AvgPoolNode
from hwquant.ir.ops import OpHandler, register_op
from hwquant.qat.fusion import FusedSpec, Fusion, LayerContext
from hwquant.qat.lower import out_scale
from hwquant.qat.naming import node_name
from hwquant.qat.nn import QAvgPool
from hwquant.qat.options import check_avg_pool
from hwquant.rtl.network import pool
from hwquant.rtl.network.stream import Block, FeatureMap

if TYPE_CHECKING:  # the export needs the optional onnx package: imported on use
    from hwquant.export.graph import Graph, QuantStyle


AVG_POOL_ARGS = (
    "kernel_size",
    "stride",
    "padding",
    "ceil_mode",
    "count_include_pad",
    "divisor_override",
)
"""The arguments of ``F.avg_pool2d`` after the input, in order."""
SPATIAL_DIMS = ({2, 3}, {-2, -1})
"""The dims of a global average pool written as a mean of an NCHW tensor."""


def kernel(node: fx.Node, mod: nn.Module | None) -> int | bool | None:
    """None for a global average pool (``AdaptiveAvgPool2d(1)``, its functional form, or
    ``x.mean((2, 3))``), k for ``AvgPool2d(k)`` / ``F.avg_pool2d(x, k)`` with stride k, False
    otherwise. Other forms of ``F.avg_pool2d`` are refused, naming the option."""
    if isinstance(mod, nn.AdaptiveAvgPool2d) and mod.output_size in (1, (1, 1)):
        return None
    if node.op == "call_function" and node.target is F.adaptive_avg_pool2d:
        size = node.args[1] if len(node.args) > 1 else node.kwargs.get("output_size")
        if size in (1, (1, 1)):
            return None
    if spatial_mean(node) is not None:
        return None
    if node.op == "call_function" and node.target is F.avg_pool2d:
        options = dict(zip(AVG_POOL_ARGS, node.args[1:], strict=False)) | dict(node.kwargs)
        mod = nn.AvgPool2d(**options)
        check_avg_pool(node_name(node), mod)  # refuses any form other than AvgPool2d(k)
    if isinstance(mod, nn.AvgPool2d):
        k, s = mod.kernel_size, mod.stride
        if isinstance(k, int) and s in (k, None) and mod.padding == 0 and not mod.ceil_mode:
            return k
    return False


def spatial_mean(node: fx.Node) -> bool | None:
    """``keepdim`` of ``x.mean((2, 3))`` / ``torch.mean(x, (-2, -1), keepdim)``; None when
    ``node`` is no mean over the two spatial dims (a ``dtype`` is refused)."""
    is_mean = (node.op == "call_method" and node.target == "mean") or (
        node.op == "call_function" and node.target is torch.mean
    )
    if not is_mean:
        return None
    dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    if not isinstance(dims, tuple | list) or set(dims) not in SPATIAL_DIMS:
        return None
    if node.kwargs.get("dtype") is not None:
        raise UnsupportedLayerError(
            f"mean '{node_name(node)}' has dtype={node.kwargs['dtype']}; the quantized average "
            "pool computes in codes. Fix: drop dtype."
        )
    return bool(node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False))


def fuse(fusion: Fusion, node: fx.Node, mod: nn.Module | None) -> tuple[fx.Node, FusedSpec] | None:
    """An average pool as a call of a new layer ``avgpool_<k>``; a spatial mean without
    ``keepdim`` is followed by a flatten (its output is ``[N, C]``)."""
    if (kernel_size := kernel(node, mod)) is False:
        return None
    new = fusion.new_module_node(node, "avgpool", (node.args[0],))
    out = new
    if spatial_mean(node) is False:
        with fusion.gm.graph.inserting_after(new):
            out = fusion.gm.graph.call_function(torch.flatten, (new, 1))
    fusion.collapse(node, node, out)
    return new, FusedSpec("avgpool", options={"kernel_size": kernel_size})


def build(spec: FusedSpec, layer: LayerContext) -> QAvgPool:
    """The QAT average pool (its output signed as its input is: :func:`signed`)."""
    out_q = layer.out_quant(spec)
    return QAvgPool(out_q, spec.options["kernel_size"], layer.recipe.requant_bits)


def signed(spec: FusedSpec, input_signed: Callable[[int], bool]) -> bool:
    """An average of signed codes is signed; of unsigned codes, unsigned."""
    return input_signed(0)


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
    OpHandler(
        "avgpool",
        AvgPoolNode,
        lower=lower,
        execute=execute,
        export=export,
        block=block,
        fuse=fuse,
        build=build,
        signed=signed,
    )
)
