"""Export an IntModel as QONNX (``Quant`` nodes, custom ops for MSQ/codebook weights) or as
standard ONNX with QDQ pairs for onnxruntime; both compute the integer engine's outputs exactly.

The exporters need the ``onnx`` package (the ``export`` extra); they are imported on first use,
so the CLI works without it.
"""

from importlib import import_module
from typing import Any

import torch

from hwquant.core.errors import HwquantError
from hwquant.ir.intmodel import IntModel, register_backend

_EXPORTS = {
    "export_qdq": "hwquant.export.onnx_qdq",
    "run_onnxruntime": "hwquant.export.onnx_qdq",
    "export_qonnx": "hwquant.export.qonnx",
    "run_qonnx": "hwquant.export.qonnx",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import an exporter from its module on first use."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'hwquant.export' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)


def _run_onnxruntime(model: IntModel, x_int: torch.Tensor, four_bit: bool) -> torch.Tensor:
    """``IntModel.run(backend="onnxruntime")``: the exact QDQ graph on onnxruntime
    (:mod:`hwquant.export.runtime`, imported on first use)."""
    if four_bit:
        raise HwquantError(
            "four_bit=True models 4-bit multipliers, which only the engine does. Fix: "
            "use backend='engine' with four_bit, or drop four_bit."
        )
    from hwquant.export.runtime import run_codes

    return run_codes(model, x_int)


register_backend("onnxruntime", _run_onnxruntime)
