"""The exported graph's layout, shared by the QONNX and the QDQ form.

Both forms compute what the integer engine computes, step by step, with tensors that carry
integer codes in float containers (the *integer domain*, as FINN's streamlined graphs do):

* input: ``code = clamp(floor(x / s_in + 1/2), lo, hi)`` — ``Div``, ``Add``, then the form's
  quantize step with floor rounding (hwquant's round-half-up, methods.md §4);
* weight layer: ``acc = W_int ⋆ x + b_int`` by ``Conv``/``Gemm`` in float32 (exact: the export
  checks that every partial sum stays below 2^24), then ``Cast`` to double and
  ``code = clamp(floor(acc·(M·2^-s) + 1/2), lo, hi)`` — ``Mul``, ``Add``, quantize step (exact:
  ``|acc|·M + 2^(s−1) < 2^53`` is checked);
* add: ``clamp(floor(a·M_a·2^-s + b·M_b·2^-s + 1/2), lo, hi)`` in double (exact:
  ``|a·M_a| + |b·M_b| + 2^(s−1) < 2^53`` is checked);
* average pool: window sums by an all-ones depthwise ``Conv`` (or ``ReduceSum`` for a global
  pool) in float32 (exact: sums below 2^24 are checked), then the requantization above; max
  pool and reshape as they are;
* output: the last layer's accumulator times ``output_scale`` (double), the value
  :meth:`IntModel.dequantize` gives.

What differs between the forms is the *quantize step* (a QONNX ``Quant`` node or standard
``Floor``/``Clip``/``QuantizeLinear`` nodes) and how weights are stored; a :class:`QuantStyle`
supplies those two pieces.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from hwquant.core.atomic import write_atomic
from hwquant.core.errors import UnsupportedLayerError
from hwquant.core.intmath import max_magnitude, qrange, worst_case_bound
from hwquant.engine import run
from hwquant.ir.intmodel import (
    AddNode,
    AvgPoolNode,
    ConvNode,
    IntModel,
    LinearNode,
    MaxPoolNode,
    ReshapeNode,
    WeightNode,
)

OPSET = 13
FLOAT32_EXACT = 2**24
"""Integers below this are exact in float32, so are sums that stay below it."""
FLOAT64_EXACT = 2**53
INPUT_NAME, OUTPUT_NAME = "x", "y"


@dataclass
class Graph:
    """An ONNX graph under construction: nodes, initializers and a value info per tensor."""

    nodes: list[onnx.NodeProto] = field(default_factory=list)
    initializers: list[onnx.TensorProto] = field(default_factory=list)
    infos: dict[str, onnx.ValueInfoProto] = field(default_factory=dict)
    domains: set[str] = field(default_factory=set)
    peaks: dict[str, int] = field(default_factory=dict)
    """Largest |code| of each code tensor (filled by :func:`build`, read by the guards)."""

    def const(self, name: str, value: np.ndarray) -> str:
        """Add an initializer and return its name."""
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(
        self,
        op_type: str,
        inputs: list[str],
        output: str,
        like: tuple[tuple[int, ...], object],
        domain: str = "",
        **attrs: object,
    ) -> str:
        """Add node ``op_type`` writing ``output`` (shape and dtype ``like``) and return it."""
        self.nodes.append(
            helper.make_node(op_type, inputs, [output], name=output, domain=domain, **attrs)
        )
        if domain:
            self.domains.add(domain)
        shape, dtype = like
        self.infos[output] = helper.make_tensor_value_info(
            output, helper.np_dtype_to_tensor_dtype(np.dtype(dtype)), list(shape)
        )
        return output

    def like(self, name: str) -> tuple[tuple[int, ...], np.dtype]:
        """Shape and dtype of tensor ``name`` (an output of a node added before)."""
        tensor = self.infos[name].type.tensor_type
        shape = tuple(d.dim_value for d in tensor.shape.dim)
        return shape, helper.tensor_dtype_to_np_dtype(tensor.elem_type)

    def model(
        self, name: str, input_shape: tuple[int, ...], output_shape: tuple[int, ...], doc: str
    ) -> onnx.ModelProto:
        """The finished model (opset 13 plus the custom domains used)."""
        inputs = [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, list(input_shape))]
        outputs = [
            helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.DOUBLE, list(output_shape))
        ]
        infos = [v for k, v in self.infos.items() if k != OUTPUT_NAME]
        graph = helper.make_graph(
            self.nodes, name, inputs, outputs, self.initializers, value_info=infos, doc_string=doc
        )
        opsets = [helper.make_opsetid("", OPSET)]
        opsets += [helper.make_opsetid(d, 1) for d in sorted(self.domains)]
        return helper.make_model(graph, opset_imports=opsets, producer_name="hwquant")


class QuantStyle(Protocol):
    """How one export form writes quantize steps and weights."""

    def quantize(
        self, g: Graph, value: str, shape: tuple[int, ...], bits: int, signed: bool, out: str
    ) -> str:
        """``clamp(floor(value), qrange(bits, signed))`` as float32 codes named ``out``."""
        ...

    def weight(self, g: Graph, node: WeightNode) -> str:
        """The float32 tensor holding ``node``'s integer weights."""
        ...


