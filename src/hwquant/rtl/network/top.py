"""The top module ``hwquant_top``: every block, every edge and the image handshake between them.

Ports: ``clk``, ``rst`` (synchronous, active high); ``in_valid``, ``in_ready``, ``in_data``
(pixel words of the input interface, :mod:`hwquant.rtl.network.interface`); ``out_valid``,
``out_ready``, ``out_logits`` (``classes`` signed accumulators, class ``c`` in bits
``c·acc_bits`` upwards) and ``out_argmax``.

A block starts an image (``go``) when it is idle, every input edge is ``avail`` and every
output edge has ``space``; its ``done`` commits the image on every output edge and releases it
on every input edge (:mod:`hwquant.rtl.network.stream`).

``hwquant_argmax`` (:func:`argmax_top_module`) is the same design with the class index as its
only result: it instantiates ``hwquant_top`` and leaves ``out_logits`` unconnected, so that
synthesis removes the logits register and a small package can hold the ports (``classes ·
acc_bits`` output pins do not fit the 39 user I/O of an iCE40 UP5K SG48). Everything it
computes is what ``hwquant_top`` computes, which the simulation checks logit by logit.
"""

from __future__ import annotations

from hwquant.rtl.network.graph import Network
from hwquant.rtl.network.interface import INPUT, OUTPUT
from hwquant.rtl.network.stream import edge_parameters
from hwquant.rtl.unit import index_bits

TOP = "hwquant_top"
ARGMAX_TOP = "hwquant_argmax"
TOPS = {"logits": TOP, "argmax": ARGMAX_TOP}
"""The top modules a design holds, by the result they give."""


def _edge_name(network: Network, index: int) -> str:
    edge = network.edges[index]
    return f"e{index}_{network.blocks.index(network.block(edge.source))}_" + str(
        network.blocks.index(network.block(edge.target))
    )


def top_module(network: Network) -> str:
    """Verilog of ``hwquant_top`` for ``network`` (module docstring)."""
    first = network.blocks[0]
    out_block = network.blocks[-1]
    logits = network.block(out_block.inputs[0]).output
    assert first.output is not None and logits is not None
    classes = logits.channels
    ports = [
        "input wire clk",
        "input wire rst",
        "input wire in_valid",
        "output wire in_ready",
        f"input wire [{first.output.word_bits - 1}:0] in_data",
        "output wire out_valid",
        "input wire out_ready",
        f"output wire [{logits.word_bits - 1}:0] out_logits",
        f"output wire [{index_bits(classes) - 1}:0] out_argmax",
    ]
    lines: list[str] = []
    names = [_edge_name(network, i) for i in range(len(network.edges))]
    for block in network.blocks:
        b = block.name
        tag = f"b{network.blocks.index(block)}"
        lines += [f"    // block {tag}: {b} ({block.op})", f"    wire {tag}_done;"]
        if block.op != INPUT:
            lines.append(f"    wire {tag}_idle, {tag}_go;")
        if block.output is not None:
            aw = index_bits(block.output.pixels)
            lines += [
                f"    wire {tag}_wr_en;",
                f"    wire [{aw - 1}:0] {tag}_wr_addr;",
                f"    wire [{block.output.word_bits - 1}:0] {tag}_wr_data;",
            ]
    for i, edge in enumerate(network.edges):
        e, fmap = names[i], edge.fmap
        src = f"b{network.blocks.index(network.block(edge.source))}"
        dst = f"b{network.blocks.index(network.block(edge.target))}"
        params = ", ".join(f".{k}({v})" for k, v in edge_parameters(fmap, edge.banks).items())
        lines += [
            f"    // edge {e}: {edge.source} -> {edge.target} port {edge.port}, "
            f"{edge.banks} banks of {fmap.pixels} x {fmap.word_bits} bits",
            f"    wire [{index_bits(fmap.pixels) - 1}:0] {e}_rd_addr;",
            f"    wire [{fmap.word_bits - 1}:0] {e}_rd_data;",
            f"    wire {e}_avail, {e}_space;",
            f"    hwquant_edge #({params}) {e} (",
            f"        .clk(clk), .rst(rst), .wr_en({src}_wr_en), .wr_addr({src}_wr_addr),",
            f"        .wr_data({src}_wr_data), .commit({src}_done), .rd_addr({e}_rd_addr),",
            f"        .rd_data({e}_rd_data), .release_({dst}_done), .avail({e}_avail),",
            f"        .space({e}_space)",
            "    );",
        ]
    for index, block in enumerate(network.blocks):
        tag = f"b{index}"
        ins = [names[i] for i, e in enumerate(network.edges) if e.target == block.name]
        ins.sort(key=lambda n: network.edges[names.index(n)].port)
        outs = [names[i] for i, e in enumerate(network.edges) if e.source == block.name]
        space = " && ".join(f"{e}_space" for e in outs) or "1'b1"
        if block.op == INPUT:
            lines += [
                f"    {block.module} u_{tag} (",
                "        .clk(clk), .rst(rst), .in_valid(in_valid), "
                f".space({space}), .in_ready(in_ready),",
                f"        .in_data(in_data), .done({tag}_done), .wr_en({tag}_wr_en),",
                f"        .wr_addr({tag}_wr_addr), .wr_data({tag}_wr_data)",
                "    );",
            ]
            continue
        if block.op == OUTPUT:
            space = "(!out_valid || out_ready)"
        avail = " && ".join(f"{e}_avail" for e in ins)
        lines.append(f"    assign {tag}_go = {tag}_idle && {avail} && {space};")
        conns = [
            ".clk(clk)",
            ".rst(rst)",
            f".go({tag}_go)",
            f".idle({tag}_idle)",
            f".done({tag}_done)",
        ]
        for port, e in enumerate(ins):
            conns += [f".rd_addr_{port}({e}_rd_addr)", f".rd_data_{port}({e}_rd_data)"]
        if block.op == OUTPUT:
            conns += [
                ".out_valid(out_valid)",
                ".out_ready(out_ready)",
                ".out_logits(out_logits)",
                ".out_argmax(out_argmax)",
            ]
        else:
            conns += [
                f".wr_en({tag}_wr_en)",
                f".wr_addr({tag}_wr_addr)",
                f".wr_data({tag}_wr_data)",
            ]
        lines.append(
            f"    {block.module} u_{tag} (\n        " + ",\n        ".join(conns) + "\n    );"
        )
    header = ",\n".join(f"    {p}" for p in ports)
    return f"module {TOP} (\n{header}\n);\n" + "\n".join(lines) + "\nendmodule\n"


def argmax_top_module(network: Network) -> str:
    """Verilog of ``hwquant_argmax``: ``hwquant_top`` without the ``out_logits`` port (module
    docstring)."""
    first = network.blocks[0]
    logits = network.block(network.blocks[-1].inputs[0]).output
    assert first.output is not None and logits is not None
    return f"""module {ARGMAX_TOP} (
    input wire clk,
    input wire rst,
    input wire in_valid,
    output wire in_ready,
    input wire [{first.output.word_bits - 1}:0] in_data,
    output wire out_valid,
    input wire out_ready,
    output wire [{index_bits(logits.channels) - 1}:0] out_argmax
);
    {TOP} core (
        .clk(clk), .rst(rst), .in_valid(in_valid), .in_ready(in_ready), .in_data(in_data),
        .out_valid(out_valid), .out_ready(out_ready), .out_logits(), .out_argmax(out_argmax)
    );
endmodule
"""
