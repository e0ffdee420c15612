"""Concatenation (``torch.cat``): codes of one scale side by side, unchanged.

``prepare`` gives the layers producing a concatenation's inputs *one* shared activation
quantizer (:mod:`hwquant.qat.shared_scales`), so every input carries codes of the same scale
``α`` and ``cat(α·a, α·b) = α·cat(a, b)``: the op moves codes and keeps their scale, exact with
no arithmetic (DenseNet's dense blocks, U-Net's skips, Inception's branches).

* IR node: :class:`ConcatNode` (``axis``: the dimension joined, after the batch);
* QAT: ``prepare`` keeps ``torch.cat`` / ``torch.concat`` / ``torch.concatenate`` as it is;
* lowering: the joined dimension, made non-negative from the traced rank (the batch
  dimension is refused);
* engine: ``torch.cat`` of the code tensors;
* export: ONNX ``Concat`` (moves float32 codes exactly);
* hardware: the two-input channel block :func:`block` (one pixel of both maps per cycle, each
  channel's code widened to the output's format); other forms are refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import fx, nn

from hwquant.core.errors import UnsupportedLayerError
from hwquant.engine.integer import RunContext
from hwquant.hw.folding import Fold
from hwquant.ir.intmodel import IntNode
from hwquant.ir.ops import OpHandler, register_op
from hwquant.qat.naming import describe
from hwquant.rtl.network.stream import (
    Block,
    FeatureMap,
    block_ports,
    control_lines,
    counter_lines,
    module_text,
    write_address_lines,
)
from hwquant.rtl.unit import index_bits

if TYPE_CHECKING:  # the export needs the optional onnx package: imported on use
    from hwquant.export.graph import Graph, QuantStyle

FUNCTIONS = (torch.cat, torch.concat, torch.concatenate)
"""The functions lowered to a concatenation."""


@dataclass
class ConcatNode(IntNode):
    """The inputs' codes joined along ``axis`` (1: channels of ``[N, C, H, W]``)."""

    axis: int = 1
    op: ClassVar[str] = "concat"


def keeps(node: fx.Node, mod: nn.Module | None) -> bool:
    """Whether fx ``node`` is a concatenation (``torch.cat`` and its aliases)."""
    return node.op == "call_function" and node.target in FUNCTIONS


def lower(node: fx.Node, mod: nn.Module | None, inputs: list[str], name: str) -> ConcatNode | None:
    """The ConcatNode of a kept ``torch.cat``, its dimension made non-negative.

    Raises:
        UnsupportedLayerError: the concatenation joins along the batch dimension.
    """
    if not keeps(node, mod):
        return None
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", node.kwargs.get("axis", 0))
    axis = dim % len(node.meta["tensor_meta"].shape)
    if axis == 0:
        raise UnsupportedLayerError(
            f"'{name}' ({describe(node)}) joins along the batch dimension (dim={dim}); an "
            "integer model maps each sample on its own. Fix: concatenate along the channels, "
            "torch.cat([a, b], dim=1)."
        )
    return ConcatNode(name, inputs, axis)


def execute(node: ConcatNode, inputs: list[torch.Tensor], context: RunContext) -> torch.Tensor:
    """``torch.cat`` of the code tensors."""
    return torch.cat(inputs, node.axis)


def export(
    g: Graph, node: ConcatNode, shapes: dict[str, tuple[int, ...]], style: QuantStyle
) -> None:
    """ONNX ``Concat``."""
    from hwquant.export.graph import activation_shape

    g.op("Concat", node.inputs, node.name, activation_shape(shapes[node.name]), axis=node.axis)


def block(node: ConcatNode, inputs: list[FeatureMap], fold: Fold, module: str) -> Block:
    """The concatenation block: per pixel, the channels of map 0 then those of map 1.

    Each channel's code is widened to the output's format (the wider of the two; signed if
    either is): a signed code is sign-extended, an unsigned one zero-extended. Pipeline
    (``depth = 3``): address → both RAM reads → the written word.

    Raises:
        UnsupportedLayerError: not two maps of one size joined along the channels.
    """
    if node.axis != 1 or len(inputs) != 2 or len({(m.height, m.width) for m in inputs}) != 1:
        raise UnsupportedLayerError(
            f"concatenation '{node.name}' joins {len(inputs)} maps "
            f"({', '.join(str(m.shape()) for m in inputs)}) along axis {node.axis}; the network "
            "generator builds a channel concatenation of two maps of one size. Fix: join two "
            "maps at a time along dim=1 (nest torch.cat), or use the integer engine or the "
            "exported graph for this model."
        )
    a, b = inputs
    signed = a.signed or b.signed
    bits = max(m.bits + (signed and not m.signed) for m in inputs)
    out = FeatureMap(a.channels + b.channels, a.height, a.width, bits, signed)
    steps, depth = a.pixels, 3
    aw = index_bits(a.pixels)
    lines = control_lines(steps, depth) + counter_lines([("px", a.pixels)], "issue")
    lines += [
        "    reg v_1, v_2;",
        "    always @(posedge clk) begin",
        "        if (rst) begin v_1 <= 0; v_2 <= 0; wr_en <= 0; end",
        "        else begin v_1 <= issue; v_2 <= v_1; wr_en <= v_2; end",
        f"        rd_addr_0 <= px[{aw - 1}:0]; rd_addr_1 <= px[{aw - 1}:0];",
        "    end",
        *write_address_lines(),
        "    always @(posedge clk) begin",
    ]
    channel = 0
    for port, fmap in enumerate(inputs):
        for c in range(fmap.channels):
            word = f"rd_data_{port}[{c * fmap.bits} +: {fmap.bits}]"
            pad = bits - fmap.bits
            sign = f"rd_data_{port}[{c * fmap.bits + fmap.bits - 1}]"
            fill = f"{{{pad}{{{sign}}}}}" if fmap.signed else f"{pad}'d0"
            value = f"{{{fill}, {word}}}" if pad else word
            lines.append(f"        wr_data[{channel * bits} +: {bits}] <= {value};")
            channel += 1
    lines.append("    end")
    verilog = module_text(module, block_ports([a, b], out), lines)
    return Block(node.name, node.op, module, verilog, list(node.inputs), out, steps, depth, {}, {})


register_op(
    OpHandler(
        "concat",
        ConcatNode,
        lower=lower,
        execute=execute,
        export=export,
        block=block,
        keeps=keeps,
        passthrough=True,
    )
)
