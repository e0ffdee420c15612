// A tiny registered multiply-accumulate over a 256-word weight RAM (one block RAM), with few
// enough pins for the iCE40 UP5K SG48 package (39 user I/O): the design whose real Yosys and
// nextpnr outputs the implementation tests parse (tests/rtl/test_implement.py).
module mac4 (
    input wire clk,
    input wire rst,
    input wire we,
    input wire signed [7:0] wdata,
    input wire signed [7:0] x,
    output reg signed [11:0] acc
);
    reg [7:0] addr;
    reg signed [7:0] w;
    reg signed [15:0] p;
    reg signed [7:0] ram [0:255];
    always @(posedge clk) begin
        if (we) ram[addr] <= wdata;
        addr <= rst ? 8'd0 : addr + 8'd1;
        w <= ram[addr];
        p <= x * w;
        acc <= rst ? 12'sd0 : acc + p[15:4];
    end
endmodule
