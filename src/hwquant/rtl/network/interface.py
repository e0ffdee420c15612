"""The design's two interfaces: quantized image codes in, logits and argmax out.

**Input** (:func:`emit_input`): a ready/valid stream of pixel words, one pixel of all ``C``
input channels per beat in raster order (the codes of :meth:`IntModel.quantize_input`, two's
complement when signed). ``in_ready`` is high while the first edge has a free bank; the
``H·W``-th beat commits the image. Fed every cycle, it takes ``H·W`` cycles per image.

**Output** (:func:`emit_output`): reads the last layer's accumulators (the logits, one word of
``classes·acc_bits``) and finds the argmax by a registered tree of ``⌈log2 classes⌉`` compare
levels, the lower index winning a tie (``torch.argmax``: the first maximal value). ``out_valid``
rises one cycle after ``done``, with ``out_logits`` and ``out_argmax``, and stays up until
``out_ready``. It takes ``steps = 1``, ``depth = 2 + ⌈log2 classes⌉`` cycles.
"""

from __future__ import annotations

import math

from hwquant.rtl.unit import index_bits
from hwquant.rtl.network.stream import Block, FeatureMap, block_ports, control_lines, module_text

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
    depth = 2 + levels
    ports = block_ports([fmap], None) + [
        "output reg out_valid",
        "input wire out_ready",
        f"output reg [{fmap.word_bits - 1}:0] out_logits",
        f"output reg [{ib - 1}:0] out_argmax",
    ]
    lines = [
        "    always @(posedge clk) begin",
        "        rd_addr_0 <= 0;",
        "        if (busy && cnt == 1) out_logits <= rd_data_0;",  # the RAM word, from stage 2
        "        if (rst) out_valid <= 0;",
        "        else if (done) out_valid <= 1;",
        "        else if (out_ready) out_valid <= 0;",
        "    end",
    ]
    # tree level 0 is out_logits (stage 2); level j is registered at stage 2 + j
    nodes = [(f"$signed(out_logits[{c * ab} +: {ab}])", f"{ib}'d{c}") for c in range(classes)]
    for j in range(1, levels + 1):
        nxt = []
        for i in range(0, len(nodes), 2):
            pair = nodes[i : i + 2]
            val, idx = f"mv_{j}_{i // 2}", f"mi_{j}_{i // 2}"
            lines += [f"    reg signed [{ab - 1}:0] {val};", f"    reg [{ib - 1}:0] {idx};"]
            if len(pair) == 1:
                (v0, i0), = pair
                lines.append(f"    always @(posedge clk) begin {val} <= {v0}; {idx} <= {i0}; end")
            else:
                (v0, i0), (v1, i1) = pair
                lines.append(
                    f"    always @(posedge clk) begin {val} <= ({v1} > {v0}) ? {v1} : {v0}; "
                    f"{idx} <= ({v1} > {v0}) ? {i1} : {i0}; end"
                )
            nxt.append((val, idx))
        nodes = nxt
    lines += [f"    always @(posedge clk) if (done) out_argmax <= {nodes[0][1]};"]
    body = control_lines(1, depth) + lines
    verilog = module_text(module, ports, body)
    return Block(OUTPUT, OUTPUT, module, verilog, [source], None, 1, depth, {}, {})
