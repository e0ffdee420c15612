"""Standard-ONNX export for onnxruntime: QDQ pairs where codes are 8-bit, ``Floor``/``Clip``
elsewhere.

The layout is :mod:`hwquant.export.graph`'s. A rounding step on a value ``u`` of the ``2^-k``
grid is ``Add(2^-(k+1))`` then, for 8-bit codes, ``QuantizeLinear``/``DequantizeLinear`` with
scale 1 and zero point 0 (tie-free, so its half-to-even rounding is ``floor(u + 1/2)``, and its
saturation to int8/uint8 is exactly the code range), and for other widths ``Add(1/2)``,
``Floor`` and ``Clip`` to the code range. The input step is ``Floor`` and the same saturation.
8-bit weights are int8 initializers behind a ``DequantizeLinear`` (the QDQ weight form); others
are float32 initializers holding integers. MSQ and codebook layers hold their decoded weights.
onnxruntime runs the graph as it is, with no custom op.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from hwquant.core.errors import UnsupportedLayerError
from hwquant.core.intmath import qrange, signed_bits
from hwquant.export.graph import Graph, Shape, build
from hwquant.ir.intmodel import IntModel, WeightEncoding

QDQ_BITS = 8


class QDQStyle:
    """Rounding and floor steps as QDQ pairs (8-bit) or Floor + Clip; weights as initializers."""

    def saturate(
        self, g: Graph, codes: str, shape: Shape, bits: int, signed: bool, out: str
    ) -> str:
        """``clamp(codes, qrange(bits, signed))`` of integer-or-tie-free ``codes``: a Q/DQ pair
        (which also rounds) for 8 bits, ``Clip`` otherwise."""
        if bits == QDQ_BITS:
            dtype = np.int8 if signed else np.uint8
            zero = g.const(f"{out}/zero_point", np.array(0, dtype))
            one = g.f32(f"{out}/unit", 1.0)
            q = g.op("QuantizeLinear", [codes, one, zero], f"{out}/q", shape, dtype)
            return g.op("DequantizeLinear", [q, one, zero], out, shape)
        lo, hi = qrange(bits, signed)
        bounds = [g.f32(f"{out}/lo", lo), g.f32(f"{out}/hi", hi)]
        return g.op("Clip", [codes, *bounds], out, shape)

    def round_step(
        self, g: Graph, u: str, offset: np.ndarray | None, bits: int, signed: bool, out: str
    ) -> str:
        """``Add(offset)`` (if any), then a Q/DQ pair (8 bits: it rounds and saturates) or
        ``Round`` and ``Clip`` (proved for every rounding rule, half-to-even included)."""
        shape = g.shape(u)
        shifted = u
        if offset is not None:
            shifted = g.op("Add", [u, g.f32(f"{out}/offset", offset)], f"{out}/shifted", shape)
        if bits != QDQ_BITS:
            shifted = g.op("Round", [shifted], f"{out}/round", shape)
        return self.saturate(g, shifted, shape, bits, signed, out)

    def floor_step(self, g: Graph, v: str, bits: int, signed: bool, out: str) -> str:
        """``Floor`` then the saturation."""
        shape = g.shape(v)
        floor = g.op("Floor", [v], f"{out}/floor", shape)
        return self.saturate(g, floor, shape, bits, signed, out)

    def floor(self, g: Graph, v: str, peak: int, out: str) -> str:
        """``Floor``."""
        return g.op("Floor", [v], out, g.shape(v))

    clips = True
    exact_arithmetic = False
    """onnxruntime computes in float32."""

    def clip(self, g: Graph, v: str, low: int, high: int, out: str) -> str:
        """``Clip`` (onnxruntime fuses it into the convolution before it)."""
        bounds = [g.f32(f"{out}/lo", low), g.f32(f"{out}/hi", high)]
        return g.op("Clip", [v, *bounds], out, g.shape(v))

    def decodes(self, encoding: WeightEncoding) -> bool:
        """False: onnxruntime runs no custom op, weights are decoded."""
        return False

    def weight(
        self, g: Graph, name: str, values: np.ndarray, encoding: WeightEncoding | None
    ) -> str:
        """int8 weights behind ``DequantizeLinear`` when they fit 8 bits, else float32."""
        if signed_bits(values) > QDQ_BITS:
            return g.f32(name, values)
        stored = g.const(f"{name}_int8", values.astype(np.int8))
        one = g.f32(f"{name}/unit", 1.0)
        zero = g.const(f"{name}/zero_point", np.array(0, np.int8))
        return g.op("DequantizeLinear", [stored, one, zero], name, values.shape)


def export_qdq(
    model: IntModel,
    input_shape: tuple[int, ...],
    path: str | Path | None = None,
    *,
    quantize_input: bool = True,
) -> onnx.ModelProto:
    """The standard-ONNX (QDQ) graph of ``model`` (written to ``path`` if given; the batch size
    is symbolic). ``quantize_input=False``: the graph takes the input's integer codes.

    Raises:
        UnsupportedLayerError: a layer whose float32 form would not be exact.
    """
    return build(
        model, tuple(input_shape), QDQStyle(), "hwquant_qdq", path, quantize_input=quantize_input
    )


def run_onnxruntime(proto: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """Execute a standard-ONNX graph with onnxruntime (needs the ``onnxruntime`` package)."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise UnsupportedLayerError(
            "running the QDQ graph needs onnxruntime. Fix: pip install onnxruntime."
        ) from exc
    session = onnxruntime.InferenceSession(
        proto.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    name_in, name_out = proto.graph.input[0].name, proto.graph.output[0].name
    return session.run([name_out], {name_in: np.asarray(x, np.float32)})[0]
