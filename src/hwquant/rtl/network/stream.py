"""What travels between the blocks of a whole-network design, and the handshake they share.

**Feature maps.** A :class:`FeatureMap` ``[C, H, W]`` of ``bits``-bit codes (or accumulators)
travels as ``H·W`` *pixel words* of ``C·bits`` bits, in raster order (word ``y·W + x``), channel
``c`` in bits ``c·bits`` upwards (two's complement when signed).

**Edges** (:func:`edge_module`). Each producer → consumer connection is an *image FIFO*: one
simple-dual-port RAM of ``banks × H·W`` pixel words, a write bank and a read bank pointer and an
occupancy count. The producer writes the pixels of one image into the write bank in any order
and ``commit``\\ s it; the consumer reads (synchronous read: data one cycle after the address)
any pixel of the oldest committed image, as a sliding-window unit does, and ``release``\\ s it.
``avail = count ≠ 0`` and ``space = count ≠ banks`` are the ready/valid pair of the image
handshake. Two banks make a ping-pong buffer; a skip connection gets more (see
:mod:`hwquant.rtl.network.graph`).

The RAM is marked ``no_rw_check``: a read of the word written in the same cycle may return
either value. The handshake never makes that read: while the producer runs, ``count < banks``
(it started with ``space`` and only its own ``commit`` raises the count), and while the
consumer runs, ``count ≥ 1`` (its image is released only at its ``done``), so with both running
the write bank ``wbank = rbank + count (mod banks)`` differs from the read bank; and a read
while the consumer is idle is ignored. Without the mark Yosys keeps the old value on such a
collision with a bypass register and multiplexer as wide as the word, beside the block RAM
(iCE40 UP5K, a 128-bit edge of 2 x 64 words: 269 flip-flops and 143 LUT4s beside its 8
SB_RAM40_4K, against 4 and 9 with the mark).

**Blocks** (:func:`control_lines`). Every block runs one image as a fixed schedule: when it is
idle, each input edge is ``avail`` and each output edge has ``space``, ``go`` starts it; it
*issues* ``steps`` work items, one per cycle, and its pipeline writes the last result
``depth`` cycles after the last issue, in the cycle it raises ``done`` (commit every output
edge, release every input edge). It is busy ``steps + depth`` cycles and may start again one
cycle after ``done``, so a block's period is

    cycles = steps + depth + 1

and an image committed on a block's input edge at clock edge ``e`` is committed on its output
edge at ``e + cycles``. Nothing inside a block waits on anything once it has started, so the
cycle counts of :mod:`hwquant.rtl.network.schedule` hold exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from hwquant.rtl.unit import index_bits


@dataclass(frozen=True)
class FeatureMap:
    """A feature map ``[channels, height, width]`` of ``bits``-bit integers (module docstring)."""

    channels: int
    height: int
    width: int
    bits: int
    signed: bool

    @property
    def pixels(self) -> int:
        """Words of one image: ``height·width``."""
        return self.height * self.width

    @property
    def word_bits(self) -> int:
        """Bits of one pixel word: ``channels·bits``."""
        return self.channels * self.bits

    def shape(self) -> list[int]:
        """``[C, H, W]``."""
        return [self.channels, self.height, self.width]


@dataclass
class Block:
    """One emitted block: its Verilog module, its schedule and what it reads and writes.

    ``inputs`` are the names of the blocks it reads (one edge each, in port order ``0, 1``);
    ``output`` the feature map it writes (None for the output interface); ``memories`` the
    ``$readmemh`` images it needs (file name -> text); ``modules`` the shared Verilog modules
    it instantiates (file name -> text: written once however many blocks use them, e.g.
    :mod:`hwquant.rtl.network.multiplier`); ``info`` the figures design.json records (folding,
    widths, ROM sizes).
    """

    name: str
    op: str
    module: str
    verilog: str
    inputs: list[str]
    output: FeatureMap | None
    steps: int
    depth: int
    memories: dict[str, str] = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    modules: dict[str, str] = field(default_factory=dict)

    @property
    def cycles(self) -> int:
        """The block's period and latency in cycles: ``steps + depth + 1`` (module docstring)."""
        return self.steps + self.depth + 1


