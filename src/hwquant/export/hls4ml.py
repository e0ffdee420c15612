"""hls4ml export: the QONNX graph in the form hls4ml 1.3 reads, and an hls4ml configuration whose
per-layer fixed-point types make its C++ compute the integer engine's outputs exactly.

hls4ml computes every layer in ``ap_fixed<W, I>`` types taken from its configuration; its
default, ``fixed<16,6>``, silently truncates our accumulators and requantization scales. The
graph is the QONNX export (:mod:`hwquant.export.qonnx`, integer-code input) for a consumer that
computes exactly at any width (``exact_arithmetic``): every weight layer is one product,
however far its sums pass float32's exact 2^24, and a requantization that no float32 form
computes takes the exact scales ``M·2^-s`` (:func:`hwquant.export.requant.exact_step`) instead
of float32 limbs (hls4ml 1.3 crashes on limbs). The file is therefore exact with the
configuration's types, not in float32 (metadata ``hwquant.arithmetic``). It is made of integer
codes, integer weights, float32 scales ``c`` and offsets ``2^-(k+1)`` — all dyadic numbers — so
every tensor ``t`` has an exact fixed-point form: an interval ``[lo, hi]`` that holds all its
values and the number ``F`` of fractional bits they need. :func:`value_formats` derives both by
interval arithmetic from the IntModel's bit-widths (the input code range, each ``Quant``'s
bits) and the constants:

* ``Quant(bits, signed)``: ``qrange(bits, signed)``, ``F = 0``;
* ``Conv``/``MatMul`` with integer weights ``W`` (per output channel ``P = Σ max(w, 0)``,
  ``Q = Σ max(−w, 0)``) on ``x ∈ [lo, hi]``: ``[min(P·lo − Q·hi), max(P·hi − Q·lo)]``, plus the
  bias's range, ``F = F_x + F_W``;
* ``Mul`` by constants ``c``: the extremes of ``lo·c`` and ``hi·c``, ``F = F_x + F_c``;
* ``Add``: the sum of the ranges, ``F = max(F_a, F_b)``; max pool and reshapes pass it on
  (hls4ml's pooling also buffers its window in an ``accum`` type: set to the same format).

A type ``fixed<I + F, I>`` with the interval's integer bits ``I`` (sign included) holds every
value exactly, so no product, sum or bias is ever rounded, and the only rounding is the one the
graph asks for: a ``Quant`` becomes an ``ap_fixed<b, b, AP_RND_CONV, AP_SAT>`` activation,
which on the tie-free value ``u + 2^-(k+1)`` gives ``floor(u + 1/2)`` exactly like the engine.
Every layer's types are set explicitly, which also keeps hls4ml from fusing a scale into a
convolution's weights (it fuses only into layers of unspecified type).

The file written is already cleaned and channels-last (qonnx's ``ConvertToChannelsLastAndClean``
with a channels-last input), with C-identifier node names (hls4ml's layer names) and per-channel
constants shaped ``[1, 1, C]`` (hls4ml broadcasts constants to the activation shape *without*
the batch dimension; qonnx's pass leaves them ``[1, 1, 1, C]``, which hls4ml 1.3 rejects with
"input operand has more dimensions than allowed by the axis remapping").
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from hwquant.core.atomic import write_atomic
from hwquant.core.errors import ConfigError, UnsupportedLayerError
from hwquant.core.intmath import code_format, dot_interval, qrange
from hwquant.export.graph import build
from hwquant.export.qonnx import QONNXStyle
from hwquant.ir.intmodel import IntModel

IO_TYPES = ("io_parallel", "io_stream")
DEFAULT_PRECISION = "fixed<16,6>"
"""hls4ml's own default; every layer of an exported model has its types set, so a layer that
still shows this type after conversion is one the configuration missed (the round trip checks)."""
HLS4ML_OPS = frozenset(
    {"Quant", "Conv", "MatMul", "Mul", "Add", "MaxPool", "Reshape", "Flatten", "Transpose"}
)
"""The operators of our graphs that hls4ml 1.3's ONNX front end reads."""
MODEL_FILE, CONFIG_FILE = "model.onnx", "hls4ml_config.yml"
ARITHMETIC = (
    f"exact in fixed point with the types of {CONFIG_FILE}; products may pass float32's exact "
    "2^24, so float32 execution (onnxruntime, qonnx) is not exact: use --format qonnx for that"
)
"""The ``hwquant.arithmetic`` metadata of the written model (module docstring)."""


