"""A fast exact backend: the IntModel's QDQ graph on onnxruntime, integer codes in and out.

``IntModel.run(x_int, backend="onnxruntime")`` exports the model once as the standard-ONNX graph
of :mod:`hwquant.export.onnx_qdq` (integer-code input, float32 only; every step proved exact),
moves every eligible convolution onto onnxruntime's integer ``QLinearConv`` kernel
(:func:`integer_kernels`: uint8/int8 codes, int8 weights, exact int32 accumulators, the proved
one-step requantization) and runs it in an onnxruntime session with every graph optimisation
on. The integer-kernel step assumes what onnxruntime's CPU ``QLinearConv`` does: convert the
int32 accumulator to float32, multiply by the per-channel scale, round to nearest (even), then
add the zero point and saturate; the tests hold the backend equal to the engine on every model.
The optimisations of the float graph keep the integers exact: convolutions accumulate integers
below 2^24 in any order (a fused multiply-add of integers is exact too), the clip after each
product is fused into it (and stops a scale from being folded into the weights), and the
requantization constants were proved for float32 evaluation in graph order and with a fused
multiply-add of any product into its sum, one-term forms at every threshold and a residual
add's two-term form on every pair of codes (:mod:`hwquant.export.requant`).

Sessions are cached per model content (a SHA-256 of its arrays and header), so a changed model
gets a new graph, never a stale one.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
import torch

from hwquant.core.errors import ConfigError

if TYPE_CHECKING:
    from hwquant.ir.intmodel import IntModel

_SESSIONS: OrderedDict[tuple[str, tuple[int, ...], int, bool], Any] = OrderedDict()
_CACHE_SIZE = 4


def fingerprint(model: IntModel) -> str:
    """SHA-256 of everything that decides the model's outputs."""
    from hwquant.ir.intmodel import to_json

    digest = hashlib.sha256()
    arrays: dict[str, np.ndarray] = {"output_scale": model.output_scale}
    header = [to_json(node, node.name, arrays) for node in model.nodes]
    digest.update(json.dumps([header, vars(model.input), model.output], default=str).encode())
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{array.dtype.str}:{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def session(
    model: IntModel,
    sample_shape: tuple[int, ...],
    threads: int | None = None,
    integer: bool = True,
) -> Any:
    """The cached onnxruntime session of ``model`` for inputs of ``sample_shape`` (per sample).

    ``threads``: intra-op threads (default: torch's thread count, so the backends compare
    alike).
    """
    try:
        import onnxruntime
    except ImportError as exc:
        raise ConfigError(
            "backend='onnxruntime' needs the onnxruntime package. Fix: pip install onnxruntime "
            "(the `test` extra), or use backend='engine'."
        ) from exc
    from hwquant.export.onnx_qdq import export_qdq

    threads = torch.get_num_threads() if threads is None else threads
    key = (fingerprint(model), tuple(sample_shape), threads, integer)
    if key in _SESSIONS:
        _SESSIONS.move_to_end(key)
        return _SESSIONS[key]
    proto = export_qdq(model, (1, *sample_shape), quantize_input=False)
    if integer:
        proto, _ = integer_kernels(proto, model)
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    _SESSIONS[key] = onnxruntime.InferenceSession(
        proto.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    while len(_SESSIONS) > _CACHE_SIZE:
        _SESSIONS.popitem(last=False)
    return _SESSIONS[key]


def run_codes(model: IntModel, x_int: torch.Tensor, threads: int | None = None) -> torch.Tensor:
    """The engine's output codes (int64) for integer input codes ``x_int``, by onnxruntime."""
    if x_int.is_floating_point():
        raise ConfigError(
            "the onnxruntime backend takes integer codes, got a float tensor. Fix: pass "
            "int_model.quantize_input(x)."
        )
    sess = session(model, tuple(x_int.shape[1:]), threads)
    feed = {sess.get_inputs()[0].name: x_int.to(torch.float32).cpu().numpy()}
    (out,) = sess.run(None, feed)
    return torch.from_numpy(out).to(torch.int64)


def integer_kernels(proto: onnx.ModelProto, model: IntModel) -> tuple[onnx.ModelProto, int]:
    """``proto`` with every eligible convolution on onnxruntime's ``QLinearConv``, and how many.

    Eligible: a convolution whose requantization is the offset-free one-step form
    ``clamp(round(fl(acc·c)))`` (nodes ``L/acc`` → ``L/acc/clipped`` → ``L/term0`` → round →
    ``L``) with int8 weights and input and output codes of at most 8 bits. ``QLinearConv`` with
    input and output scales 1, zero points 0 and weight scales ``c`` computes
    ``saturate(round(fl(acc·c)))`` from the exact int32 accumulator: the same float32 product and
    a half-to-even rounding, which the one-step proof covers (it holds for any rounding rule and
    for the unclipped accumulator, by monotonicity). The codes travel between layers in float32
    as before: ``QuantizeLinear`` in, ``DequantizeLinear`` out, a ``Clip`` for narrower codes.
    """
    from onnx import helper, numpy_helper

    graph = proto.graph
    inits = {t.name: t for t in graph.initializer}
    by_output = {n.output[0]: n for n in graph.node}
    replaced, drop, new_inits = 0, set(), []
    for node in model.weight_nodes():
        name = node.name
        conv, clip, mul = (by_output.get(f"{name}{s}") for s in ("/acc", "/acc/clipped", "/term0"))
        last = by_output.get(name)
        rounding = by_output.get(f"{name}/round") or by_output.get(f"{name}/q")
        eligible = (
            conv is not None
            and conv.op_type == "Conv"
            and clip is not None
            and mul is not None
            and mul.input[0] == clip.output[0]
            and rounding is not None
            and rounding.input[0] == mul.output[0]
            and f"{name}/weight_int8" in inits
            and node.in_bits <= 8
            and node.hi - node.lo <= 255
        )
        if not eligible:
            continue
        # onnxruntime's QLinearConv reads and writes one 8-bit type: the output codes get the
        # input's type, shifted by a zero point where their range needs it
        dtype = np.int8 if node.in_signed else np.uint8
        low, high = np.iinfo(dtype).min, np.iinfo(dtype).max
        y_zero = 0 if low <= node.lo and node.hi <= high else low - node.lo
        channels = node.weight.shape[0]
        scale = numpy_helper.to_array(inits[mul.input[1]]).astype(np.float32)
        consts = {
            f"{name}/qlc/one": np.float32(1.0),
            f"{name}/qlc/x_zero": np.array(0, dtype),
            f"{name}/qlc/y_zero": np.array(y_zero, dtype),
            f"{name}/qlc/w_scale": np.broadcast_to(scale.reshape(-1), (channels,)).copy(),
            f"{name}/qlc/w_zero": np.zeros(channels, np.int8),
            f"{name}/qlc/lo": np.array(node.lo + y_zero, dtype),
            f"{name}/qlc/hi": np.array(node.hi + y_zero, dtype),
        }
        inputs = [f"{name}/x8", *[f"{name}/qlc/{k}" for k in ("one", "x_zero")]]
        inputs += [f"{name}/weight_int8", f"{name}/qlc/w_scale", f"{name}/qlc/w_zero"]
        inputs += [f"{name}/qlc/one", f"{name}/qlc/y_zero"]
        if len(conv.input) > 2:
            bias = numpy_helper.to_array(inits[conv.input[2]])
            consts[f"{name}/qlc/bias"] = bias.astype(np.int32)
            inputs.append(f"{name}/qlc/bias")
        new_inits += [numpy_helper.from_array(v, k) for k, v in consts.items()]
        attrs = {a.name: helper.get_attribute_value(a) for a in conv.attribute}
        one, x_zero, y_zero = (f"{name}/qlc/{k}" for k in ("one", "x_zero", "y_zero"))
        nodes = [
            helper.make_node("QuantizeLinear", [conv.input[0], one, x_zero], [f"{name}/x8"]),
            helper.make_node("QLinearConv", inputs, [f"{name}/y8"], **attrs),
            helper.make_node(
                "Clip", [f"{name}/y8", f"{name}/qlc/lo", f"{name}/qlc/hi"], [f"{name}/y8c"]
            ),
            helper.make_node("DequantizeLinear", [f"{name}/y8c", one, y_zero], [name]),
        ]
        at = list(graph.node).index(conv)
        drop |= {id(n) for n in (conv, clip, mul, rounding, last, by_output[conv.input[1]])}
        for offset, new in enumerate(nodes):
            graph.node.insert(at + offset, new)
        replaced += 1
    kept = [n for n in graph.node if id(n) not in drop]
    del graph.node[:]
    graph.node.extend(kept)
    used = {name for n in kept for name in n.input}
    live = [t for t in [*graph.initializer, *new_inits] if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(live)
    del graph.value_info[:]
    return proto, replaced
