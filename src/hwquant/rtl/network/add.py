"""The residual-add block: ``code = clamp((a·M_a + b·M_b + 2^(s−1)) >>> s, lo, hi)`` per channel
(:class:`~hwquant.ir.intmodel.AddNode`, the engine's ``_add``), one pixel of both inputs per cycle.

The two operands come from two edges; the one from the branch point (the skip connection) is
an image FIFO deep enough for every image the other path can hold
(:func:`hwquant.rtl.network.graph.edge_banks`), so the add never stalls the branch.
Pipeline: address → both RAM reads → both read words registered (the block RAMs' unregistered
outputs kept out of the arithmetic's cycle) → ``a·M_a + b·M_b`` → rounding shift and clamp,
written (``depth = 5``).
"""

from __future__ import annotations

from hwquant.core.errors import UnsupportedLayerError
from hwquant.core.intmath import code_format
from hwquant.ir.intmodel import AddNode
from hwquant.rtl.network.stream import (
    Block,
    FeatureMap,
    block_ports,
    control_lines,
    counter_lines,
    module_text,
    write_address_lines,
)
from hwquant.rtl.requantizer import clamp_statement
from hwquant.rtl.unit import index_bits, literal


def emit(node: AddNode, inputs: list[FeatureMap], module: str) -> Block:
    """The add block of ``node`` (module docstring)."""
    a, b = inputs
    if (a.channels, a.height, a.width) != (b.channels, b.height, b.width):
        raise UnsupportedLayerError(
            f"add '{node.name}' joins maps {a.shape()} and {b.shape()}; they must match. "
            "Fix: lower a model whose residual branches keep the shape."
        )
    out_bits, out_signed = code_format(node.lo, node.hi)
    out = FeatureMap(a.channels, a.height, a.width, out_bits, out_signed)
    steps, depth = a.pixels, 5
    mults = [int(m) for m in node.mults]
    mult_bits = max(m.bit_length() for m in mults) + 1
    wide = max(a.bits, b.bits) + 1 + mult_bits + 2
    half = (1 << node.shift) >> 1
    aw = index_bits(a.pixels)
    lines = counter_lines([("px", a.pixels)], "issue")
    lines += [
        "    reg v_1, v_2, v_3, v_4;",
        f"    reg [{a.word_bits - 1}:0] word_0;",
        f"    reg [{b.word_bits - 1}:0] word_1;",
        "    always @(posedge clk) begin",
        "        if (rst) begin v_1 <= 0; v_2 <= 0; v_3 <= 0; v_4 <= 0; wr_en <= 0; end",
        "        else begin v_1 <= issue; v_2 <= v_1; v_3 <= v_2; v_4 <= v_3; wr_en <= v_4; end",
        f"        rd_addr_0 <= px[{aw - 1}:0]; rd_addr_1 <= px[{aw - 1}:0];",
        "        word_0 <= rd_data_0; word_1 <= rd_data_1;",
        "    end",
        *write_address_lines(),
    ]
    for c in range(a.channels):
        terms = []
        for i, (fmap, m) in enumerate(zip(inputs, mults, strict=True)):
            slice_ = f"word_{i}[{c * fmap.bits} +: {fmap.bits}]"
            value = f"$signed({slice_})" if fmap.signed else f"$signed({{1'b0, {slice_}}})"
            terms.append(f"{value} * {literal(m, mult_bits)}")
        lines += [
            f"    reg signed [{wide - 1}:0] sum_{c};",
            f"    wire signed [{wide - 1}:0] shifted_{c} = (sum_{c} + {literal(half, wide)}) "
            f">>> {node.shift};",
            "    always @(posedge clk) begin",
            f"        sum_{c} <= {' + '.join(terms)};",
            "        "
            + clamp_statement(
                f"wr_data[{c * out_bits} +: {out_bits}]",
                f"shifted_{c}",
                node.lo,
                node.hi,
                wide,
                out_bits,
            ).rstrip(),
            "    end",
        ]
    body = control_lines(steps, depth) + lines
    verilog = module_text(module, block_ports([a, b], out), body)
    info = {"mults": mults, "shift": node.shift}
    return Block(
        node.name, node.op, module, verilog, list(node.inputs), out, steps, depth, {}, info
    )
