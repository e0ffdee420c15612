"""Nearest-neighbour upsampling by integer factors: each code repeated ``f_h × f_w`` times.

``nn.Upsample(scale_factor=2)`` (mode "nearest") copies every pixel into an ``f_h × f_w``
block; on codes ``c`` of scale ``s`` that is ``s·c`` copied, so the op is exact on codes and
keeps their scale (U-Net's decoder, FPN top-down paths).

* IR node: :class:`UpsampleNode` (``factor``: ``(f_h, f_w)``);
* QAT: ``prepare`` keeps ``nn.Upsample`` / ``nn.UpsamplingNearest2d`` and
  ``F.interpolate`` / ``F.upsample`` with ``mode="nearest"`` and integer ``scale_factor``;
  every other mode or a ``size=`` is refused, naming the option;
* lowering: an :class:`UpsampleNode` of the factors;
* engine: ``repeat_interleave`` along height and width;
* export: ONNX ``Resize`` (mode "nearest", ``asymmetric`` coordinates, ``floor``: output pixel
  ``(y, x)`` reads input ``(⌊y/f_h⌋, ⌊x/f_w⌋)``, PyTorch's rule), which copies float32 codes;
* hardware: :func:`block`, line replication (each input row read ``f_h`` times, each pixel
  of it ``f_w`` times), one output pixel per cycle; its cost :func:`cost`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from hwquant.core.errors import UnsupportedLayerError
from hwquant.engine.integer import RunContext
from hwquant.hw.folding import Fold
from hwquant.ir.intmodel import IntNode
from hwquant.ir.ops import OpHandler, register_op
from hwquant.qat.naming import describe
from hwquant.rtl.network import estimate
from hwquant.rtl.network.stream import (
    Block,
    FeatureMap,
    block_ports,
    control_lines,
    counter_lines,
    module_text,
    window_address,
    write_address_lines,
)
from hwquant.rtl.resources import FAMILIES
from hwquant.rtl.unit import index_bits

if TYPE_CHECKING:  # the export needs the optional onnx package: imported on use
    from hwquant.export.graph import Graph, QuantStyle

FUNCTIONS = (F.interpolate, F.upsample, F.upsample_nearest)
"""The functions that upsample."""
_ARGS = ("size", "scale_factor", "mode", "align_corners", "recompute_scale_factor", "antialias")
"""The arguments of ``F.interpolate`` after the input, in order."""


@dataclass
class UpsampleNode(IntNode):
    """Each code repeated ``factor[0]`` times down and ``factor[1]`` times across."""

    factor: tuple[int, int] = (2, 2)
    op: ClassVar[str] = "upsample"


def _options(node: fx.Node, mod: nn.Module | None) -> dict[str, object] | None:
    """The upsampling options of fx ``node`` (None: it does not upsample)."""
    if isinstance(mod, nn.Upsample):  # UpsamplingNearest2d is one
        return {
            "size": mod.size,
            "scale_factor": mod.scale_factor,
            "mode": mod.mode,
            "align_corners": mod.align_corners,
        }
    if node.op != "call_function" or node.target not in FUNCTIONS:
        return None
    options = dict(zip(_ARGS, node.args[1:], strict=False)) | dict(node.kwargs)
    options.setdefault("mode", "nearest")
    return options


def factor(node: fx.Node, mod: nn.Module | None) -> tuple[int, int] | None:
    """``(f_h, f_w)`` of a nearest upsampling by integer factors, None for another op.

    Raises:
        UnsupportedLayerError: an upsampling in any other form, naming the option.
    """
    options = _options(node, mod)
    if options is None:
        return None
    scale = options.get("scale_factor")
    factors = scale if isinstance(scale, tuple | list) else (scale, scale)
    if options.get("mode") != "nearest":
        problem = f"mode={options.get('mode')!r}"
    elif options.get("size") is not None:
        problem = f"size={options['size']} (a target size, not a factor)"
    elif len(factors) != 2 or not all(float(f).is_integer() and f >= 1 for f in factors):
        problem = f"scale_factor={scale}"
    else:
        return int(factors[0]), int(factors[1])
    what = type(mod).__name__ if mod is not None else describe(node)
    raise UnsupportedLayerError(
        f"upsampling '{node.name}' ({what}) has {problem}; hwquant upsamples codes by copying "
        "them, exactly for nearest-neighbour upsampling by integer factors only. Fix: use "
        "nn.Upsample(scale_factor=2) (mode='nearest') or F.interpolate(x, scale_factor=2), or "
        "a ConvTranspose2d."
    )


def keeps(node: fx.Node, mod: nn.Module | None) -> bool:
    """Whether fx ``node`` is a nearest upsampling by integer factors (other forms raise)."""
    return factor(node, mod) is not None


def lower(
    node: fx.Node, mod: nn.Module | None, inputs: list[str], name: str
) -> UpsampleNode | None:
    """The UpsampleNode of a kept upsampling."""
    f = factor(node, mod)
    return None if f is None else UpsampleNode(name, inputs, f)


def execute(node: UpsampleNode, inputs: list[torch.Tensor], context: RunContext) -> torch.Tensor:
    """Each code repeated ``f_h`` times along the height and ``f_w`` along the width."""
    (x,) = inputs
    if x.dim() != 4:
        raise UnsupportedLayerError(
            f"upsampling '{node.name}' takes a 4-D (N, C, H, W) map, got {x.dim()}-D. Fix: give "
            "the model input of the shape it was lowered with."
        )
    return x.repeat_interleave(node.factor[0], 2).repeat_interleave(node.factor[1], 3)


def export(
    g: Graph, node: UpsampleNode, shapes: dict[str, tuple[int, ...]], style: QuantStyle
) -> None:
    """ONNX ``Resize``, nearest, asymmetric coordinates, floor (module docstring)."""
    from hwquant.export.graph import activation_shape

    scales = g.f32(f"{node.name}/scales", np.array([1, 1, *node.factor], np.float32))
    g.op(
        "Resize",
        [node.inputs[0], "", scales],
        node.name,
        activation_shape(shapes[node.name]),
        mode="nearest",
        coordinate_transformation_mode="asymmetric",
        nearest_mode="floor",
    )


def block(node: UpsampleNode, inputs: list[FeatureMap], fold: Fold, module: str) -> Block:
    """The upsampling block: line replication, output pixel ``(Y, X)`` the input pixel
    ``(⌊Y/f_h⌋, ⌊X/f_w⌋)``, in the output's raster order.

    The input image is already whole in its edge (an image FIFO), so no line buffer is added:
    nested counters, fastest first ``fx < f_w``, ``ox < W``, ``fy < f_h``, ``oy < H``, walk the
    output, and the read address is ``oy·W + ox`` (the sliding-window unit's shift-add address
    with a 1x1 window, :func:`~hwquant.rtl.network.stream.window_address`). Each input row is
    thus read ``f_h`` times and each pixel of it ``f_w`` times in a row. One output pixel per
    cycle, ``steps = f_h·H·f_w·W``; pipeline (``depth = 3``): address → RAM read → the word
    written unchanged (codes and their scale are kept).
    """
    (fmap,) = inputs
    fh, fw = node.factor
    out = FeatureMap(fmap.channels, fmap.height * fh, fmap.width * fw, fmap.bits, fmap.signed)
    steps, depth = out.pixels, 3
    counters = [("fx", fw), ("ox", fmap.width), ("fy", fh), ("oy", fmap.height)]
    lines = control_lines(steps, depth) + counter_lines(counters, "issue")
    lines += ["    wire ky = 1'b0, kx = 1'b0;", *window_address((1, 1), (0, 0), fmap)]
    lines += [
        "    reg v_1, v_2;",
        "    always @(posedge clk) begin",
        "        if (rst) begin v_1 <= 0; v_2 <= 0; wr_en <= 0; end",
        "        else begin v_1 <= issue; v_2 <= v_1; wr_en <= v_2; end",
        f"        rd_addr_0 <= pixel[{index_bits(fmap.pixels) - 1}:0];",
        "        wr_data <= rd_data_0;",
        "    end",
        *write_address_lines(),
    ]
    verilog = module_text(module, block_ports([fmap], out), lines)
    info = {
        "factor": [fh, fw],
        "cost": {f: asdict(cost(fmap, (fh, fw))) for f in FAMILIES},
    }
    return Block(
        node.name, node.op, module, verilog, list(node.inputs), out, steps, depth, {}, info
    )


def cost(fmap: FeatureMap, factor: tuple[int, int]) -> estimate.Cost:
    """The upsampling block's estimated cost (any family), in the units of
    :mod:`hwquant.rtl.network.estimate`: the schedule counter and the four walk counters
    (three LUT4s per bit each), the shift-add read address (one adder of address bits per set
    bit of ``W``), and flip-flops for the written word, the counters, the read and write
    addresses and the tags. The buffering is the input edge's, costed with the edges. Checked
    against one ECP5 synthesis of the block alone (``benchmarks/results/network_blocks.json``).
    """
    (fh, fw), steps = factor, fmap.pixels * factor[0] * factor[1]
    walk = sum(estimate.bits(n) for n in (fw, fmap.width, fh, fmap.height))
    schedule = index_bits(steps + 3)
    address = index_bits(fmap.pixels)
    luts = estimate.LUTS_PER_COUNTER_BIT * (walk + schedule) + address * fmap.width.bit_count()
    ffs = fmap.word_bits + walk + schedule + address + index_bits(steps) + 4
    return estimate.Cost(luts=luts, ffs=ffs)


register_op(
    OpHandler(
        "upsample",
        UpsampleNode,
        lower=lower,
        execute=execute,
        export=export,
        block=block,
        keeps=keeps,
        passthrough=True,
    )
)
