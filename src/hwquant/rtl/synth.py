"""Synthesis of an emitted unit with Yosys ``synth_xilinx``, parsed into FPGA resource counts.

One run reads the unit's Verilog-2001 text and maps it to 7-series primitives, out of context
(no I/O buffers, no clock buffer: a unit is a block inside a larger design)::

    yosys -p "read_verilog UNIT.v; synth_xilinx -family xc7 -top TOP -flatten -noiopad
              -noclkbuf; tee -q -o stat.json stat -json"

``stat -json`` lists the cells of the flattened netlist by type; :func:`parse_stat` sums them
into :class:`Resources` the way the 7-series datasheets count resources: LUTs (LUT1..LUT6 and
INV), flip-flops (FDRE/FDSE/FDCE/FDPE), CARRY4 chains, DSP slices and block RAMs (UG474 CLB, UG479
DSP48E1, UG473 block RAM). Results can be cached on disk, keyed by the Verilog text, top, family,
script and the Yosys version, so a sweep re-runs only what changed.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol

from hwquant.core.atomic import write_atomic
from hwquant.core.errors import ConfigError, FileFormatError, ToolError

FAMILIES: tuple[str, ...] = ("xc7", "xcu", "xcup")
"""``synth_xilinx -family`` values whose primitives :func:`parse_stat` knows (7-series,
UltraScale, UltraScale+)."""
SYNTH_TIMEOUT_S = 600
LUT_CELLS = (*(f"LUT{n}" for n in range(1, 7)), "INV")
"""Cells that each take one LUT: LUT1..LUT6 and INV (an inverter is a LUT1 on 7-series)."""
FF_CELLS = ("FDRE", "FDSE", "FDCE", "FDPE")
LUTRAM_LUTS: dict[str, int] = {
    "RAM16X1D": 2,
    "RAM32X1D": 2,
    "RAM64X1D": 2,
    "RAM128X1D": 4,
    "RAM32M": 4,
    "RAM64M": 4,
    "RAM32X1S": 1,
    "RAM64X1S": 1,
    "RAM128X1S": 2,
    "RAM256X1S": 4,
}
"""LUTs (of SLICEM) taken by each distributed-RAM primitive (UG474, distributed RAM)."""


class Synthesizable(Protocol):
    """What :func:`synthesize` needs of a unit (``hwquant.rtl.Unit``): its top module's name,
    the complete Verilog text (top and submodules) and its parameters."""

    name: str
    top: str
    verilog: str
    params: Mapping[str, int | str]


@dataclass(frozen=True)
class Resources:
    """Resource counts of one synthesized netlist.

    ``luts``: LUT1..LUT6 and INV cells; ``ffs``: FDRE+FDSE+FDCE+FDPE; ``carry4``: CARRY4 (or
    CARRY8 on UltraScale) chains; ``dsps``: DSP48E1/DSP48E2 slices; ``brams``: block RAM in
    18 Kb halves (RAMB18 = 1, RAMB36 = 2); ``lutram``: LUTs used as distributed RAM
    (:data:`LUTRAM_LUTS`); ``cells``: every cell type with its count, as Yosys listed it.
    """

    luts: int
    ffs: int
    carry4: int
    dsps: int
    brams: int
    lutram: int = 0
    cells: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "cells", MappingProxyType(dict(self.cells)))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready counts, the cell map included."""
        return {
            "luts": self.luts,
            "ffs": self.ffs,
            "carry4": self.carry4,
            "dsps": self.dsps,
            "brams": self.brams,
            "lutram": self.lutram,
            "cells": dict(sorted(self.cells.items())),
        }

    @classmethod
    def from_cells(cls, cells: Mapping[str, int]) -> Resources:
        """Sum a cell-type map (as in ``stat -json``'s ``num_cells_by_type``) into resources."""

        def total(names: tuple[str, ...] | list[str]) -> int:
            return sum(int(cells.get(name, 0)) for name in names)

        return cls(
            luts=total(LUT_CELLS),
            ffs=total(FF_CELLS),
            carry4=total(["CARRY4", "CARRY8"]),
            dsps=total([c for c in cells if c.startswith("DSP48")]),
            brams=total([c for c in cells if c.startswith("RAMB18")])
            + 2 * total([c for c in cells if c.startswith("RAMB36")]),
            lutram=sum(n * int(cells.get(c, 0)) for c, n in LUTRAM_LUTS.items()),
            cells={str(k): int(v) for k, v in cells.items()},
        )


def parse_stat(text: str) -> Resources:
    """Resources from the output of Yosys ``stat -json`` (its ``design`` totals).

    Raises:
        FileFormatError: ``text`` is not ``stat -json`` output.
    """
    try:
        doc = json.loads(text)
        cells = doc["design"]["num_cells_by_type"]
        if not isinstance(cells, dict):
            raise TypeError("num_cells_by_type is not an object")
        return Resources.from_cells(cells)
    except (ValueError, KeyError, TypeError) as exc:
        raise FileFormatError(
            f"not Yosys 'stat -json' output ({exc}). Fix: run 'tee -q -o FILE stat -json' after "
            "synthesis and pass FILE's text."
        ) from exc


