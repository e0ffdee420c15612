"""The image FIFO of every edge: synthesized, its RAM is block RAM alone, with no bypass
register beside it (the RAM is marked ``no_rw_check``: :mod:`hwquant.rtl.network.stream`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hwquant.core.errors import ToolError
from hwquant.rtl import implement as impl
from hwquant.rtl.network.stream import FeatureMap, edge_module, edge_parameters


def test_edge_ram_is_block_ram_without_a_bypass_register(tmp_path: Path) -> None:
    try:
        impl.tool_path(impl.YOSYS)
    except ToolError:
        pytest.skip(f"yosys not found: {impl.INSTALL}")
    fmap = FeatureMap(16, 8, 8, 8, False)  # 128-bit words, 64 per image, two images
    params = edge_parameters(fmap, 2)
    overrides = ", ".join(f".{k}({v})" for k, v in params.items())
    aw, width = params["AW"], params["WIDTH"]
    wrapper = f"""module edge128 (
    input wire clk, input wire rst, input wire wr_en, input wire [{aw - 1}:0] wr_addr,
    input wire [{width - 1}:0] wr_data, input wire commit, input wire [{aw - 1}:0] rd_addr,
    output wire [{width - 1}:0] rd_data, input wire release_, output wire avail,
    output wire space
);
    hwquant_edge #({overrides}) e (
        .clk(clk), .rst(rst), .wr_en(wr_en), .wr_addr(wr_addr), .wr_data(wr_data),
        .commit(commit), .rd_addr(rd_addr), .rd_data(rd_data), .release_(release_),
        .avail(avail), .space(space)
    );
endmodule
"""
    source = tmp_path / "edge128.v"
    source.write_text(edge_module() + wrapper)
    result = impl.implement([source], "edge128", "ice40up5k", tmp_path / "run", place=False)
    used = result.synthesized
    assert used.brams == 8  # 128 bits x 128 words: eight 256 x 16 SB_RAM40_4K
    # bank pointers and the count only: the old-data bypass would add a 128-bit register
    assert used.ffs <= 8 and used.luts <= 32
