"""Zero insertion, the first half of a transposed convolution: codes spread ``s`` apart, zeros
between and around (:mod:`hwquant.qat.nn.zero_insert`; the second half is a stride-1
``conv2d`` by the flipped kernel, :mod:`hwquant.qat.conv_forms`).

* IR node: :class:`ZeroInsertNode` (``stride``, ``before``, ``after``);
* QAT: ``prepare`` puts a :class:`~hwquant.qat.nn.zero_insert.ZeroInsert` before the
  convolution a ``ConvTranspose2d`` becomes and keeps it as it is;
* lowering: the module's geometry;
* engine: :func:`~hwquant.qat.nn.zero_insert.zero_insert` on the codes (0 is the code of 0);
* export: ONNX ``ConvTranspose`` by a 1x1 kernel of ones per channel (``group = C``, stride
  ``s``: every output is one code times 1 or no term, exact in float32), then ``Pad``;
* hardware: :func:`block`, a source that walks the spread map and emits a zero where no
  code lands; its cost :func:`cost`.

**Why a block of its own and not the convolution's window unit.** Folding the zeros into the
following convolution's sliding-window unit (a window position outside the code grid reads as
padding) would spare the edge of the spread map (``s_h·s_w`` times the input's words) and
let the convolution skip the products by zero, a factor ``s_h·s_w`` in its cycles. It needs a
second window unit in :mod:`hwquant.rtl.network.weight_layer`, whose RTL every measured design
shares; this block leaves that RTL as it is: the spread map is written to an ordinary edge
and the convolution after it is the one every model uses, at the price of that edge and those
cycles. The fused window is the next step where a transposed convolution is the slowest block.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch
from torch import fx, nn

from hwquant.engine.integer import RunContext
from hwquant.hw.folding import Fold
from hwquant.ir.intmodel import IntNode
from hwquant.ir.ops import OpHandler, register_op
from hwquant.qat.nn.zero_insert import ZeroInsert, zero_insert
from hwquant.rtl.network import estimate
from hwquant.rtl.network.stream import (
    Block,
    FeatureMap,
    block_ports,
    control_lines,
    counter_lines,
    module_text,
    write_address_lines,
)
from hwquant.rtl.resources import FAMILIES
from hwquant.rtl.unit import index_bits

if TYPE_CHECKING:  # the export needs the optional onnx package: imported on use
    from hwquant.export.graph import Graph, QuantStyle


@dataclass
class ZeroInsertNode(IntNode):
    """Codes ``stride`` apart, ``before``/``after`` zeros around, along height and width."""

    stride: tuple[int, int] = (1, 1)
    before: tuple[int, int] = (0, 0)
    after: tuple[int, int] = (0, 0)
    op: ClassVar[str] = "zero_insert"


def keeps(node: fx.Node, mod: nn.Module | None) -> bool:
    """Whether fx ``node`` is the zero insertion ``prepare`` put before a transposed conv."""
    return isinstance(mod, ZeroInsert)


def lower(
    node: fx.Node, mod: nn.Module | None, inputs: list[str], name: str
) -> ZeroInsertNode | None:
    """The ZeroInsertNode of a kept :class:`ZeroInsert`."""
    if not isinstance(mod, ZeroInsert):
        return None
    return ZeroInsertNode(name, inputs, tuple(mod.stride), tuple(mod.before), tuple(mod.after))


def execute(node: ZeroInsertNode, inputs: list[torch.Tensor], context: RunContext) -> torch.Tensor:
    """:func:`~hwquant.qat.nn.zero_insert.zero_insert` of the codes."""
    return zero_insert(inputs[0], node.stride, node.before, node.after)


def export(
    g: Graph, node: ZeroInsertNode, shapes: dict[str, tuple[int, ...]], style: QuantStyle
) -> None:
    """ONNX ``ConvTranspose`` (ones, one group per channel, the stride), then ``Pad``."""
    from hwquant.export.graph import activation_shape

    channels = shapes[node.name][1]
    ones = g.f32(f"{node.name}/ones", np.ones((channels, 1, 1, 1), np.float32))
    n, c, h, w = shapes[node.name]
    spread = (h - node.before[0] - node.after[0], w - node.before[1] - node.after[1])
    inner = g.op(
        "ConvTranspose",
        [node.inputs[0], ones],
        f"{node.name}/spread",
        activation_shape((n, c, *spread)),
        strides=list(node.stride),
        group=channels,
        kernel_shape=[1, 1],
    )
    pads = g.const(f"{node.name}/pads", np.array([0, 0, *node.before, 0, 0, *node.after], np.int64))
    g.op("Pad", [inner, pads], node.name, activation_shape(shapes[node.name]))


def code_positions(size: int, stride: int, before: int, after: int) -> list[bool]:
    """Along one axis of the spread map: whether position ``i`` holds a code (``before`` zeros,
    then ``size`` codes ``stride`` apart, then ``after`` zeros).

    >>> code_positions(2, 2, 1, 1)
    [False, True, False, True, False]
    """
    out = [False] * (before + (size - 1) * stride + 1 + after)
    for i in range(size):
        out[before + i * stride] = True
    return out


def _mask(name: str, positions: list[bool]) -> str:
    """A Verilog constant ``name`` whose bit ``i`` is ``positions[i]``."""
    value = sum(1 << i for i, hit in enumerate(positions) if hit)
    return f"    localparam [{len(positions) - 1}:0] {name} = {len(positions)}'h{value:x};"


def block(node: ZeroInsertNode, inputs: list[FeatureMap], fold: Fold, module: str) -> Block:
    """The zero-insertion block: the spread map in raster order, one pixel per cycle.

    Counters ``ox``, ``oy`` walk the output; two constant bit masks (:func:`code_positions`
    of the rows and of the columns) say whether ``(oy, ox)`` holds a code. The codes land in
    the input's raster order, so the read address is a counter of the positions that held a
    code so far (no multiply, no divide). Pipeline (``depth = 3``): address and the code flag
    → RAM read → the word written, or zero where the flag is low (0 is the code of 0 in any
    format). The output has the input's format. ``steps = H_out·W_out``.
    """
    (fmap,) = inputs
    (sh, sw), (bh, bw), (ah, aw) = node.stride, node.before, node.after
    rows = code_positions(fmap.height, sh, bh, ah)
    cols = code_positions(fmap.width, sw, bw, aw)
    out = FeatureMap(fmap.channels, len(rows), len(cols), fmap.bits, fmap.signed)
    steps, depth = out.pixels, 3
    lines = control_lines(steps, depth) + counter_lines(
        [("ox", out.width), ("oy", out.height)], "issue"
    )
    lines += [
        _mask("ROWS", rows),
        _mask("COLS", cols),
        "    wire code = ROWS[oy] && COLS[ox];",
        f"    reg [{index_bits(fmap.pixels) - 1}:0] src;",
        "    reg v_1, v_2, code_1, code_2;",
        "    always @(posedge clk) begin",
        "        if (go) src <= 0;",
        "        else if (issue && code) src <= src + 1;",
        "        if (rst) begin v_1 <= 0; v_2 <= 0; wr_en <= 0; end",
        "        else begin v_1 <= issue; v_2 <= v_1; wr_en <= v_2; end",
        "        rd_addr_0 <= src; code_1 <= code; code_2 <= code_1;",
        f"        wr_data <= code_2 ? rd_data_0 : {out.word_bits}'d0;",
        "    end",
        *write_address_lines(),
    ]
    verilog = module_text(module, block_ports([fmap], out), lines)
    info = {
        "stride": [sh, sw],
        "before": [bh, bw],
        "after": [ah, aw],
        "cost": {f: asdict(cost(fmap, out, f)) for f in FAMILIES},
    }
    return Block(
        node.name, node.op, module, verilog, list(node.inputs), out, steps, depth, {}, info
    )


def cost(fmap: FeatureMap, out: FeatureMap, family: str) -> estimate.Cost:
    """The zero-insertion block's estimated cost on ``family``, in the units of
    :mod:`hwquant.rtl.network.estimate`: the schedule counter, the two walk counters and the
    read counter (three LUT4s per bit each), the two mask look-ups (constant tables of one
    bit), and flip-flops for the written word, the counters, the read and write addresses and
    the tags. The zero word costs no LUT (the written register's synchronous reset). The
    spread map's edge is costed with the edges. Checked against one ECP5 synthesis of the
    block alone (``benchmarks/results/network_blocks.json``)."""
    read = index_bits(fmap.pixels)
    walk = estimate.bits(out.width) + estimate.bits(out.height) + read
    schedule = index_bits(out.pixels + 3)
    luts = estimate.LUTS_PER_COUNTER_BIT * (walk + schedule)
    luts += estimate.table_luts(out.width, 1, family) + estimate.table_luts(out.height, 1, family)
    ffs = out.word_bits + walk + schedule + read + index_bits(out.pixels) + 6
    return estimate.Cost(luts=luts, ffs=ffs)


register_op(
    OpHandler(
        "zero_insert",
        ZeroInsertNode,
        lower=lower,
        execute=execute,
        export=export,
        block=block,
        keeps=keeps,
        passthrough=True,
    )
)