@dataclass(frozen=True)
class Format:
    """Every value of a tensor lies in ``[lo, hi]`` on the grid ``2^-frac``."""

    lo: Fraction
    hi: Fraction
    frac: int

    @classmethod
    def of(cls, values: np.ndarray) -> Format:
        """The exact format of constant ``values`` (dyadic: float32 numbers are)."""
        flat = np.asarray(values, np.float64).reshape(-1)
        if flat.size == 0:
            return cls(Fraction(0), Fraction(0), 0)
        frac = 0
        if not np.array_equal(flat, np.round(flat)):
            frac = max(Fraction(float(v)).denominator.bit_length() - 1 for v in np.unique(flat))
        return cls(Fraction(float(flat.min())), Fraction(float(flat.max())), frac)

    def union(self, other: Format) -> Format:
        """A format holding the values of both."""
        return Format(min(self.lo, other.lo), max(self.hi, other.hi), max(self.frac, other.frac))

    def precision(self) -> str:
        """The hls4ml type ``[u]fixed<W, I>`` that holds every value exactly.

        Integer bits ``I`` (sign included) are the fewest with ``−2^(I−1) <= lo`` and
        ``hi <= 2^(I−1) − 2^-F`` (signed) or ``hi <= 2^I − 2^-F`` (unsigned), at least 1;
        ``W = I + F``.
        """
        # on the grid 2^-F, [u]fixed<W, I> is a W-bit integer register holding lo·2^F..hi·2^F
        scale = 2**self.frac
        bits, signed = code_format(math.floor(self.lo * scale), math.ceil(self.hi * scale))
        integer = max(bits - self.frac, 1)
        prefix = "fixed" if signed else "ufixed"
        return f"{prefix}<{integer + self.frac},{integer}>"


def _product_format(x: Format, weight: np.ndarray, bias: np.ndarray | None) -> Format:
    """Range of ``W ⋆ x + b`` over output channels (axis 0 of ``weight``)."""
    flat = np.asarray(weight, np.float64).reshape(weight.shape[0], -1)
    pos, neg = np.maximum(flat, 0).sum(1), np.maximum(-flat, 0).sum(1)
    rows = [
        dot_interval(Fraction(float(p)), Fraction(float(q)), x.lo, x.hi)
        for p, q in zip(pos, neg, strict=True)
    ]
    lo, hi = min(low for low, _ in rows), max(high for _, high in rows)
    frac = x.frac + Format.of(weight).frac
    if bias is not None:
        b = Format.of(bias)
        lo, hi, frac = lo + b.lo, hi + b.hi, max(frac, b.frac)
    return Format(lo, hi, frac)


def _scaled_format(x: Format, c: Format) -> Format:
    """Range of ``x · c``: the extremes of the four corner products."""
    corners = [a * b for a in (x.lo, x.hi) for b in (c.lo, c.hi)]
    return Format(min(corners), max(corners), x.frac + c.frac)


