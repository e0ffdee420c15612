"""The IntModel: an integer-only network as plain data.

An :class:`IntModel` is an input quantizer spec, a list of nodes in execution order and the
scale of the output. Nodes hold integer tensors (NumPy int64) and exact integer parameters:

* :class:`ConvNode` / :class:`LinearNode`: ``acc = W_int ⋆ x + b_int`` in an accumulator of
  ``acc_bits`` with an overflow policy, then ``code = clamp((acc·M + 2^(s−1)) >> s, lo, hi)``
  (no requantization on the last layer, whose output value is ``acc_scale · acc``). ``W_int``
  is always held decoded; a scheme that stores its weights otherwise adds a
  :class:`WeightEncoding` (:class:`MSQEncoding`: SP2 shift pairs per row; :class:`CodebookEncoding`:
  indices into an integer codebook), which decodes to ``W_int`` exactly;
* :class:`AddNode`: ``code = clamp((a·M_a + b·M_b + 2^(s−1)) >> s, lo, hi)``;
* :class:`AvgPoolNode`: window sum, then requantization;
* :class:`MaxPoolNode`, :class:`ReshapeNode`: codes pass through.

``save``/``load`` write one ``.npz`` holding the arrays and a JSON header with the format
version and a SHA-256 of every array, so truncated or corrupted files are named, not misread.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from hwquant.core.errors import FileFormatError, HwquantError
from hwquant.core.intmath import (
    Accumulator,
    Backend,
    OverflowPolicy,
    accumulator_interval,
    bits_needed,
    channel_view,
    int_conv2d,
    int_linear,
    interval_bits,
    max_magnitude,
    qrange,
    to_codes,
    worst_case_bound,
)
from hwquant.core.npzfile import read_npz_with_header, write_npz_with_header

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)  # version 1: no weight encodings
FORMAT_NAME = "hwquant.IntModel"


@dataclass
class WeightEncoding:
    """The stored form of a weight layer's integer weights, when they are not plain codes."""

    kind: ClassVar[str] = ""
    splits_rows: ClassVar[bool] = False
    """Whether the encoding fixes which output rows are multiply-free (MSQ's SP2 rows); the
    hardware planner assumes a split for a layer whose encoding does not."""

    def decode(self) -> np.ndarray:
        """The integer weights ``W_int`` (int64) this encoding stands for."""
        raise NotImplementedError

    def storage_bits(self) -> int:
        """Bits needed to store the encoded weights (and any per-layer table)."""
        raise NotImplementedError

    def code_bits(self) -> int:
        """Bits of one stored weight (an index or a code; UNIQ's ``b_w`` of the BOPs)."""
        raise NotImplementedError

    def multiplier_bits(self, weight_bits: int) -> int:
        """Bits of the integer weight a multiplier sees, for decoded weights of
        ``weight_bits`` bits (all of them here)."""
        return weight_bits

    def multiply_free_rows(self) -> int:
        """Output channels whose products the scheme forms without a multiplier (none here)."""
        return 0


def default_sp2_split(bits: int) -> tuple[int, int]:
    """The default ``(m1, m2)`` of an m-bit SP2 code: ``m1 = ceil((m-1)/2)``, ``m2 = m-1-m1``
    (``m = m1 + m2 + 1`` with the sign bit; methods.md §2.1).

    >>> default_sp2_split(4), default_sp2_split(3), default_sp2_split(2)
    ((2, 1), (1, 1), (1, 0))
    """
    m1 = math.ceil((bits - 1) / 2)
    return m1, bits - 1 - m1


