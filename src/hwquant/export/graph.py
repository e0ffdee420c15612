"""The exported graph's layout, shared by the QONNX and the QDQ form: float32 only, exact.

Both forms compute what the integer engine computes, step by step, with tensors that carry
integer codes in float32 containers (the *integer domain*, as FINN's streamlined graphs do).
There is no ``Cast`` and no float64 anywhere; every float32 step is exact, by these bounds:

* input (with ``quantize_input``): ``code = clamp(floor(fl(fl(x / s_in) + 1/2)), lo, hi)`` —
  ``Div`` and ``Add`` in float32, the same IEEE operations as the engine's
  :meth:`~hwquant.ir.intmodel.IntModel.quantize_input`, then the form's floor step. Without it the
  graph takes the integer codes themselves (the form FINN and hls4ml dataflows are fed);
* weight layer: ``acc = W_int ⋆ x + b_int`` by ``Conv``/``Gemm`` in float32, exact because every
  partial sum lies in the interval ``lower`` proves (:func:`~hwquant.core.intmath.
  accumulator_interval`; the bias inside the accumulator), whose magnitude is < 2^24; the same
  interval decides whether the layer's ``acc_bits`` can overflow. A wider layer is split,
  ``W = 2^h·W_hi + W_lo``, into two products below 2^24 that the requantization takes as two
  terms (its accumulator is never formed);
* requantization (weight layers, residual adds, average pools): the limb plan of
  :mod:`hwquant.export.requant` — products and sums of integers below 2^24, exact floors, and a
  last tie-free rounding step ``clamp(round(u + 2^-(k+1)), lo, hi)`` on a ``2^-k`` grid;
* average pool: window sums by an all-ones depthwise ``Conv`` (or ``ReduceSum`` for a global
  pool), below 2^24; max pool and reshape as they are;
* output: the last layer's integer accumulator (float32, below 2^24); its real value is
  ``acc · output_scale``, stored in the model's metadata (``hwquant.output_scale``), the value
  :meth:`IntModel.dequantize` gives.

A layer for which no such bound holds is refused with :class:`UnsupportedLayerError` naming the
layer and the reason. The batch dimension is symbolic (``batch``). Per-channel constants have
the shape ``[1, C, 1, 1]`` (``[1, C]`` after a flatten), which qonnx's channels-last pass
transposes with the data; constants equal across channels are scalars.

What differs between the forms is the *quantize steps* (QONNX ``Quant`` nodes or standard
``Floor``/``Clip``/``QuantizeLinear`` nodes) and how weights are stored; a :class:`QuantStyle`
supplies those pieces.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from hwquant.core.atomic import write_atomic
from hwquant.core.errors import UnsupportedLayerError
from hwquant.core.intmath import accumulator_interval, max_magnitude, qrange
from hwquant.engine import run
from hwquant.export.requant import (
    FLOAT32_EXACT,
    Limbs,
    OneStep,
    clip_range,
    exact_step,
    limbs,
    one_step,
)
from hwquant.ir.intmodel import IntModel, WeightEncoding, WeightNode
from hwquant.ir.ops import get_op

OPSET = 13
IR_VERSION = 8
"""ONNX IR version 8 (onnx 1.10+): read by every onnx the pinned consumers bring."""
INPUT_NAME = "x"
BATCH = "batch"
"""Name of the symbolic batch dimension."""
Shape = tuple[int | str, ...]


@dataclass
class Graph:
    """An ONNX graph under construction: nodes, initializers and a value info per tensor."""

    nodes: list[onnx.NodeProto] = field(default_factory=list)
    initializers: list[onnx.TensorProto] = field(default_factory=list)
    infos: dict[str, onnx.ValueInfoProto] = field(default_factory=dict)
    domains: set[str] = field(default_factory=set)
    peaks: dict[str, int] = field(default_factory=dict)
    """Largest |code| of each code tensor (filled by :func:`build`, read by the bounds)."""

    def const(self, name: str, value: np.ndarray) -> str:
        """Add an initializer and return its name."""
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def f32(self, name: str, value: float | np.ndarray) -> str:
        """Add a float32 initializer (exactly ``value``: callers pass float32 values)."""
        array = np.asarray(value, np.float64)
        if not np.array_equal(array.astype(np.float32), array):
            raise AssertionError(f"constant {name} is not a float32 value")  # a planning bug
        return self.const(name, array.astype(np.float32))

    def op(
        self,
        op_type: str,
        inputs: list[str],
        output: str,
        shape: Shape,
        dtype: type = np.float32,
        domain: str = "",
        **attrs: object,
    ) -> str:
        """Add node ``op_type`` writing ``output`` (of ``shape`` and ``dtype``) and return it."""
        self.nodes.append(
            helper.make_node(op_type, inputs, [output], name=output, domain=domain, **attrs)
        )
        if domain:
            self.domains.add(domain)
        self.infos[output] = helper.make_tensor_value_info(
            output, helper.np_dtype_to_tensor_dtype(np.dtype(dtype)), list(shape)
        )
        return output

    def shape(self, name: str) -> Shape:
        """Shape of tensor ``name`` (an output of a node added before)."""
        dims = self.infos[name].type.tensor_type.shape.dim
        return tuple(d.dim_param or d.dim_value for d in dims)

    def add_all(self, terms: list[str], out: str, shape: Shape) -> str:
        """``terms[0] + terms[1] + …`` as a chain of ``Add`` nodes named after ``out``."""
        total = terms[0]
        for i, term in enumerate(terms[1:], 1):
            name = out if i == len(terms) - 1 else f"{out}/add{i}"
            total = self.op("Add", [total, term], name, shape)
        return total


def channel_const(values: np.ndarray, ndim: int) -> np.ndarray:
    """A per-channel vector laid along dimension 1 of an ``ndim`` tensor (``[1, C, 1, 1]``), or
    a scalar when every channel has the same value."""
    values = np.asarray(values).reshape(-1)
    if np.all(values == values[0]):
        return values[0].reshape(())
    return values.reshape(1, -1, *([1] * (ndim - 2)))


class QuantStyle(Protocol):
    """How one export form writes quantize steps and weights."""

    def round_step(
        self, g: Graph, u: str, offset: np.ndarray | None, bits: int, signed: bool, out: str
    ) -> str:
        """``clamp(round(u + offset), qrange(bits, signed))`` as codes named ``out`` (no ``Add``
        for no offset); the caller has proved that any rounding rule gives the code."""
        ...

    def floor_step(self, g: Graph, v: str, bits: int, signed: bool, out: str) -> str:
        """``clamp(floor(v), qrange(bits, signed))`` for any float32 ``v`` (the input step)."""
        ...

    def saturate(self, g: Graph, v: str, shape: Shape, bits: int, signed: bool, out: str) -> str:
        """``clamp(v, qrange(bits, signed))`` of integers ``v`` (input codes: states their type)."""
        ...

    def weight(
        self, g: Graph, name: str, values: np.ndarray, encoding: WeightEncoding | None
    ) -> str:
        """The float32 tensor holding integer weights ``values`` (``encoding``: their stored
        form, which a form may write as a decoder op)."""
        ...

    def decodes(self, encoding: WeightEncoding) -> bool:
        """Whether :meth:`weight` writes ``encoding`` as a decoder op (else: decoded values)."""
        ...

    def floor(self, g: Graph, v: str, peak: int, out: str) -> str:
        """``floor(v)`` of a value with ``|floor(v)| <= peak`` (a limb's carry)."""
        ...

    clips: bool
    """Whether the form has a clip step (:meth:`clip`); without it no limb is saved by one."""

    exact_arithmetic: bool
    """Whether the graph is for a consumer that computes every product and sum exactly at any
    width (fixed point with the types :mod:`hwquant.export.hls4ml` derives), not in float32:
    a weight layer is then one product however wide its sums, and a requantization that no
    float32 form computes takes :func:`~hwquant.export.requant.exact_step` (never limbs)."""

    def clip(self, g: Graph, v: str, low: int, high: int, out: str) -> str:
        """``clamp(v, low, high)``."""
        ...


def build(
    model: IntModel,
    input_shape: tuple[int, ...],
    style: QuantStyle,
    name: str,
    path: str | Path | None = None,
    *,
    quantize_input: bool = True,
) -> onnx.ModelProto:
    """Lay ``model`` out as an ONNX graph whose quantize steps and weights ``style`` writes
    (saved to ``path`` when given). ``input_shape`` gives the per-sample sizes (its batch size
    is replaced by the symbolic ``batch``).

    Raises:
        UnsupportedLayerError: a layer that no float32 graph computes exactly (see the module
            docstring), or one that can overflow its accumulator (the graph has no wrap-around),
            or a model that is not an IntModel (a TableModel's lookups have no ONNX form).
    """
    if not isinstance(model, IntModel):
        raise UnsupportedLayerError(
            f"only an IntModel has an ONNX form; this is a {type(model).__name__} (the tables "
            "scheme's lookups and threshold compares have no QONNX or QDQ operators). Fix: "
            "export a model of the llsq, msq or nonuniform scheme, or run this one with its "
            "own engine (hwquant.schemes.tables.run_tables)."
        )
    shapes = _shapes(model, input_shape)
    g = Graph(peaks=_code_peaks(model))
    spec = model.input
    x_shape: Shape = (BATCH, *input_shape[1:])
    if quantize_input:
        scale = np.float32(spec.scale)
        scaled = g.op("Div", [INPUT_NAME, g.f32("input_scale", scale)], "input/scaled", x_shape)
        shifted = g.op("Add", [scaled, g.f32("input/half", 0.5)], "input/shifted", x_shape)
        style.floor_step(g, shifted, spec.bits, spec.signed, spec.name)
    else:
        style.saturate(g, INPUT_NAME, x_shape, spec.bits, spec.signed, spec.name)
    for node in model.nodes:
        get_op(node.op).export(g, node, shapes, style)
    out_shape = shapes[model.output]
    given = f"real values, quantized with scale {spec.scale!r}" if quantize_input else "codes"
    doc = (
        f"hwquant IntModel in the integer domain (float32 containers). Input: {given}. "
        f"Output: the integer codes of '{model.output}'; value = codes x output_scale "
        "(metadata hwquant.output_scale, per channel). See docs/export/custom_ops.md."
    )
    proto = _model(g, name, x_shape, model.output, out_shape, doc)
    meta = {
        "hwquant.output_scale": json.dumps([float(v) for v in model.output_scale.reshape(-1)]),
        "hwquant.input_scale": json.dumps(float(spec.scale)),
        "hwquant.input": "values" if quantize_input else "codes",
    }
    helper.set_model_props(proto, meta)
    if not quantize_input:
        _annotate(proto, INPUT_NAME, _datatype(spec.bits, spec.signed))
    if path is not None:
        write_atomic(path, proto.SerializeToString())
    return proto


def _model(
    g: Graph, name: str, x_shape: Shape, output: str, out_shape: tuple[int, ...], doc: str
) -> onnx.ModelProto:
    inputs = [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, list(x_shape))]
    outputs = [helper.make_tensor_value_info(output, TensorProto.FLOAT, [BATCH, *out_shape[1:]])]
    infos = [v for k, v in g.infos.items() if k != output]
    graph = helper.make_graph(
        g.nodes, name, inputs, outputs, g.initializers, value_info=infos, doc_string=doc
    )
    opsets = [helper.make_opsetid("", OPSET)]
    opsets += [helper.make_opsetid(d, 1) for d in sorted(g.domains)]
    proto = helper.make_model(graph, opset_imports=opsets, producer_name="hwquant")
    proto.ir_version = IR_VERSION
    return proto


