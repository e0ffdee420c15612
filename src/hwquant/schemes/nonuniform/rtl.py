"""Codebook-decode MAC for non-uniform weights (k-quantile codebooks, UNIQ; methods.md §1).

A non-uniform layer stores each weight as an ``index_bits``-bit index into a small codebook of
integer levels on a ``grid_bits``-bit signed grid (:class:`hwquant.ir.intmodel.CodebookEncoding`).
The unit decodes the index with a constant lookup (a ROM of ``len(codebook)`` levels, baked
into the logic) and multiplies the level by the activation: ``acc <= clear ? x·c[i] :
acc + x·c[i]``. ``style`` marks the multiply as in :func:`hwquant.rtl.fixed_mac.fixed_mac`.
With ``style="dsp"`` the ROM holds the signed levels and the DSP48 multiplies and accumulates.
With ``style="lut"`` it holds each level as sign and magnitude: the LUT multiplier forms
``x·|c[i]|`` and the sign is folded into the accumulator's adder as
``acc + (x·|c[i]| ^ {n{neg}}) + neg`` (:func:`hwquant.rtl.unit.accumulator_block`), which keeps
the multiplier's partial products out of the accumulator's full width.

Ports: ``clk, rst, clear, en``; ``x`` [act_bits] (signed when ``act_signed``); ``w``
[index_bits] unsigned, the codebook index (``index_bits = ceil(log2(len(codebook)))``, at least
1; indices beyond the codebook decode to 0); ``acc`` [acc_bits] signed. One unit serves one
codebook row: a layer with per-channel codebooks uses one ROM per output channel.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hwquant.core.errors import ConfigError, UnsupportedLayerError
from hwquant.core.intmath import max_magnitude, qrange
from hwquant.ir.intmodel import CodebookEncoding, WeightNode
from hwquant.rtl.golden import LaneGroup
from hwquant.rtl.resources import Cost, LaneShape, multipliers, register_lane_cost, table_luts
from hwquant.rtl.unit import (
    MAC_STYLES,
    MacStyle,
    Port,
    Product,
    Unit,
    case_block,
    check_choice,
    check_range,
    check_width,
    dsp_attribute,
    index_bits,
    literal,
    mac_unit,
    operand_bits,
    register_emitter,
    signed_operand,
    top_suffix,
)


def check_levels(name: str, levels: Sequence[int], bits: int) -> np.ndarray:
    """``levels`` as int64 if they are distinct integers on a signed ``bits``-bit grid."""
    arr = np.asarray(levels)
    if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer):
        raise ConfigError(
            f"{name} must be a non-empty list of integers, got {levels!r}. Fix: pass the "
            "integer levels of one codebook row (CodebookEncoding.codebook[row])."
        )
    if len(np.unique(arr)) != arr.size:
        raise ConfigError(
            f"{name} {arr.tolist()} repeats a level. Fix: pass distinct levels (each index "
            "must stand for its own value)."
        )
    lo, hi = qrange(bits, signed=True)
    return check_range(name, arr, lo, hi, f"use levels in {lo}..{hi} or a wider grid.")


def rom_case(select: str, target: str, values: Sequence[int], width: int) -> str:
    """A combinational ``case`` that sets ``target`` to ``values[select]`` (0 beyond them)."""
    return case_block(select, target, [literal(int(v), width) for v in values])


def codebook_product(
    act_bits: int,
    codebook: Sequence[int],
    grid_bits: int,
    *,
    act_signed: bool = False,
    style: MacStyle = "dsp",
) -> Product:
    """The decode-and-multiply ``x·codebook[w]`` (module docstring)."""
    check_width("act_bits", act_bits)
    check_width("grid_bits", grid_bits, 2)
    check_choice("style", style, MAC_STYLES)
    levels = check_levels("codebook", codebook, grid_bits)
    x_name, x_decl = signed_operand("x", act_bits, act_signed)
    bits = operand_bits(act_bits, act_signed) + grid_bits
    body = x_decl + f"    {dsp_attribute(style)} wire signed [{bits - 1}:0] product;\n"
    negate = ""
    if style == "dsp":  # the slice multiplies signed levels and accumulates (UG479 MACC)
        body += f"    reg signed [{grid_bits - 1}:0] level;\n"
        body += rom_case("w", "level", levels.tolist(), grid_bits)
        body += f"    assign product = {x_name} * level;\n"
    else:  # sign and magnitude from the ROM; the sign goes to the accumulator's carry-in
        negate, mag = "neg", max(1, int(np.abs(levels).max()).bit_length())
        words = [(int(v < 0) << mag) | abs(int(v)) for v in levels]
        body += f"    reg [{mag}:0] level;\n" + rom_case("w", "level", words, mag + 2)
        body += f"    wire {negate} = level[{mag}];\n"
        body += f"    wire signed [{mag}:0] magnitude = {{1'b0, level[{mag - 1}:0]}};\n"
        body += f"    assign product = {x_name} * magnitude;\n"
    sign = "s" if act_signed else "u"
    params = {
        "act_bits": act_bits,
        "codebook": ",".join(str(int(v)) for v in levels),
        "index_bits": index_bits(len(levels)),
        "grid_bits": grid_bits,
        "act_signed": int(act_signed),
        "style": style,
    }
    digest = top_suffix(levels.tolist())
    return Product(
        "codebook",
        f"a{act_bits}{sign}_k{len(levels)}_g{grid_bits}_{style}_{digest}",
        params,
        Port("x", "input", act_bits, act_signed),
        Port("w", "input", index_bits(len(levels)), False),
        bits,
        max_magnitude(act_bits, act_signed) * int(np.abs(levels).max()),
        body,
        dsp_attribute(style),
        negate,
    )


@register_emitter
def codebook_mac(
    act_bits: int,
    codebook: Sequence[int],
    grid_bits: int,
    acc_bits: int,
    *,
    act_signed: bool = False,
    style: MacStyle = "dsp",
) -> Unit:
    """A codebook-decode MAC (module docstring). ``acc_bits`` must hold one product."""
    product = codebook_product(act_bits, codebook, grid_bits, act_signed=act_signed, style=style)
    return mac_unit("codebook_mac", product, acc_bits)


def encode_codebook_indices(indices: np.ndarray, codebook_size: int) -> np.ndarray:
    """Port words of codebook indices (the index itself, checked against the codebook)."""
    fix = f"use indices into the {codebook_size}-level codebook (CodebookEncoding.indices)."
    return check_range("codebook index", indices, 0, codebook_size - 1, fix)


def codebook_lane_groups(node: WeightNode) -> list[LaneGroup]:
    """The processing array of a codebook node: every row on lookup-MAC lanes
    (:func:`codebook_product`) sharing the layer's one codebook; the weight words are the
    indices."""
    enc = node.encoding
    assert isinstance(enc, CodebookEncoding)
    if enc.codebook.shape[0] != 1:
        raise UnsupportedLayerError(
            f"layer '{node.name}' stores its weights as {type(enc).__name__} with one codebook "
            "per output channel; the array's lanes share one codebook. Fix: export a layer "
            "with a per-layer codebook, or a fixed-point / MSQ layer."
        )
    rows = np.arange(node.weight.shape[0])
    product = codebook_product(
        node.in_bits, enc.codebook[0].tolist(), enc.grid_bits, act_signed=node.in_signed
    )
    return [("codebook", rows, product, enc.indices.reshape(len(rows), -1))]


def codebook_lane_cost(lane: LaneShape) -> Cost:
    """A codebook lane's cost (:mod:`hwquant.rtl.resources`): per product the index -> level
    table (``2^weight_field`` levels of ``product_bits − in_bits`` bits) and a multiplier of
    the code by the level.

    >>> codebook_lane_cost(LaneShape("codebook", 2, 4, 10, 4, "ecp5"))
    Cost(luts=12.0, dsps=2, brams=0, ffs=0)
    """
    level_bits = lane.product_bits - lane.in_bits
    return Cost(
        lane.simd * table_luts(2**lane.weight_field, level_bits, lane.family),
        dsps=lane.simd * multipliers(lane.in_bits + 1, level_bits, lane.family),
    )


register_lane_cost("codebook", codebook_lane_cost)
