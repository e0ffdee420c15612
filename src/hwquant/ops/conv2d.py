"""The 2-D convolution op: ``acc = W_int ⋆ x + b_int``, then requantization.

* IR node: :class:`~hwquant.ir.intmodel.ConvNode` (shared with the golden vectors and the
  schemes' weight kernels, so it lives in :mod:`hwquant.ir.intmodel`);
* QAT: ``prepare`` fuses ``Conv2d → [BatchNorm2d] → [ReLU|ReLU6]`` into a
  :class:`~hwquant.qat.nn.QConv2d` (:func:`hwquant.qat.prepare.build_weight_layer`);
* lowering: a QConv2d becomes a ConvNode with its stride, padding, dilation and groups;
* engine: :meth:`ConvNode.product` (``int_conv2d``) in the weight-layer machinery of
  :func:`hwquant.engine.integer.weight_node` (accumulator, overflow policy, requantization);
* export: one ONNX ``Conv`` per product in :func:`hwquant.export.graph.weight_layer`;
* hardware: the PE x SIMD sliding-window block of :mod:`hwquant.rtl.network.weight_layer`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import fx, nn

from hwquant.core.errors import HwquantError
from hwquant.engine.integer import RunContext, weight_node
from hwquant.hw.folding import Fold
from hwquant.ir.intmodel import ConvNode, WeightEncoding
from hwquant.ir.ops import OpHandler, register_op
from hwquant.qat.fusion import FusedSpec, Fusion, LayerContext
from hwquant.qat.lower import lower_weight_layer
from hwquant.qat.nn import QConv2d
from hwquant.qat.prepare import build_weight_layer, fuse_weight_layer
from hwquant.rtl.network import weight_layer as weight_block
from hwquant.rtl.network.stream import Block, FeatureMap

if TYPE_CHECKING:  # the export needs the optional onnx package: imported on use
    from hwquant.export.graph import Graph, QuantStyle, Shape


def fuse(fusion: Fusion, node: fx.Node, mod: nn.Module | None) -> tuple[fx.Node, FusedSpec] | None:
    """A ``Conv2d`` with the BatchNorm2d and ReLU/ReLU6 that follow it, fused into its node; a
    BatchNorm2d that follows no Conv2d, as a depthwise 1x1 identity convolution
    (:func:`hwquant.qat.prepare.fuse_batchnorm`)."""
    return fuse_weight_layer(fusion, node, mod, "conv2d", nn.Conv2d, nn.BatchNorm2d)


def build(spec: FusedSpec, layer: LayerContext) -> QConv2d:
    """The QAT convolution (the weight layers' shared build)."""
    return build_weight_layer(QConv2d, spec, layer)


def lower(node: fx.Node, mod: nn.Module | None, inputs: list[str], name: str) -> ConvNode | None:
    """The ConvNode of a QAT convolution."""
    if not isinstance(mod, QConv2d):
        return None
    geometry = dict(stride=mod.stride, padding=mod.padding, dilation=mod.dilation)
    return lower_weight_layer(mod, inputs, ConvNode, **geometry, groups=mod.groups)


def execute(node: ConvNode, inputs: list[torch.Tensor], context: RunContext) -> torch.Tensor:
    """The engine's step: check the input's channels, then the weight-layer machinery."""
    (x,) = inputs
    expected, got, what = node.weight.shape[1] * node.groups, x.shape[1], "channels"
    if x.dim() != 4:
        expected, got, what = "a 4-D (N, C, H, W) batch", f"{x.dim()}-D", "input"
    if expected != got:
        raise HwquantError(
            f"layer '{node.name}' takes {expected} {what}, got {got}. Fix: give the model "
            "input of the shape it was lowered with (channels and image size)."
        )
    return weight_node(node, x, context)


def onnx_product(
    g: Graph,
    node: ConvNode,
    weight: np.ndarray,
    bias: np.ndarray | None,
    encoding: WeightEncoding | None,
    out: str,
    shape: Shape,
    style: QuantStyle,
) -> str:
    """``weight ⋆ x + bias`` as one ONNX ``Conv`` with the node's geometry."""
    suffix = out[len(node.name) :].replace("/acc", "")
    inputs = [node.inputs[0], style.weight(g, f"{node.name}/weight{suffix}", weight, encoding)]
    if bias is not None:
        inputs.append(g.f32(f"{node.name}/bias{suffix}", bias))
    return g.op(
        "Conv",
        inputs,
        out,
        shape,
        strides=list(node.stride),
        pads=[*node.padding, *node.padding],
        dilations=list(node.dilation),
        group=node.groups,
        kernel_shape=list(weight.shape[2:]),
    )


def export(g: Graph, node: ConvNode, shapes: dict[str, tuple[int, ...]], style: QuantStyle) -> None:
    """The exported graph's nodes: product(s), then requantization."""
    from hwquant.export.graph import weight_layer

    weight_layer(g, node, shapes, style, onnx_product)


def block(node: ConvNode, inputs: list[FeatureMap], fold: Fold, module: str) -> Block:
    """The network accelerator's sliding-window PE x SIMD block."""
    return weight_block.emit(node, inputs, fold.pe, fold.simd, module)


register_op(
    OpHandler(
        "conv2d",
        ConvNode,
        lower=lower,
        execute=execute,
        export=export,
        block=block,
        fuse=fuse,
        build=build,
        folded=True,
    )
)
