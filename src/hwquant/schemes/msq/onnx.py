"""MSQ's exported form: the ``MSQWeight`` decoder op of :mod:`hwquant.export.custom_ops`.

With ``custom_ops`` the QONNX export writes an MSQ layer's stored form (SP2 rows and
fixed-point codes) and this op decodes it into ``W_int``; its reference executor is
:func:`hwquant.export.custom_ops.msq_weight`. The export needs the optional ``onnx`` package,
so it is imported when the op is emitted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hwquant.ir.intmodel import MSQEncoding

if TYPE_CHECKING:
    from hwquant.export.graph import Graph


def msq_weight_op(g: Graph, name: str, enc: MSQEncoding, shape: tuple[int, ...]) -> str:
    """Add the ``MSQWeight`` node that decodes ``enc`` into tensor ``name`` (of ``shape``)."""
    from hwquant.export.custom_ops import DOMAIN

    inputs = [
        g.const(f"{name}/{f}", getattr(enc, f))
        for f in ("sp2_rows", "sign", "shift1", "shift2", "fixed")
    ]
    attrs = {"bits": enc.bits, "m1": enc.m1, "m2": enc.m2}
    return g.op("MSQWeight", inputs, name, shape, domain=DOMAIN, **attrs)
