"""The non-uniform scheme's exported form: the ``CodebookWeight`` decoder op of
:mod:`hwquant.export.custom_ops`.

With ``custom_ops`` the QONNX export writes a codebook layer's indices and codebook and this op
decodes them into ``W_int``; its reference executor is
:func:`hwquant.export.custom_ops.codebook_weight`. The export needs the optional ``onnx``
package, so it is imported when the op is emitted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hwquant.ir.intmodel import CodebookEncoding

if TYPE_CHECKING:
    from hwquant.export.graph import Graph


def codebook_weight_op(g: Graph, name: str, enc: CodebookEncoding, shape: tuple[int, ...]) -> str:
    """Add the ``CodebookWeight`` node that decodes ``enc`` into tensor ``name`` (of ``shape``)."""
    from hwquant.export.custom_ops import DOMAIN

    inputs = [g.const(f"{name}/indices", enc.indices), g.const(f"{name}/codebook", enc.codebook)]
    attrs = {"index_bits": enc.index_bits, "grid_bits": enc.grid_bits}
    return g.op("CodebookWeight", inputs, name, shape, domain=DOMAIN, **attrs)