def build(
    model: IntModel,
    input_shape: tuple[int, ...],
    style: QuantStyle,
    name: str,
    path: str | Path | None = None,
) -> onnx.ModelProto:
    """Lay ``model`` out as an ONNX graph whose quantize steps and weights ``style`` writes
    (saved to ``path`` when given).

    Raises:
        UnsupportedLayerError: a layer whose float accumulation or requantization would not be
            exact (accumulators or pooling window sums over 2^24, ``|acc|·M + 2^(s−1)`` or a
            residual add's ``|a·M_a| + |b·M_b| + 2^(s−1)`` over 2^53), or one that can overflow
            its accumulator (the graph has no wrap-around).
    """
    shapes = _shapes(model, input_shape)
    g = Graph(peaks=_code_peaks(model))
    spec = model.input
    scaled = g.op(
        "Div",
        [INPUT_NAME, g.const("input_scale", np.float32(spec.scale))],
        "input_scaled",
        (input_shape, np.float32),
    )
    half = g.op(
        "Add",
        [scaled, g.const("half_f32", np.float32(0.5))],
        "input_shifted",
        (input_shape, np.float32),
    )
    style.quantize(g, half, input_shape, spec.bits, spec.signed, spec.name)
    for node in model.nodes:
        _EMITTERS[type(node)](g, node, shapes, style)
    last = model.output
    acc = g.op("Cast", [last], f"{last}/double", (shapes[last], np.float64), to=TensorProto.DOUBLE)
    scale = model.output_scale.reshape(1, -1, *([1] * (len(shapes[last]) - 2)))
    g.op(
        "Mul",
        [acc, g.const("output_scale", scale.astype(np.float64))],
        OUTPUT_NAME,
        (shapes[last], np.float64),
    )
    doc = (
        f"hwquant IntModel in the integer domain: input scale {spec.scale!r}, output = "
        "last accumulator x output_scale. See docs/export/custom_ops.md."
    )
    proto = g.model(name, input_shape, shapes[last], doc)
    if path is not None:
        write_atomic(path, proto.SerializeToString())
    return proto