def hls4ml_graph(model: IntModel, input_shape: tuple[int, ...]) -> Any:
    """The qonnx ``ModelWrapper`` of ``model`` in the form hls4ml reads (module docstring).

    Raises:
        UnsupportedLayerError: a node hls4ml cannot read (named, with the layer), or any
            reason :func:`~hwquant.export.graph.build` refuses the model (in exact
            arithmetic: an accumulator that can overflow its width, a multiplier of more than
            24 bits).
    """
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.change_batchsize import ChangeBatchSize
    from qonnx.transformation.channels_last import ConvertToChannelsLastAndClean
    from qonnx.transformation.general import GiveReadableTensorNames
    from qonnx.transformation.infer_shapes import InferShapes

    style = QONNXStyle(custom_ops=False, exact_arithmetic=True)
    shape = (1, *tuple(input_shape)[1:])
    proto = build(model, shape, style, "hwquant_hls4ml", quantize_input=False)
    for node in proto.graph.node:
        if node.op_type not in HLS4ML_OPS:
            raise UnsupportedLayerError(
                f"layer '{node.name.split('/')[0]}' cannot be exported to hls4ml: its node "
                f"'{node.name}' is a {node.op_type}, which hls4ml 1.3 does not read (it reads "
                f"{', '.join(sorted(HLS4ML_OPS))}). Fix: export this model with --format qonnx "
                "or qdq instead, or lower it with a recipe whose layers need no such node."
            )
    wrapper = ModelWrapper(proto).transform(ChangeBatchSize(1)).transform(InferShapes())
    wrapper = wrapper.transform(ConvertToChannelsLastAndClean(make_input_channels_last=True))
    used: set[str] = set()
    for i, node in enumerate(wrapper.graph.node):
        base = re.sub(r"\W", "_", node.name) or f"{node.op_type.lower()}_{i}"
        name = base if base[0].isalpha() else f"n_{base}"
        while name in used:
            name = f"{name}_{i}"
        used.add(name)
        node.name = name
    for node in wrapper.graph.node:
        if node.op_type in ("Mul", "Add"):
            for inp in node.input:
                value = wrapper.get_initializer(inp)
                if value is not None and value.ndim == 4 and value.shape[0] == 1:
                    wrapper.set_initializer(inp, value.reshape(value.shape[1:]))
    wrapper = wrapper.transform(GiveReadableTensorNames()).transform(InferShapes())
    for init in wrapper.graph.initializer:  # hls4ml looks every input's shape up in value_info
        wrapper.set_tensor_shape(init.name, list(init.dims), init.data_type)
    wrapper.model.metadata_props.add(key="hwquant.arithmetic", value=ARITHMETIC)
    return wrapper


def value_formats(wrapper: Any, input_bits: int, input_signed: bool) -> dict[str, Format]:
    """The exact :class:`Format` of every activation tensor of an :func:`hls4ml_graph`."""
    lo, hi = qrange(input_bits, input_signed)
    formats = {wrapper.graph.input[0].name: Format(Fraction(lo), Fraction(hi), 0)}

    def const(name: str) -> np.ndarray | None:
        value = wrapper.get_initializer(name)
        if value is None and wrapper.find_producer(name) is not None:
            producer = wrapper.find_producer(name)
            if (
                producer.op_type == "Quant"
                and wrapper.get_initializer(producer.input[0]) is not None
            ):
                return wrapper.get_initializer(producer.input[0])
        return value

    for node in wrapper.graph.node:
        out = node.output[0]
        ins = [formats.get(name) for name in node.input]
        if node.op_type == "Quant":
            if const(node.input[0]) is not None:
                continue  # a weight
            bits = int(wrapper.get_initializer(node.input[3]))
            signed = bool(_attribute(node, "signed"))
            lo, hi = qrange(bits, signed)
            formats[out] = Format(Fraction(lo), Fraction(hi), 0)
        elif node.op_type in ("Conv", "MatMul"):
            weight = const(node.input[1])
            if node.op_type == "MatMul":
                weight = weight.T
            bias = const(node.input[2]) if len(node.input) > 2 else None
            formats[out] = _product_format(ins[0], weight, bias)
        elif node.op_type in ("Mul", "Add"):
            a, b = (formats.get(n) or Format.of(const(n)) for n in node.input)
            if node.op_type == "Mul":
                formats[out] = _scaled_format(a, b)
            else:
                formats[out] = Format(a.lo + b.lo, a.hi + b.hi, max(a.frac, b.frac))
        else:  # MaxPool, Reshape, Flatten, Transpose: values pass through
            formats[out] = ins[0]
    return formats


