"""The native table-unit kernel: build, load and the ``hwquant::table_unit`` op (methods.md §3.1).

``csrc/table_unit.c`` fuses a unit's window addressing, the gather-add of grouped rows
(:class:`hwquant.schemes.tables.kernels.LookupPlan`), the threshold count and the write of the next
index, so no gathered tensor is materialised. It is compiled on first use with the system C
compiler (``$CC``, default ``gcc``; flags :data:`FLAGS`) into the per-user cache
(``$HWQUANT_CACHE`` or ``~/.cache/hwquant``), under a name keyed by the SHA-256 of the source,
the flags and the compiler's identity (version and the target ``-march=native`` resolves to);
the library is written with :func:`hwquant.core.atomic.write_atomic`, so concurrent first uses are
safe. It is called through ctypes from a ``torch.library`` custom op, so the op appears in the
dispatch stream that :class:`hwquant.schemes.tables.audit.MultiplyFreeAudit` records.

The kernel gets only integer tensors: the rows (int32), the address offsets
``digit[j][x] = x·B^j·O`` and ``base[q] = q·B^g·O`` (int32, ``arange`` steps), the thresholds
``[n−1, O]`` as ``τ − 1`` clamped to int32, negated first on descending channels (which
compare ``−acc ≥ −τ``), so that ``acc ≥ τ ⟺ acc > τ − 1`` is exact for every
``|acc| ≤ 2^31 − 1`` (:func:`hwquant.schemes.tables.fold.check_table`), and the per-channel ``flip``
mask (−1 on descending channels, for ``−acc = (acc ^ −1) − (−1)``). Input indices are trusted
(the kernel does not bound-check them): :func:`hwquant.schemes.tables.engine.run_tables` checks the
network input, and every later index comes from a count or a table.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from hwquant.core.atomic import write_atomic
from hwquant.core.cache import default_cache_dir
from hwquant.core.errors import ConfigError, ToolError
from hwquant.schemes.tables import kernels
from hwquant.schemes.tables.kernels import LookupPlan

SOURCE = Path(__file__).parent / "csrc" / "table_unit.c"
FLAGS = ("-O3", "-march=native", "-fopenmp", "-shared", "-fPIC")
# The native group: g = 2 where a group's rows B²·O fit GROUP_BUDGET entries (8 KiB of int32)
# and a row spans two or more vectors (O ≥ 32), else g = 1; read off the group profile of
# benchmarks/table_engine_throughput.py (ResNet-20, 8x5, 4x10 and 16x20 tables, g = 1, 2, 3):
# g = 3 never won, g = 2 paid off only for small tables at O = 32, 64.
GROUP_BUDGET = 2**11
LANES, MAX_CHANNELS = 16, 1024  # the kernel's int32 vectors and its widest vector path
INSTALL_FIX = "Fix: install a C compiler with OpenMP (Debian: apt-get install gcc), or set $CC"


class Geometry(ctypes.Structure):
    """The C ``geometry`` struct: sizes of one call, computed here from the shapes."""

    _fields_ = tuple(
        (name, ctypes.c_int64)
        for name in (
            "images", "channels", "height", "width", "kernel", "stride", "pad_index",
            "padded_width", "padded_plane", "padded_size", "interior", "image_in", "out_h",
            "out_w", "pixels", "outputs", "groups", "group", "entries", "positions", "image_out",
            "vectors", "levels", "threads",
        )
    )  # fmt: skip


def choose_group(entries: int, fan_in: int, outputs: int) -> int:
    """The native kernel's group for a unit (see :data:`GROUP_BUDGET`)."""
    if outputs < 2 * LANES:
        return 1
    return min(2, kernels.choose_group(entries, fan_in, outputs, GROUP_BUDGET))


def _compiler() -> str:
    """Path of the C compiler, or a :class:`ToolError` naming the fix."""
    name = os.environ.get("CC", "gcc")
    path = shutil.which(name)
    if path is None:
        raise ToolError(f"the native table kernel needs a C compiler; '{name}' is not on PATH. "
                        f"{INSTALL_FIX} (or run with engine='torch').")  # fmt: skip
    return path


def _identity(compiler: str) -> bytes:
    """Compiler version and the target options ``-march=native`` selects on this machine."""
    version = subprocess.run([compiler, "--version"], capture_output=True, check=False).stdout
    target = subprocess.run(
        [compiler, "-march=native", "-Q", "--help=target"], capture_output=True, check=False
    ).stdout
    return version + target


