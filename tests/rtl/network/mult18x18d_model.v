// A simulation model of the Lattice ECP5 MULT18X18D in the one mode hwquant instantiates
// (hwquant.rtl.network.multiplier): an 18 x 18 multiply, A and B each signed or unsigned
// (SIGNEDA, SIGNEDB), with optional input registers (REG_INPUTA_CLK, REG_INPUTB_CLK), pipeline
// register (REG_PIPELINE_CLK) and output register (REG_OUTPUT_CLK), each "NONE" or on
// "CLK0" with CE0 and a synchronous RST0 (Lattice FPGA-TN-02205, ECP5 and ECP5-5G sysDSP
// Usage Guide). Any other setting stops the simulation. Written for the tests from the usage
// guide's description: Yosys 0.70 ships a black box of the cell only.
module MULT18X18D (
    input wire A0, A1, A2, A3, A4, A5, A6, A7, A8, A9, A10, A11, A12, A13, A14, A15, A16, A17,
        B0, B1, B2, B3, B4, B5, B6, B7, B8, B9, B10, B11, B12, B13, B14, B15, B16, B17, C0, C1,
        C2, C3, C4, C5, C6, C7, C8, C9, C10, C11, C12, C13, C14, C15, C16, C17, SIGNEDA,
        SIGNEDB, SOURCEA, SOURCEB, CLK0, CE0, RST0,
    output wire P0, P1, P2, P3, P4, P5, P6, P7, P8, P9, P10, P11, P12, P13, P14, P15, P16, P17,
        P18, P19, P20, P21, P22, P23, P24, P25, P26, P27, P28, P29, P30, P31, P32, P33, P34, P35
);
    parameter REG_INPUTA_CLK = "NONE";
    parameter REG_INPUTB_CLK = "NONE";
    parameter REG_PIPELINE_CLK = "NONE";
    parameter REG_OUTPUT_CLK = "NONE";
    wire [17:0] a = {A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2, A1,
        A0};
    wire [17:0] b = {B17, B16, B15, B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4, B3, B2, B1,
        B0};
    reg [17:0] a_q, b_q;
    reg [35:0] m_q, p_q;
    wire [17:0] a_in = REG_INPUTA_CLK == "NONE" ? a : a_q;
    wire [17:0] b_in = REG_INPUTB_CLK == "NONE" ? b : b_q;
    // signed or unsigned by SIGNEDA / SIGNEDB: one more bit carrying the sign or a zero
    wire signed [18:0] a_ext = {SIGNEDA & a_in[17], a_in};
    wire signed [18:0] b_ext = {SIGNEDB & b_in[17], b_in};
    wire signed [37:0] m = a_ext * b_ext;
    wire [35:0] m_out = REG_PIPELINE_CLK == "NONE" ? m[35:0] : m_q;
    wire [35:0] p = REG_OUTPUT_CLK == "NONE" ? m_out : p_q;
    assign {P35, P34, P33, P32, P31, P30, P29, P28, P27, P26, P25, P24, P23, P22, P21, P20, P19,
        P18, P17, P16, P15, P14, P13, P12, P11, P10, P9, P8, P7, P6, P5, P4, P3, P2, P1, P0} =
        p;
    initial begin
        if ((REG_INPUTA_CLK != "NONE" && REG_INPUTA_CLK != "CLK0")
                || (REG_INPUTB_CLK != "NONE" && REG_INPUTB_CLK != "CLK0")
                || (REG_PIPELINE_CLK != "NONE" && REG_PIPELINE_CLK != "CLK0")
                || (REG_OUTPUT_CLK != "NONE" && REG_OUTPUT_CLK != "CLK0")) begin
            $display("MULT18X18D model: only NONE or CLK0 registers are modelled");
            $finish;
        end
    end
    always @(posedge CLK0) begin
        if (RST0) begin
            a_q <= 0;
            b_q <= 0;
            m_q <= 0;
            p_q <= 0;
        end else if (CE0) begin
            a_q <= a;
            b_q <= b;
            m_q <= m[35:0];
            p_q <= m_out;
        end
    end
endmodule