def yosys_path() -> str:
    """The ``yosys`` executable on PATH.

    Raises:
        ToolError: Yosys is not installed.
    """
    path = shutil.which("yosys")
    if path is None:
        raise ToolError(
            "yosys was not found on PATH. Fix: install it (Debian: 'apt-get install -y yosys'; "
            "'make test' does so) or add it to PATH."
        )
    return path


@functools.cache
def yosys_version() -> str:
    """The installed Yosys version, e.g. ``"0.23"`` (from ``yosys -V``).

    Raises:
        ToolError: Yosys is missing or does not report a version.
    """
    out = subprocess.run([yosys_path(), "-V"], capture_output=True, text=True, check=False)
    match = re.search(r"Yosys (\S+)", out.stdout)
    if match is None:
        raise ToolError(f"'yosys -V' gave no version: {out.stdout or out.stderr!r}.")
    return match.group(1)


def synth_script(top: str, family: str = "xc7", source: str = "unit.v", nodsp: bool = False) -> str:
    """The Yosys script of one out-of-context synthesis of module ``top`` in file ``source``;
    ``nodsp`` keeps multipliers out of DSP slices (``synth_xilinx -nodsp``)."""
    if family not in FAMILIES:
        raise ConfigError(
            f"synthesis family {family!r} is not supported. Fix: use one of {', '.join(FAMILIES)}."
        )
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]*", top):
        raise ConfigError(f"top module name {top!r} is not a Verilog identifier. Fix: rename it.")
    return (
        f"read_verilog {source}; synth_xilinx -family {family} -top {top} -flatten -noiopad "
        f"-noclkbuf{' -nodsp' if nodsp else ''}; tee -q -o stat.json stat -json"
    )


def _errors(log: str) -> str:
    """The distinct ``ERROR`` lines of a Yosys log, else its last lines."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    picked = list(dict.fromkeys(line for line in lines if "ERROR" in line))
    return " | ".join(picked or lines[-5:])


def synthesize_verilog(
    verilog: str,
    top: str,
    family: str = "xc7",
    *,
    nodsp: bool = False,
    cache_dir: str | Path | None = None,
) -> Resources:
    """Synthesize the Verilog text ``verilog`` with top module ``top`` (module docstring).

    ``nodsp``: map multipliers to LUTs (:func:`synth_script`). ``cache_dir``: read and write
    results there, one JSON file per (Verilog text, top, family,
    script, Yosys version).

    Raises:
        ConfigError: unknown family or a bad top name.
        ToolError: Yosys is missing, fails (the message carries its ERROR lines) or times out.
    """
    script = synth_script(top, family, nodsp=nodsp)
    version = yosys_version()
    key = hashlib.sha256("\0".join((verilog, top, family, script, version)).encode()).hexdigest()
    cached = Path(cache_dir) / f"{key}.json" if cache_dir is not None else None
    if cached is not None and cached.is_file():
        return Resources.from_cells(json.loads(cached.read_text())["cells"])
    with tempfile.TemporaryDirectory(prefix="hwquant-synth-") as tmp:
        Path(tmp, "unit.v").write_text(verilog)
        try:
            run = subprocess.run(
                [yosys_path(), "-q", "-l", "yosys.log", "-p", script],
                cwd=tmp,
                capture_output=True,
                text=True,
                timeout=SYNTH_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise ToolError(
                f"yosys synthesis of {top!r} ran over {SYNTH_TIMEOUT_S} s. Fix: synthesize a "
                "smaller unit (fewer PEs/SIMD lanes or narrower widths)."
            ) from exc
        log = Path(tmp, "yosys.log")
        if run.returncode != 0 or not Path(tmp, "stat.json").is_file():
            text = log.read_text() if log.is_file() else ""
            raise ToolError(
                f"yosys synthesis of {top!r} failed (exit {run.returncode}): "
                f"{_errors(text + run.stdout + run.stderr)}. Fix: check the unit's Verilog "
                "(iverilog -g2001 finds most errors) and its widths."
            )
        resources = parse_stat(Path(tmp, "stat.json").read_text())
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        record = {"top": top, "family": family, "yosys": version, "cells": dict(resources.cells)}
        write_atomic(cached, json.dumps(record).encode())
    return resources


def synthesize(
    unit: Synthesizable, family: str = "xc7", *, cache_dir: str | Path | None = None
) -> Resources:
    """Synthesize an emitted unit (``hwquant.rtl.Unit``): :func:`synthesize_verilog` of its
    Verilog with its top module. A unit built with ``style="lut"`` is synthesized with
    ``-nodsp``: Yosys 0.23 does not honour the emitters' ``use_dsp = "no"`` attribute and would
    otherwise put its multiplier on a DSP48E1 anyway."""
    nodsp = unit.params.get("style") == "lut"
    return synthesize_verilog(unit.verilog, unit.top, family, nodsp=nodsp, cache_dir=cache_dir)
