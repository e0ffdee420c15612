"""QONNX export: ``Quant`` nodes (domain ``qonnx.custom_op.general``) in the integer domain.

Every quantize step of :mod:`hwquant.export.graph` is a QONNX ``Quant`` node with scale 1, zero
point 0, the code's bit-width, ``signed`` and ``narrow=0``, whose output is the integer code:

* requantization: ``Add(2^-(k+1))`` then ``Quant(rounding_mode="ROUND")`` on a value ``u`` of the
  ``2^-k`` grid — never a tie, so every rounding rule (qonnx's half-to-even, FINN's thresholds,
  hls4ml's fixed-point rounding) gives ``floor(u + 1/2)``, hwquant's round-half-up;
* input quantizer: ``Quant(rounding_mode="FLOOR")`` on ``fl(x/s_in) + 1/2``, which holds any
  float; consumers that round their own way take integer codes instead (``quantize_input=False``).

Weights are integer initializers behind a ``Quant`` that states their bit-width: the decoded
``W_int`` for every scheme, or, with ``custom_ops``, hwquant's decoder ops for MSQ and codebook
layers (:mod:`custom_ops`), which only qonnx with hwquant installed runs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from hwquant.core.errors import UnsupportedLayerError
from hwquant.core.intmath import bits_needed, qrange, signed_bits
from hwquant.export.custom_ops import emit_encoded_weight
from hwquant.export.graph import Graph, Shape, build
from hwquant.ir.intmodel import IntModel, WeightEncoding

QONNX_DOMAIN = "qonnx.custom_op.general"


class QONNXStyle:
    """Quantize steps as QONNX ``Quant`` nodes; encoded weights decoded, or as custom ops.

    ``exact_arithmetic``: the graph is for a fixed-point consumer given exact types (hls4ml,
    :mod:`hwquant.export.hls4ml`), not for float32 execution (see
    :attr:`~hwquant.export.graph.QuantStyle.exact_arithmetic`).
    """

    def __init__(self, custom_ops: bool, exact_arithmetic: bool = False) -> None:
        self.custom_ops = custom_ops
        self.exact_arithmetic = exact_arithmetic

    def quant(
        self, g: Graph, value: str, shape: Shape, bits: int, signed: bool, out: str, rounding: str
    ) -> str:
        """``Quant(value, scale=1, zeropt=0, bitwidth=bits)``: ``clamp(rounding(value))``.

        qonnx reads a 1-bit signed ``Quant`` as bipolar (±1), but hwquant's 1-bit signed range
        is ``qrange(1, True) = [−1, 0]``: that step is a 2-bit ``Quant`` (range [−2, 1]) followed
        by ``Clip`` to [−1, 0], which is ``clamp(rounding(value), −1, 0)`` exactly.
        """
        one_bit_signed = bits == 1 and signed
        quant = f"{out}/quant" if one_bit_signed else out
        inputs = [
            value,
            g.f32(f"{quant}/q_scale", 1.0),
            g.f32(f"{quant}/q_zeropt", 0.0),
            g.f32(f"{quant}/q_bits", 2 if one_bit_signed else bits),
        ]
        attrs = {"signed": int(signed), "narrow": 0, "rounding_mode": rounding}
        codes = g.op("Quant", inputs, quant, shape, domain=QONNX_DOMAIN, **attrs)
        if not one_bit_signed:
            return codes
        lo, hi = qrange(1, True)
        bounds = [g.f32(f"{out}/lo", lo), g.f32(f"{out}/hi", hi)]
        return g.op("Clip", [codes, *bounds], out, shape)

    def round_step(
        self, g: Graph, u: str, offset: np.ndarray | None, bits: int, signed: bool, out: str
    ) -> str:
        """``Add(offset)`` (if any) then ``Quant(ROUND)``."""
        shifted = u
        if offset is not None:
            shifted = g.op("Add", [u, g.f32(f"{out}/offset", offset)], f"{out}/shifted", g.shape(u))
        return self.quant(g, shifted, g.shape(u), bits, signed, out, "ROUND")

    def floor_step(self, g: Graph, v: str, bits: int, signed: bool, out: str) -> str:
        """``Quant(FLOOR)``: ``clamp(floor(v))`` for any float ``v``."""
        return self.quant(g, v, g.shape(v), bits, signed, out, "FLOOR")

    def saturate(self, g: Graph, v: str, shape: Shape, bits: int, signed: bool, out: str) -> str:
        """``Quant(ROUND)``: on integers, their clamp (and the declaration of their type)."""
        return self.quant(g, v, shape, bits, signed, out, "ROUND")

    def floor(self, g: Graph, v: str, peak: int, out: str) -> str:
        """``Quant(FLOOR)`` wide enough for ``peak``: ``floor(v)`` (hls4ml: a truncating
        fixed-point activation)."""
        return self.quant(g, v, g.shape(v), bits_needed(peak), True, out, "FLOOR")

    clips = False
    """QONNX consumers (hls4ml) read no ``Clip``: the plan uses more limbs instead."""

    def clip(self, g: Graph, v: str, low: int, high: int, out: str) -> str:
        """Never called (:attr:`clips` is False)."""
        raise NotImplementedError

    def decodes(self, encoding: WeightEncoding) -> bool:
        """With ``custom_ops``: every encoding has a decoder op."""
        return self.custom_ops

    def weight(
        self, g: Graph, name: str, values: np.ndarray, encoding: WeightEncoding | None
    ) -> str:
        """Integer weights through a ``Quant`` of their bit-width, or a custom decoder."""
        if encoding is not None and self.custom_ops:
            return emit_encoded_weight(g, name, encoding, values.shape)
        raw = g.f32(f"{name}_int", values)
        return self.quant(g, raw, values.shape, signed_bits(values), True, name, "ROUND")


def export_qonnx(
    model: IntModel,
    input_shape: tuple[int, ...],
    path: str | Path | None = None,
    *,
    custom_ops: bool = False,
    quantize_input: bool = True,
) -> onnx.ModelProto:
    """The QONNX graph of ``model`` for inputs of ``input_shape`` (written to ``path`` if given;
    the batch size is symbolic). MSQ and codebook layers are written with their decoded integer
    weights, or with hwquant's decoder ops when ``custom_ops``. ``quantize_input=False``: the
    graph takes the input's integer codes.

    Raises:
        UnsupportedLayerError: a layer whose float32 form would not be exact (see
            :func:`hwquant.export.graph.build`).
    """
    style = QONNXStyle(custom_ops)
    return build(
        model, tuple(input_shape), style, "hwquant_qonnx", path, quantize_input=quantize_input
    )


def run_qonnx(proto: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """Execute a QONNX graph with qonnx's executor (needs the ``qonnx`` package); a symbolic
    batch size is first set to ``len(x)`` (qonnx's ``ChangeBatchSize``, as its users do)."""
    try:
        from qonnx.core.modelwrapper import ModelWrapper
        from qonnx.core.onnx_exec import execute_onnx
        from qonnx.transformation.change_batchsize import ChangeBatchSize
        from qonnx.transformation.infer_shapes import InferShapes
    except ImportError as exc:
        raise UnsupportedLayerError(
            "executing QONNX needs the qonnx package. Fix: pip install qonnx (the `test` extra)."
        ) from exc
    name_in, name_out = proto.graph.input[0].name, proto.graph.output[0].name
    wrapper = ModelWrapper(proto)
    if proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param:
        wrapper = wrapper.transform(ChangeBatchSize(len(x))).transform(InferShapes())
    out = execute_onnx(wrapper, {name_in: np.asarray(x, np.float32)})
    return out[name_out]