@dataclass
class MSQEncoding(WeightEncoding):
    """Row-wise mixed SP2 / fixed-point weights (Mix and Match, methods.md §2).

    Row ``r`` (output channel) is SP2 where ``sp2_rows[r]``: its weights are
    ``sign · (2^shift1 + 2^shift2)`` with a shift of −1 marking an absent term, so the integer
    multiplies by shifts and adds. Other rows hold fixed-point integer codes in ``fixed``.
    ``m1``/``m2`` are the bits of the two SP2 terms (``bits = m1 + m2 + 1`` with the sign).
    """

    sp2_rows: np.ndarray = field(repr=False)  # bool [C_out]
    sign: np.ndarray = field(repr=False)  # int8, weight shape: −1, 0, +1 (0 on fixed rows)
    shift1: np.ndarray = field(repr=False)  # int8, weight shape: −1 = no term
    shift2: np.ndarray = field(repr=False)  # int8, weight shape: −1 = no term
    fixed: np.ndarray = field(repr=False)  # int64, weight shape: codes of fixed rows, 0 on SP2
    bits: int = 4
    m1: int = 2
    m2: int = 1
    kind: ClassVar[str] = "msq"
    splits_rows: ClassVar[bool] = True

    def decode(self) -> np.ndarray:
        """``sign·(2^shift1 + 2^shift2)`` on SP2 rows, the fixed-point codes elsewhere."""
        shift1, shift2 = self.shift1.astype(np.int64), self.shift2.astype(np.int64)  # no int8 wrap
        term1 = np.where(shift1 >= 0, np.left_shift(1, np.maximum(shift1, 0)), 0)
        term2 = np.where(shift2 >= 0, np.left_shift(1, np.maximum(shift2, 0)), 0)
        sp2 = self.sign.astype(np.int64) * (term1 + term2)
        rows = self.sp2_rows.reshape(-1, *([1] * (self.fixed.ndim - 1)))
        return np.where(rows, sp2, self.fixed).astype(np.int64)

    def storage_bits(self) -> int:
        """``bits`` per weight and one scheme bit per row."""
        return int(self.fixed.size * self.bits + self.sp2_rows.size)

    def code_bits(self) -> int:
        """``bits``: an SP2 code or a fixed-point code."""
        return self.bits

    def multiplier_bits(self, weight_bits: int) -> int:
        """``bits``: only the fixed-point rows multiply, by their codes."""
        return self.bits

    def multiply_free_rows(self) -> int:
        """The SP2 rows: their products are shifts and adds."""
        return int(self.sp2_rows.sum())


@dataclass
class CodebookEncoding(WeightEncoding):
    """Weights as ``index_bits``-bit indices into a per-layer integer codebook (methods.md §1).

    ``W_int[r, ...] = codebook[row, indices[r, ...]]`` with ``row = r`` when the codebook has one
    row per output channel and 0 when it has one row for the layer; the levels are integers on
    a ``grid_bits``-bit grid with one power-of-two scale.
    """

    indices: np.ndarray = field(repr=False)  # int64, weight shape
    codebook: np.ndarray = field(repr=False)  # int64 [1 or C_out, k]
    index_bits: int = 2
    grid_bits: int = 8
    kind: ClassVar[str] = "codebook"

    def decode(self) -> np.ndarray:
        """Look every index up in its row's codebook."""
        rows = self.codebook.shape[0]
        flat = self.indices.reshape(self.indices.shape[0], -1)
        which = np.arange(flat.shape[0]) if rows > 1 else np.zeros(flat.shape[0], np.int64)
        return self.codebook[which[:, None], flat].reshape(self.indices.shape).astype(np.int64)

    def storage_bits(self) -> int:
        """Indices at ``index_bits`` plus the codebook at ``grid_bits``."""
        return int(self.indices.size * self.index_bits + self.codebook.size * self.grid_bits)

    def code_bits(self) -> int:
        """``index_bits``: the stored index (the multiplier sees the decoded level)."""
        return self.index_bits


ENCODING_TYPES: dict[str, type[WeightEncoding]] = {
    cls.kind: cls for cls in (MSQEncoding, CodebookEncoding)
}


@dataclass
class IntNode:
    """A node: its name (the QAT layer's name) and the names of the nodes it reads."""

    name: str
    inputs: list[str]
    op: ClassVar[str] = ""
    outside: ClassVar[str] = ""
    """For an op kept outside the integer graph (a final softmax), what it leaves to the host,
    stated in :func:`hwquant.verify`'s report; empty for every integer op."""


