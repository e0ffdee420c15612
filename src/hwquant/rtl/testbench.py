"""Self-checking testbenches that replay vectors through a unit, cycle by cycle.

A :class:`Stimulus` gives every input port a word per clock cycle and the expected value of
output ports at chosen cycles. The generated testbench reads them with ``$readmemh`` (one
``.mem`` file per port, two's complement at the port width, one word per line) and loops over
the cycles: at each cycle it first compares the outputs (when the cycle is a check cycle),
printing ``MISMATCH`` lines and one ``OUT`` line with the observed values, then applies the
cycle's inputs and waits for the rising clock edge. An output checked at cycle ``i`` therefore
shows the effect of the inputs of cycles ``< i``. The last line is ``DONE <errors> <checks>``.

A port may pack ``lanes`` equal fields (lane 0 in the least significant bits), as the PE
outputs of :func:`hwquant.rtl.conv_array.conv_array` do; its values are then ``[cycles, lanes]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hwquant.core.errors import ConfigError
from hwquant.rtl.unit import Port, Unit, to_words

TESTBENCH_TOP = "tb"


@dataclass
class Stimulus:
    """Input words per cycle and expected outputs at ``check_cycles`` (module docstring).

    ``inputs[port]`` holds integers ``[cycles]`` (or ``[cycles, lanes]``); input ports not
    named are held at 0. ``expected[port]`` holds ``[len(check_cycles)]`` (or ``[…, lanes]``).
    """

    inputs: Mapping[str, np.ndarray]
    expected: Mapping[str, np.ndarray]
    check_cycles: np.ndarray
    lanes: Mapping[str, int] = field(default_factory=dict)

    @property
    def cycles(self) -> int:
        """Clock cycles the testbench runs."""
        return max(len(v) for v in self.inputs.values())


def pack_words(values: np.ndarray, port: Port, lanes: int) -> list[int]:
    """One word (a Python int) per row of ``values``: each lane at ``port.width // lanes`` bits,
    two's complement when the port is signed, lane 0 in the low bits."""
    lane_bits = port.width // lanes
    words = to_words(np.asarray(values).reshape(len(values), lanes), lane_bits, port.signed)
    return [sum(int(w) << (lane_bits * k) for k, w in enumerate(row)) for row in words]


