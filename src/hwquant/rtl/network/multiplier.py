"""The registered multiplier of the requantizers: ``p = a·b`` two cycles after ``a`` and ``b``.

**Behaviour** (every target, and every simulation): ``a`` and ``b`` are registered, their
product is registered, so ``p(t) = a(t − 2) · b(t − 2)``, signed, ``PW`` bits: the
requantizer's operand stage and product stage
(:class:`hwquant.rtl.network.weight_layer.Requantizer`), three registers around one multiply.

**On ECP5** (Verilog macro :data:`ECP5_MACRO`, which the implementation flow defines for the
ECP5 targets: :func:`hwquant.rtl.implement.family_macro`) the same two stages are the sysDSP
block's own registers: one ``MULT18X18D`` with its input registers (``REG_INPUTA_CLK``,
``REG_INPUTB_CLK``) and its output register (``REG_OUTPUT_CLK``) on ``CLK0``, no pipeline
register, which is two cycles from ``A``/``B`` to ``P`` (Lattice FPGA-TN-02205, ECP5 and
ECP5-5G sysDSP Usage Guide: the multiplier's input, pipeline and output registers, each
optional). Yosys 0.70's ``synth_ecp5`` maps a ``*`` to a ``MULT18X18D`` with every register
off (``dsp_map_18x18.v``: a combinational multiplier between fabric flip-flops), and the
placer, with 153 of the 85F's 156 DSPs taken, put those flip-flops tens of columns from their
DSP: the MNIST-5k MSQ design's critical path was ``res_q`` → 3.1 ns of route → the DSP's
3.9 ns → 3.3 ns of route → ``scaled`` (92.24 MHz). Inside the DSP the registers cannot
wander, and nextpnr times the block by its registered mode (``MULT18X18D_REGS_ALL``: setup
into the input registers, clock-to-out of the output register; it has no arc for the
multiply between them, about the 3.9 ns of the combinational mode, which the reported Fmax
therefore does not bound: within 10 ns at 100 MHz). Operands wider than 18 bits (two DSPs
and an adder, Yosys's ``mul2dsp``), and the other families, whose synthesis packs registers
into SB_MAC16 and DSP48E1 itself, keep the behavioural form (:func:`in_dsp`).

Simulation runs the behavioural form (the macro is not defined); the ``MULT18X18D`` wiring is
checked in tests against a model of that mode (tests/rtl/network/mult18x18d_model.v), on the
Verilog and on Yosys's synthesized netlist.
"""

from __future__ import annotations

from hwquant.rtl.implement import family_macro

MODULE = "hwquant_mul_reg"
"""The Verilog module's name (one shared file: :data:`FILE`)."""

FILE = f"{MODULE}.v"
"""The file it is written to, beside the blocks that instantiate it."""

ECP5_MACRO = family_macro("ecp5")
"""The macro that selects the ``MULT18X18D`` form (the flow's ``read_verilog -DHWQUANT_ECP5``)."""

DSP_OPERAND_BITS = 18
"""The widest operand one ``MULT18X18D`` takes (18 x 18 bits, signed)."""


def in_dsp(family: str, a_bits: int, b_bits: int) -> bool:
    """Whether an ``a_bits`` x ``b_bits`` multiplier's registers are its DSP's own on
    ``family`` (the module's ECP5 form).

    >>> in_dsp("ecp5", 18, 17), in_dsp("ecp5", 19, 17), in_dsp("ice40", 16, 16)
    (True, False, False)
    """
    return family == "ecp5" and max(a_bits, b_bits) <= DSP_OPERAND_BITS


def instance(name: str, a: str, b: str, p: str, widths: tuple[int, int, int]) -> str:
    """The Verilog instantiating the multiplier ``name``: ``p`` (a wire of ``PW`` bits) is
    ``a · b`` (``AW``- and ``BW``-bit signed expressions) two cycles later; ``widths`` is
    ``(AW, BW, PW)``.

    >>> instance("mul_0", "res_0", "mult_0", "scaled_0", (15, 17, 33))
    '    hwquant_mul_reg #(.AW(15), .BW(17), .PW(33)) mul_0 (.clk(clk), .a(res_0), .b(mult_0), .p(scaled_0));'
    """  # noqa: E501
    aw, bw, pw = widths
    return (
        f"    {MODULE} #(.AW({aw}), .BW({bw}), .PW({pw})) {name} "
        f"(.clk(clk), .a({a}), .b({b}), .p({p}));"
    )


def module_text() -> str:
    """The multiplier's Verilog-2005 module (module docstring): the behavioural form, and under
    :data:`ECP5_MACRO` the ``MULT18X18D`` form for operands of at most
    :data:`DSP_OPERAND_BITS` bits."""
    n = DSP_OPERAND_BITS
    pins = ", ".join(
        [f".A{i}(a_dsp[{i}])" for i in range(n)]
        + [f".B{i}(b_dsp[{i}])" for i in range(n)]
        + [f".C{i}(1'b0)" for i in range(n)]
        + [f".P{i}(p_dsp[{i}])" for i in range(2 * n)]
    )
    return f"""module {MODULE} #(
    parameter AW = {n},
    parameter BW = {n},
    parameter PW = {2 * n}
) (
    input wire clk,
    input wire signed [AW-1:0] a,
    input wire signed [BW-1:0] b,
    output wire signed [PW-1:0] p
);
`ifdef {ECP5_MACRO}
    localparam DSP = AW <= {n} && BW <= {n};
`else
    localparam DSP = 0;
`endif
    generate
        if (DSP) begin : dsp
            // sign-extended to the DSP's {n}-bit ports (a signed operand widens with its sign)
            wire signed [{n - 1}:0] a_dsp = a;
            wire signed [{n - 1}:0] b_dsp = b;
            wire signed [{2 * n - 1}:0] p_dsp;
            MULT18X18D #(
                .REG_INPUTA_CLK("CLK0"),
                .REG_INPUTB_CLK("CLK0"),
                .REG_OUTPUT_CLK("CLK0")
            ) mult (
                {pins},
                .SIGNEDA(1'b1), .SIGNEDB(1'b1), .SOURCEA(1'b0), .SOURCEB(1'b0),
                .CLK0(clk), .CE0(1'b1), .RST0(1'b0)
            );
            assign p = p_dsp;
        end else begin : fabric
            reg signed [AW-1:0] a_q;
            reg signed [BW-1:0] b_q;
            reg signed [PW-1:0] p_q;
            always @(posedge clk) begin
                a_q <= a;
                b_q <= b;
                p_q <= a_q * b_q;
            end
            assign p = p_q;
        end
    endgenerate
endmodule
"""
