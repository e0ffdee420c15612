"""The simulator runner: a missing or failing tool is a ToolError carrying its message."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from hwquant.core.errors import ToolError
from hwquant.rtl import fixed_mac, mac_stimulus, simulate
from hwquant.rtl.simulate import parse_log
from tests.goldens import requires_iverilog


def test_missing_simulator_is_named(monkeypatch):
    monkeypatch.setenv("PATH", "")
    with pytest.raises(ToolError, match="apt-get install iverilog"):
        simulate(fixed_mac(4, 4, 16), mac_stimulus({"x": [[1]], "w": [[1]]}, [1]))


@requires_iverilog
def test_compile_failure_carries_the_tool_message():
    unit = fixed_mac(4, 4, 16)
    broken = dataclasses.replace(unit, verilog=unit.verilog.replace("endmodule", ""))
    with pytest.raises(ToolError, match="iverilog") as info:
        simulate(broken, mac_stimulus({"x": [[1]], "w": [[1]]}, [1]))
    assert "syntax error" in str(info.value) or "endmodule" in str(info.value)


@requires_iverilog
def test_mismatches_are_counted():
    x = np.array([[1, 2], [3, 4]])
    w = np.array([[1, 1], [1, -1]])
    result = simulate(fixed_mac(4, 4, 16), mac_stimulus({"x": x, "w": w}, [3, 0]))
    assert result.outputs["acc"].tolist() == [3, -1]
    assert result.errors == 1 and result.checks == 2
    assert "MISMATCH" in result.log


def test_unknown_outputs_are_a_tool_error():
    unit = fixed_mac(4, 4, 16)
    stimulus = mac_stimulus({"x": [[1]], "w": [[1]]}, [1])
    with pytest.raises(ToolError, match="unknown \\(X/Z\\) output"):
        parse_log("OUT 0 x\nDONE 1 0\n", unit, stimulus)