def library_path(cache_dir: Path | None = None) -> Path:
    """Where the library for this source, these flags and this compiler lives in the cache."""
    compiler = _compiler()
    key = hashlib.sha256(SOURCE.read_bytes())
    key.update(" ".join(FLAGS).encode() + _identity(compiler))
    return (cache_dir or default_cache_dir()) / "native" / f"table_unit-{key.hexdigest()[:16]}.so"


def build(target: Path) -> Path:
    """Compile :data:`SOURCE` to ``target`` (atomically); :class:`ToolError` with the
    compiler's stderr if it fails."""
    compiler = _compiler()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        out = Path(scratch) / target.name
        result = subprocess.run(
            [compiler, *FLAGS, str(SOURCE), "-o", str(out)], capture_output=True, text=True
        )
        if result.returncode != 0:
            raise ToolError(
                f"building the native table kernel with '{compiler} {' '.join(FLAGS)}' failed "
                f"(exit {result.returncode}):\n{result.stderr.strip()}\n{INSTALL_FIX} (or run "
                "with engine='torch')."
            )
        write_atomic(target, out.read_bytes())
    return target


@functools.cache
def load() -> ctypes.CDLL:
    """The compiled kernel library (built on first use; cached per process)."""
    path = library_path()
    try:
        if not path.exists():
            build(path)
        lib = ctypes.CDLL(str(path))
    except OSError as exc:
        raise ToolError(
            f"the native table kernel could not be written to or loaded from '{path}' "
            f"({exc}). Fix: set $HWQUANT_CACHE to a writable directory (or run with "
            "engine='torch')."
        ) from exc
    lib.hwquant_table_unit.restype = ctypes.c_int
    lib.hwquant_table_unit.argtypes = [ctypes.POINTER(Geometry)] + [ctypes.c_void_p] * 8
    lib.hwquant_lookup_add.restype = None
    lib.hwquant_lookup_add.argtypes = [ctypes.c_int64] + [ctypes.c_void_p] * 5 + [ctypes.c_int64]
    return lib


@functools.cache
def unavailable_reason() -> str | None:
    """Why the native kernel cannot run here (the build error), or ``None`` when it can."""
    try:
        load()
    except ToolError as exc:
        return str(exc)
    return None


@dataclass(frozen=True)
class NativeUnit:
    """A unit's tensors as the C kernel reads them (see the module docstring)."""

    rows: torch.Tensor  # int32 [Q·B^g, O]
    digits: torch.Tensor  # int32 [g, B]
    base: torch.Tensor  # int32 [Q]
    tau: torch.Tensor  # int32 [n−1, O]: τ − 1 (−τ − 1 descending), clamped to int32
    flip: torch.Tensor  # int32 [O]
    bias: torch.Tensor  # int64 [O]
    group: int
    pad_index: int


def prepare(
    plan: LookupPlan, tau: torch.Tensor, descending: torch.Tensor, bias: torch.Tensor
) -> NativeUnit:
    """The kernel's form of a compiled unit: offsets in units of int32 row entries.

    Raises:
        ConfigError: a group outside 1..MAX_GROUP, or rows too many for the kernel's int32
            offsets.
    """
    if not 1 <= plan.group <= kernels.MAX_GROUP:
        raise ConfigError(
            f"lookup group {plan.group} is outside 1..{kernels.MAX_GROUP}, the native kernel's "
            "address buffers. Fix: compile the unit with a smaller group (or group=None)."
        )
    if plan.rows.numel() > torch.iinfo(torch.int32).max:
        raise ConfigError(
            f"the unit's lookup rows hold {plan.rows.numel():,} entries, more than the native "
            "kernel's int32 offsets address. Fix: use engine='torch' for this model, or smaller "
            "codebooks."
        )
    outputs = plan.rows.shape[1]
    entries = plan.pad_index + 1
    steps = [entries**j * outputs for j in range(plan.group)]
    digits = torch.stack([torch.arange(0, entries * step, step) for step in steps])
    step = entries**plan.group * outputs
    base = torch.arange(0, plan.base.numel() * step, step)
    signed_tau = torch.where(descending[:, None], tau.neg(), tau).t().sub(1)
    limits = torch.iinfo(torch.int32)
    return NativeUnit(
        plan.rows,
        digits.to(torch.int32),
        base.to(torch.int32),
        signed_tau.clamp(limits.min, limits.max).to(torch.int32).contiguous(),
        descending.to(torch.int32).neg(),
        bias.to(torch.int64).contiguous(),
        plan.group,
        plan.pad_index,
    )


