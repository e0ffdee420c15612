"""Simulate a whole design on real images and hold every output to the integer engine.

:func:`simulate_design` writes the testbench (:mod:`hwquant.rtl.network.testbench`) and the
images' pixel words into ``DIR/sim``, builds it with Verilator (``verilator --binary``) or,
where Verilator is missing or asked against, Icarus Verilog, and runs it in ``DIR/rtl`` (where
the weight ROM images are). Every ``OUT`` line is compared with the engine's logits and argmax
for that image, field by field; the mismatches are counted here, from those lines, never taken
from a summary the simulation prints. The measured latency (first pixel in to the first
``out_valid``) and every interval between outputs are compared with design.json's prediction.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from hwquant.core.atomic import write_atomic
from hwquant.core.errors import ConfigError, ToolError
from hwquant.core.npzfile import file_format
from hwquant.ir.intmodel import FORMAT_NAME, IntModel, load
from hwquant.rtl.network.testbench import TESTBENCH_TOP, testbench
from hwquant.rtl.testbench import mem_text
from hwquant.rtl.unit import to_words

VERILATOR_HINT = "Fix: install Verilator (apt-get install -y verilator) or Icarus Verilog."
SIMULATORS = ("auto", "verilator", "iverilog")


class CodeModel(Protocol):
    """What a simulation needs of a model: input codes of images, and the logits of codes."""

    def quantize_input(self, x: torch.Tensor) -> torch.Tensor: ...

    def run(self, x: torch.Tensor) -> torch.Tensor: ...


@dataclass
class Mismatch:
    """One differing output field: image, field (``argmax``, ``logit[c]`` or ``missing``)."""

    image: int
    field: str
    expected: int | None
    got: int | None

    def __str__(self) -> str:
        return f"image {self.image} {self.field}: hardware {self.got}, engine {self.expected}"


@dataclass
class SimReport:
    """What one simulation measured, next to what the engine and the cycle model predict."""

    images: int
    outputs: int
    mismatches: list[Mismatch]
    latency_cycles: int | None
    intervals: list[int]
    predicted_latency: int
    predicted_ii: int
    simulator: str
    log: str = field(repr=False, default="")

    @property
    def exact(self) -> bool:
        """Every output of every image equals the engine's."""
        return not self.mismatches and self.outputs == self.images

    @property
    def cycles_match(self) -> bool:
        """The measured latency and every interval equal the prediction."""
        return self.latency_cycles == self.predicted_latency and all(
            i == self.predicted_ii for i in self.intervals
        )

    def summary(self) -> dict:
        """The figures as a JSON-ready dict."""
        return {
            "images": self.images,
            "outputs": self.outputs,
            "mismatches": len(self.mismatches),
            "first_mismatch": str(self.mismatches[0]) if self.mismatches else None,
            "latency_cycles": self.latency_cycles,
            "predicted_latency_cycles": self.predicted_latency,
            "ii_cycles": sorted(set(self.intervals)),
            "predicted_ii_cycles": self.predicted_ii,
            "cycles_match": self.cycles_match,
            "simulator": self.simulator,
        }


def pixel_words(codes: np.ndarray, bits: int, signed: bool) -> list[int]:
    """Pixel words (raster order, image after image) of input codes ``[N, C, H, W]``: channel
    ``c`` in bits ``c·bits`` (two's complement when signed)."""
    arr = np.asarray(codes, np.int64)
    n, c, h, w = arr.shape
    fields = to_words(arr, bits, signed).transpose(0, 2, 3, 1).reshape(n * h * w, c)
    return [sum(int(v) << (bits * k) for k, v in enumerate(row)) for row in fields]


def simulator_version(name: str) -> str:
    """The ``--version`` line of simulator ``name``."""
    done = subprocess.run(
        [name, "-V" if name == "iverilog" else "--version"], capture_output=True, text=True
    )
    return (done.stdout or done.stderr).splitlines()[0].strip()


def _pick(simulator: str) -> str:
    if simulator not in SIMULATORS:
        raise ConfigError(
            f"simulator {simulator!r} is unknown. Fix: use one of {', '.join(SIMULATORS)}."
        )
    if simulator in ("auto", "verilator") and shutil.which("verilator"):
        return "verilator"
    if simulator in ("auto", "iverilog") and shutil.which("iverilog") and shutil.which("vvp"):
        return "iverilog"
    raise ToolError(f"the simulator {simulator!r} is not on PATH. {VERILATOR_HINT}")


def _run(command: list[str], cwd: Path, timeout: float) -> str:
    try:
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise ToolError(
            f"'{command[0]}' ran past {timeout:.0f} s. Fix: simulate fewer images, or allow "
            "more time (simulate_design(timeout=...))."
        ) from exc
    if done.returncode != 0:
        raise ToolError(
            f"'{' '.join(command[:3])} ...' failed (exit {done.returncode}):\n"
            f"{(done.stderr.strip() or done.stdout.strip())[-3000:]}"
        )
    return done.stdout


