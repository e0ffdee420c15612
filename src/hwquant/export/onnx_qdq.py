"""Standard-ONNX export for onnxruntime: QDQ pairs where codes are 8-bit, ``Clip`` elsewhere.

The layout is :mod:`hwquant.export.graph`'s. A quantize step is ``Floor`` then, for 8-bit codes,
``QuantizeLinear``/``DequantizeLinear`` with scale 1 and zero point 0 (their saturation to
int8/uint8 is exactly the code range), and for other widths ``Clip`` to the code range. 8-bit
weights are int8 initializers behind a ``DequantizeLinear`` (the QDQ weight form); others are
float initializers holding integers. onnxruntime runs the graph as it is, with no custom op.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto

from hwquant.core.errors import UnsupportedLayerError
from hwquant.core.intmath import qrange
from hwquant.export.custom_ops import require_custom_ops
from hwquant.export.graph import INPUT_NAME, OUTPUT_NAME, Graph, build
from hwquant.ir.intmodel import IntModel, WeightNode

QDQ_BITS = 8


class QDQStyle:
    """Quantize steps as Floor + QDQ (8-bit) or Floor + Clip; weights as (QDQ) initializers."""

    def quantize(
        self, g: Graph, value: str, shape: tuple[int, ...], bits: int, signed: bool, out: str
    ) -> str:
        """``clamp(floor(value), qrange(bits, signed))`` as float32."""
        floor = g.op("Floor", [value], f"{out}/floor", g.like(value))
        single = g.op("Cast", [floor], f"{out}/f32", (shape, np.float32), to=TensorProto.FLOAT)
        if bits == QDQ_BITS:
            dtype = np.int8 if signed else np.uint8
            zero = g.const(f"{out}/zero_point", np.array(0, dtype))
            one = g.const(f"{out}/unit", np.float32(1.0))
            codes = g.op("QuantizeLinear", [single, one, zero], f"{out}/q", (shape, dtype))
            return g.op("DequantizeLinear", [codes, one, zero], out, (shape, np.float32))
        lo, hi = qrange(bits, signed)
        bounds = [g.const(f"{out}/{n}", np.float32(v)) for n, v in (("lo", lo), ("hi", hi))]
        return g.op("Clip", [single, *bounds], out, (shape, np.float32))

    def weight(self, g: Graph, node: WeightNode) -> str:
        """int8 weights behind ``DequantizeLinear`` when they fit 8 bits, else float integers."""
        require_custom_ops(node, False, "the QDQ form (onnxruntime runs no custom op)")
        name = f"{node.name}/weight"
        if node.weight_bits <= QDQ_BITS:
            stored = g.const(f"{name}_int8", node.weight.astype(np.int8))
            one = g.const(f"{name}/unit", np.float32(1.0))
            zero = g.const(f"{name}/zero_point", np.array(0, np.int8))
            return g.op(
                "DequantizeLinear", [stored, one, zero], name, (node.weight.shape, np.float32)
            )
        return g.const(name, node.weight.astype(np.float32))


def export_qdq(
    model: IntModel, input_shape: tuple[int, ...], path: str | Path | None = None
) -> onnx.ModelProto:
    """The standard-ONNX (QDQ) graph of ``model`` (written to ``path`` if given).

    Raises:
        UnsupportedLayerError: an MSQ/codebook layer (no custom ops in this form), or a layer
            whose float form would not be exact.
    """
    return build(model, tuple(input_shape), QDQStyle(), "hwquant_qdq", path)


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
    return session.run([OUTPUT_NAME], {INPUT_NAME: np.asarray(x, np.float32)})[0]
