"""Requantizer: integer multiply, rounding shift and clamp (LLSQ §4.3; Jacob et al. 2018 eq. 5-6).

Exactly :func:`hwquant.core.intmath.requantize` with the integer ``M`` and shift ``s`` of
:func:`hwquant.core.intmath.requant_params`::

    out = clamp(floor((acc·M + 2^(s−1)) / 2^s), lo, hi)      (no rounding term when s = 0)

round half up (ties towards +∞) by the added ``2^(s−1)`` and an arithmetic right shift, then a
clamp to the output code range ``[lo, hi] = qrange(out_bits, out_signed)``, with ``lo = 0``
under ``relu`` and ``hi`` lowered to ``ceiling`` when one is given (ReLU6's ``6/α``).

Ports: ``clk, rst``; ``en`` (register a new result); ``acc`` [acc_bits] signed; ``out``
[out_bits] (signed when ``out_signed``), registered: the code shows one cycle after ``acc``.
"""

from __future__ import annotations

from hwquant.core.errors import ConfigError
from hwquant.core.intmath import qrange
from hwquant.rtl.unit import (
    Unit,
    check_width,
    literal,
    module,
    register_emitter,
    stream_ports,
)


def requant_range(
    out_bits: int, out_signed: bool, relu: bool, ceiling: int | None
) -> tuple[int, int]:
    """``(lo, hi)`` of the output codes (module docstring)."""
    lo, hi = qrange(out_bits, out_signed)
    if relu:
        lo = 0
    if ceiling is not None:
        if not lo <= ceiling <= hi:
            raise ConfigError(
                f"ceiling={ceiling} lies outside the output range {lo}..{hi}. Fix: use a "
                "ceiling inside the range, or None."
            )
        hi = ceiling
    return lo, hi


def scale_and_shift(name: str, acc: str, mult: str, shift: str, half: str, wide: int) -> str:
    """Wires ``<name>_scaled = acc·M`` and ``<name> = (acc·M + half) >>> s`` at ``wide`` bits
    (``mult``, ``shift``, ``half`` are Verilog expressions: constants or per-channel ROMs)."""
    return (
        f"    wire signed [{wide - 1}:0] {name}_scaled = {acc} * {mult};\n"
        f"    wire signed [{wide - 1}:0] {name} = ({name}_scaled + {half}) >>> {shift};\n"
    )


def clamp_statement(dst: str, src: str, lo: int, hi: int, wide: int, out_bits: int) -> str:
    """``dst <= clamp(src, lo, hi)`` as a nonblocking if/else chain (inside an always block)."""
    return (
        f"if ({src} < {literal(lo, wide)}) {dst} <= {literal(lo, out_bits + 1)};\n"
        f"            else if ({src} > {literal(hi, wide)}) {dst} <= {literal(hi, out_bits + 1)};\n"
        f"            else {dst} <= {src}[{out_bits - 1}:0];\n"
    )


@register_emitter
def requantizer(
    acc_bits: int,
    multiplier: int,
    shift: int,
    out_bits: int,
    *,
    out_signed: bool,
    relu: bool,
    ceiling: int | None = None,
) -> Unit:
    """A requantizer for one channel's ``(M, s)`` (module docstring)."""
    check_width("acc_bits", acc_bits, 2)
    check_width("out_bits", out_bits)
    check_width("multiplier", multiplier, 1, 2**62)
    mult_bits = multiplier.bit_length() + 1  # signed literal
    wide = acc_bits + mult_bits + 1  # the product and its rounding term
    check_width("shift", shift, 0, wide - 1)
    lo, hi = requant_range(out_bits, out_signed, relu, ceiling)
    half = (1 << shift) >> 1
    body = scale_and_shift(
        "shifted", "acc", literal(multiplier, mult_bits), str(shift), literal(half, wide), wide
    ) + (
        "    always @(posedge clk) begin\n"
        "        if (rst) out <= 0;\n"
        "        else if (en) begin\n"
        f"            {clamp_statement('out', 'shifted', lo, hi, wide, out_bits)}"
        "        end\n"
        "    end\n"
    )
    ports = stream_ports(acc_bits, out_bits, out_signed)
    sign = "s" if out_signed else "u"
    top = f"requantizer_acc{acc_bits}_m{multiplier}_s{shift}_o{out_bits}{sign}_{lo}_{hi}"
    top = top.replace("-", "n")
    params = {
        "acc_bits": acc_bits,
        "multiplier": multiplier,
        "shift": shift,
        "out_bits": out_bits,
        "out_signed": int(out_signed),
        "relu": int(relu),
        "lo": lo,
        "hi": hi,
    }
    return Unit("requantizer", top, params, module(top, ports, body), ports)
