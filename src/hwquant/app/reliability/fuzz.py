"""Fuzz targets: the config loader, the IntModel loader and the quantizers under bad input.

Each ``check_*`` function is an oracle: it feeds one input to hwquant and returns a verdict,
``"accepted"`` (a result that passed the exactness checks) or ``"rejected"`` (a hwquant error
whose message names the fix). Any other exception, and any result that differs from the
reference, raises ``AssertionError``: a crash or a silent wrong result. The hypothesis
strategies below generate the inputs; the tests run a few hundred, ``make reliability``
ten thousand per target (needs the ``test`` extra, which brings hypothesis).

Documented results (tested here):

* configs: every accepted config round-trips exactly through ``to_dict`` and ``to_toml``;
  non-finite floats are refused;
* IntModel files: damaged bytes are refused naming the file (zip CRC-32 and per-array SHA-256),
  unless the damage hits bytes the reader never uses, when the model loads equal to the saved
  one; a header rewritten with a wrong type or a dangling node reference is refused;
* quantizers: NaN or ±Inf input, or a NaN/Inf scale, raise :class:`NonFiniteError` from
  ``codes``; finite input of any size saturates to the code range (huge values, denormals, a
  scale parameter of 0 is clamped to the smallest scale); an empty tensor gives empty codes;
  linear codes equal the NumPy reference ``clip(floor(float32(x / α) + 1/2), Q_n, Q_p)``
  bit for bit.
"""

from __future__ import annotations

import copy
import io
import json
import random
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hypothesis import strategies as st
from torch import nn

from hwquant.app.config import RunConfig, load_config
from hwquant.app.reliability.faults import MUTATIONS, SilentWrongResult, mutate, same_int_model
from hwquant.core.errors import ConfigError, FileFormatError, HwquantError, NonFiniteError
from hwquant.core.npzfile import HEADER_KEY
from hwquant.ir.intmodel import IntModel, load
from hwquant.qat.llsq import LinearQuantizer
from hwquant.qat.recipe import MAX_BITS, MIN_BITS


def _require_fix(exc: HwquantError, what: str) -> str:
    """An error's message must say what to do: "Fix: ..." or "use ..."."""
    if "Fix:" not in str(exc) and "use " not in str(exc):
        raise AssertionError(f"{what}: error without a fix: {type(exc).__name__}: {exc}")
    return "rejected"


# -- config loader --------------------------------------------------------------------------------
BASE_CONFIG = RunConfig.from_dict(
    {
        "out_dir": "runs/fuzz",
        "model": {"name": "small_cnn"},
        "data": {"name": "digits"},
        "train": {"epochs": 2},
        "recipe": {},
    }
)
"""The valid config every fuzzed document is a mutation of."""


def check_config_document(document: dict[str, Any]) -> str:
    """Build a config from a parsed document; an accepted one must round-trip exactly."""
    try:
        config = RunConfig.from_dict(copy.deepcopy(document))
    except ConfigError as exc:
        return _require_fix(exc, "config")
    if RunConfig.from_dict(config.to_dict()) != config:
        raise SilentWrongResult(f"to_dict round trip changed {config}")
    text = config.to_toml()
    try:
        again = RunConfig.from_dict(tomllib.loads(text))
    except (tomllib.TOMLDecodeError, ConfigError) as exc:
        raise AssertionError(f"to_toml wrote text that does not load: {exc}\n{text}") from exc
    if again != config:
        raise SilentWrongResult(f"to_toml round trip changed {config}")
    return "accepted"


def check_config_text(text: str, path: Path) -> str:
    """Load TOML text through :func:`load_config`; errors must name the file and the fix."""
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        config = load_config(path)
    except ConfigError as exc:
        if str(path) not in str(exc):
            raise AssertionError(f"config error without the file name: {exc}") from exc
        return _require_fix(exc, "config text")
    return check_config_document(config.to_dict())


