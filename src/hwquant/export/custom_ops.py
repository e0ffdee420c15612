"""hwquant's custom ONNX ops: weight decoders for encodings QONNX has no node for.

Two ops in domain :data:`DOMAIN` (specified in ``docs/export/custom_ops.md``) turn the stored
form of a weight layer into its integer weights ``W_int``; a standard ``Conv``/``Gemm`` then
uses them, so the rest of the graph stays plain QONNX:

* ``MSQWeight`` (Mix and Match, methods.md §2): row ``r`` is SP2 where ``sp2_rows[r]``, with
  ``W = sign·(2^shift1 + 2^shift2)`` (a shift of −1 is an absent term), else fixed-point codes;
* ``CodebookWeight`` (k-quantile codebooks, methods.md §1): ``W[r, …] = codebook[row, idx[r, …]]``
  with ``row = r`` for a per-channel codebook and 0 for a per-layer one.

The functions here are the numpy reference executors of the two ops; ``qonnx_ops`` makes them
runnable by qonnx's executor (this domain's module path is part of every exported file, so the
executors stay here). Each scheme emits its op (``schemes/msq/onnx.py``,
``schemes/nonuniform/onnx.py``), registered as its encoding's ``onnx_op``
(:mod:`hwquant.ir.encodings`).
"""

from __future__ import annotations

import numpy as np

from hwquant.core.errors import UnsupportedLayerError
from hwquant.export.graph import Graph
from hwquant.ir.encodings import find_encoding
from hwquant.ir.intmodel import WeightEncoding

DOMAIN = "hwquant.export.qonnx_ops"
"""Custom-op domain; qonnx imports it as the Python module that executes the ops."""


def msq_weight(
    sp2_rows: np.ndarray,
    sign: np.ndarray,
    shift1: np.ndarray,
    shift2: np.ndarray,
    fixed: np.ndarray,
) -> np.ndarray:
    """``MSQWeight``: float32 ``W_int`` from the SP2/fixed-point row encoding."""
    for name, shift in (("shift1", shift1), ("shift2", shift2)):
        if shift.min(initial=0) < -1:
            raise UnsupportedLayerError(
                f"MSQWeight: {name} holds values below -1 (-1 = no term). Fix: re-export the model."
            )
    terms = sum(
        (np.where(s >= 0, np.exp2(s.astype(np.float64)), 0.0) for s in (shift1, shift2)),
        start=np.zeros(sign.shape),
    )
    sp2 = np.sign(sign).astype(np.float64) * terms
    rows = sp2_rows.astype(bool).reshape(-1, *([1] * (fixed.ndim - 1)))
    return np.where(rows, sp2, fixed.astype(np.float64)).astype(np.float32)


def codebook_weight(indices: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    """``CodebookWeight``: float32 ``W_int`` by looking every index up in its row's codebook."""
    if codebook.shape[0] not in (1, indices.shape[0]):
        raise UnsupportedLayerError(
            f"CodebookWeight: the codebook has {codebook.shape[0]} rows; allowed: 1 (per layer) "
            f"or {indices.shape[0]} (one per output channel). Fix: re-export the model."
        )
    if indices.min(initial=0) < 0 or indices.max(initial=0) >= codebook.shape[1]:
        raise UnsupportedLayerError(
            f"CodebookWeight: indices must lie in 0..{codebook.shape[1] - 1}. Fix: re-export."
        )
    rows = np.arange(indices.shape[0]) if codebook.shape[0] > 1 else np.zeros(indices.shape[0], int)
    rows = rows.reshape(-1, *([1] * (indices.ndim - 1)))
    return codebook[rows, indices].astype(np.float32)


def emit_encoded_weight(g: Graph, name: str, enc: WeightEncoding, shape: tuple[int, ...]) -> str:
    """Add the custom op that decodes ``enc`` into tensor ``name`` (of ``shape``) and return it
    (the ``onnx_op`` its encoding registered)."""
    handler = find_encoding(type(enc))
    if handler is not None and handler.onnx_op is not None:
        return handler.onnx_op(g, name, enc, shape)
    raise UnsupportedLayerError(
        f"weight '{name}' has a {type(enc).__name__} encoding, which has no custom op. Fix: "
        "export without custom_ops (decoded integer weights)."
    )