def _datatype(bits: int, signed: bool) -> str:
    """The qonnx/FINN datatype name of ``bits``-bit codes."""
    return f"{'INT' if signed else 'UINT'}{bits}"


def _annotate(proto: onnx.ModelProto, tensor: str, datatype: str) -> None:
    """Record ``tensor``'s qonnx datatype (``finn_datatype`` quantization annotation)."""
    annotation = onnx.TensorAnnotation(tensor_name=tensor)
    annotation.quant_parameter_tensor_names.add(key="finn_datatype", value=datatype)
    proto.graph.quantization_annotation.append(annotation)


def _shapes(model: IntModel, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """Shape of every node's output (batch 1), from a traced engine run on zeros."""
    x = torch.zeros((1, *input_shape[1:]), dtype=torch.int64)
    values = run(model, x, trace=True, stats=False).values
    return {name: tuple(v.shape) for name, v in values.items()}


def activation_shape(shape: tuple[int, ...]) -> Shape:
    """An activation's shape with the symbolic batch."""
    return (BATCH, *shape[1:])


def _code_peaks(model: IntModel) -> dict[str, int]:
    """Largest |code| of the input and of every node's output (pooling, reshape and
    concatenation pass on their inputs' largest)."""
    peaks = {model.input.name: max_magnitude(model.input.bits, model.input.signed)}
    for node in model.nodes:
        if get_op(node.op).passthrough:
            peaks[node.name] = max(peaks[name] for name in node.inputs)
        else:
            peaks[node.name] = max(abs(node.lo), abs(node.hi))
    return peaks


def refuse(name: str, problems: list[str], fix: str) -> None:
    """Raise the export's error for layer ``name`` when ``problems`` is not empty."""
    if problems:
        raise UnsupportedLayerError(
            f"layer '{name}' cannot be exported exactly: {'; '.join(problems)}. Fix: {fix}."
        )


def _bound(weight: np.ndarray, x_range: tuple[int, int], bias: np.ndarray | None) -> int:
    """Largest |partial sum| of ``weight ⋆ x + bias`` for codes ``x`` in ``x_range``: the
    larger end of :func:`hwquant.core.intmath.accumulator_interval` (the interval ``lower``
    proves; the bias moves only the end of its own sign)."""
    if weight.shape[0] == 0:
        return 0
    b = None if bias is None else torch.from_numpy(bias.astype(np.int64))
    low, high = accumulator_interval(torch.from_numpy(weight.astype(np.int64)), b, *x_range)
    return int(max(high.max(), -low.min(), 0))


Product = Callable[..., str]
"""A weight op's product ``(g, node, weight, bias, encoding, out, shape, style) -> out``: the
nodes computing ``weight ⋆ x + bias`` with the node's geometry (``Conv``, ``MatMul``)."""


def weight_layer(
    g: Graph,
    node: WeightNode,
    shapes: dict[str, tuple[int, ...]],
    style: QuantStyle,
    product: Product,
) -> None:
    """A weight layer: its product(s) by ``product``, then its requantization.

    The product is one ``Conv``/``MatMul`` when its partial sums stay below 2^24 and the
    requantization of that accumulator has an exact plan; otherwise the weights are split,
    ``W = 2^h·W_hi + W_lo`` (``W_lo`` in ``[0, 2^h)``), into two products whose requantization
    takes them as two terms with multipliers ``M·2^h`` and ``M``. For a style with
    ``exact_arithmetic`` it is always one product (no float32 bound applies).
    """
    x_range = qrange(node.in_bits, node.in_signed)
    bound = _bound(node.weight, x_range, node.bias)
    shape = activation_shape(shapes[node.name])
    needed = node.proved_bits()  # the interval lower proves (docs/llsq.md §5)
    fix = (
        "lower the layer's weight/activation bits or its fan-in, or widen acc_bits to "
        f"{max(needed, node.acc_bits)} (IntModel.set_accumulator)"
    )
    if needed > node.acc_bits:
        refuse(node.name, [f"it can overflow its {node.acc_bits}-bit accumulator"], fix)
    if node.mult is None:
        if bound >= FLOAT32_EXACT:
            reason = f"its accumulator is the graph's output and can reach {bound}, beyond 2^24"
            refuse(node.name, [f"{reason} (float32's exact range)"], fix)
        product(g, node, node.weight, node.bias, node.encoding, node.name, shape, style)
        return
    h = (int(np.abs(node.weight).max()).bit_length() + 1) // 2
    splits = [[(node.weight, node.bias, node.encoding, 0)]]
    if h > 0 and not style.exact_arithmetic:
        high, low = np.floor_divide(node.weight, 2**h), np.remainder(node.weight, 2**h)
        splits.append([(high, None, None, h), (low, node.bias, None, 0)])
    problems = []
    for parts in splits:
        bounds = [_bound(w, x_range, b) for w, b, _, _ in parts]
        if max(bounds) >= FLOAT32_EXACT and not style.exact_arithmetic:
            problems.append(f"its partial sums can reach {max(bounds)}, beyond float32's 2^24")
            continue
        mults = [node.mult << up for *_, up in parts]
        plan = _plan(bounds, mults, node.shift, node.lo, node.hi, style)
        if isinstance(plan, str):
            problems.append(plan)
            continue
        terms = []
        for i, (w, b, enc, _) in enumerate(parts):
            out = f"{node.name}/acc" if len(parts) == 1 else f"{node.name}/acc{i}"
            terms.append(product(g, node, w, b, enc, out, shape, style))
        _emit(g, node.name, terms, plan, mults, node.shift, node.lo, node.hi, shape, style)
        return
    refuse(node.name, problems, fix)


@dataclass(frozen=True)
class _Plan:
    """How a requantization runs: an optional clip of its single product, then one step or
    limbs (:mod:`hwquant.export.requant`)."""

    clips: list[tuple[int, int]] | None
    """Per term: the clip applied first (None: no clips)."""
    form: OneStep | Limbs
    bounds: list[int]


def _plan(
    bounds: list[int],
    mults: list[np.ndarray],
    shift: np.ndarray | int,
    lo: int,
    hi: int,
    style: QuantStyle,
    products: bool = True,
) -> _Plan | str:
    """The plan of ``clamp(floor((Σ_t x_t·M_t + 2^(s−1)) / 2^s), lo, hi)`` for terms bounded by
    ``bounds``, or the reason none is exact. ``products`` (the terms are products) in a style that
    clips: a single one is clipped to the range that decides its code (onnxruntime fuses the
    clip into the product, where it also keeps scales from being folded into the weights). A
    style with ``exact_arithmetic`` gets :func:`~hwquant.export.requant.exact_step` where no
    float32 one-step form is proved, never limbs."""
    shift = np.asarray(shift, np.int64).reshape(-1)
    mults = [np.asarray(m, np.int64).reshape(-1) for m in mults]
    clips = None
    if products and style.clips:
        clips = [(-b, b) for b in bounds]
        if len(bounds) == 1:
            low, high = clip_range(mults[0], shift, lo, hi)
            clips = [(max(low, -bounds[0]), min(high, bounds[0]))]
            bounds = [max(-clips[0][0], clips[0][1], 0)]
    step = one_step(bounds, mults, shift, lo, hi)
    if step is not None:
        return _Plan(clips, step, bounds)
    if style.exact_arithmetic:
        exact = exact_step(mults, shift)
        return exact if isinstance(exact, str) else _Plan(clips, exact, bounds)
    split = limbs(bounds, mults, shift)
    return split if isinstance(split, str) else _Plan(clips, split, bounds)


def requantize_codes(
    g: Graph,
    out: str,
    terms: list[tuple[str, int]],
    mults: list[np.ndarray],
    shift: np.ndarray | int,
    lo: int,
    hi: int,
    shape: Shape,
    style: QuantStyle,
    fix: str,
) -> str:
    """Plan and emit the requantization of code terms ``(tensor, bound)`` (adds, pools)."""
    plan = _plan([b for _, b in terms], mults, shift, lo, hi, style, products=False)
    if isinstance(plan, str):
        refuse(out, [plan], fix)
    return _emit(g, out, [t for t, _ in terms], plan, mults, shift, lo, hi, shape, style)


def _emit(
    g: Graph,
    out: str,
    xs: list[str],
    plan: _Plan,
    mults: list[np.ndarray],
    shift: np.ndarray | int,
    lo: int,
    hi: int,
    shape: Shape,
    style: QuantStyle,
) -> str:
    """The nodes of ``plan`` on the term tensors ``xs``; returns the codes ``out``."""
    shift = np.asarray(shift, np.int64).reshape(-1)
    ndim = len(shape)
    if plan.clips is not None:
        xs = [style.clip(g, x, *c, f"{x}/clipped") for x, c in zip(xs, plan.clips, strict=True)]
    if isinstance(plan.form, OneStep):
        parts = [
            g.op(
                "Mul",
                [x, g.f32(f"{out}/scale{t}", channel_const(c, ndim))],
                f"{out}/term{t}",
                shape,
            )
            for t, (x, c) in enumerate(zip(xs, plan.form.scales, strict=True))
        ]
        u = g.add_all(parts, f"{out}/scaled", shape)
        offset = channel_const(plan.form.offset, ndim) if plan.form.offset.any() else None
        return style.round_step(g, u, offset, *_bits_of(lo, hi), out)
    positions = plan.form.positions
    last = len(positions) - 1
    units = [np.exp2(-float(positions[j + 1] - positions[j])) for j in range(last)]
    units.append(np.exp2(-(shift - positions[last]).astype(np.float64)))
    products = [
        _limb_products(
            g,
            x,
            [p * u for p, u in zip(plan.form.split(m), units, strict=True)],
            f"{out}/limbs{t}",
            shape,
        )
        for t, (x, m) in enumerate(zip(xs, mults, strict=True))
    ]
    carry = None
    for j, unit in enumerate(units):
        name = f"{out}/limb{j}" if j < last else f"{out}/scaled"
        parts = [terms[j] for terms in products]
        if carry is not None:
            scale = g.f32(f"{name}/unit", channel_const(unit, ndim))
            parts.append(g.op("Mul", [carry, scale], f"{name}/carried", shape))
        total = g.add_all(parts, name if j + 1 == len(positions) else f"{name}/sum", shape)
        if j + 1 < len(positions):
            carry = style.floor(g, total, sum(plan.bounds), f"{name}/carry")
    frac_bits = np.maximum(shift - positions[-1], 1)
    offset = channel_const(np.exp2(-(frac_bits + 1.0)), ndim)
    return style.round_step(g, total, offset, *_bits_of(lo, hi), out)


def _limb_products(
    g: Graph, x: str, factors: list[np.ndarray], name: str, shape: Shape
) -> list[str]:
    """``x · factors[j]`` for every limb ``j`` (each exact in float32, by the plan), as tensors.

    The products are one ``Mul`` on ``x`` tiled ``L`` times along the channel axis, sliced back
    into the ``L`` limbs, so that the limbs add no fork of ``x`` (an accumulator has no other
    consumer; a residual add's input keeps its own): qonnx 1.0's channels-last pass
    (``MoveChanFirstDownstream``) moves a transpose past the first consumer of a tensor that
    feeds several and rewires the others to that consumer's output (and rewires only the first
    of several inputs of one node that name the same tensor), and ``Tile`` (not elementwise)
    stops the transpose before it. One limb, or a tensor without spatial axes (``[N, C]``, no
    layout to convert; FINN's ``to_hw`` reads its limbs as ``ElementwiseMul`` layers,
    docs/deploy_finn.md), is one plain ``Mul`` per limb.
    """
    if len(factors) == 1 or len(shape) <= 2:  # no layout to convert: one Mul per limb
        return [
            g.op(
                "Mul",
                [x, g.f32(f"{name}/m{j}", channel_const(f, len(shape)))],
                f"{name}/term{j}",
                shape,
            )
            for j, f in enumerate(factors)
        ]
    channels = shape[1]
    assert isinstance(channels, int)  # the channel dimension is static
    stacked_shape = (shape[0], channels * len(factors), *shape[2:])
    repeats = g.const(
        f"{name}/repeats", np.array([1, len(factors)] + [1] * (len(shape) - 2), np.int64)
    )
    stacked = g.op("Tile", [x, repeats], f"{name}/stacked", stacked_shape)
    flat = np.concatenate(
        [np.broadcast_to(np.asarray(f).reshape(-1), (channels,)) for f in factors]
    )
    scaled = g.op(
        "Mul", [stacked, g.f32(f"{name}/m", flat.reshape(1, -1, *([1] * (len(shape) - 2))))],
        f"{name}/scaled", stacked_shape,
    )  # fmt: skip
    axis = g.const(f"{name}/axis", np.array([1], np.int64))
    terms = []
    for j in range(len(factors)):
        start = g.const(f"{name}/start{j}", np.array([j * channels], np.int64))
        end = g.const(f"{name}/end{j}", np.array([(j + 1) * channels], np.int64))
        terms.append(g.op("Slice", [scaled, start, end, axis], f"{name}/term{j}", shape))
    return terms


def _bits_of(lo: int, hi: int) -> tuple[int, bool]:
    """The (bits, signed) whose :func:`qrange` is ``[lo, hi]``."""
    signed = lo < 0
    bits = int(hi).bit_length() + int(signed)
    if qrange(bits, signed) != (lo, hi):
        raise UnsupportedLayerError(
            f"the code range [{lo}, {hi}] is not a full {bits}-bit range. Fix: lower the model "
            "again with this hwquant version."
        )
    return bits, signed