def _attribute(node: onnx.NodeProto, name: str) -> Any:
    return next(onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == name)


def layer_precisions(wrapper: Any, input_bits: int, input_signed: bool) -> dict[str, dict]:
    """hls4ml's ``LayerName`` configuration: exact types for every layer of the graph.

    Keys per layer kind: ``Conv``/``MatMul`` ``accum``, ``result``, ``bias`` (and ``weight``
    for a plain constant, e.g. a pool's all-ones kernel); a constant ``Mul``/``Add`` (hls4ml's
    ApplyAlpha) ``scale``, ``bias``, ``result``; ``MaxPool`` ``accum`` (hls4ml holds the window
    in it; at its default type 8-bit codes wrap), ``result``; anything else ``result``. A
    ``MatMul`` followed by the ``Add`` of its bias is one hls4ml Dense layer: its types are
    those of the sum.
    """
    formats = value_formats(wrapper, input_bits, input_signed)
    one, zero = Format.of(np.ones(1)), Format.of(np.zeros(1))
    name_in = wrapper.graph.input[0].name  # qonnx's readable name, hls4ml's input layer
    layers: dict[str, dict] = {name_in: {"Precision": {"result": formats[name_in].precision()}}}
    for node in wrapper.graph.node:
        if node.op_type == "Quant":
            continue  # hls4ml types a Quant's output (and a quantized weight) itself
        out = formats[node.output[0]]
        precision = {"result": out.precision()}
        if node.op_type in ("Conv", "MatMul"):
            total = out
            consumers = wrapper.find_consumers(node.output[0])
            if node.op_type == "MatMul" and len(consumers) == 1 and consumers[0].op_type == "Add":
                bias = wrapper.get_initializer(consumers[0].input[1])
                if bias is not None:
                    total = formats[consumers[0].output[0]]
                    precision["bias"] = Format.of(bias).union(zero).precision()
            precision.update(accum=total.precision(), result=total.precision())
            if len(node.input) > 2:
                precision["bias"] = Format.of(wrapper.get_initializer(node.input[2])).precision()
            if wrapper.get_initializer(node.input[1]) is not None:
                precision["weight"] = Format.of(wrapper.get_initializer(node.input[1])).precision()
        elif node.op_type in ("Mul", "Add"):
            constants = [wrapper.get_initializer(n) for n in node.input]
            value = next((c for c in constants if c is not None), None)
            if value is not None:
                c = Format.of(value)
                scale, bias = (c, zero) if node.op_type == "Mul" else (one, c)
                precision["scale"] = scale.union(one).precision()
                precision["bias"] = bias.union(zero).precision()
        elif node.op_type == "MaxPool":  # hls4ml buffers each window in accum_t
            precision["accum"] = out.precision()
        layers[node.name] = {"Precision": precision}
    return layers


def hls4ml_config(
    layers: dict[str, dict], io_type: str, output_dir: str, project: str, backend: str
) -> dict[str, Any]:
    """hls4ml's conversion configuration (``hls4ml convert -c``, or
    ``hls4ml.converters.convert_from_config``) for the model file beside it."""
    if io_type not in IO_TYPES:
        raise UnsupportedLayerError(
            f"io_type {io_type!r} is not an hls4ml I/O type. Fix: use one of {', '.join(IO_TYPES)}."
        )
    return {
        "OnnxModel": MODEL_FILE,
        "OutputDir": output_dir,
        "ProjectName": project,
        "Backend": backend,
        "IOType": io_type,
        "HLSConfig": {
            "Model": {"Precision": DEFAULT_PRECISION, "ReuseFactor": 1, "Strategy": "Latency"},
            "LayerName": layers,
        },
    }