@dataclass
class WeightNode(IntNode):
    """Common part of convolution and fully connected nodes.

    Shared weight-layer machinery (accumulator checks, golden vectors, kernels, the network
    generator) tells the two geometries apart by :attr:`spatial`, never by the node class.
    """

    weight: np.ndarray = field(repr=False)  # int64 codes
    bias: np.ndarray | None = field(repr=False)  # int64 at accumulator scale, or None
    acc_scale: np.ndarray = field(repr=False)  # float64 [C_out]: value of one accumulator unit
    weight_bits: int = 8
    in_bits: int = 8
    in_signed: bool = False
    mult: np.ndarray | None = field(default=None, repr=False)  # int64 [C_out], None: last layer
    shift: np.ndarray | None = field(default=None, repr=False)
    lo: int = 0
    hi: int = 0
    out_scale: float | None = None
    acc_bits: int = 32
    overflow: OverflowPolicy = "wrap"
    encoding: WeightEncoding | None = None  # the stored form of `weight`, when not plain codes
    acc_interval: tuple[int, int] | None = None
    """(lowest, highest) value any partial sum of the accumulator can take for inputs in range,
    proved by ``lower`` from the integers (:mod:`hwquant.qat.accumulator_bound`)."""
    plane_interval: tuple[int, int] | None = None
    """The same over every 4-bit digit plane of the ``four_bit`` mode (no bias)."""
    spatial: ClassVar[bool] = False
    """Whether the weights slide over an image (a convolution: NCHW input, weight
    ``[C_out, C_in/groups, kh, kw]``, with ``stride``, ``padding``, ``dilation``, ``groups``); a
    fully connected layer reads one vector per sample."""

    @property
    def groups(self) -> int:
        """Channel groups (1: dense; a convolution declares its own)."""
        return 1

    @property
    def accumulator(self) -> Accumulator:
        """The accumulator this node runs with."""
        return Accumulator(self.acc_bits, self.overflow)

    def proved_interval(self) -> tuple[int, int]:
        """``(low, high)``: every partial sum of this layer's accumulator ``Σ w·x + b`` (the
        bias is inside the accumulator, as the engine computes it) for every input in range,
        and both ends reached (:func:`hwquant.core.intmath.accumulator_interval`, docs/llsq.md
        §5). ``lower`` records it as :attr:`acc_interval`; computed from the integers here, so
        it stays true when the weights or bias are edited."""
        if self.weight.shape[0] == 0:
            return 0, 0
        bias = None if self.bias is None else torch.from_numpy(self.bias)
        low, high = accumulator_interval(
            torch.from_numpy(self.weight), bias, *qrange(self.in_bits, self.in_signed)
        )
        return int(low.min()), int(high.max())

    def proved_bits(self) -> int:
        """The narrowest signed accumulator that no input in range can overflow (the
        :func:`~hwquant.core.intmath.interval_bits` of :meth:`proved_interval`): the width
        the engine under ``overflow="raise"``, the exports and the RTL check a layer against."""
        return interval_bits(*self.proved_interval())

    def worst_case_bits(self) -> int:
        """Bits of the L1 rule ``max_c Σ|w|·max|x| + |b|`` (A2Q's bound, the magnitude that
        decides whether a float accumulation is exact); never fewer than :meth:`proved_bits`,
        often one more (for unsigned inputs, the positive and negative weights cannot both
        reach their extremes)."""
        bias = None if self.bias is None else torch.from_numpy(self.bias)
        x_max = max_magnitude(self.in_bits, self.in_signed)
        return bits_needed(worst_case_bound(torch.from_numpy(self.weight), x_max, bias))

    def fan_in(self) -> int:
        """Multiply-accumulates per output element."""
        return int(np.prod(self.weight.shape[1:]))

    def product(
        self,
        x: torch.Tensor,
        w: torch.Tensor,
        b: torch.Tensor | None,
        x_max: int,
        backend: Backend,
    ) -> torch.Tensor:
        """``w ⋆ x + b`` exactly, with this layer's geometry (``|x| <= x_max``; the integer
        engine's accumulation, :mod:`hwquant.core.intmath`)."""
        raise NotImplementedError


