"""Run a unit's testbench in Icarus Verilog and read back what the outputs held.

:func:`simulate` writes the unit, the generated testbench (:mod:`hwquant.rtl.testbench`) and
its ``.mem`` files into a temporary directory, compiles them with ``iverilog -g2005`` and runs
``vvp``. Many vectors go through one run. The observed outputs come back as integers, so
callers assert exact equality with the integer engine; the testbench's own mismatch count comes
back too. A missing or failing simulator raises :class:`~hwquant.core.errors.ToolError` carrying
the tool's message.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hwquant.core.errors import ToolError
from hwquant.rtl.testbench import TESTBENCH_TOP, Stimulus, write_testbench
from hwquant.rtl.unit import Unit

INSTALL_HINT = "Fix: install Icarus Verilog (apt-get install iverilog)."


@dataclass(frozen=True)
class SimResult:
    """Observed output values at the check cycles (``[checks]`` or ``[checks, lanes]`` per
    port), the testbench's mismatch count and the simulator's output."""

    outputs: dict[str, np.ndarray]
    errors: int
    checks: int
    log: str


def simulator_available() -> bool:
    """True when ``iverilog`` and ``vvp`` are on PATH."""
    return shutil.which("iverilog") is not None and shutil.which("vvp") is not None


def run_directory(directory: Path, top: str, timeout: float = 300.0) -> str:
    """Compile every ``.v`` file of ``directory`` with ``iverilog -g2005`` (top module
    ``top``), run ``vvp`` there and return its standard output."""
    if not simulator_available():
        raise ToolError(f"the Verilog simulator iverilog/vvp is not on PATH. {INSTALL_HINT}")
    sources = sorted(p.name for p in directory.glob("*.v"))
    steps = (
        ["iverilog", "-g2005", "-s", top, "-o", "sim.vvp", *sources],
        ["vvp", "-n", "sim.vvp"],
    )
    out = ""
    for command in steps:
        try:
            done = subprocess.run(
                command, cwd=directory, capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired as exc:
            raise ToolError(
                f"'{command[0]}' ran past {timeout:.0f} s. Fix: simulate fewer vectors."
            ) from exc
        if done.returncode != 0:
            raise ToolError(
                f"'{' '.join(command)}' failed (exit {done.returncode}):\n"
                f"{done.stderr.strip() or done.stdout.strip()}"
            )
        out = done.stdout
    return out


def parse_log(log: str, unit: Unit, stimulus: Stimulus) -> SimResult:
    """The ``OUT`` values of each checked output port and the ``DONE`` counts of a run."""
    ports = [p.name for p in unit.ports if p.direction == "output" and p.name in stimulus.expected]
    widths = [stimulus.lanes.get(name, 1) for name in ports]
    lines = [line for line in log.splitlines() if line.startswith("OUT ")]
    try:
        rows = [[int(v) for v in line.split()[2:]] for line in lines]
    except ValueError as err:
        unknown = next((line for line in lines if any(c in line for c in "xXzZ")), lines[-1])
        raise ToolError(
            f"the simulation of {unit.top} produced an unknown (X/Z) output: {unknown!r}. Fix: "
            "check that every register of the unit is reset and every input is driven."
        ) from err
    done = [line.split() for line in log.splitlines() if line.startswith("DONE ")]
    if not done:
        raise ToolError(f"the simulation of {unit.top} did not finish:\n{log[-2000:]}")
    table = np.array(rows, dtype=object).reshape(len(rows), sum(widths))
    outputs, start = {}, 0
    for name, lanes in zip(ports, widths, strict=True):
        column = table[:, start : start + lanes].astype(np.int64)
        outputs[name] = column[:, 0] if lanes == 1 else column
        start += lanes
    return SimResult(outputs, int(done[-1][1]), int(done[-1][2]), log)


def simulate(unit: Unit, stimulus: Stimulus, timeout: float = 300.0) -> SimResult:
    """Replay ``stimulus`` through ``unit`` in iverilog (module docstring)."""
    with tempfile.TemporaryDirectory(prefix="hwquant-rtl-") as tmp:
        directory = write_testbench(unit, stimulus, tmp)
        log = run_directory(directory, TESTBENCH_TOP, timeout)
    return parse_log(log, unit, stimulus)