@dataclass(frozen=True)
class Hls4mlExport:
    """What :func:`export_hls4ml` wrote."""

    model: Path
    config: Path
    layers: dict[str, dict]


def export_hls4ml(
    model: IntModel,
    input_shape: tuple[int, ...],
    out_dir: str | Path,
    *,
    io_type: str = "io_parallel",
    backend: str = "Vitis",
    project: str = "hwquant",
    overwrite: bool = False,
) -> Hls4mlExport:
    """Write ``out_dir/model.onnx`` and ``out_dir/hls4ml_config.yml`` (module docstring);
    either file already there is replaced only with ``overwrite``.

    hls4ml then runs ``hls4ml convert -c hls4ml_config.yml`` from ``out_dir`` (or
    ``hls4ml.converters.convert_from_config``), its C++ emulation being fed the input's integer
    codes, channels last (``IntModel.quantize_input``), and returning the last layer's
    accumulator (times ``output_scale``, in the ONNX metadata, for real values).

    Raises:
        UnsupportedLayerError: a layer hls4ml cannot compute exactly, named with the reason.
        ConfigError: ``out_dir`` holds either file and ``overwrite`` is off.
    """
    out = Path(out_dir)
    existing = [out / name for name in (MODEL_FILE, CONFIG_FILE) if (out / name).exists()]
    if existing and not overwrite:
        raise ConfigError(
            f"{' and '.join(map(str, existing))} already "
            f"{'exists' if len(existing) == 1 else 'exist'}: the hls4ml export would replace "
            "it. Fix: choose another --out directory, or pass --force (overwrite=True) to "
            "replace it."
        )
    wrapper = hls4ml_graph(model, input_shape)
    layers = layer_precisions(wrapper, model.input.bits, model.input.signed)
    out.mkdir(parents=True, exist_ok=True)
    config = hls4ml_config(layers, io_type, f"hls4ml_{io_type}", project, backend)
    write_atomic(out / MODEL_FILE, wrapper.model.SerializeToString())
    # JSON is YAML 1.2 (and parses with hls4ml's YAML 1.1 loader): no YAML writer needed
    write_atomic(out / CONFIG_FILE, (json.dumps(config, indent=2) + "\n").encode())
    return Hls4mlExport(out / MODEL_FILE, out / CONFIG_FILE, layers)


def run_export_command(model: IntModel, shape: tuple[int, ...], args: Any) -> int:
    """``hwquant export --to hls4ml``: write the two files into ``--out`` (a directory).

    ``--format qdq``, ``--custom-ops``, ``--check`` and ``--input values`` (the design takes
    the integer input codes) have no hls4ml meaning and are refused (the round trip through
    hls4ml itself is ``make interop``)."""
    given = [
        flag
        for flag, on in (
            ("--format qdq", args.format != "qonnx"),
            ("--custom-ops", args.custom_ops),
            ("--check", args.check),
            ("--input values", args.input == "values"),
        )
        if on
    ]
    if given:
        raise ConfigError(
            f"{', '.join(given)} cannot be combined with --to hls4ml. Fix: drop it (hls4ml reads "
            "QONNX with decoded weights; `make interop` runs the hls4ml round trip)."
        )
    io_type = args.io_type or "io_parallel"
    written = export_hls4ml(model, shape, args.out, io_type=io_type, overwrite=args.force)
    figures = {
        "model": str(written.model),
        "config": str(written.config),
        "io_type": io_type,
        "layers": len(written.layers),
        "next": f"cd {args.out} && hls4ml convert -c {CONFIG_FILE}",
    }
    print(json.dumps(figures) if args.json else "\n".join(f"{k}: {v}" for k, v in figures.items()))
    return 0