def edge_module() -> str:
    """The image FIFO of every edge (module docstring), parametrised by its size.

    Parameters: ``WIDTH`` (pixel word bits), ``DEPTH`` (words per image), ``BANKS`` (images),
    ``AW`` (bits of a pixel address), ``MW`` (bits of a RAM address), ``BW`` (bits of a bank
    index), ``CW`` (bits of the count, holding 0..BANKS).
    """
    return """module hwquant_edge #(
    parameter WIDTH = 8,
    parameter DEPTH = 64,
    parameter BANKS = 2,
    parameter AW = 6,
    parameter MW = 7,
    parameter BW = 1,
    parameter CW = 2
) (
    input wire clk,
    input wire rst,
    input wire wr_en,
    input wire [AW-1:0] wr_addr,
    input wire [WIDTH-1:0] wr_data,
    input wire commit,
    input wire [AW-1:0] rd_addr,
    output reg [WIDTH-1:0] rd_data,
    input wire release_,
    output wire avail,
    output wire space
);
    (* no_rw_check *) reg [WIDTH-1:0] mem [0:BANKS*DEPTH-1];
    reg [BW-1:0] wbank, rbank;
    reg [CW-1:0] count;
    wire [MW-1:0] wbase = wbank * DEPTH;
    wire [MW-1:0] rbase = rbank * DEPTH;
    assign avail = count != 0;
    assign space = count != BANKS;
    always @(posedge clk) begin
        if (wr_en) mem[wbase + wr_addr] <= wr_data;
        rd_data <= mem[rbase + rd_addr];
    end
    always @(posedge clk) begin
        if (rst) begin
            wbank <= 0; rbank <= 0; count <= 0;
        end else begin
            if (commit) wbank <= (wbank == BANKS - 1) ? 0 : wbank + 1;
            if (release_) rbank <= (rbank == BANKS - 1) ? 0 : rbank + 1;
            count <= count + commit - release_;
        end
    end
endmodule
"""


def edge_parameters(fmap: FeatureMap, banks: int) -> dict[str, int]:
    """The :func:`edge_module` parameters of an edge carrying ``fmap`` in ``banks`` images."""
    return {
        "WIDTH": fmap.word_bits,
        "DEPTH": fmap.pixels,
        "BANKS": banks,
        "AW": index_bits(fmap.pixels),
        "MW": index_bits(banks * fmap.pixels),
        "BW": index_bits(banks),
        "CW": index_bits(banks + 1),
    }


def window_address(
    stride: tuple[int, int], padding: tuple[int, int], fmap: FeatureMap
) -> list[str]:
    """The sliding-window unit's combinational address: :func:`window_coordinates`, then
    :func:`window_pixel` of them."""
    return window_coordinates(stride, padding) + window_pixel(fmap, "iy", "ix")


def window_coordinates(stride: tuple[int, int], padding: tuple[int, int]) -> list[str]:
    """The input coordinates ``iy = oy·sy − py + ky``, ``ix = ox·sx − px + kx`` of the window
    position ``(oy, ox, ky, kx)`` (18-bit signed wires ``iy``, ``ix``)."""
    (sy, sx), (py, px) = stride, padding
    oy, ox = "$signed({1'b0, oy})", "$signed({1'b0, ox})"
    return [
        f"    wire signed [17:0] iy = {_times(oy, sy)} - {py} + $signed({{1'b0, ky}});",
        f"    wire signed [17:0] ix = {_times(ox, sx)} - {px} + $signed({{1'b0, kx}});",
    ]


def window_pixel(fmap: FeatureMap, iy: str, ix: str) -> list[str]:
    """The ``pad`` flag (coordinates ``iy``, ``ix`` outside ``fmap``) and the raster ``pixel =
    iy·W + ix``. The constant products are sums of shifted copies, one per set bit of the
    constant (``iy·28 = (iy <<< 4) + (iy <<< 3) + (iy <<< 2)``), so that synthesis builds
    adders and never spends a hardware multiplier on an address."""
    return [
        f"    wire pad = {iy} < 0 || {iy} >= {fmap.height} || {ix} < 0 || {ix} >= {fmap.width};",
        f"    wire [35:0] pixel = {_times(iy, fmap.width)} + {ix};",
    ]


def _times(expr: str, k: int) -> str:
    """``expr·k`` for a constant ``k ≥ 1`` as a sum of shifts.

    >>> _times("iy", 28)
    '(iy <<< 2) + (iy <<< 3) + (iy <<< 4)'
    """
    return " + ".join(f"({expr} <<< {s})" for s in range(k.bit_length()) if k >> s & 1)


def control_lines(steps: int, depth: int) -> list[str]:
    """Verilog of a block's schedule (module docstring): ``busy``, the cycle counter ``cnt``,
    ``issue`` (a work item enters the pipeline this cycle) and ``done``.

    ``issue`` equals ``busy && cnt < steps`` in every cycle but is a register, set one cycle
    early (by ``go``, and cleared in the cycle of ``cnt = steps − 1``): it enables every counter
    and tag of the block, and as a compare its carry chain and that fan-out were one path (the
    MNIST-5k MSQ design's start-of-step compare, 2.5 ns of logic and 9.2 ns of route, limited
    Fmax to 85.4 MHz). The schedule, and so ``cycles``, is the same. ``go`` comes only while
    the block is idle (:mod:`hwquant.rtl.network.top`)."""
    if steps < 1:
        raise ValueError(f"a block issues at least one work item, not steps={steps}")
    last = steps + depth - 1
    cw = index_bits(last + 1)
    return [
        "    reg busy, issue;",
        f"    reg [{cw - 1}:0] cnt;",
        f"    assign done = busy && cnt == {last};",
        "    always @(posedge clk) begin",
        "        if (rst) begin",
        "            busy <= 0; issue <= 0; cnt <= 0;",
        "        end else if (!busy) begin",
        "            if (go) begin busy <= 1; issue <= 1; cnt <= 0; end",
        "        end else begin",
        "            cnt <= cnt + 1;",
        f"            if (cnt == {steps - 1}) issue <= 0;",
        "            if (done) busy <= 0;",
        "        end",
        "    end",
        "    assign idle = !busy;",
    ]


