"""The multiply-free table engine: ``run_tables(model, x_idx)`` (methods.md §3.1, §7.3 item 4).

Activations and weights are index tensors. A unit gathers precomputed table rows and adds
them, and the next index is the number of per-channel integer thresholds the accumulator
passes; a residual add is one lookup in its add table; average pooling sums integer values
and counts thresholds; max pooling and flatten move indices. Nothing multiplies and no tensor
is floating point, which :class:`hwquant.schemes.tables.audit.MultiplyFreeAudit` checks op by op.
The QAT layers of :mod:`hwquant.schemes.tables.layers` run these same functions in eval mode.

**Kernels.** ``engine="native"`` runs each unit as one fused C call
(:mod:`hwquant.schemes.tables.native`, the op ``hwquant::table_unit``); ``engine="torch"`` runs the
PyTorch kernels of :mod:`hwquant.schemes.tables.kernels` (the reference); ``engine="auto"``
(default) takes the native kernel when it builds here and the PyTorch one otherwise
(:func:`resolve_kernel`). Both give the same integers (tests/schemes/tables/test_native.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from hwquant.core.errors import ConfigError
from hwquant.core.intmath import window_sum
from hwquant.engine.integer import RunContext
from hwquant.ir.intmodel import IntNode, MaxPoolNode
from hwquant.ir.ops import get_op
from hwquant.qat.nn.zero_insert import zero_insert
from hwquant.qat.options import pair
from hwquant.schemes.tables import kernels, native
from hwquant.schemes.tables.model import (
    ActivationNode,
    FlattenNode,
    LookupAddNode,
    PoolNode,
    TableModel,
    TableNode,
    UnitNode,
)

ENGINES = ("auto", "native", "torch")


def resolve_kernel(engine: str = "auto") -> str:
    """The kernel that ``engine`` runs here: ``"native"`` or ``"torch"``. ``"native"`` raises
    :class:`~hwquant.core.errors.ToolError` (with the compiler's message) when the C kernel cannot
    be built; ``"auto"`` falls back to ``"torch"`` then."""
    if engine not in ENGINES:
        raise ConfigError(f"unknown table engine {engine!r}. Fix: use one of {', '.join(ENGINES)}.")
    if engine == "native":
        native.load()
        return "native"
    if engine == "auto" and native.unavailable_reason() is None:
        return "native"
    return "torch"


@dataclass(frozen=True)
class CompiledUnit:
    """A unit ready to run: its lookup plan and thresholds as tensors, and (``kernel ==
    "native"``) the C kernel's form of them; a grouped convolution: one compiled unit per
    group (``parts``), each reading its own input channels."""

    node: UnitNode
    plan: kernels.LookupPlan
    thresholds: torch.Tensor
    descending: torch.Tensor
    bias: torch.Tensor
    kernel: str = "torch"
    native: native.NativeUnit | None = None
    parts: tuple[CompiledUnit, ...] = ()


@dataclass(frozen=True)
class CompiledAdd:
    """An add table with its row starts ``i·|A2|`` (an ``arange`` step, no multiply), read by
    the ``kernel`` ("native" or "torch")."""

    table: torch.Tensor
    row_start: torch.Tensor
    kernel: str = "torch"


@dataclass(frozen=True)
class CompiledPool:
    """Average pooling's integer values and thresholds as tensors."""

    node: PoolNode
    values: torch.Tensor
    thresholds: torch.Tensor


def native_geometry(node: UnitNode) -> bool:
    """Whether the native kernel computes ``node``'s window: a linear unit, or a convolution of
    one group with a square kernel, stride and padding and no dilation (other convolutions run
    the PyTorch kernel, which takes every geometry; the integers are the same)."""
    if node.op != "conv":
        return True
    kh, kw = node.weight_index.shape[-2:]
    stride, padding = pair(node.stride), pair(node.padding)
    square = kh == kw and stride[0] == stride[1] and padding[0] == padding[1]
    return square and node.groups == 1 and tuple(node.dilation) == (1, 1)


def split_groups(node: UnitNode) -> list[UnitNode]:
    """The units of a grouped convolution's groups: outputs ``[g·O/G, (g+1)·O/G)`` with their
    thresholds and biases; each reads input channels ``[g·C/G, (g+1)·C/G)`` (after the whole
    unit's zero insertion, done once)."""
    size = node.weight_index.shape[0] // node.groups
    return [
        replace(
            node,
            name=f"{node.name}/group{g}",
            weight_index=node.weight_index[start : start + size],
            thresholds=node.thresholds[start : start + size],
            descending=node.descending[start : start + size],
            bias=node.bias[start : start + size],
            groups=1,
            insert_stride=(1, 1),
            insert_before=(0, 0),
            insert_after=(0, 0),
        )
        for g, start in enumerate(range(0, node.weight_index.shape[0], size))
    ]


def compile_unit(node: UnitNode, group: int | None = None, engine: str = "auto") -> CompiledUnit:
    """Precompute ``node``'s grouped lookup rows for the kernel ``engine`` resolves to
    (``group=None`` picks that kernel's group: :func:`hwquant.schemes.tables.kernels.choose_group`,
    :func:`hwquant.schemes.tables.native.choose_group`); a unit the native kernel does not
    compute (:func:`native_geometry`) takes the PyTorch kernel."""
    kernel = resolve_kernel(engine)
    if node.groups > 1:
        parts = tuple(compile_unit(part, group, engine) for part in split_groups(node))
        first = parts[0]
        return CompiledUnit(
            node, first.plan, first.thresholds, first.descending, first.bias, parts=parts
        )
    if not native_geometry(node):
        kernel = "torch"
    weight_index = torch.from_numpy(node.weight_index).reshape(node.weight_index.shape[0], -1)
    table = torch.from_numpy(node.table)
    if group is None:
        choose = native.choose_group if kernel == "native" else kernels.choose_group
        group = choose(table.shape[0] + 1, *weight_index.shape[::-1])
    plan = kernels.compile_lookup(table, weight_index, group)
    tau, descending = torch.from_numpy(node.thresholds), torch.from_numpy(node.descending)
    bias = torch.from_numpy(node.bias)
    if kernel == "torch":
        return CompiledUnit(node, plan, tau, descending, bias)
    return CompiledUnit(
        node, plan, tau, descending, bias, kernel, native.prepare(plan, tau, descending, bias)
    )


def compile_add(node: LookupAddNode, engine: str = "auto") -> CompiledAdd:
    """The flattened add table's row starts."""
    rows, cols = node.table.shape
    start = torch.arange(0, rows * cols, cols, dtype=torch.int64)
    return CompiledAdd(torch.from_numpy(node.table), start, resolve_kernel(engine))


def compile_pool(node: PoolNode) -> CompiledPool:
    """Average pooling's tensors."""
    return CompiledPool(node, torch.from_numpy(node.values), torch.from_numpy(node.thresholds))


def run_unit(unit: CompiledUnit, x_idx: torch.Tensor) -> torch.Tensor:
    """Output indices of a unit, ``[N, O, H, W]`` or ``[N, O]`` (the last unit: ``acc + bias``)."""
    node = unit.node
    conv = node.op == "conv"
    if conv and node.inserts_zeros:  # a transposed convolution: zeros read the zero row
        x_idx = zero_insert(
            x_idx, node.insert_stride, node.insert_before, node.insert_after, unit.plan.pad_index
        )
    if unit.parts:
        inputs = x_idx.chunk(len(unit.parts), dim=1)
        return torch.cat([run_unit(p, x) for p, x in zip(unit.parts, inputs, strict=True)], dim=1)
    if unit.native is not None:
        kernel = node.weight_index.shape[-1] if conv else 1
        x = x_idx if conv else x_idx[:, :, None, None]
        stride, padding = pair(node.stride)[0], pair(node.padding)[0]
        out = native.run(unit.native, x.to(torch.int64), kernel, stride, padding)
        return out if conv else out.flatten(1)
    if conv:
        cols, out_h, out_w = kernels.patches(
            x_idx,
            tuple(node.weight_index.shape[-2:]),
            node.stride,
            node.padding,
            unit.plan.pad_index,
            tuple(node.dilation),
        )
    else:
        cols = x_idx.unsqueeze(1)
    acc = kernels.accumulate(unit.plan, cols)  # [N, P, O]
    if unit.thresholds.shape[1] == 0:
        out = acc + unit.bias
    else:
        out = kernels.count_passed(acc, unit.thresholds, unit.descending)
    if conv:
        return out.transpose(1, 2).reshape(out.shape[0], -1, out_h, out_w)
    return out.squeeze(1)


def run_add(add: CompiledAdd, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Output indices of a residual add (or product; the operands broadcast)."""
    if add.kernel == "native":
        a, b = torch.broadcast_tensors(a, b)
        return torch.ops.hwquant.lookup_add(add.table, add.row_start, a, b)
    return kernels.lookup_add(add.table, add.row_start, a, b)


def run_pool(pool: CompiledPool, x_idx: torch.Tensor) -> torch.Tensor:
    """Output indices of average pooling."""
    sums = window_sum(pool.values[x_idx], pool.node.kernel_size)
    return (sums.unsqueeze(-1) >= pool.thresholds).sum(-1)


def compile_activation(node: ActivationNode) -> torch.Tensor:
    """An activation's table as a tensor."""
    return torch.from_numpy(node.table)


def run_activation(table: torch.Tensor, x_idx: torch.Tensor) -> torch.Tensor:
    """Output indices of an elementwise activation: ``table[i]``."""
    return table.to(x_idx.device)[x_idx]


Step = Callable[..., torch.Tensor]


def compile_node(node: TableNode | IntNode, engine: str = "auto") -> Step:
    """A function of the node's input index tensors that computes its output indices."""
    if isinstance(node, UnitNode):
        unit = compile_unit(node, engine=engine)
        return lambda x: run_unit(unit, x)
    if isinstance(node, LookupAddNode):
        add = compile_add(node, engine)
        return lambda a, b: run_add(add, a, b)
    if isinstance(node, PoolNode):
        pool = compile_pool(node)
        return lambda x: run_pool(pool, x)
    if isinstance(node, MaxPoolNode):
        return lambda x: kernels.window_max(
            x, node.kernel_size, node.stride, node.padding, node.dilation, node.ceil_mode
        )
    if isinstance(node, ActivationNode):
        table = compile_activation(node)
        return lambda x: run_activation(table, x)
    if isinstance(node, FlattenNode):
        return lambda x: x.flatten(1)
    if isinstance(node, IntNode):  # concat, upsample, reshape: the integer engine's step
        execute = get_op(node.op).execute
        return lambda *xs: execute(node, list(xs), RunContext())
    raise TypeError(f"no executor for table node {type(node).__name__}")


def compile_tables(
    model: TableModel, engine: str = "auto"
) -> list[tuple[TableNode | IntNode, Step]]:
    """Every node with its executor (cached on the model by :func:`run_tables`)."""
    return [(node, compile_node(node, engine)) for node in model.nodes]


def run_tables(
    model: TableModel, x_idx: torch.Tensor, trace: bool = False, engine: str = "auto"
) -> torch.Tensor | dict[str, torch.Tensor]:
    """Run ``model`` on input indices ``x_idx`` (int64, :meth:`TableModel.quantize_input`) with
    the kernel ``engine`` resolves to (one of :data:`ENGINES`; :func:`resolve_kernel`); return
    the integer outputs (``acc + bias`` of the last unit, value ``output_scale``), or with
    ``trace`` every node's output by name."""
    kernel = resolve_kernel(engine)
    levels = len(model.input_levels)
    if x_idx.numel() and (x_idx.min() < 0 or x_idx.max() >= levels):
        raise ConfigError(
            f"input indices must lie in [0, {levels}) (the input codebook); got "
            f"[{int(x_idx.min())}, {int(x_idx.max())}]. Fix: make them with "
            "TableModel.quantize_input."
        )
    cache = getattr(model, "_compiled", None) or {}
    if kernel not in cache:
        cache[kernel] = compile_tables(model, kernel)
        object.__setattr__(model, "_compiled", cache)
    values = {"input": x_idx.to(torch.int64)}
    for node, step in cache[kernel]:
        values[node.name] = step(*(values[name] for name in node.inputs))
    return values if trace else values[model.output]
