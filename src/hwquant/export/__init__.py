"""Export an IntModel as QONNX (``Quant`` nodes, custom ops for MSQ/codebook weights) or as
standard ONNX with QDQ pairs for onnxruntime; both compute the integer engine's outputs exactly.

The exporters need the ``onnx`` package (the ``export`` extra); they are imported on first use,
so the CLI works without it.
"""

from importlib import import_module
from typing import Any

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