@dataclass
class ConvNode(WeightNode):
    """Integer 2-D convolution."""

    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1  # a field here (the base class says 1)
    op: ClassVar[str] = "conv2d"
    spatial: ClassVar[bool] = True

    def product(
        self,
        x: torch.Tensor,
        w: torch.Tensor,
        b: torch.Tensor | None,
        x_max: int,
        backend: Backend,
    ) -> torch.Tensor:
        """The exact convolution :func:`~hwquant.core.intmath.int_conv2d`."""
        return int_conv2d(
            x, w, b, self.stride, self.padding, self.dilation, self.groups, x_max, backend
        )


@dataclass
class LinearNode(WeightNode):
    """Integer fully connected layer."""

    op: ClassVar[str] = "linear"

    def product(
        self,
        x: torch.Tensor,
        w: torch.Tensor,
        b: torch.Tensor | None,
        x_max: int,
        backend: Backend,
    ) -> torch.Tensor:
        """The exact matrix product :func:`~hwquant.core.intmath.int_linear`."""
        return int_linear(x, w, b, x_max, backend)


@dataclass
class AddNode(IntNode):
    """Residual add of two code tensors with aligned scales."""

    mults: tuple[int, int] = (1, 1)
    shift: int = 0
    lo: int = 0
    hi: int = 0
    out_scale: float = 1.0
    op: ClassVar[str] = "add"


@dataclass
class AvgPoolNode(IntNode):
    """Average pooling: exact window sum, then requantization by ``mult >> shift``."""

    kernel_size: int | None = None  # None: global
    window: int = 1
    mult: int = 1
    shift: int = 0
    lo: int = 0
    hi: int = 0
    out_scale: float = 1.0
    op: ClassVar[str] = "avgpool"


@dataclass
class MaxPoolNode(IntNode):
    """Max pooling on codes (monotone, so the scale is unchanged)."""

    kernel_size: tuple[int, int] = (2, 2)
    stride: tuple[int, int] = (2, 2)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    ceil_mode: bool = False
    op: ClassVar[str] = "maxpool"


@dataclass
class ReshapeNode(IntNode):
    """Reshape to ``[batch, *shape]`` (flatten, view, reshape, squeeze, unsqueeze)."""

    shape: tuple[int, ...] = ()
    op: ClassVar[str] = "reshape"


NODE_TYPES: dict[str, type[IntNode]] = {
    cls.op: cls for cls in (ConvNode, LinearNode, AddNode, AvgPoolNode, MaxPoolNode, ReshapeNode)
}


@dataclass(frozen=True)
class InputSpec:
    """The network input quantizer: ``code = clamp(round_half_up(x / scale), lo, hi)``."""

    name: str
    scale: float
    bits: int
    signed: bool


Runner = Callable[["IntModel", torch.Tensor, bool], torch.Tensor]
"""An executor of :meth:`IntModel.run`: ``(model, x_int, four_bit) -> int64 output codes``."""

_BACKENDS: dict[str, Runner] = {}


def register_backend(name: str, run: Runner) -> None:
    """Make ``run`` the executor of ``IntModel.run(..., backend=name)`` (``hwquant.engine``
    registers "engine", ``hwquant.export`` "onnxruntime"; ``import hwquant`` imports both)."""
    if name in _BACKENDS:
        raise HwquantError(f"IntModel backend {name!r} is registered twice")
    _BACKENDS[name] = run


