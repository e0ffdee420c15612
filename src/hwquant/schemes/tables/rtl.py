"""Table-lookup accumulator of a table unit (Covell et al. 2019; methods.md §3.1).

A table layer multiplies nothing: with activation index ``x`` and weight index ``w`` it reads
the precomputed product ``T[x, w]`` (a signed ``entry_bits`` integer,
:mod:`hwquant.schemes.tables.fold`) and adds it, ``acc <= clear ? T[x][w] : acc + T[x][w]`` — the
per-tap step of
:func:`hwquant.schemes.tables.kernels.accumulate`. The table is a ROM addressed by ``{x, w}``, baked
into the logic (LUTs, or a block RAM where the synthesizer infers one).

Ports: ``clk, rst, clear, en``; ``x`` [ceil(log2(|A|+1))] unsigned activation index, where the
index ``|A|`` (the engine's padding index, ``LookupPlan.pad_index``) and any larger one read 0,
the zero row that stands for a convolution's zero padding; ``w`` [ceil(log2(|W|))] unsigned
weight index; ``acc`` [acc_bits] signed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hwquant.core.errors import ConfigError
from hwquant.core.intmath import qrange
from hwquant.rtl.resources import Cost, LaneShape, bits, memory, register_lane_cost
from hwquant.rtl.testbench import mem_text
from hwquant.rtl.unit import (
    Port,
    Product,
    Unit,
    check_range,
    check_width,
    index_bits,
    mac_unit,
    register_emitter,
    top_suffix,
)
from hwquant.schemes.nonuniform.rtl import rom_case


def _check_table(table: Sequence[Sequence[int]], entry_bits: int) -> np.ndarray:
    arr = np.asarray(table)
    if arr.ndim != 2 or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer):
        raise ConfigError(
            f"table must be a non-empty 2-D integer array [|A|, |W|], got shape "
            f"{arr.shape} of {arr.dtype}. Fix: pass UnitNode.table of a lowered TableModel."
        )
    lo, hi = qrange(entry_bits, signed=True)
    fix = f"use entries in {lo}..{hi} or raise entry_bits (TableOptions.entry_bits)."
    return check_range(f"table at entry_bits={entry_bits}", arr, lo, hi, fix)


def table_product(table: Sequence[Sequence[int]], entry_bits: int, image: bool = False) -> Product:
    """The lookup ``T[x][w]`` (0 for the padding index and beyond; module docstring): a
    ``case`` in the logic, or with ``image`` an array read from a ``$readmemh`` image of every
    ``{x, w}`` address. The array is what Yosys maps to block RAM when a register follows the
    product (its read port absorbs the register; the network's arrays register every
    product), and what Verilator indexes instead of compiling a ``case`` of every entry."""
    check_width("entry_bits", entry_bits, 2)
    entries = _check_table(table, entry_bits)
    rows, cols = entries.shape
    x_bits, w_bits = index_bits(rows + 1), index_bits(cols)
    rom = [0] * ((1 << x_bits << w_bits) if image else (rows << w_bits))
    for i in range(rows):
        rom[i << w_bits : (i << w_bits) + cols] = entries[i].tolist()
    files: dict[str, str] = {}
    if image:
        name = f"table_{rows}x{cols}_e{entry_bits}_{top_suffix(rom)}.mem"
        files[name] = mem_text([v & ((1 << entry_bits) - 1) for v in rom], entry_bits)
        body = (
            f"    reg signed [{entry_bits - 1}:0] entries [0:{len(rom) - 1}];\n"
            f'    initial $readmemh("{name}", entries);\n'
            f"    wire signed [{entry_bits - 1}:0] product = entries[{{x, w}}];\n"
        )
    else:
        body = f"    reg signed [{entry_bits - 1}:0] product;\n" + rom_case(
            "{x, w}", "product", rom, entry_bits
        )
    params = {
        "rows": rows,
        "cols": cols,
        "entry_bits": entry_bits,
        "table": ";".join(",".join(str(int(v)) for v in row) for row in entries),
    }
    return Product(
        "table",
        f"{rows}x{cols}_e{entry_bits}_{top_suffix(rom)}",
        params,
        Port("x", "input", x_bits, False),
        Port("w", "input", w_bits, False),
        entry_bits,
        int(np.abs(entries).max()),
        body,
        files=files,
    )


@register_emitter
def table_accumulator(table: Sequence[Sequence[int]], entry_bits: int, acc_bits: int) -> Unit:
    """A table-lookup accumulator (module docstring). ``acc_bits`` must hold one entry."""
    return mac_unit("table_accumulator", table_product(table, entry_bits), acc_bits)


def table_image_words(entries: int, weight_bits: int) -> int:
    """Words of a table product's ROM image (:func:`table_product` with ``image``): every
    ``{x, w}`` address, ``x`` of ``⌈log2(entries / 2^weight_bits)⌉`` bits.

    >>> table_image_words(272, 4), table_image_words(4112, 4)
    (512, 8192)
    """
    rows = -(-entries >> weight_bits)
    return 1 << (bits(rows) + weight_bits)


def table_lane_cost(lane: LaneShape) -> Cost:
    """A table lane's cost (:mod:`hwquant.rtl.resources`): a ROM image per product, no
    multiplier, as Yosys maps the memory; a block RAM's read port holds the product register,
    so its flip-flops come off (negative ``ffs``). ``lane.block["table_entries"]`` is the
    table's size."""
    words = table_image_words(int(lane.block["table_entries"]), lane.weight_field)
    rom = memory(words, lane.product_bits, lane.family)
    held = lane.simd * lane.product_bits if rom.brams else 0
    return Cost(lane.simd * rom.luts, brams=lane.simd * rom.brams, ffs=-held)


register_lane_cost("table", table_lane_cost)