def _check_operands(
    x: torch.Tensor,
    rows: torch.Tensor,
    digits: torch.Tensor,
    base: torch.Tensor,
    tau: torch.Tensor,
    flip: torch.Tensor,
    bias: torch.Tensor,
    fan_in: int,
) -> None:
    """Refuse operands the C kernel would misread: wrong dtypes, non-contiguous tables, or an
    address plan shorter than the unit's window (``C·k·k`` positions)."""
    expected = {
        "x": (x, torch.int64), "rows": (rows, torch.int32), "digits": (digits, torch.int32),
        "base": (base, torch.int32), "tau": (tau, torch.int32), "flip": (flip, torch.int32),
        "bias": (bias, torch.int64),
    }  # fmt: skip
    for name, (tensor, dtype) in expected.items():
        if tensor.dtype != dtype or (name != "x" and not tensor.is_contiguous()):
            raise ConfigError(
                f"native table_unit operand '{name}' is {tensor.dtype} "
                f"{'contiguous' if tensor.is_contiguous() else 'strided'}; the kernel reads "
                f"contiguous {dtype}. Fix: build operands with "
                "hwquant.schemes.tables.native.prepare."
            )
    if base.numel() * digits.shape[0] < fan_in:
        raise ConfigError(
            f"the lookup plan covers {base.numel() * digits.shape[0]} window positions, the unit "
            f"has {fan_in}. Fix: compile the plan for this unit's kernel and channels."
        )


@torch.library.custom_op("hwquant::table_unit", mutates_args=())
def table_unit(
    x: torch.Tensor,
    rows: torch.Tensor,
    digits: torch.Tensor,
    base: torch.Tensor,
    tau: torch.Tensor,
    flip: torch.Tensor,
    bias: torch.Tensor,
    window: list[int],
) -> torch.Tensor:
    """One table unit on input indices ``x`` [N, C, H, W] (int64) -> output indices (or
    ``acc + bias`` without thresholds) [N, O, Ho, Wo] (int64); ``window`` is
    ``[kernel, stride, padding, pad_index]``."""
    kernel, stride, padding, pad_index = window
    n, channels, height, width = x.shape
    _check_operands(x, rows, digits, base, tau, flip, bias, channels * kernel * kernel)
    outputs = rows.shape[1]
    group, entries = digits.shape
    padded_h, padded_w = height + 2 * padding, width + 2 * padding
    out_h, out_w = (padded_h - kernel) // stride + 1, (padded_w - kernel) // stride + 1
    pixels = out_h * out_w
    vectors = outputs // LANES if outputs % LANES == 0 and outputs <= MAX_CHANNELS else 0
    geometry = Geometry(
        n, channels, height, width, kernel, stride, pad_index, padded_w,
        padded_h * padded_w, channels * padded_h * padded_w, padding * padded_w + padding,
        channels * height * width, out_h, out_w, pixels, outputs, base.numel(), group,
        entries, base.numel() * group, outputs * pixels, vectors, tau.shape[0],
        torch.get_num_threads(),
    )  # fmt: skip
    out = torch.empty(n, outputs, out_h, out_w, dtype=torch.int64)
    tensors = (x.contiguous(), rows, digits, base, tau, flip, bias, out)
    if load().hwquant_table_unit(ctypes.byref(geometry), *(t.data_ptr() for t in tensors)):
        raise MemoryError("the native table kernel could not allocate its buffers")
    return out


def run(unit: NativeUnit, x: torch.Tensor, kernel: int, stride: int, padding: int):
    """Output ``[N, O, Ho, Wo]`` of a convolution unit (a linear unit: ``kernel = 1`` on a
    ``[N, K, 1, 1]`` input)."""
    window = [kernel, stride, padding, unit.pad_index]
    return torch.ops.hwquant.table_unit(
        x, unit.rows, unit.digits, unit.base, unit.tau, unit.flip, unit.bias, window
    )


@torch.library.custom_op("hwquant::lookup_add", mutates_args=())
def lookup_add(
    table: torch.Tensor, row_start: torch.Tensor, a: torch.Tensor, b: torch.Tensor
) -> torch.Tensor:
    """A residual add's output indices ``table[row_start[a] + b]`` (int64, ``a``'s shape)."""
    table, row_start, a, b = (t.to(torch.int64).contiguous() for t in (table, row_start, a, b))
    out = torch.empty_like(a)
    tensors = (table, row_start, a, b, out)
    load().hwquant_lookup_add(a.numel(), *(t.data_ptr() for t in tensors), torch.get_num_threads())
    return out