@dataclass
class IntModel:
    """An integer-only network: run it with :meth:`run`, save it with :meth:`save`."""

    input: InputSpec
    nodes: list[IntNode]
    output: str
    output_scale: np.ndarray  # float64: value of one output unit, per output channel
    recipe: dict[str, Any] = field(default_factory=dict)
    format_name: ClassVar[str] = FORMAT_NAME
    """The format its files are written in, named in their header (:meth:`save`)."""

    # -- execution ---------------------------------------------------------------------------
    def quantize_input(self, x: torch.Tensor) -> torch.Tensor:
        """Integer codes of a float input batch, exactly as the QAT model computes them."""
        from hwquant.core.errors import check_finite

        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            got = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
            raise HwquantError(
                f"quantize_input takes a float torch tensor (the values the model was trained "
                f"on), got {got}. Fix: convert images as in training, e.g. "
                "torch.as_tensor(x).float() / 255 followed by the training normalisation."
            )
        check_finite("input batch", x)
        lo, hi = qrange(self.input.bits, self.input.signed)
        return to_codes(x, torch.tensor(self.input.scale, dtype=x.dtype), lo, hi)

    def run(
        self, x_int: torch.Tensor, *, four_bit: bool = False, backend: str = "engine"
    ) -> torch.Tensor:
        """Integer output (int64) for integer input codes ``x_int``.

        ``backend="engine"``: the integer engine (accumulator statistics are not collected;
        ``hwquant.engine.run`` returns them). ``backend="onnxruntime"``: the same integers from
        the model's exact float32 graph on onnxruntime (:mod:`hwquant.export.runtime`; needs
        onnxruntime, refuses a model it cannot export exactly). The backends register
        themselves (:func:`register_backend`), so this layer imports neither.
        """
        if backend not in _BACKENDS:
            names = " or ".join(repr(name) for name in _BACKENDS)
            raise HwquantError(f"backend={backend!r} is not known. Fix: use {names}.")
        return _BACKENDS[backend](self, x_int, four_bit)

    def dequantize(self, out: torch.Tensor) -> torch.Tensor:
        """Float value of integer outputs: ``output_scale · out`` (float64)."""
        scale = torch.from_numpy(self.output_scale).to(out.device)
        return out.double() * channel_view(scale, out.dim())

    @property
    def integer_output(self) -> str:
        """The node whose codes the integer graph outputs: :attr:`output`, or, where the model
        ends in ops kept outside the integer graph (a final softmax: ``IntNode.outside``), the
        node whose codes they pass on to the host unchanged."""
        outside = {node.name: node for node in self.nodes if node.outside}
        name = self.output
        while name in outside:
            name = outside[name].inputs[0]
        return name

    # -- accumulators ------------------------------------------------------------------------
    def weight_nodes(self) -> list[WeightNode]:
        """The convolution and fully connected nodes, in order."""
        return [n for n in self.nodes if isinstance(n, WeightNode)]

    def set_accumulator(
        self, bits: int, policy: OverflowPolicy = "wrap", layers: str | list[str] | None = None
    ) -> None:
        """Set the accumulator width and overflow policy of ``layers`` (one name, a list of
        names, or None: all)."""
        Accumulator(bits, policy)  # validates
        if isinstance(layers, str):
            layers = [layers]
        names = {n.name for n in self.weight_nodes()}
        unknown = sorted(set(layers or []) - names)
        if unknown:
            raise HwquantError(
                f"no weight layer named {', '.join(unknown)}. Fix: use one of {', '.join(names)}."
            )
        for node in self.weight_nodes():
            if layers is None or node.name in layers:
                node.acc_bits, node.overflow = bits, policy

    # -- figures -----------------------------------------------------------------------------
    def size_bits(self) -> int:
        """Bits of all weights (at their widths) and biases (at accumulator width)."""
        total = 0
        for node in self.weight_nodes():
            if node.encoding is not None:
                total += node.encoding.storage_bits()
            else:
                total += node.weight.size * node.weight_bits
            if node.bias is not None:
                total += node.bias.size * node.acc_bits
        return total

    # -- files -------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the model to ``path`` (.npz with a JSON header), atomically."""
        arrays: dict[str, np.ndarray] = {"output_scale": self.output_scale}
        header = {
            "input": dataclasses.asdict(self.input),
            "output": self.output,
            "recipe": self.recipe,
            "nodes": [to_json(node, node.name, arrays) for node in self.nodes],
        }
        return write_npz_with_header(path, FORMAT_NAME, FORMAT_VERSION, header, arrays)

    @classmethod
    def load(cls, path: str | Path) -> IntModel:
        """The IntModel saved in ``path`` (:func:`load`); with :attr:`format_name`, what
        :func:`hwquant.qat.registry.load_lowered` asks of a lowered model's class."""
        return load(path)


