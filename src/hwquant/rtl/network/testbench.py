"""The whole-design testbench: real images in, one line per output, the cycle of each event.

``hwquant_tb`` feeds the pixel words of ``N`` images from a ``$readmemh`` file back to back
(``in_valid`` high from the first cycle after reset until the last word is taken), holds
``out_ready`` high, and prints

* ``FIRST <cycle>``: the cycle the first pixel was taken;
* ``OUT <image> <cycle> <argmax> <logit_0> ... <logit_{classes-1}>`` per output, the logits as
  signed decimals;
* ``DONE <outputs>`` after the last image, or ``TIMEOUT <cycle>`` when the outputs stop coming.

It prints no verdict: the caller compares every ``OUT`` line with the integer engine itself
(:mod:`hwquant.rtl.network.simulate`), so a simulator that miscounts cannot hide a mismatch.
"""

from __future__ import annotations

from hwquant.rtl.unit import index_bits

TESTBENCH_TOP = "hwquant_tb"


def testbench(
    images: int, words: int, word_bits: int, classes: int, acc_bits: int, input_file: str,
    timeout_cycles: int,
) -> str:
    """The testbench module for ``images`` images of ``words`` pixel words each (module
    docstring); ``input_file`` is the path ``$readmemh`` reads."""
    total = images * words
    logits = "".join(
        f'            $write(" %0d", $signed(out_logits[{c * acc_bits} +: {acc_bits}]));\n'
        for c in range(classes)
    )
    return f"""`timescale 1ns/1ps
module {TESTBENCH_TOP};
    reg clk = 0;
    reg rst = 1;
    always #5 clk = ~clk;
    reg [{word_bits - 1}:0] pixels [0:{total - 1}];
    initial $readmemh("{input_file}", pixels);
    integer cycle = 0;
    integer fed = 0;
    integer got = 0;
    wire in_valid = !rst && fed < {total};
    wire in_ready;
    wire [{word_bits - 1}:0] in_data = pixels[fed < {total} ? fed : 0];
    wire out_valid;
    wire out_ready = 1'b1;
    wire [{classes * acc_bits - 1}:0] out_logits;
    wire [{index_bits(classes) - 1}:0] out_argmax;
    hwquant_top dut (
        .clk(clk), .rst(rst), .in_valid(in_valid), .in_ready(in_ready), .in_data(in_data),
        .out_valid(out_valid), .out_ready(out_ready), .out_logits(out_logits),
        .out_argmax(out_argmax)
    );
    always @(posedge clk) begin
        cycle <= cycle + 1;
        if (cycle == 1) rst <= 0;
        if (in_valid && in_ready) begin
            if (fed == 0) $display("FIRST %0d", cycle);
            fed <= fed + 1;
        end
        if (out_valid && out_ready) begin
            $write("OUT %0d %0d %0d", got, cycle, out_argmax);
{logits}            $write("\\n");
            got <= got + 1;
            if (got == {images - 1}) begin
                $display("DONE %0d", got + 1);
                $finish;
            end
        end
        if (cycle > {timeout_cycles}) begin
            $display("TIMEOUT %0d", cycle);
            $finish;
        end
    end
endmodule
"""
