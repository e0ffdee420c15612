"""Fixed-point multiply-accumulate unit (LLSQ integer layers; methods.md §4.3).

``acc <= clear ? x·w : acc + x·w`` with ``x`` an ``act_bits`` activation code (unsigned after a
ReLU, or signed) and ``w`` a signed ``weight_bits`` weight code: the integer product of the
engine's ``int_conv2d`` / ``int_linear`` inner loop, one per cycle. ``style="dsp"`` marks the
multiply ``use_dsp = "yes"`` (a DSP48 on 7-series), ``style="lut"`` marks it ``"no"`` (a LUT
multiplier).

Ports: ``clk, rst, clear, en``; ``x`` [act_bits] (signed when ``act_signed``); ``w``
[weight_bits] signed, the weight code in two's complement (:func:`encode_fixed_weights`);
``acc`` [acc_bits] signed.
"""

from __future__ import annotations

import numpy as np

from hwquant.core.intmath import max_magnitude
from hwquant.rtl.resources import Cost, LaneShape, multipliers, register_lane_cost
from hwquant.rtl.unit import (
    MAC_STYLES,
    MacStyle,
    Port,
    Product,
    Unit,
    check_choice,
    check_width,
    dsp_attribute,
    mac_unit,
    operand_bits,
    register_emitter,
    signed_operand,
    to_words,
)


def fixed_product(
    act_bits: int, weight_bits: int, *, act_signed: bool = False, style: MacStyle = "dsp"
) -> Product:
    """The multiply ``x·w`` of a fixed-point MAC (module docstring)."""
    check_width("act_bits", act_bits)
    check_width("weight_bits", weight_bits, 2)
    check_choice("style", style, MAC_STYLES)
    x_name, x_decl = signed_operand("x", act_bits, act_signed)
    bits = operand_bits(act_bits, act_signed) + weight_bits
    body = (
        x_decl
        + f"    {dsp_attribute(style)} wire signed [{bits - 1}:0] product;\n"
        + f"    assign product = {x_name} * w;\n"
    )
    sign = "s" if act_signed else "u"
    params = {
        "act_bits": act_bits,
        "weight_bits": weight_bits,
        "act_signed": int(act_signed),
        "style": style,
    }
    return Product(
        "fixed",
        f"a{act_bits}{sign}_w{weight_bits}_{style}",
        params,
        Port("x", "input", act_bits, act_signed),
        Port("w", "input", weight_bits, True),
        bits,
        max_magnitude(act_bits, act_signed) * max_magnitude(weight_bits, True),
        body,
        dsp_attribute(style),
    )


@register_emitter
def fixed_mac(
    act_bits: int,
    weight_bits: int,
    acc_bits: int,
    *,
    act_signed: bool = False,
    style: MacStyle = "dsp",
) -> Unit:
    """A fixed-point MAC (module docstring). ``acc_bits`` must hold one product."""
    product = fixed_product(act_bits, weight_bits, act_signed=act_signed, style=style)
    return mac_unit("fixed_mac", product, acc_bits)


def encode_fixed_weights(weights: np.ndarray, weight_bits: int) -> np.ndarray:
    """Port words of integer weight codes: two's complement at ``weight_bits``."""
    return to_words(weights, weight_bits, signed=True)


def fixed_lane_cost(lane: LaneShape) -> Cost:
    """A fixed-point lane's cost (:mod:`hwquant.rtl.resources`): one hardware multiplier per
    product of the code (one bit wider: a zero-extended unsigned code, :func:`signed_operand`)
    and the weight field, as Yosys's ``mul2dsp`` cuts it
    (:func:`~hwquant.rtl.resources.multipliers`).

    >>> fixed_lane_cost(LaneShape("fixed", 4, 4, 10, 5, "ecp5")).dsps
    4
    """
    return Cost(dsps=lane.simd * multipliers(lane.in_bits + 1, lane.weight_field, lane.family))


register_lane_cost("fixed", fixed_lane_cost)
