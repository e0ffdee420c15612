"""Sum-of-power-of-two shift-add MAC (Mix and Match SP2 rows; methods.md §2.1, §7.2).

An SP2 weight is ``sign·(2^shift1 + 2^shift2)`` with ``shift1 ∈ {0..E-1}``, ``shift2 ∈
{E-(2^m2-1)..E-1}``, ``E = 2^m1 - 1`` and a shift of −1 marking an absent term
(:class:`hwquant.schemes.msq.sp2.SP2Levels`, :class:`hwquant.ir.intmodel.MSQEncoding`). The unit
forms ``x·weight = ±((x << shift1) + (x << shift2))``: each term is a small multiplexer over
the constant shifts of ``x`` selected by its code, one adder sums the two, and the sign is
folded into the accumulator's adder as ``acc + (magnitude ^ {n{sign}}) + sign`` (two's
complement negation through the XOR and the carry-in): no multiplier, no negator (the LUT
processing element of an MSQ accelerator).

**Weight port** ``w`` [m1 + m2 + 1] bits, unsigned, laid out ``{sign, c1, c2}`` (MSB first):

* ``sign`` (1 bit): 1 for a negative weight, 0 otherwise (zero weights have sign 0);
* ``c1`` (m1 bits): 0 when term 1 is absent, else ``shift1 + 1`` (``1..2^m1-1``);
* ``c2`` (m2 bits, absent when m2 = 0): 0 when term 2 is absent, else
  ``shift2 - (E - (2^m2 - 1)) + 1`` (``1..2^m2-1``).

So an m-bit SP2 weight (m = m1 + m2 + 1) takes exactly m bits on the port, the width of its
stored code. :func:`encode_sp2_weights` maps MSQEncoding's (sign, shift1, shift2) to words.

Other ports: ``clk, rst, clear, en``; ``x`` [act_bits] (signed when ``act_signed``); ``acc``
[acc_bits] signed.
"""

from __future__ import annotations

import numpy as np

from hwquant.core.intmath import bits_needed, max_magnitude
from hwquant.ir.intmodel import MSQEncoding, WeightNode
from hwquant.rtl.golden import LaneGroup, fixed_lane_group
from hwquant.rtl.resources import Cost, LaneShape, register_lane_cost
from hwquant.rtl.unit import (
    Port,
    Product,
    Unit,
    case_block,
    check_range,
    check_width,
    mac_unit,
    register_emitter,
    signed_operand,
)
from hwquant.schemes.msq.sp2 import ABSENT, SP2Levels


def _levels(m1: int, m2: int) -> SP2Levels:
    check_width("m1", m1)
    check_width("m2", m2, 0)
    return SP2Levels(m1 + m2 + 1, m1, m2)  # refuses splits an SP2 set cannot have


def shift_mux(target: str, select: str, x_name: str, shifts: range, bits: int) -> str:
    """A combinational ``case`` on the small index ``select`` that sets the ``bits``-bit signed
    ``target`` to ``x << shifts[select - 1]`` (a constant shift: wiring), 0 for ``select = 0``:
    a ``len(shifts) + 1``-way multiplexer of ``x``-sized words, no barrel shifter and no
    32-bit shift-amount arithmetic."""
    arms = [f"{x_name} <<< {shift}" for shift in shifts]
    return f"    reg signed [{bits - 1}:0] {target};\n" + case_block(select, target, arms, first=1)


def sp2_product(act_bits: int, m1: int, m2: int, *, act_signed: bool = False) -> Product:
    """The shift-add product ``±((x << shift1) + (x << shift2))`` (module docstring): two
    shift multiplexers and one adder give the magnitude, and the sign goes to the
    accumulator's adder (:attr:`~hwquant.rtl.unit.Product.sign`)."""
    check_width("act_bits", act_bits)
    levels = _levels(m1, m2)
    x_name, x_decl = signed_operand("x", act_bits, act_signed)
    peak = max_magnitude(act_bits, act_signed) * levels.max_int
    bits = bits_needed(peak)  # every term, their sum and its negation lie within ±peak
    word = m1 + m2 + 1
    body = x_decl + f"    wire sign = w[{word - 1}];\n"
    body += f"    wire [{m1 - 1}:0] c1 = w[{word - 2}:{m2}];\n"
    body += shift_mux("term1", "c1", x_name, levels.shifts1, bits)
    magnitude = "term1"
    if m2 >= 1:
        body += f"    wire [{m2 - 1}:0] c2 = w[{m2 - 1}:0];\n"
        body += shift_mux("term2", "c2", x_name, levels.shifts2, bits)
        magnitude = "term1 + term2"
    body += f"    wire signed [{bits - 1}:0] product = {magnitude};\n"
    sign = "s" if act_signed else "u"
    params = {"act_bits": act_bits, "m1": m1, "m2": m2, "act_signed": int(act_signed)}
    return Product(
        "sp2",
        f"a{act_bits}{sign}_m{m1}_{m2}",
        params,
        Port("x", "input", act_bits, act_signed),
        Port("w", "input", word, False),
        bits,
        peak,
        body,
        sign="sign",
    )


