"""Proof that table inference neither multiplies nor touches a float (methods.md §7.3 item 4).

:class:`MultiplyFreeAudit` is a ``TorchDispatchMode``: every operation that runs inside it is
recorded (``namespace.name``) with the dtypes of its tensors. An operation is a violation when
its name is a multiplication, division, power, matrix product or convolution, when any tensor
it reads or writes is floating point (or complex), or when it is an op outside ATen that is
not on :data:`NATIVE_OPS`.

:data:`NATIVE_OPS` are the native table kernels (:mod:`hwquant.schemes.tables.native`), opaque to
the dispatcher. They are allowed because their C source is checked instead: it has no
floating-point type and no multiply, divide, remainder or shift operator, and the kernels equal
the PyTorch kernels (which this audit does see op by op) exactly;
tests/schemes/tables/test_native.py proves both.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

FORBIDDEN_OPS = frozenset(
    {"mul", "div", "pow", "matmul", "dot", "linear", "einsum", "exp", "log", "sqrt",
     "remainder", "fmod", "lerp", "floor_divide", "true_divide", "addcmul", "addcdiv",
     "embedding_bag"}
)  # fmt: skip


NATIVE_OPS = frozenset({"hwquant.table_unit", "hwquant.lookup_add"})


def forbidden(name: str) -> bool:
    """True for an ATen op (``mul``, ``_convolution``, ``addmm_``, ...) that multiplies or
    divides: the names above, every convolution and every matrix product (``*mm``)."""
    base = name.strip("_")
    return base in FORBIDDEN_OPS or base.startswith("conv") or base.endswith("mm")


@dataclass
class MultiplyFreeAudit(TorchDispatchMode):
    """Record every ATen op run inside ``with MultiplyFreeAudit() as audit:``."""

    ops: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        full = f"{func.namespace}.{name}"
        self.ops.append(full)
        tensors = [t for t in tree_leaves((args, kwargs, out)) if isinstance(t, torch.Tensor)]
        floats = sorted({str(t.dtype) for t in tensors if t.is_floating_point() or t.is_complex()})
        if forbidden(name):
            self.violations.append(f"{full}: a multiply/divide-class operation")
        if func.namespace != "aten" and full not in NATIVE_OPS:
            self.violations.append(f"{full}: an opaque op that is not on the native allow-list")
        if floats:
            self.violations.append(f"{full}: floating-point tensor(s) {', '.join(floats)}")
        return out
