"""The fully connected op: ``acc = W_int · x + b_int``, then requantization.

* IR node: :class:`~hwquant.ir.intmodel.LinearNode`;
* QAT: ``prepare`` fuses ``Linear → [BatchNorm1d] → [ReLU|ReLU6]`` into a
  :class:`~hwquant.qat.nn.QLinear` (:func:`hwquant.qat.prepare.build_weight_layer`);
* lowering: a QLinear becomes a LinearNode;
* engine: :meth:`LinearNode.product` (``int_linear``) in
  :func:`hwquant.engine.integer.weight_node`;
* export: ``MatMul`` with the transposed weights and an ``Add`` of the bias (hls4ml reads no
  ``Gemm``) in :func:`hwquant.export.graph.weight_layer`;
* hardware: the PE x SIMD block of :mod:`hwquant.rtl.network.weight_layer`, reading the
  ``[C, H, W]`` map of a flatten itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import fx, nn

from hwquant.core.errors import HwquantError
from hwquant.engine.integer import RunContext, weight_node
from hwquant.hw.folding import Fold
from hwquant.ir.intmodel import LinearNode, WeightEncoding
from hwquant.ir.ops import OpHandler, register_op
from hwquant.qat.fusion import FusedSpec, Fusion, LayerContext
from hwquant.qat.lower import lower_weight_layer
from hwquant.qat.nn import QLinear
from hwquant.qat.prepare import build_weight_layer, fuse_weight_layer
from hwquant.rtl.network import weight_layer as weight_block
from hwquant.rtl.network.stream import Block, FeatureMap

if TYPE_CHECKING:  # the export needs the optional onnx package: imported on use
    from hwquant.export.graph import Graph, QuantStyle, Shape


def fuse(fusion: Fusion, node: fx.Node, mod: nn.Module | None) -> tuple[fx.Node, FusedSpec] | None:
    """A ``Linear`` with the BatchNorm1d and ReLU/ReLU6 that follow it, fused into its node; a
    BatchNorm1d that follows no Linear, as a diagonal identity Linear
    (:func:`hwquant.qat.prepare.fuse_batchnorm`)."""
    return fuse_weight_layer(fusion, node, mod, "linear", nn.Linear, nn.BatchNorm1d)


def build(spec: FusedSpec, layer: LayerContext) -> QLinear:
    """The QAT fully connected layer (the weight layers' shared build)."""
    return build_weight_layer(QLinear, spec, layer)


def lower(node: fx.Node, mod: nn.Module | None, inputs: list[str], name: str) -> LinearNode | None:
    """The LinearNode of a QAT fully connected layer."""
    return lower_weight_layer(mod, inputs, LinearNode) if isinstance(mod, QLinear) else None


def execute(node: LinearNode, inputs: list[torch.Tensor], context: RunContext) -> torch.Tensor:
    """The engine's step: check the input's features, then the weight-layer machinery."""
    (x,) = inputs
    if node.weight.shape[1] != x.shape[-1]:
        raise HwquantError(
            f"layer '{node.name}' takes {node.weight.shape[1]} features, got {x.shape[-1]}. "
            "Fix: give the model input of the shape it was lowered with (channels and image "
            "size)."
        )
    return weight_node(node, x, context)


def onnx_product(
    g: Graph,
    node: LinearNode,
    weight: np.ndarray,
    bias: np.ndarray | None,
    encoding: WeightEncoding | None,
    out: str,
    shape: Shape,
    style: QuantStyle,
) -> str:
    """``x · weightᵀ + bias`` as ``MatMul`` (and ``Add``)."""
    suffix = out[len(node.name) :].replace("/acc", "")
    name = f"{node.name}/weight{suffix}"
    if encoding is not None and style.decodes(encoding):
        # a decoder op writes [out, in]: MatMul reads its transpose
        decoded = style.weight(g, name, weight, encoding)
        wt = g.op("Transpose", [decoded], f"{name}/t", weight.T.shape, perm=[1, 0])
    else:
        wt = style.weight(g, name, np.ascontiguousarray(weight.T), None)
    if bias is None:
        return g.op("MatMul", [node.inputs[0], wt], out, shape)
    product = g.op("MatMul", [node.inputs[0], wt], f"{out}/matmul", shape)
    return g.op("Add", [product, g.f32(f"{node.name}/bias{suffix}", bias)], out, shape)


def export(
    g: Graph, node: LinearNode, shapes: dict[str, tuple[int, ...]], style: QuantStyle
) -> None:
    """The exported graph's nodes: product(s), then requantization."""
    from hwquant.export.graph import weight_layer

    weight_layer(g, node, shapes, style, onnx_product)


def block(node: LinearNode, inputs: list[FeatureMap], fold: Fold, module: str) -> Block:
    """The network accelerator's PE x SIMD block."""
    return weight_block.emit(node, inputs, fold.pe, fold.simd, module)


register_op(
    OpHandler(
        "linear",
        LinearNode,
        lower=lower,
        execute=execute,
        export=export,
        block=block,
        fuse=fuse,
        build=build,
        folded=True,
    )
)