@register_emitter
def sp2_mac(act_bits: int, m1: int, m2: int, acc_bits: int, *, act_signed: bool = False) -> Unit:
    """An SP2 shift-add MAC (module docstring). ``acc_bits`` must hold one product."""
    return mac_unit("sp2_mac", sp2_product(act_bits, m1, m2, act_signed=act_signed), acc_bits)


def encode_sp2_weights(
    sign: np.ndarray, shift1: np.ndarray, shift2: np.ndarray, m1: int, m2: int
) -> np.ndarray:
    """Port words ``{sign, c1, c2}`` (module docstring) of SP2 weights given as
    :class:`~hwquant.ir.intmodel.MSQEncoding` fields (sign in {−1, 0, 1}, shifts with −1 absent;
    sign 0 is the weight 0). A shift outside its term's range raises
    :class:`~hwquant.core.errors.ConfigError`."""
    levels = _levels(m1, m2)
    fix = f"use the shifts of an SP2 set with m1={m1}, m2={m2} (SP2Levels.decompose)."
    s = check_range("sign", sign, -1, 1, fix)
    s1 = check_range("shift1", shift1, ABSENT, levels.shifts1.stop - 1, fix)
    s2 = np.asarray(shift2, dtype=np.int64)
    if m2 >= 1:
        present = s2[s2 != ABSENT]
        check_range("shift2", present, levels.shifts2.start, levels.shifts2.stop - 1, fix)
        c2 = np.where(s2 == ABSENT, 0, s2 - levels.shifts2.start + 1)
    else:
        check_range("shift2", s2, ABSENT, ABSENT, fix)
        c2 = np.zeros_like(s2)
    zero = s == 0  # a zero weight is the all-zero word, whatever shifts it carries
    c1 = np.where(zero, 0, s1 + 1)  # ABSENT (−1) becomes 0
    c2 = np.where(zero, 0, c2)
    return ((s < 0).astype(np.int64) << (m1 + m2)) | (c1 << m2) | c2


def msq_lane_groups(node: WeightNode) -> list[LaneGroup]:
    """The processing array of an MSQ node: its SP2 rows on shift-add lanes
    (:func:`sp2_product`), its fixed-point rows on multiply lanes."""
    enc = node.encoding
    assert isinstance(enc, MSQEncoding)
    rows_all = np.arange(node.weight.shape[0])
    groups = []
    sp2 = rows_all[enc.sp2_rows]
    fixed = rows_all[~enc.sp2_rows]
    if len(sp2):
        fields = (f.reshape(len(rows_all), -1)[sp2] for f in (enc.sign, enc.shift1, enc.shift2))
        words = encode_sp2_weights(*fields, enc.m1, enc.m2)
        product = sp2_product(node.in_bits, enc.m1, enc.m2, act_signed=node.in_signed)
        groups.append(("sp2", sp2, product, words))
    if len(fixed):
        groups.append(fixed_lane_group(node, fixed))
    return groups


LUTS_PER_SP2_BIT = 4
"""LUT4s per bit of an SP2 product (:func:`sp2_product`): two shift multiplexers, the adder of
the two terms and the sign. Measured: one 8-bit product of the MSQ digits design synthesized
on its own (``synth_ecp5 -noflatten``) is 19 LUT4s and 7 CCU2C, 33 LUT4 units."""


def sp2_lane_cost(lane: LaneShape) -> Cost:
    """An SP2 lane's cost (:mod:`hwquant.rtl.resources`): shift-add logic, no multiplier.

    >>> sp2_lane_cost(LaneShape("sp2", 2, 4, 8, 4, "ecp5"))
    Cost(luts=64, dsps=0, brams=0, ffs=0)
    """
    return Cost(lane.simd * LUTS_PER_SP2_BIT * lane.product_bits)


register_lane_cost("sp2", sp2_lane_cost)