def config_paths(table: dict[str, Any], where: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every key path of a nested document (tables and their fields)."""
    paths = []
    for key, value in table.items():
        paths.append((*where, key))
        if isinstance(value, dict):
            paths += config_paths(value, (*where, key))
    return paths


TOML_SCALARS = (
    st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True)
    | st.text(max_size=12)
    | st.sampled_from(["none", "", "sgd", "cosine", "llsq", "msq", "channel", "wrap"])
)
TOML_VALUES = st.recursive(
    TOML_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


@st.composite
def config_documents(draw: st.DrawFn) -> dict[str, Any]:
    """The base config with one to three fields deleted, replaced or added."""
    document = BASE_CONFIG.to_dict()
    for _ in range(draw(st.integers(1, 3))):
        paths = config_paths(document)
        path = draw(st.sampled_from(paths)) if paths else ()
        parent = document
        for key in path[:-1]:
            parent = parent[key]
        op = draw(st.sampled_from(["delete", "replace", "add"]))
        if op == "delete" and path:
            parent.pop(path[-1], None)
        elif op == "replace" and path:
            parent[path[-1]] = draw(TOML_VALUES)
        else:
            parent[draw(st.text(min_size=1, max_size=8))] = draw(TOML_VALUES)
    return document


@st.composite
def config_texts(draw: st.DrawFn) -> str:
    """The base config's TOML with characters inserted, deleted or replaced."""
    text = BASE_CONFIG.to_toml()
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        op = draw(st.sampled_from(["insert", "delete", "replace"]))
        piece = draw(st.text(min_size=1, max_size=4))
        if op == "insert":
            text = text[:at] + piece + text[at:]
        elif op == "delete":
            text = text[:at] + text[at + len(piece) :]
        else:
            text = text[:at] + piece + text[at + len(piece) :]
    return text


# -- IntModel loader ------------------------------------------------------------------------------
def check_int_model_file(path: Path, data: bytes, original: IntModel, x_int: torch.Tensor) -> str:
    """Load file contents ``data``: "rejected" (an error naming ``path``), "unchanged" (equal
    to ``original``, the model ``data`` was made from) or, for a header rewritten consistently
    (a field deleted to its default), "rewritten, runs" / "rewritten, refused when run" (on
    ``x_int``: a result, or a hwquant error; any other exception is a crash)."""
    path.write_bytes(data)
    try:
        model = load(path)
    except FileFormatError as exc:
        if f"'{path}'" not in str(exc):
            raise AssertionError(f"IntModel error without the file name: {exc}") from exc
        return _require_fix(exc, "IntModel")
    except Exception as exc:
        raise AssertionError(f"IntModel load: {type(exc).__name__}: {exc}") from exc
    if same_int_model(model, original):
        return "unchanged"
    try:
        model.run(x_int)
    except HwquantError:
        return "rewritten, refused when run"
    except Exception as exc:
        raise AssertionError(f"a loaded IntModel crashed: {type(exc).__name__}: {exc}") from exc
    return "rewritten, runs"


def damaged_bytes(original: bytes) -> st.SearchStrategy[bytes]:
    """``original`` with one to three random mutations (see :func:`mutate`)."""

    def apply(hows: list[str], rng: random.Random) -> bytes:
        data = original
        for how in hows:
            data = mutate(data, how, rng) if data else data
        return data

    return st.builds(
        apply, st.lists(st.sampled_from(MUTATIONS), min_size=1, max_size=3), st.randoms()
    )


def rewrite_header(data: bytes, edit: Callable[[dict[str, Any]], None]) -> bytes:
    """An IntModel file whose JSON header was changed by ``edit``, repacked with valid CRCs and
    array checksums (a consistent rewrite, not damage)."""
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        header = json.loads(bytes(npz[HEADER_KEY]).decode())
        arrays = {k: npz[k] for k in npz.files if k != HEADER_KEY}
    edit(header)
    buffer = io.BytesIO()
    encoded = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    np.savez(buffer, **{HEADER_KEY: encoded}, **arrays)
    return buffer.getvalue()


@st.composite
def rewritten_headers(draw: st.DrawFn, original: bytes) -> bytes:
    """``original`` with one header field (of a node or the top level) deleted or given a
    value of another JSON type. (A value of the right type is what the file says: no reader
    can tell it from the saved one, so it is no fault.)"""

    def edit(header: dict[str, Any]) -> None:
        paths = config_paths(header)
        path = draw(st.sampled_from(paths))
        parent: Any = header
        for key in path[:-1]:
            parent = parent[key]
        if draw(st.booleans()):
            parent.pop(path[-1])
        else:
            kind = _json_kind(parent[path[-1]])
            values = TOML_VALUES.filter(lambda v: _json_safe(v) and _json_kind(v) != kind)
            parent[path[-1]] = draw(values)

    return rewrite_header(original, edit)


def _json_kind(value: Any) -> str:
    """JSON's type of a value (integers and floats are both numbers)."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    return "number" if isinstance(value, int | float) else type(value).__name__


def _json_safe(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=True)
    except (TypeError, ValueError):
        return False
    return True


# -- quantizers -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class QuantizerCase:
    """One quantizer under test: how to build it, and its reference codes when it has one."""

    name: str
    build: Callable[[int, bool, int, bool], nn.Module]
    """``(bits, signed, rows, per_channel) -> quantizer`` for tensors of ``rows`` rows."""
    reference: Callable[[np.ndarray, np.ndarray, nn.Module], np.ndarray] | None = None
    """``(x, scale_value, quantizer) -> int64 codes`` by the scheme's definition, in NumPy."""
    bits: tuple[int, int] = (MIN_BITS, MAX_BITS)
    """The bit-widths the scheme accepts (others must raise ConfigError)."""


def linear_reference(x: np.ndarray, scale: np.ndarray, quant: nn.Module) -> np.ndarray:
    """LLSQ's codes (methods.md §4.1): ``clip(floor(float32(x/α) + 1/2), Q_n, Q_p)``."""
    if scale.size == 1:
        alpha = np.float32(scale.reshape(()))
    else:  # one scale per row (dimension 0)
        alpha = scale.astype(np.float32).reshape(-1, *([1] * (x.ndim - 1)))
    with np.errstate(over="ignore"):  # x/α past float32 is ±inf, which clips like torch's
        v = (x.astype(np.float32) / alpha).astype(np.float32)
    return np.clip(np.floor(v + np.float32(0.5)), quant.qmin, quant.qmax).astype(np.int64)


def _linear(constraint: str) -> Callable[[int, bool, int, bool], nn.Module]:
    def build(bits: int, signed: bool, rows: int, per_channel: bool) -> nn.Module:
        channels = rows if per_channel else 1
        return LinearQuantizer(
            bits, signed, channels=channels, is_activation=False, constraint=constraint
        )

    return build


def _msq(bits: int, signed: bool, rows: int, per_channel: bool) -> nn.Module:
    from hwquant.schemes.msq.quantizer import MixedSchemeQuantizer

    return MixedSchemeQuantizer(bits, rows, sp2_share=0.5, channels=rows if per_channel else 1)


def _nonuniform(bits: int, signed: bool, rows: int, per_channel: bool) -> nn.Module:
    from hwquant.schemes.nonuniform.quantizer import NonUniformQuantizer

    return NonUniformQuantizer(bits)


QUANTIZER_CASES: list[QuantizerCase] = [
    QuantizerCase("llsq", _linear("free"), linear_reference),
    QuantizerCase("llsq-pow2", _linear("pow2"), linear_reference),
    QuantizerCase("llsq-fixed", _linear("fixed"), linear_reference),
    QuantizerCase("msq", _msq, bits=(2, 9)),
    QuantizerCase("nonuniform", _nonuniform, bits=(1, 7)),
]
"""Every quantizer the fuzzer covers: one line per scheme."""


@dataclass(frozen=True)
class QuantizerInput:
    """One fuzzed quantizer call."""

    bits: int
    signed: bool
    per_channel: bool
    x: np.ndarray  # float32, dimension 0 = output channels
    scale: float | None  # the scale parameter's value (None: initialised from x)


def check_quantizer(case: QuantizerCase, case_input: QuantizerInput) -> str:
    """Quantize ``x``: a clear error, or codes that satisfy the scheme's definition."""
    x = torch.from_numpy(case_input.x)
    rows = x.shape[0] if x.dim() and x.shape[0] else 1
    low, high = case.bits
    try:
        quant = case.build(case_input.bits, case_input.signed, rows, case_input.per_channel)
    except ConfigError as exc:
        if low <= case_input.bits <= high:
            raise AssertionError(f"{case.name}: valid bits {case_input.bits} refused") from exc
        return _require_fix(exc, case.name)
    if not low <= case_input.bits <= high:
        raise AssertionError(f"{case.name}: bits={case_input.bits} accepted")
    quant.eval()
    finite = bool(torch.isfinite(x).all())
    try:
        with torch.no_grad():
            if case_input.scale is not None and hasattr(quant, "scale"):
                quant.scale.fill_(case_input.scale)
                quant.initialized.fill_(True)
            value = quant(x)
            codes = quant.codes(x)
            scale = quant.scale_value()
    except NonFiniteError as exc:
        scale_ok = (
            case_input.scale is None
            or not hasattr(quant, "scale")
            or np.isfinite(np.float32(case_input.scale))
        )
        if finite and scale_ok and _finite_scale(quant):
            raise AssertionError(f"{case.name}: NonFiniteError on finite input: {exc}") from exc
        return _require_fix(exc, case.name)
    except HwquantError as exc:  # e.g. a codebook cannot be fitted to constant weights
        return _require_fix(exc, case.name)
    if not finite or not bool(torch.isfinite(scale).all()):
        raise SilentWrongResult(f"{case.name}: non-finite input or scale gave codes")
    _check_codes(case, quant, x, value, codes, scale)
    return "accepted"


def _finite_scale(quant: nn.Module) -> bool:
    with torch.no_grad():
        return bool(torch.isfinite(quant.scale_value()).all())


def _check_codes(
    case: QuantizerCase,
    quant: nn.Module,
    x: torch.Tensor,
    value: torch.Tensor,
    codes: torch.Tensor,
    scale: torch.Tensor,
) -> None:
    """Codes: int64, the input's shape, the reference's values; the eval value is α·code."""
    if codes.dtype != torch.int64 or codes.shape != x.shape:
        raise AssertionError(f"{case.name}: codes {codes.dtype} {tuple(codes.shape)}")
    alpha = scale.view(-1, *([1] * (x.dim() - 1))) if scale.numel() > 1 else scale.reshape(())
    if not torch.equal(value, codes.to(value.dtype) * alpha):
        raise SilentWrongResult(f"{case.name}: eval value differs from scale · codes")
    if case.reference is not None:
        expected = case.reference(x.numpy(), scale.detach().double().numpy(), quant)
        if not np.array_equal(codes.numpy(), expected):
            bad = np.flatnonzero(codes.numpy().ravel() != expected.ravel())[:3]
            raise SilentWrongResult(
                f"{case.name}: codes differ from the reference at {bad.tolist()}: "
                f"x={x.numpy().ravel()[bad]}, got {codes.numpy().ravel()[bad]}, "
                f"want {expected.ravel()[bad]}, scale={scale.tolist()}"
            )
    if codes.numel() == 0:
        return
    rows = codes.reshape(codes.shape[0], -1) if codes.dim() > 1 else codes.reshape(1, -1)
    xs = x.reshape(rows.shape)
    ordered = torch.gather(rows, 1, torch.argsort(xs, dim=1, stable=True))
    if not bool((ordered[:, 1:] >= ordered[:, :-1]).all()):
        raise SilentWrongResult(f"{case.name}: codes are not monotone in x")


SPECIAL_VALUES = (
    0.0,
    -0.0,
    1e-45,
    -1e-45,
    1e-38,
    3.4e38,
    -3.4e38,
    float("nan"),
    float("inf"),
    float("-inf"),
)
FLOATS = st.floats(width=32, allow_nan=True, allow_infinity=True, allow_subnormal=True)
SHAPES = st.sampled_from([(0,), (0, 3), (3, 0), (1,), (1, 1), (1, 5), (4, 1), (3, 7), (2, 3, 3, 3)])


@st.composite
def quantizer_inputs(draw: st.DrawFn) -> QuantizerInput:
    """Bits at and past the limits, special shapes and values, scales of zero and worse."""
    bits = draw(st.integers(MIN_BITS, MAX_BITS) | st.sampled_from([-1, 0, 17, 64]))
    shape = draw(SHAPES)
    size = int(np.prod(shape))
    mostly_normal = st.floats(-100, 100, width=32) | FLOATS | st.sampled_from(SPECIAL_VALUES)
    values = draw(st.lists(mostly_normal, min_size=size, max_size=size))
    scale = draw(
        st.none()
        | st.sampled_from([0.0, -0.0, 1e-45, 1e-30, 1e30, 3.4e38, float("nan"), float("inf")])
        | st.floats(-10, 10, width=32)
    )
    x = np.asarray(values, dtype=np.float32).reshape(shape)
    return QuantizerInput(bits, draw(st.booleans()), draw(st.booleans()), x, scale)