def counter_lines(counters: list[tuple[str, int]], advance: str) -> list[str]:
    """Nested counters, fastest first: ``counters[i] = (name, size)`` counts ``0..size−1`` and
    steps when ``advance`` is high and every faster counter wraps; all reset on ``go``."""
    lines = []
    for name, size in counters:
        lines.append(f"    reg [{index_bits(size) - 1}:0] {name};")
    lines.append("    always @(posedge clk) begin")
    lines.append("        if (go) begin")
    lines.append("            " + " ".join(f"{name} <= 0;" for name, _ in counters))
    lines.append(f"        end else if ({advance}) begin")
    carry: list[str] = []
    for name, size in counters:
        cond = " && ".join(carry) if carry else "1'b1"
        lines.append(f"            if ({cond}) {name} <= ({name} == {size - 1}) ? 0 : {name} + 1;")
        carry.append(f"{name} == {size - 1}")
    lines.append("        end")
    lines.append("    end")
    return lines


def block_ports(inputs: list[FeatureMap], output: FeatureMap | None) -> list[str]:
    """Port declarations every block has: ``clk, rst, go, idle, done``, per input ``i`` a read
    port (``rd_addr_i``, ``rd_data_i``) and a write port to the output edge."""
    ports = [
        "input wire clk",
        "input wire rst",
        "input wire go",
        "output wire idle",
        "output wire done",
    ]
    for i, fmap in enumerate(inputs):
        ports.append(f"output reg [{index_bits(fmap.pixels) - 1}:0] rd_addr_{i}")
        ports.append(f"input wire [{fmap.word_bits - 1}:0] rd_data_{i}")
    if output is not None:
        ports += [
            "output reg wr_en",
            f"output reg [{index_bits(output.pixels) - 1}:0] wr_addr",
            f"output reg [{output.word_bits - 1}:0] wr_data",
        ]
    return ports


def module_text(name: str, ports: list[str], lines: list[str]) -> str:
    """A Verilog-2001 module ``name`` with ``ports`` and body ``lines``."""
    header = ",\n".join(f"    {p}" for p in ports)
    return f"module {name} (\n{header}\n);\n" + "\n".join(lines) + "\nendmodule\n"


def write_address_lines() -> list[str]:
    """The output word's address: 0 when an image starts (``go``), one more after each word
    written (``wr_en``)."""
    return [
        "    always @(posedge clk) begin",
        "        if (go) wr_addr <= 0;",
        "        else if (wr_en) wr_addr <= wr_addr + 1;",
        "    end",
    ]


def pixelwise_block(
    module: str,
    fmap: FeatureMap,
    out: FeatureMap,
    encode: Callable[[int, str], str],
    preamble: Sequence[str] = (),
) -> tuple[str, int, int]:
    """A block that maps each pixel word of ``fmap`` to one of ``out``, channel by channel:
    output field ``c`` is ``encode(c, word)``, ``word`` naming a wire that holds input channel
    ``c``'s raw code (a plain name, so ``encode`` may select its bits: a part-select of a
    part-select is not Verilog-2005, and Yosys 0.70 drops its variable base).
    One pixel per cycle through a three-stage pipeline (address → RAM read → written word);
    ``preamble`` (declarations, functions) goes before it. Returns the Verilog, the steps
    (pixels) and the depth (3)."""
    steps, depth, bits = fmap.pixels, 3, fmap.bits
    aw = index_bits(fmap.pixels)
    lines = [*preamble, *control_lines(steps, depth)]
    lines += counter_lines([("px", fmap.pixels)], "issue")
    lines += [
        "    reg v_1, v_2;",
        "    always @(posedge clk) begin",
        "        if (rst) begin v_1 <= 0; v_2 <= 0; wr_en <= 0; end",
        "        else begin v_1 <= issue; v_2 <= v_1; wr_en <= v_2; end",
        f"        rd_addr_0 <= px[{aw - 1}:0];",
        "    end",
        *write_address_lines(),
    ]
    lines += [
        f"    wire [{bits - 1}:0] code_{c} = rd_data_0[{c * bits} +: {bits}];"
        for c in range(fmap.channels)
    ]
    lines.append("    always @(posedge clk) begin")
    for c in range(fmap.channels):
        lines.append(f"        wr_data[{c * out.bits} +: {out.bits}] <= {encode(c, f'code_{c}')};")
    lines.append("    end")
    return module_text(module, block_ports([fmap], out), lines), steps, depth
