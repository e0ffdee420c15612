"""Threshold activation unit of a table layer (methods.md §3.1; :mod:`hwquant.schemes.tables.fold`).

BN, ReLU and the next layer's quantization fold into integer thresholds ``τ_0 … τ_(n−1)`` per
output channel; the next activation index is the number passed,
``#{k : acc ≥ τ_k}`` (or ``#{k : acc ≤ τ_k}`` on a channel with a negative BN scale,
``descending``), exactly :func:`hwquant.schemes.tables.kernels.count_passed`. The unit compares the
accumulator with every threshold in parallel and adds the comparison bits; thresholds beyond
the accumulator's range (the ``±SENTINEL`` of always/never) are compared at their own width.

Ports: ``clk, rst``; ``en`` (register a new result); ``acc`` [acc_bits] signed;
``out`` [ceil(log2(n+1))] unsigned, registered: it shows the index one cycle after ``acc``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hwquant.core.errors import ConfigError
from hwquant.core.intmath import signed_bits
from hwquant.rtl.unit import (
    Unit,
    check_width,
    index_bits,
    literal,
    module,
    register_emitter,
    stream_ports,
    top_suffix,
)


def _check_thresholds(thresholds: Sequence[int], descending: bool) -> np.ndarray:
    arr = np.asarray(thresholds)
    if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer):
        raise ConfigError(
            f"thresholds must be a non-empty list of integers, got {thresholds!r}. Fix: pass "
            "one channel's row of UnitNode.thresholds (not the last layer's empty row)."
        )
    steps = np.diff(arr.astype(np.int64))
    order = "non-increasing" if descending else "non-decreasing"
    if np.any(steps > 0 if descending else steps < 0):
        raise ConfigError(
            f"thresholds {arr.tolist()} are not {order}. Fix: sort them ({order} for "
            f"descending={descending}), as hwquant.schemes.tables.fold produces them."
        )
    return arr.astype(np.int64)


@register_emitter
def threshold_unit(acc_bits: int, thresholds: Sequence[int], descending: bool = False) -> Unit:
    """A threshold activation unit (module docstring)."""
    check_width("acc_bits", acc_bits, 2)
    taus = _check_thresholds(thresholds, descending)
    width = max(acc_bits, signed_bits(taus.tolist()))
    out_bits = index_bits(len(taus) + 1)
    relation = "<=" if descending else ">="
    terms = " + ".join(f"(acc_wide {relation} {literal(int(t), width)})" for t in taus)
    body = (
        f"    wire signed [{width - 1}:0] acc_wide = acc;\n"
        f"    wire [{out_bits - 1}:0] passed = {terms};\n"
        "    always @(posedge clk) begin\n"
        "        if (rst) out <= 0;\n"
        "        else if (en) out <= passed;\n"
        "    end\n"
    )
    ports = stream_ports(acc_bits, out_bits, False)
    direction = "d" if descending else "a"
    top = f"threshold_unit_acc{acc_bits}_n{len(taus)}{direction}_{top_suffix(taus.tolist())}"
    params = {
        "acc_bits": acc_bits,
        "thresholds": ",".join(str(int(t)) for t in taus),
        "descending": int(descending),
    }
    return Unit("threshold_unit", top, params, module(top, ports, body), ports)