def mem_text(words: list[int], width: int) -> str:
    """``$readmemh`` text: one hexadecimal word per line, zero-padded to the port width."""
    digits = max(1, -(-width // 4))
    return "".join(f"{w:0{digits}x}\n" for w in words)


def testbench(unit: Unit, stimulus: Stimulus) -> tuple[str, dict[str, str]]:
    """The testbench module (named :data:`TESTBENCH_TOP`) and its ``.mem`` files by name."""
    cycles = stimulus.cycles
    checks = len(stimulus.check_cycles)
    inputs = [p for p in unit.ports if p.direction == "input" and p.name != "clk"]
    outputs = [p for p in unit.ports if p.direction == "output" and p.name in stimulus.expected]
    unknown = set(stimulus.inputs) - {p.name for p in inputs}
    unknown |= set(stimulus.expected) - {p.name for p in outputs}
    if unknown:
        raise ConfigError(
            f"the stimulus names port(s) {', '.join(sorted(unknown))} that unit {unit.top} "
            f"lacks. Fix: use its ports: {', '.join(p.name for p in unit.ports)}."
        )
    files: dict[str, str] = {}
    lines = [f"module {TESTBENCH_TOP};", "    reg clk = 0;", "    always #5 clk = ~clk;"]
    lines.append("    integer i, j, errors;")
    for port in unit.ports:
        if port.name == "clk":
            continue
        kind = "reg" if port.direction == "input" else "wire"
        sign = " signed" if port.signed else ""
        lines.append(f"    {kind}{sign} [{port.width - 1}:0] {port.name};")
    for port in inputs:
        values = stimulus.inputs.get(port.name, np.zeros(cycles, np.int64))
        words = pack_words(values, port, stimulus.lanes.get(port.name, 1))
        files[f"{port.name}.mem"] = mem_text(words, port.width)
        lines.append(f"    reg [{port.width - 1}:0] mem_{port.name} [0:{cycles - 1}];")
    for port in outputs:
        words = pack_words(stimulus.expected[port.name], port, stimulus.lanes.get(port.name, 1))
        files[f"expect_{port.name}.mem"] = mem_text(words, port.width)
        lines.append(f"    reg [{port.width - 1}:0] expect_{port.name} [0:{max(checks, 1) - 1}];")
    flags = np.zeros(cycles, np.int64)
    flags[np.asarray(stimulus.check_cycles, dtype=np.int64)] = 1
    files["check.mem"] = mem_text([int(f) for f in flags], 1)
    lines.append(f"    reg check [0:{cycles - 1}];")
    connections = ", ".join(f".{p.name}({p.name})" for p in unit.ports)
    lines.append(f"    {unit.top} dut ({connections});")
    lines.append("    initial begin")
    for name in [f"{p.name}" for p in inputs]:
        lines.append(f'        $readmemh("{name}.mem", mem_{name});')
    for port in outputs:
        lines.append(f'        $readmemh("expect_{port.name}.mem", expect_{port.name});')
    lines += ['        $readmemh("check.mem", check);', "        errors = 0;", "        j = 0;"]
    lines.append(f"        for (i = 0; i < {cycles}; i = i + 1) begin")
    lines.append("            if (check[i]) begin")
    for port in outputs:
        lines += [
            f"                if ({port.name} !== expect_{port.name}[j]) begin",
            "                    errors = errors + 1;",
            f'                    $display("MISMATCH %0d {port.name} got %h expected %h", '
            f"i, {port.name}, expect_{port.name}[j]);",
            "                end",
        ]
    fields = [_lane_fields(p, stimulus.lanes.get(p.name, 1)) for p in outputs]
    formats = " ".join("%0d" for f in fields for _ in f)
    args = "".join(f", {a}" for f in fields for a in f)
    lines += [
        f'                $display("OUT %0d {formats}", i{args});',
        "                j = j + 1;",
        "            end",
    ]
    for port in inputs:
        lines.append(f"            {port.name} = mem_{port.name}[i];")
    lines += [
        "            @(posedge clk);",
        "            #1;",
        "        end",
        '        $display("DONE %0d %0d", errors, j);',
        "        $finish;",
        "    end",
        "endmodule",
    ]
    return "\n".join(lines) + "\n", files


def _lane_fields(port: Port, lanes: int) -> list[str]:
    """Verilog expressions of each lane's value of an output port (signed where it is)."""
    if lanes == 1:
        return [port.name]
    bits = port.width // lanes
    wrap = "$signed" if port.signed else ""
    return [f"{wrap}({port.name}[{k * bits} +: {bits}])" for k in range(lanes)]


def write_testbench(unit: Unit, stimulus: Stimulus, directory: str | Path) -> Path:
    """Write the unit (``<top>.v``), its testbench (``tb.v``) and the ``.mem`` files into
    ``directory``; run them there with ``iverilog -g2005 -o sim tb.v <top>.v && vvp sim``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    bench, files = testbench(unit, stimulus)
    (directory / f"{unit.top}.v").write_text(unit.verilog)
    (directory / "tb.v").write_text(bench)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


def mac_stimulus(operands: Mapping[str, np.ndarray], expected_acc: np.ndarray) -> Stimulus:
    """Vectors of a MAC-like unit: ``operands[port]`` is ``[n, K]`` (one row per sum of K
    products) and ``expected_acc`` ``[n]``. Cycle 0 resets; sum ``o`` takes cycles
    ``1 + o·K … o·K + K`` (``clear`` on its first) and is checked one cycle after its last."""
    rows = {name: np.asarray(v, dtype=np.int64) for name, v in operands.items()}
    n, k = next(iter(rows.values())).shape
    cycles = n * k + 2
    inputs: dict[str, np.ndarray] = {name: np.zeros(cycles, np.int64) for name in rows}
    for name, values in rows.items():
        inputs[name][1 : 1 + n * k] = values.reshape(-1)
    inputs["rst"] = np.zeros(cycles, np.int64)
    inputs["rst"][0] = 1
    inputs["en"] = np.zeros(cycles, np.int64)
    inputs["en"][1 : 1 + n * k] = 1
    inputs["clear"] = np.zeros(cycles, np.int64)
    inputs["clear"][1 : 1 + n * k : k] = 1
    checks = 1 + k * np.arange(1, n + 1)
    return Stimulus(inputs, {"acc": np.asarray(expected_acc, np.int64)}, checks)


def stream_stimulus(
    inputs: Mapping[str, np.ndarray], expected: Mapping[str, np.ndarray], latency: int = 1
) -> Stimulus:
    """Vectors of a registered unit that takes one input per cycle with ``en``: cycle 0
    resets, input ``i`` goes in at cycle ``1 + i`` and its output is checked at cycle
    ``1 + i + latency``."""
    n = len(next(iter(inputs.values())))
    cycles = n + 1 + latency
    padded = {}
    for name, values in inputs.items():
        padded[name] = np.zeros((cycles, *np.shape(values)[1:]), np.int64)
        padded[name][1 : 1 + n] = values
    padded["rst"] = (np.arange(cycles) == 0).astype(np.int64)
    padded["en"] = ((np.arange(cycles) >= 1) & (np.arange(cycles) <= n)).astype(np.int64)
    checks = 1 + latency + np.arange(n)
    return Stimulus(padded, {k: np.asarray(v, np.int64) for k, v in expected.items()}, checks)
