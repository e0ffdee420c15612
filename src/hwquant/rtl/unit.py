"""A generated hardware unit: Verilog text, its ports and the parameters that shaped it.

Every emitter of :mod:`hwquant.rtl` returns a :class:`Unit`: complete synthesizable
Verilog-2001 (the top module and any submodule, no ``include``), the top module's name (unique
per parameter set, so that several units can be simulated or synthesized together) and its
ports. Integers cross a port as words of the port's width: a signed port holds the two's
complement of its value (:func:`to_words`, :func:`from_words`).

The MAC-like units share one port protocol and one accumulator (:func:`mac_unit`): ``clk``,
``rst`` (synchronous, active high), ``clear`` (start a new sum: ``acc <= product``), ``en``
(``acc <= acc + product``), the operand ports and ``acc``, a registered signed accumulator of
``acc_bits`` that wraps modulo ``2^acc_bits`` (:class:`hwquant.core.intmath.Accumulator`, policy
"wrap"). One multiply-accumulate per cycle.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from hwquant.core.errors import ConfigError
from hwquant.core.intmath import bits_needed, qrange
from hwquant.core.registry import Registry

Direction = Literal["input", "output"]
MacStyle = Literal["dsp", "lut"]
MAC_STYLES: tuple[str, ...] = ("dsp", "lut")
MAX_WIDTH = 62
"""Widest scalar port an emitter builds (words stay within int64, as the engine's integers)."""


@dataclass(frozen=True)
class Port:
    """One port of a unit's top module."""

    name: str
    direction: Direction
    width: int
    signed: bool

    def declaration(self) -> str:
        """The Verilog-2001 port declaration (outputs are ``reg``: every unit registers them)."""
        kind = "wire" if self.direction == "input" else "reg"
        sign = " signed" if self.signed else ""
        vector = f" [{self.width - 1}:0]" if self.width > 1 else ""
        return f"{self.direction} {kind}{sign}{vector} {self.name}"


@dataclass(frozen=True)
class Unit:
    """A generated unit (see the module docstring)."""

    name: str
    top: str
    params: Mapping[str, int | str]
    verilog: str
    ports: tuple[Port, ...]

    def port(self, name: str) -> Port:
        """The port called ``name``."""
        for port in self.ports:
            if port.name == name:
                return port
        raise KeyError(f"unit {self.top} has no port {name!r}")


CONTROL_PORTS = (
    Port("clk", "input", 1, False),
    Port("rst", "input", 1, False),
)
MAC_CONTROL_PORTS = (
    *CONTROL_PORTS,
    Port("clear", "input", 1, False),
    Port("en", "input", 1, False),
)


def stream_ports(acc_bits: int, out_bits: int, out_signed: bool) -> tuple[Port, ...]:
    """Ports of a registered accumulator-to-code unit (threshold, requantizer): ``clk, rst,
    en`` (register a new result), ``acc`` in and ``out`` (shown one cycle later)."""
    return (
        *CONTROL_PORTS,
        Port("en", "input", 1, False),
        Port("acc", "input", acc_bits, True),
        Port("out", "output", out_bits, out_signed),
    )


def check_width(name: str, value: int, low: int = 1, high: int = MAX_WIDTH) -> int:
    """``value`` if it is an int in ``low..high``, else :class:`ConfigError`."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(
            f"{name}={value!r} cannot be built. Fix: use an integer in {low}..{high}."
        )
    return value


def check_choice(name: str, value: str, allowed: Sequence[str]) -> str:
    """``value`` if it is one of ``allowed``, else :class:`ConfigError` listing them."""
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is not allowed. Fix: use one of {', '.join(allowed)}.")
    return value


def check_acc_bits(acc_bits: int, peak: int, what: str) -> int:
    """``acc_bits`` if a signed accumulator of that width holds ``peak`` (the largest |value|
    of one ``what``), else :class:`ConfigError`."""
    check_width("acc_bits", acc_bits, 2)
    need = bits_needed(peak)
    if acc_bits < need:
        raise ConfigError(
            f"acc_bits={acc_bits} is too narrow for one {what} (|value| up to {peak} needs "
            f"{need} signed bits). Fix: use acc_bits >= {need}."
        )
    return acc_bits


def operand_bits(bits: int, signed: bool) -> int:
    """Width of the signed form of a ``bits``-bit operand (an unsigned one gains a 0 bit)."""
    return bits if signed else bits + 1


def index_bits(entries: int) -> int:
    """Bits of an index into ``entries`` items, ``ceil(log2(entries))`` and at least 1."""
    return max(1, math.ceil(math.log2(entries)))


def check_range(name: str, values: np.ndarray, lo: int, hi: int, fix: str) -> np.ndarray:
    """``values`` as int64 if all lie in ``lo..hi``, else :class:`ConfigError` ending in ``fix``."""
    arr = np.asarray(values, dtype=np.int64)
    bad = (arr < lo) | (arr > hi)
    if bad.any():
        raise ConfigError(
            f"{name} holds {int(bad.sum())} value(s) outside {lo}..{hi} (e.g. "
            f"{int(arr[bad].flat[0])}). Fix: {fix}"
        )
    return arr


def to_words(values: np.ndarray | Sequence[int], width: int, signed: bool) -> np.ndarray:
    """Port words (int64 bit patterns, ``0 ≤ word < 2^width``) of integers: two's complement
    at ``width`` when ``signed``. Values outside the port's range raise :class:`ConfigError`."""
    lo, hi = qrange(width, signed)
    arr = check_range(f"a {width}-bit port", np.asarray(values), lo, hi, "widen the port.")
    return arr & ((1 << width) - 1)


def from_words(words: np.ndarray | Sequence[int], width: int, signed: bool) -> np.ndarray:
    """Integers (int64) of port words: the inverse of :func:`to_words`."""
    arr = np.asarray(words, dtype=np.int64) & ((1 << width) - 1)
    if signed:
        arr = np.where(arr >= 1 << (width - 1), arr - (1 << width), arr)
    return arr


def literal(value: int, width: int) -> str:
    """A sized signed Verilog literal of ``value``: its two's complement at ``width`` in hex."""
    lo, hi = qrange(width, signed=True)
    if not lo <= value <= hi:
        raise ConfigError(f"constant {value} does not fit {width} signed bits.")
    return f"{width}'sh{value & ((1 << width) - 1):x}"


def case_block(select: str, target: str, arms: Sequence[str], first: int = 0) -> str:
    """A combinational ``case`` that sets ``target`` to the expression ``arms[i]`` when
    ``select = first + i``, and to 0 for any other ``select``."""
    lines = "".join(
        f"            {code}: {target} = {arm};\n" for code, arm in enumerate(arms, start=first)
    )
    return (
        "    always @(*) begin\n"
        f"        case ({select})\n{lines}"
        f"            default: {target} = 0;\n"
        "        endcase\n"
        "    end\n"
    )


def module(top: str, ports: Sequence[Port], body: str, attributes: str = "") -> str:
    """A complete Verilog-2001 module: header with ``ports``, then ``body`` (indented lines)."""
    header = ",\n".join(f"    {p.declaration()}" for p in ports)
    prefix = f"{attributes}\n" if attributes else ""
    return f"{prefix}module {top} (\n{header}\n);\n{body.rstrip()}\nendmodule\n"


def dsp_attribute(style: str) -> str:
    """The synthesis attribute that asks for (``dsp``) or forbids (``lut``) a DSP multiplier."""
    return '(* use_dsp = "yes" *)' if style == "dsp" else '(* use_dsp = "no" *)'


def signed_operand(name: str, bits: int, signed: bool) -> tuple[str, str]:
    """The name and declaration of the signed form of operand ``name``: itself when signed,
    else zero-extended by one bit."""
    if signed:
        return name, ""
    return f"{name}_s", f"    wire signed [{bits}:0] {name}_s = {{1'b0, {name}}};\n"


@dataclass(frozen=True)
class Product:
    """The product stage of a MAC-like unit: operand ports ``x`` and ``w`` and Verilog that
    declares ``wire signed [bits-1:0] product`` from them (or a ``reg`` set combinationally).

    ``peak`` is the largest |product|; ``tag`` names the parameters in module names. When
    ``sign`` names a 1-bit wire of ``body``, ``product`` is a magnitude and the unit's product
    is ``sign ? -product : product``; the accumulator folds that negation into its adder
    (:func:`accumulator_block`). ``files`` are the memory images ``body`` reads with
    ``$readmemh`` by bare name (file name -> text), written beside the Verilog.
    """

    kind: str
    tag: str
    params: Mapping[str, int | str]
    x: Port
    w: Port
    bits: int
    peak: int
    body: str
    attributes: str = ""
    sign: str = ""
    files: Mapping[str, str] = field(default_factory=dict)

    def module(self, top: str) -> str:
        """A module ``top(x, w, p)`` computing ``p = product`` alone (a lane of an array)."""
        ports = (self.x, self.w, Port("p", "output", self.bits, True))
        value = f"{self.sign} ? -product : product" if self.sign else "product"
        return module(top, ports, self.body + f"    always @(*) p = {value};\n", self.attributes)


def accumulator_block(product: Product, acc_bits: int) -> str:
    """The registered accumulator of every MAC: reset, clear (start a sum) and enable.

    ``clear`` gates the register's input *before* the adder, ``base = clear ? 0 : acc``, and
    ``clear | en`` drives the flip-flops' clock enable: ``acc <= base + product``. Both are
    the same ports' semantics as ``clear ? product : acc + product``, but the gate merges into
    the propagate LUT of the carry chain (one LUT per accumulator bit, UG474) where a
    multiplexer after the adder would take a second one. A product with a ``sign`` wire
    (:class:`Product`) is added as ``base + (product ^ {n{sign}}) + sign``: the two's
    complement negation folded into the adder's XOR and carry-in (no separate negator).
    """
    n = acc_bits
    lines = [
        f"    wire signed [{n - 1}:0] base = clear ? {n}'sd0 : acc;",
        f"    wire signed [{n - 1}:0] addend = product;",
    ]
    total = "base + addend"
    if product.sign:
        lines.append(f"    wire [{n - 1}:0] flipped = addend ^ {{{n}{{{product.sign}}}}};")
        total = f"base + flipped + {product.sign}"
    lines += [
        "    always @(posedge clk) begin",
        "        if (rst) acc <= 0;",
        f"        else if (clear | en) acc <= {total};",
        "    end",
    ]
    return "\n".join(lines) + "\n"


def mac_unit(name: str, product: Product, acc_bits: int) -> Unit:
    """A MAC-like unit: the control ports, the product's operands and the accumulator
    (module docstring); ``acc_bits`` must hold one product."""
    check_acc_bits(acc_bits, product.peak, f"{product.tag} product")
    top = f"{name}_{product.tag}_acc{acc_bits}"
    ports = (*MAC_CONTROL_PORTS, product.x, product.w, Port("acc", "output", acc_bits, True))
    body = product.body + accumulator_block(product, acc_bits)
    verilog = module(top, ports, body, product.attributes)
    return Unit(name, top, {**product.params, "acc_bits": acc_bits}, verilog, ports)


def top_suffix(values: Sequence[int]) -> str:
    """A short stable digest of constants baked into a unit (codebooks, tables, thresholds),
    so that top-module names stay unique per parameter set."""
    text = ",".join(str(int(v)) for v in values)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


_EMITTERS: Registry[Callable[..., Unit]] = Registry(
    "unit emitter", fix="use one of {names}.", sort=True
)


def register_emitter(emit: Callable[..., Unit]) -> Callable[..., Unit]:
    """Decorator: register a unit emitter under its function name (the synthesis sweep of
    :mod:`hwquant.rtl.sweep` builds units by name). The generic units register in this package;
    each scheme's MAC registers in ``hwquant.schemes.<name>.rtl``, which its package imports."""
    return _EMITTERS.add(emit.__name__, emit)


def emitters() -> tuple[str, ...]:
    """The registered unit emitters' names, sorted (registration order follows import order)."""
    return _EMITTERS.names()


def get_emitter(name: str) -> Callable[..., Unit]:
    """The unit emitter ``name``.

    Raises:
        ConfigError: no emitter of that name is registered; the message lists those that are.
    """
    return _EMITTERS.get(name)
