"""The requantizers' registered multiplier: both forms give ``p(t) = a(t − 2) · b(t − 2)``, and
the ECP5 form synthesizes to one MULT18X18D holding every register, whose netlist computes the
same."""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest

from hwquant.rtl import implement as impl
from hwquant.rtl.network import multiplier
from hwquant.rtl.resources import multipliers

MODEL = Path(__file__).with_name("mult18x18d_model.v")
CYCLES = 64
requires_iverilog = pytest.mark.skipif(
    shutil.which("iverilog") is None, reason="apt-get install -y iverilog"
)


def _stimulus(bits: int, rng: random.Random) -> list[int]:
    """Signed ``bits``-bit values, the extremes among them."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return [lo, hi, -1, 0, lo, hi] + [rng.randint(lo, hi) for _ in range(CYCLES - 6)]


def _bench(widths: tuple[int, int, int], unit: str, a: list[int], b: list[int]) -> str:
    """A testbench driving ``a``, ``b`` one pair a cycle into ``unit`` (the instantiation of a
    module with ports ``clk, a, b, p``) and printing ``p`` after every rising edge."""
    aw, bw, pw = widths
    sets = "\n".join(
        f"        @(negedge clk) a = {aw}'sd0 + ({x}); b = {bw}'sd0 + ({y});"
        for x, y in zip(a, b, strict=True)
    )
    return f"""module tb;
    reg clk = 0;
    always #5 clk = ~clk;
    reg signed [{aw - 1}:0] a = 0;
    reg signed [{bw - 1}:0] b = 0;
    wire signed [{pw - 1}:0] p;
{unit}
    always @(posedge clk) #1 $display("%0d", p);
    initial begin
{sets}
        repeat (3) @(negedge clk);
        $finish;
    end
endmodule
"""


def _simulate(tmp: Path, sources: list[str], flags: list[str]) -> list[int | None]:
    """``p`` after every rising edge (None: unknown), simulated in Icarus."""
    build = subprocess.run(
        ["iverilog", "-g2005", *flags, "-o", "sim", *sources],
        cwd=tmp, capture_output=True, text=True,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr
    run = subprocess.run(["vvp", "-n", "sim"], cwd=tmp, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return [int(v) if v.lstrip("-").isdigit() else None for v in run.stdout.split()]


def _assert_products(printed: list[int | None], a: list[int], b: list[int]) -> None:
    """Pair k is driven on the falling edge before rising edge k + 1 (edge 0 comes first),
    registered at edge k + 1, its product at edge k + 2: ``printed[k + 2]``; before it, x and
    then the product of the bench's initial zeros."""
    products = [x * y for x, y in zip(a, b, strict=True)]
    assert printed[:2] == [None, 0]
    assert printed[2 : 2 + CYCLES] == products
    assert any(v < 0 for v in products) and any(v > 0 for v in products)


def _top(aw: int, bw: int, pw: int) -> str:
    """A top module around one multiplier."""
    return (
        f"module top(input clk, input signed [{aw - 1}:0] a, input signed [{bw - 1}:0] b, "
        f"output signed [{pw - 1}:0] p);\n"
        + multiplier.instance("u", "a", "b", "p", (aw, bw, pw))
        + "\nendmodule\n"
    )


@requires_iverilog
@pytest.mark.parametrize(("aw", "bw"), [(15, 17), (18, 17), (18, 18), (19, 17), (4, 2)])
@pytest.mark.parametrize("ecp5", [False, True], ids=["fabric", "ecp5"])
def test_two_cycles_after_its_operands(tmp_path: Path, aw: int, bw: int, ecp5: bool) -> None:
    rng = random.Random(aw * 100 + bw)
    a, b = _stimulus(aw, rng), _stimulus(bw, rng)
    widths = (aw, bw, aw + bw + 1)
    (tmp_path / "mul.v").write_text(multiplier.module_text())
    unit = multiplier.instance("dut", "a", "b", "p", widths)
    (tmp_path / "tb.v").write_text(_bench(widths, unit, a, b))
    sources = ["mul.v", "tb.v"] + ([str(MODEL)] if ecp5 else [])
    flags = [f"-D{multiplier.ECP5_MACRO}"] if ecp5 else []
    _assert_products(_simulate(tmp_path, sources, flags), a, b)


@pytest.mark.skipif(not impl.installed(impl.YOSYS), reason=f"yosys not found: {impl.INSTALL}")
@pytest.mark.parametrize(("aw", "bw"), [(15, 17), (18, 18), (19, 17)])
def test_ecp5_synthesis_keeps_the_registers_in_the_dsp(tmp_path: Path, aw: int, bw: int) -> None:
    pw = aw + bw + 1
    (tmp_path / multiplier.FILE).write_text(multiplier.module_text())
    (tmp_path / "top.v").write_text(_top(aw, bw, pw))
    files = [tmp_path / multiplier.FILE, tmp_path / "top.v"]
    result = impl.implement(files, "top", "lfe5u-85f", tmp_path / "run", place=False)
    assert result.synthesized.dsps == multipliers(aw, bw, "ecp5")
    if not multiplier.in_dsp("ecp5", aw, bw):  # the fabric form, its registers flip-flops
        assert result.synthesized.ffs >= aw + bw
        return
    assert result.synthesized.ffs == 0  # every register inside the MULT18X18D
    netlist = (tmp_path / "run" / "synth.json").read_text()
    for register in ("REG_INPUTA_CLK", "REG_INPUTB_CLK", "REG_OUTPUT_CLK"):
        assert f'"{register}": "CLK0"' in netlist
    if shutil.which("iverilog") is None:
        return
    # the synthesized netlist, written back as Verilog, computes the products (the pins as
    # Yosys connected them, with the model of the primitive)
    yosys = impl.tool_path(impl.YOSYS)
    subprocess.run(
        [yosys, "-q", "-p", "read_json synth.json; write_verilog -noattr netlist.v"],
        cwd=tmp_path / "run", check=True,
    )  # fmt: skip
    rng = random.Random(aw + bw)
    a, b = _stimulus(aw, rng), _stimulus(bw, rng)
    unit = "    top dut (.clk(clk), .a(a), .b(b), .p(p));"
    (tmp_path / "tb.v").write_text(_bench((aw, bw, pw), unit, a, b))
    sources = ["run/netlist.v", "tb.v", str(MODEL)]
    _assert_products(_simulate(tmp_path, sources, []), a, b)