def run_testbench(
    design_dir: Path, words: list[int], images: int, simulator: str, timeout: float = 600.0
) -> tuple[str, str]:
    """Build (unless ``DIR/sim`` holds a build of the same sources) and run the testbench of
    ``design_dir`` on pixel ``words``; returns the log and the simulator used. The weight ROM
    images are read when the simulation starts, from ``DIR/rtl``, so an edited ROM image is
    simulated without a rebuild."""
    design = json.loads((design_dir / "design.json").read_text())
    sim_dir = design_dir / "sim"
    sim_dir.mkdir(exist_ok=True)
    rtl = (design_dir / "rtl").resolve()
    inp, out = design["input"], design["output"]
    write_atomic(sim_dir / "input.mem", mem_text(words, inp["word_bits"]).encode())
    timeout_cycles = design["latency_cycles"] + images * design["ii_cycles"] + 1000
    bench = testbench(
        images,
        inp["pixels"],
        inp["word_bits"],
        out["classes"],
        out["acc_bits"],
        "../sim/input.mem",
        timeout_cycles,
    )
    write_atomic(sim_dir / "tb.v", bench.encode())
    sources = [rtl / name for name in design["rtl_files"]] + [sim_dir / "tb.v"]
    tool = _pick(simulator)
    digest = hashlib.sha256(tool.encode())
    for path in sources:
        digest.update(path.read_bytes())
    stamp = sim_dir / f"{tool}.sha256"
    binary = sim_dir / ("obj_dir/Vsim" if tool == "verilator" else "sim.vvp")
    built = binary.is_file() and stamp.is_file() and stamp.read_text() == digest.hexdigest()
    names = [str(p.resolve()) for p in sources]
    if tool == "verilator":
        if not built:
            _run(
                [
                    "verilator",
                    "--binary",
                    "-j",
                    "2",
                    "-Wno-fatal",
                    "-Wno-lint",
                    "-Wno-style",
                    "--top-module",
                    TESTBENCH_TOP,
                    "-Mdir",
                    "obj_dir",
                    "-o",
                    "Vsim",
                    *names,
                ],
                sim_dir,
                timeout,
            )
        command = [str(binary.resolve())]
    else:
        if not built:
            _run(
                ["iverilog", "-g2005", "-s", TESTBENCH_TOP, "-o", "sim.vvp", *names],
                sim_dir,
                timeout,
            )
        command = ["vvp", "-n", str(binary.resolve())]
    write_atomic(stamp, digest.hexdigest().encode())
    return _run(command, rtl, timeout), tool


def compare(
    log: str, logits: np.ndarray, argmax: np.ndarray
) -> tuple[list[Mismatch], int, int | None, list[int]]:
    """Mismatches of the ``OUT`` lines of ``log`` against the engine (per field, in image
    order; a missing output is one mismatch), outputs seen, latency and intervals."""
    first = [int(line.split()[1]) for line in log.splitlines() if line.startswith("FIRST ")]
    rows = [line.split()[1:] for line in log.splitlines() if line.startswith("OUT ")]
    mismatches: list[Mismatch] = []
    cycles = []
    for row in rows:
        try:
            image, cycle, arg, *vals = (int(v) for v in row)
        except ValueError as exc:
            raise ToolError(
                f"the simulation printed an unknown (X/Z) output: {row!r}. Fix: "
                "check that every register of the design is reset."
            ) from exc
        cycles.append(cycle)
        if image >= len(logits):
            mismatches.append(Mismatch(image, "extra output", None, arg))
            continue
        if arg != int(argmax[image]):
            mismatches.append(Mismatch(image, "argmax", int(argmax[image]), arg))
        for c, (got, want) in enumerate(zip(vals, logits[image], strict=False)):
            if got != int(want):
                mismatches.append(Mismatch(image, f"logit[{c}]", int(want), got))
        if len(vals) != logits.shape[1]:
            mismatches.append(Mismatch(image, "logit count", logits.shape[1], len(vals)))
    for image in range(len(rows), len(logits)):
        mismatches.append(Mismatch(image, "missing", None, None))
    latency = cycles[0] - first[0] if cycles and first else None
    return mismatches, len(rows), latency, list(np.diff(cycles).astype(int).tolist())


def simulate_design(
    design_dir: str | Path,
    codes: torch.Tensor | np.ndarray,
    simulator: str = "auto",
    model: IntModel | CodeModel | None = None,
    timeout: float = 600.0,
) -> SimReport:
    """Simulate the design in ``design_dir`` on input codes ``[N, C, H, W]`` (module
    docstring) against ``model`` (an IntModel, or for a table design a TableModel wrapped in
    :class:`hwquant.schemes.tables.network.TableCodeModel`: anything whose ``run`` maps input
    codes to the logits); it defaults to the design's copy of its IntModel. ``timeout``
    bounds the simulator's build and its run, each, in seconds."""
    design_dir = Path(design_dir)
    design = json.loads((design_dir / "design.json").read_text())
    stored = design_dir / "model.npz"
    if model is None and file_format(stored) not in (None, FORMAT_NAME):
        raise ConfigError(
            f"'{design_dir}' holds the design of a {file_format(stored)}, not of an IntModel. "
            "Fix: pass the model whose run maps input codes to logits; for a TableModel "
            "model=TableCodeModel(load_tables(DIR / 'model.npz')) (hwquant.schemes.tables."
            "network.TableCodeModel, hwquant.schemes.tables.load_tables)."
        )
    model = model or load(stored)
    x = torch.as_tensor(np.asarray(codes), dtype=torch.int64)
    shape = tuple(design["input"]["shape"])
    if x.dim() != 4 or tuple(x.shape[1:]) != shape:
        raise ConfigError(
            f"input codes of shape {tuple(x.shape)} do not fit the design's input {shape}. "
            "Fix: pass [N, C, H, W] codes of the model's image size."
        )
    logits = model.run(x).numpy()
    argmax = torch.argmax(torch.from_numpy(logits), dim=1).numpy()
    words = pixel_words(x.numpy(), design["input"]["bits"], design["input"]["signed"])
    log, tool = run_testbench(design_dir, words, len(x), simulator, timeout)
    mismatches, outputs, latency, intervals = compare(log, logits, argmax)
    return SimReport(
        len(x),
        outputs,
        mismatches,
        latency,
        intervals,
        design["latency_cycles"],
        design["ii_cycles"],
        f"{tool} ({simulator_version(tool)})",
        log,
    )
