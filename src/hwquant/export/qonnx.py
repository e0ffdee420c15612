"""QONNX export: ``Quant`` nodes (domain ``qonnx.custom_op.general``) in the integer domain.

Every quantize step of :mod:`hwquant.export.graph` is a QONNX ``Quant`` node with scale 1,
zero point 0, the code's bit-width, ``signed``, ``narrow=0`` and ``rounding_mode="FLOOR"``
(the graph adds 1/2 before it: hwquant rounds half up, methods.md §4). Its output is the
integer code, so QONNX's own semantics (``clamp(round(x/scale + zp)) − zp) · scale``) give the
engine's codes exactly. Weights are integer initializers behind a ``Quant`` that states their
bit-width, or, for MSQ and codebook layers, a custom decoder op (:mod:`custom_ops`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from hwquant.core.errors import UnsupportedLayerError
from hwquant.core.intmath import qrange
from hwquant.export.custom_ops import emit_encoded_weight, require_custom_ops
from hwquant.export.graph import INPUT_NAME, OUTPUT_NAME, Graph, build
from hwquant.ir.intmodel import IntModel, WeightNode

QONNX_DOMAIN = "qonnx.custom_op.general"


class QONNXStyle:
    """Quantize steps as QONNX ``Quant`` nodes; encoded weights through custom ops."""

    def __init__(self, custom_ops: bool) -> None:
        self.custom_ops = custom_ops

    def quantize(
        self, g: Graph, value: str, shape: tuple[int, ...], bits: int, signed: bool, out: str
    ) -> str:
        """``Quant(value, scale=1, zeropt=0, bitwidth=bits)`` with floor rounding.

        qonnx reads a 1-bit signed ``Quant`` as bipolar (±1), but hwquant's 1-bit signed range
        is ``qrange(1, True) = [−1, 0]``: that step is a 2-bit ``Quant`` (range [−2, 1]) followed
        by ``Clip`` to [−1, 0], which is ``clamp(floor(value), −1, 0)`` exactly.
        """
        one_bit_signed = bits == 1 and signed
        quant_bits = 2 if one_bit_signed else bits
        quant = f"{out}/quant" if one_bit_signed else out
        codes = g.op(
            "Quant",
            [
                value,
                g.const(f"{quant}/q_scale", np.float32(1.0)),
                g.const(f"{quant}/q_zeropt", np.float32(0.0)),
                g.const(f"{quant}/q_bits", np.float32(quant_bits)),
            ],
            quant,
            (shape, np.float32),
            QONNX_DOMAIN,
            signed=int(signed),
            narrow=0,
            rounding_mode="FLOOR",
        )
        if not one_bit_signed:
            return codes
        lo, hi = qrange(1, True)
        bounds = [g.const(f"{out}/{k}", np.float32(v)) for k, v in (("lo", lo), ("hi", hi))]
        return g.op("Clip", [codes, *bounds], out, (shape, np.float32))

    def weight(self, g: Graph, node: WeightNode) -> str:
        """Integer weights through a ``Quant`` of their bit-width, or a custom decoder."""
        require_custom_ops(node, self.custom_ops, "QONNX")
        if node.encoding is not None:
            return emit_encoded_weight(g, node)
        raw = g.const(f"{node.name}/weight_int", node.weight.astype(np.float32))
        return self.quantize(
            g, raw, node.weight.shape, node.weight_bits, True, f"{node.name}/weight"
        )


def export_qonnx(
    model: IntModel,
    input_shape: tuple[int, ...],
    path: str | Path | None = None,
    *,
    custom_ops: bool = False,
) -> onnx.ModelProto:
    """The QONNX graph of ``model`` for inputs of ``input_shape`` (written to ``path`` if given).

    Raises:
        UnsupportedLayerError: an MSQ/codebook layer without ``custom_ops``, or a layer whose
            float form would not be exact (see :func:`hwquant.export.graph.build`).
    """
    return build(model, tuple(input_shape), QONNXStyle(custom_ops), "hwquant_qonnx", path)


def run_qonnx(proto: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """Execute a QONNX graph with qonnx's executor (needs the ``qonnx`` package)."""
    try:
        from qonnx.core.modelwrapper import ModelWrapper
        from qonnx.core.onnx_exec import execute_onnx
    except ImportError as exc:
        raise UnsupportedLayerError(
            "executing QONNX needs the qonnx package. Fix: pip install qonnx (the `test` extra)."
        ) from exc
    out = execute_onnx(ModelWrapper(proto), {INPUT_NAME: np.asarray(x, np.float32)})
    return out[OUTPUT_NAME]
