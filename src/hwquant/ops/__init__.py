"""The supported operations, one module each; importing this package registers them all.

Each module declares one op of the IntModel: its IR node, its lowering from the QAT model, its
integer-engine executor, its ONNX exporter and its hardware block, and registers them as one
:class:`hwquant.ir.ops.OpHandler`. ``import hwquant`` imports this package.

>>> import hwquant
>>> from hwquant.ir.ops import available_ops
>>> print(*available_ops())
add avgpool concat conv2d linear lut maxpool mul relu reshape softmax upsample zero_insert
"""

from hwquant.ir.ops import available_ops
from hwquant.ops import (  # noqa: F401
    add,
    avgpool,
    concat,
    conv2d,
    linear,
    lut,
    maxpool,
    mul,
    relu,
    reshape,
    softmax,
    upsample,
    zero_insert,
)

__all__ = ["available_ops"]