def to_json(obj: IntNode | WeightEncoding, prefix: str, arrays: dict[str, np.ndarray]) -> dict:
    """A node or encoding as a JSON entry; its arrays go to ``arrays`` under ``prefix/field``."""
    entry: dict[str, Any] = {"op": obj.op} if isinstance(obj, IntNode) else {"kind": obj.kind}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, np.ndarray):
            arrays[f"{prefix}/{f.name}"] = value
            entry[f.name] = {"array": f"{prefix}/{f.name}"}
        elif isinstance(value, WeightEncoding):
            entry[f.name] = to_json(value, f"{prefix}/{f.name}", arrays)
        else:
            entry[f.name] = list(value) if isinstance(value, tuple) else value
    return entry


def load(path: str | Path) -> IntModel:
    """Read an IntModel written by :meth:`IntModel.save`, checking version and checksums."""
    path = Path(path)
    fix = "Fix: write it again with IntModel.save() (hwquant.qat.lower the QAT model)."
    header, arrays = read_npz_with_header(path, FORMAT_NAME, READABLE_VERSIONS, fix)
    try:
        nodes = [_node_from_json(entry, arrays) for entry in header["nodes"]]
        for node in nodes:
            encoding = node.encoding if isinstance(node, WeightNode) else None
            if encoding is not None and not np.array_equal(encoding.decode(), node.weight):
                raise FileFormatError(
                    f"'{path}': the {encoding.kind} encoding of layer '{node.name}' does not "
                    f"decode to its weights. {fix}"
                )
        model = IntModel(
            InputSpec(**header["input"]),
            nodes,
            header["output"],
            arrays["output_scale"],
            header.get("recipe", {}),
        )
        problem = _structure_problem(model) or _value_problem(model)
        if problem:
            raise FileFormatError(f"'{path}' has a malformed header: {problem}. {fix}")
        return model
    except FileFormatError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise FileFormatError(f"'{path}' has a malformed header ({exc!r}). {fix}") from exc


def _node_from_json(entry: dict[str, Any], arrays: dict[str, np.ndarray]) -> IntNode:
    return from_json(NODE_TYPES[entry["op"]], entry, arrays)


def from_json(cls: type, entry: dict[str, Any], arrays: dict[str, np.ndarray]) -> Any:
    """Rebuild a node or encoding of type ``cls`` (fields absent in version 1 take defaults)."""
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in entry and f.default is not dataclasses.MISSING:
            continue
        value = entry[f.name]
        if isinstance(value, dict) and "array" in value:
            value = arrays[value["array"]]
        elif isinstance(value, dict) and "kind" in value:
            value = from_json(ENCODING_TYPES[value["kind"]], value, arrays)
        elif isinstance(value, list) and f.name != "inputs":
            value = tuple(value)
        kwargs[f.name] = value
    return cls(**kwargs)


def _structure_problem(model: IntModel) -> str | None:
    """The first field of ``model`` whose type does not match its annotation (arrays: numeric;
    integer weights, biases and requantization parameters: integer), or the first node that
    reads a node not computed before it; None when there is none."""
    known = {model.input.name}
    for obj in (model.input, *model.nodes):
        hints = typing.get_type_hints(type(obj))
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if not _conforms(value, hints[f.name]):
                return f"field '{f.name}' of '{getattr(obj, 'name', '')}' is {value!r:.40}"
            integer_array = f.name in ("weight", "bias", "mult", "shift")
            if integer_array and isinstance(value, np.ndarray) and value.dtype.kind not in "iu":
                return f"array '{f.name}' of '{obj.name}' holds {value.dtype}, not integers"
        if isinstance(obj, IntNode):
            missing = [name for name in obj.inputs if name not in known]
            if missing or obj.name in known:
                return f"node '{obj.name}' reads unknown {missing} or repeats a name"
            known.add(obj.name)
    return None if model.output in known else f"output '{model.output}' is no node"


