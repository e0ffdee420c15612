"""The design's two interfaces: quantized image codes in, logits and argmax out.

**Input** (:func:`emit_input`): a ready/valid stream of pixel words, one pixel of all ``C``
input channels per beat in raster order (the codes of :meth:`IntModel.quantize_input`, two's
complement when signed). ``in_ready`` is high while the first edge has a free bank; the
``H·W``-th beat commits the image. Fed every cycle, it takes ``H·W`` cycles per image.

**Output** (:func:`emit_output`): reads the last layer's accumulators (the logits, one word of
``classes·acc_bits``) and finds the argmax by a tree of ``L = ⌈log2 classes⌉`` compare levels,
the lower index winning a tie (``torch.argmax``: the first maximal value). Each level takes two
registered stages, the compare ``v1 > v0`` (a carry chain) and then the select driven by that
one flag (a multiplexer of ``acc_bits + ⌈log2 classes⌉`` bits), so that no stage holds both;
an odd node passes to the next level as it is. The tree needs no valid tags: it reads the
edge's word, which holds still from stage 1 (the read address is 0 from ``go``) until the block
releases it at ``done``, so every register of level ``j`` holds its final value from stage
``1 + 2j`` on, and ``done`` comes at stage ``depth = 1 + 2L``. ``out_valid`` rises one cycle
after ``done``, with ``out_logits`` and ``out_argmax``, and stays up until ``out_ready``; the
block takes ``steps = 1``. ``out_logits`` is loaded at stage 1 and read by nothing inside, so
synthesis removes its register where the port is left open (``hwquant_argmax``).
"""

from __future__ import annotations

import math

from hwquant.rtl.network.stream import Block, FeatureMap, block_ports, control_lines, module_text
from hwquant.rtl.unit import index_bits

INPUT = "input"
OUTPUT = "output"


def emit_input(fmap: FeatureMap, name: str, module: str) -> Block:
    """The input interface writing ``fmap`` images to its edge (module docstring)."""
    aw = index_bits(fmap.pixels)
    ports = [
        "input wire clk",
        "input wire rst",
        "input wire in_valid",
        "input wire space",
        "output wire in_ready",
        f"input wire [{fmap.word_bits - 1}:0] in_data",
        "output wire done",
        "output wire wr_en",
        f"output reg [{aw - 1}:0] wr_addr",
        f"output wire [{fmap.word_bits - 1}:0] wr_data",
    ]
    lines = [
        "    assign in_ready = space;",
        "    assign wr_en = in_valid && space;",
        "    assign wr_data = in_data;",
        f"    assign done = wr_en && wr_addr == {fmap.pixels - 1};",
        "    always @(posedge clk) begin",
        "        if (rst || done) wr_addr <= 0;",
        "        else if (wr_en) wr_addr <= wr_addr + 1;",
        "    end",
    ]
    verilog = module_text(module, ports, lines)
    return Block(name, INPUT, module, verilog, [], fmap, fmap.pixels, -1)


def emit_output(fmap: FeatureMap, source: str, module: str) -> Block:
    """The output interface reading the logits ``fmap`` (one pixel) of ``source``."""
    classes, ab = fmap.channels, fmap.bits
    levels = max(0, math.ceil(math.log2(classes)))
    ib = index_bits(classes)
    depth = 1 + 2 * levels
    ports = [
        *block_ports([fmap], None),
        "output reg out_valid",
        "input wire out_ready",
        f"output reg [{fmap.word_bits - 1}:0] out_logits",
        f"output reg [{ib - 1}:0] out_argmax",
    ]
    lines = [
        "    always @(posedge clk) begin",
        "        rd_addr_0 <= 0;",
        "        if (busy && cnt == 1) out_logits <= rd_data_0;",  # the RAM word, from stage 1
        "        if (rst) out_valid <= 0;",
        "        else if (done) out_valid <= 1;",
        "        else if (out_ready) out_valid <= 0;",
        "    end",
    ]
    nodes = [(f"$signed(rd_data_0[{c * ab} +: {ab}])", f"{ib}'d{c}") for c in range(classes)]
    for j in range(1, levels + 1):
        nxt = []
        for i in range(0, len(nodes), 2):
            pair = nodes[i : i + 2]
            if len(pair) == 1:  # an odd node: on to the next level unchanged
                nxt.append(pair[0])
                continue
            (v0, i0), (v1, i1) = pair
            gt, val, idx = f"gt_{j}_{i // 2}", f"mv_{j}_{i // 2}", f"mi_{j}_{i // 2}"
            lines += [
                f"    reg {gt};",
                f"    reg signed [{ab - 1}:0] {val};",
                f"    reg [{ib - 1}:0] {idx};",
                f"    always @(posedge clk) begin {gt} <= {v1} > {v0}; "
                f"{val} <= {gt} ? {v1} : {v0}; {idx} <= {gt} ? {i1} : {i0}; end",
            ]
            nxt.append((val, idx))
        nodes = nxt
    lines += [f"    always @(posedge clk) if (done) out_argmax <= {nodes[0][1]};"]
    body = control_lines(1, depth) + lines
    verilog = module_text(module, ports, body)
    return Block(OUTPUT, OUTPUT, module, verilog, [source], None, 1, depth, {}, {})