def _shapes(model: IntModel, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """Shape of every node's output, from a traced engine run on zeros."""
    x = torch.zeros(input_shape, dtype=torch.int64)
    values = run(model, x, trace=True, stats=False).values
    return {name: tuple(v.shape) for name, v in values.items()}


def _code_peaks(model: IntModel) -> dict[str, int]:
    """Largest |code| of the input and of every node's output (pooling/reshape pass it on)."""
    peaks = {model.input.name: max_magnitude(model.input.bits, model.input.signed)}
    for node in model.nodes:
        if isinstance(node, (MaxPoolNode, ReshapeNode)):
            peaks[node.name] = peaks[node.inputs[0]]
        else:
            peaks[node.name] = max(abs(node.lo), abs(node.hi))
    return peaks


def _requant_exact(peak: int, shift: int) -> bool:
    """Whether ``v·2^-s + 1/2`` is exact in double for every integer ``|v| <= peak``.

    In units of ``2^-u`` (``u = max(s, 1)``, so 1/2 is a whole unit) the sum is the integer
    ``v·2^(u−s) + 2^(u−1)``; double holds it exactly while ``peak·2^(u−s) + 2^(u−1) < 2^53``
    (for ``s >= 1`` that is ``|acc·M| + 2^(s−1) < 2^53``).
    """
    unit = max(shift, 1)
    return peak * 2 ** (unit - shift) + 2 ** (unit - 1) < FLOAT64_EXACT


def _refuse(name: str, problems: list[str], fix: str) -> None:
    """Raise the export's error for layer ``name`` when ``problems`` is not empty."""
    if problems:
        raise UnsupportedLayerError(
            f"layer '{name}' cannot be exported exactly: {'; '.join(problems)}. Fix: {fix}."
        )


def _weight(
    g: Graph, node: WeightNode, shapes: dict[str, tuple[int, ...]], style: QuantStyle
) -> None:
    bound = _check_exact(node)
    shape = shapes[node.name]
    out = node.name if node.mult is None else f"{node.name}/acc"
    w = style.weight(g, node)
    if bound < FLOAT32_EXACT:
        inputs = [node.inputs[0], w]
        if node.bias is not None:
            inputs.append(g.const(f"{node.name}/bias", node.bias.astype(np.float32)))
        _product(g, node, inputs, out, (shape, np.float32))
    else:
        _split_product(g, node, w, out, shape)
    if node.mult is not None:
        ratio = node.mult.astype(np.float64) * np.exp2(-node.shift.astype(np.float64))
        _requantize(g, out, node.name, shape, ratio, node.lo, node.hi, style)


def _product(g: Graph, node: WeightNode, inputs: list[str], out: str, like: tuple) -> str:
    """``Conv`` or ``Gemm`` of ``inputs`` (x, W[, b]) with ``node``'s geometry."""
    if isinstance(node, ConvNode):
        return g.op(
            "Conv",
            inputs,
            out,
            like,
            strides=list(node.stride),
            pads=[*node.padding, *node.padding],
            dilations=list(node.dilation),
            group=node.groups,
            kernel_shape=list(node.weight.shape[2:]),
        )
    return g.op("Gemm", inputs, out, like, transB=1)


def _split_product(g: Graph, node: WeightNode, w: str, out: str, shape: tuple[int, ...]) -> None:
    """``W ⋆ x + b`` exactly in double when float32 could round a partial sum.

    ``Gemm`` runs in double. onnxruntime has no double ``Conv``, so the weights are split as
    ``W = 2^h·W_hi + W_lo`` (``W_hi = floor(W / 2^h)``, ``0 <= W_lo < 2^h``); each half's
    convolution stays below 2^24 (checked by :func:`_check_exact`) and the halves are combined in
    double: ``acc = 2^h·(W_hi ⋆ x) + (W_lo ⋆ x) + b``.
    """
    name, x = node.name, node.inputs[0]
    double = (shape, np.float64)
    wshape = (tuple(node.weight.shape), np.float64)
    if isinstance(node, LinearNode):
        x64 = g.op("Cast", [x], f"{name}/x64", (g.like(x)[0], np.float64), to=TensorProto.DOUBLE)
        w64 = g.op("Cast", [w], f"{name}/w64", wshape, to=TensorProto.DOUBLE)
        inputs = [x64, w64]
        if node.bias is not None:
            inputs.append(g.const(f"{name}/bias64", node.bias.astype(np.float64)))
        _product(g, node, inputs, out, double)
        return
    h = _split_bits(node)
    unit = g.const(f"{name}/split_unit", np.float32(2.0**h))
    w32 = (wshape[0], np.float32)
    high = g.op("Floor", [g.op("Div", [w, unit], f"{name}/w_div", w32)], f"{name}/w_hi", w32)
    scaled_high = g.op("Mul", [high, unit], f"{name}/w_hi_scaled", w32)
    low = g.op("Sub", [w, scaled_high], f"{name}/w_lo", w32)
    parts = []
    for part, weights in (("hi", high), ("lo", low)):
        acc = _product(g, node, [x, weights], f"{name}/acc_{part}", (shape, np.float32))
        parts.append(g.op("Cast", [acc], f"{name}/acc_{part}64", double, to=TensorProto.DOUBLE))
    unit64 = g.const(f"{name}/split_unit64", np.float64(2.0**h))
    scaled = g.op("Mul", [parts[0], unit64], f"{name}/acc_hi_scaled", double)
    if node.bias is None:
        g.op("Add", [scaled, parts[1]], out, double)
        return
    total = g.op("Add", [scaled, parts[1]], f"{name}/acc_no_bias", double)
    bias = g.const(f"{name}/bias64", node.bias.astype(np.float64).reshape(1, -1, 1, 1))
    g.op("Add", [total, bias], out, double)


def _split_bits(node: WeightNode) -> int:
    """h of the weight split: half the bits of the largest weight magnitude."""
    return (int(np.abs(node.weight).max()).bit_length() + 1) // 2


def _check_exact(node: WeightNode) -> int:
    """The accumulator bound of ``node``, after checking that the graph computes it exactly."""
    bias = None if node.bias is None else torch.from_numpy(node.bias)
    x_max = max_magnitude(node.in_bits, node.in_signed)
    bound = worst_case_bound(torch.from_numpy(node.weight), x_max, bias)
    problems = []
    if isinstance(node, ConvNode) and bound >= FLOAT32_EXACT:
        h = _split_bits(node)
        high = worst_case_bound(torch.from_numpy(np.floor_divide(node.weight, 2**h)), x_max, None)
        if max(high, node.fan_in() * x_max * (2**h - 1)) >= FLOAT32_EXACT:
            problems.append(
                f"its accumulator can reach {bound}, beyond float32's exact 2^24 even with the "
                "weights split in two"
            )
    if bound >= FLOAT64_EXACT:
        problems.append(f"its accumulator can reach {bound}, beyond double's exact 2^53")
    if node.worst_case_bits() > node.acc_bits:
        problems.append(f"it can overflow its {node.acc_bits}-bit accumulator")
    if node.mult is not None and not all(
        _requant_exact(bound * int(m), int(s))
        for m, s in zip(*np.broadcast_arrays(node.mult, node.shift), strict=True)
    ):
        problems.append("|acc|·M + 2^(s−1) can reach 2^53")
    _refuse(
        node.name,
        problems,
        "lower the layer's weight/activation bits or requant_bits, or widen acc_bits to "
        f"{node.worst_case_bits()} (IntModel.set_accumulator)",
    )
    return bound


def _requantize(
    g: Graph,
    acc: str,
    out: str,
    shape: tuple[int, ...],
    ratio: np.ndarray,
    lo: int,
    hi: int,
    style: QuantStyle,
) -> str:
    """``clamp(floor(acc·ratio + 1/2), lo, hi)`` in double; ``ratio`` per channel or scalar."""
    double = g.op("Cast", [acc], f"{out}/acc64", (shape, np.float64), to=TensorProto.DOUBLE)
    ratio = np.asarray(ratio, np.float64).reshape(1, -1, *([1] * (len(shape) - 2)))
    scaled = g.op(
        "Mul", [double, g.const(f"{out}/ratio", ratio)], f"{out}/scaled", (shape, np.float64)
    )
    shifted = g.op(
        "Add",
        [scaled, g.const(f"{out}/half", np.float64(0.5))],
        f"{out}/shifted",
        (shape, np.float64),
    )
    return style.quantize(g, shifted, shape, *_bits_of(lo, hi), out)


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


def _add(g: Graph, node: AddNode, shapes: dict[str, tuple[int, ...]], style: QuantStyle) -> None:
    shape = shapes[node.name]
    peak = sum(g.peaks[name] * abs(m) for name, m in zip(node.inputs, node.mults, strict=True))
    if not _requant_exact(peak, node.shift):
        _refuse(
            node.name,
            [f"|a·M_a| + |b·M_b| + 2^(s−1) can reach 2^53 (M = {node.mults}, s = {node.shift})"],
            "lower the add's requant_bits or its inputs' activation bits",
        )
    terms = []
    for i, (name, mult) in enumerate(zip(node.inputs, node.mults, strict=True)):
        double = g.op(
            "Cast", [name], f"{node.name}/in{i}", (shapes[name], np.float64), to=TensorProto.DOUBLE
        )
        ratio = g.const(f"{node.name}/ratio{i}", np.float64(mult * 2.0**-node.shift))
        terms.append(g.op("Mul", [double, ratio], f"{node.name}/term{i}", (shape, np.float64)))
    total = g.op("Add", terms, f"{node.name}/sum", (shape, np.float64))
    shifted = g.op(
        "Add",
        [total, g.const(f"{node.name}/half", np.float64(0.5))],
        f"{node.name}/shifted",
        (shape, np.float64),
    )
    style.quantize(g, shifted, shape, *_bits_of(node.lo, node.hi), node.name)


def _avgpool(
    g: Graph, node: AvgPoolNode, shapes: dict[str, tuple[int, ...]], style: QuantStyle
) -> None:
    shape = shapes[node.name]
    x = node.inputs[0]
    window_peak = node.window * g.peaks[x]
    problems = []
    if window_peak >= FLOAT32_EXACT:
        problems.append(f"its window sums can reach {window_peak}, beyond float32's exact 2^24")
    if not _requant_exact(window_peak * abs(node.mult), node.shift):
        problems.append("|sum·M| + 2^(s−1) can reach 2^53")
    _refuse(node.name, problems, "use a smaller pooling window or lower the input's bits")
    if node.kernel_size is None:
        total = g.op(
            "ReduceSum",
            [x, g.const(f"{node.name}/axes", np.array([2, 3], np.int64))],
            f"{node.name}/sum",
            (shape, np.float32),
            keepdims=1,
        )
    else:
        k, channels = node.kernel_size, shapes[x][1]
        ones = g.const(f"{node.name}/ones", np.ones((channels, 1, k, k), np.float32))
        total = g.op(
            "Conv",
            [x, ones],
            f"{node.name}/sum",
            (shape, np.float32),
            kernel_shape=[k, k],
            strides=[k, k],
            group=channels,
        )
    _requantize(
        g,
        total,
        node.name,
        shape,
        np.float64(node.mult * 2.0**-node.shift),
        node.lo,
        node.hi,
        style,
    )


def _maxpool(
    g: Graph, node: MaxPoolNode, shapes: dict[str, tuple[int, ...]], style: QuantStyle
) -> None:
    g.op(
        "MaxPool",
        node.inputs,
        node.name,
        (shapes[node.name], np.float32),
        kernel_shape=list(node.kernel_size),
        strides=list(node.stride),
        pads=[*node.padding, *node.padding],
        dilations=list(node.dilation),
        ceil_mode=int(node.ceil_mode),
    )


def _reshape(
    g: Graph, node: ReshapeNode, shapes: dict[str, tuple[int, ...]], style: QuantStyle
) -> None:
    target = g.const(f"{node.name}/shape", np.array([0, *node.shape], np.int64))
    g.op("Reshape", [node.inputs[0], target], node.name, (shapes[node.name], np.float32))


_EMITTERS = {
    ConvNode: _weight,
    LinearNode: _weight,
    AddNode: _add,
    AvgPoolNode: _avgpool,
    MaxPoolNode: _maxpool,
    ReshapeNode: _reshape,
}