POSITIVE_FIELDS = ("scale", "acc_scale", "out_scale")
"""Fields holding the value of one integer unit: finite and > 0."""
NON_NEGATIVE_FIELDS = ("shift", "padding", "mult", "mults")
"""Right shifts, pads and requantization multipliers: >= 0 (a negative shift is no shift)."""
AT_LEAST_ONE_FIELDS = ("bits", "in_bits", "weight_bits", "stride", "dilation", "groups", "window")
"""Widths, strides, dilations, groups, window sizes: >= 1."""
CHECKED_FIELDS = POSITIVE_FIELDS + NON_NEGATIVE_FIELDS + AT_LEAST_ONE_FIELDS


def _value_problem(model: IntModel) -> str | None:
    """The first value of ``model`` outside what its field means (a header that lies): a scale
    that is not a finite positive number, a negative shift or pad, a width or stride below 1,
    ``lo > hi``, an accumulator the engine cannot hold, weights outside their ``weight_bits``;
    None when there is none."""
    if not (np.isfinite(model.output_scale).all() and (model.output_scale > 0).all()):
        return "output_scale is not finite and positive"
    for obj in (model.input, *model.nodes):
        where = f"'{obj.name}'"
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if value is None or f.name not in CHECKED_FIELDS:
                continue
            values = np.asarray(value, dtype=np.float64)
            if f.name in POSITIVE_FIELDS and not (np.isfinite(values) & (values > 0)).all():
                return f"{f.name} of {where} is not a finite number > 0 ({value!r:.40})"
            if f.name in NON_NEGATIVE_FIELDS and (values < 0).any():
                return f"{f.name} of {where} is negative ({value!r:.40})"
            if f.name in AT_LEAST_ONE_FIELDS and (values < 1).any():
                return f"{f.name} of {where} is below 1 ({value!r:.40})"
        if getattr(obj, "lo", 0) > getattr(obj, "hi", 0):
            return f"lo {obj.lo} > hi {obj.hi} in '{obj.name}'"
        if getattr(obj, "kernel_size", None) is not None and min(_sizes(obj.kernel_size)) < 1:
            return f"kernel_size of {where} is below 1"
        if isinstance(obj, WeightNode):
            try:
                obj.accumulator  # noqa: B018 (validates acc_bits and overflow)
            except HwquantError as exc:
                return f"the accumulator of {where} is invalid: {exc}"
            lo, hi = qrange(obj.weight_bits, signed=True)
            if obj.weight.size and (obj.weight.min() < lo or obj.weight.max() > hi):
                return (
                    f"the weights of {where} span [{obj.weight.min()}, {obj.weight.max()}], "
                    f"outside the {obj.weight_bits}-bit range [{lo}, {hi}]"
                )
    return None


def _sizes(value: int | tuple[int, ...]) -> tuple[int, ...]:
    return (value,) if isinstance(value, int) else tuple(value)


def _conforms(value: Any, hint: Any) -> bool:
    """Whether a value read from a file has the type ``hint`` (an annotation) describes."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_conforms(value, arg) for arg in args)
    if origin is typing.Literal:
        return value in args
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_conforms(v, args[0]) for v in value)
        return len(value) == len(args) and all(map(_conforms, value, args))
    if origin is list:
        return isinstance(value, list) and all(_conforms(v, args[0]) for v in value)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is np.ndarray:
        return isinstance(value, np.ndarray) and value.dtype.kind in "biuf"
    if hint is Any:
        return True
    return isinstance(value, typing.get_origin(hint) or hint)
