"""The multiply-free table engine: ``run_tables(model, x_idx)`` (methods.md §3.1, §7.3 item 4).

Activations and weights are index tensors. A unit gathers precomputed table rows and adds them
(:func:`hwquant.tables.kernels.accumulate`), and the next index is the number of per-channel
integer thresholds the accumulator passes; a residual add is one lookup in its add table;
average pooling sums integer values and counts thresholds; max pooling and flatten move
indices. Nothing multiplies and no tensor is floating point, which
:class:`hwquant.tables.audit.MultiplyFreeAudit` checks op by op. The QAT layers of
:mod:`hwquant.tables.layers` run these same functions in eval mode.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from hwquant.intmath import window_sum
from hwquant.tables import kernels
from hwquant.tables.model import (
    AddNode,
    FlattenNode,
    MaxPoolNode,
    PoolNode,
    TableModel,
    TableNode,
    UnitNode,
)


@dataclass(frozen=True)
class CompiledUnit:
    """A unit ready to run: its lookup plan and thresholds as tensors."""

    node: UnitNode
    plan: kernels.LookupPlan
    thresholds: torch.Tensor
    descending: torch.Tensor
    bias: torch.Tensor


@dataclass(frozen=True)
class CompiledAdd:
    """An add table with its row starts ``i·|A2|`` (an ``arange`` step, no multiply)."""

    table: torch.Tensor
    row_start: torch.Tensor


@dataclass(frozen=True)
class CompiledPool:
    """Average pooling's integer values and thresholds as tensors."""

    node: PoolNode
    values: torch.Tensor
    thresholds: torch.Tensor


def compile_unit(node: UnitNode, group: int | None = None) -> CompiledUnit:
    """Precompute ``node``'s grouped lookup rows (``group=None`` picks the largest that fits
    :data:`~hwquant.tables.kernels.ROW_BUDGET`)."""
    weight_index = torch.from_numpy(node.weight_index).reshape(node.weight_index.shape[0], -1)
    table = torch.from_numpy(node.table)
    if group is None:
        group = kernels.choose_group(table.shape[0] + 1, *weight_index.shape[::-1])
    return CompiledUnit(
        node,
        kernels.compile_lookup(table, weight_index, group),
        torch.from_numpy(node.thresholds),
        torch.from_numpy(node.descending),
        torch.from_numpy(node.bias),
    )


def compile_add(node: AddNode) -> CompiledAdd:
    """The flattened add table's row starts."""
    rows, cols = node.table.shape
    start = torch.arange(0, rows * cols, cols, dtype=torch.int64)
    return CompiledAdd(torch.from_numpy(node.table), start)


def compile_pool(node: PoolNode) -> CompiledPool:
    """Average pooling's tensors."""
    return CompiledPool(node, torch.from_numpy(node.values), torch.from_numpy(node.thresholds))


def run_unit(unit: CompiledUnit, x_idx: torch.Tensor) -> torch.Tensor:
    """Output indices of a unit, ``[N, O, H, W]`` or ``[N, O]`` (the last unit: ``acc + bias``)."""
    node = unit.node
    if node.op == "conv":
        kernel = node.weight_index.shape[-1]
        cols, out_h, out_w = kernels.patches(
            x_idx, kernel, node.stride, node.padding, unit.plan.pad_index
        )
    else:
        cols = x_idx.unsqueeze(1)
    acc = kernels.accumulate(unit.plan, cols)  # [N, P, O]
    if unit.thresholds.shape[1] == 0:
        out = acc + unit.bias
    else:
        out = kernels.count_passed(acc, unit.thresholds, unit.descending)
    if node.op == "conv":
        return out.transpose(1, 2).reshape(out.shape[0], -1, out_h, out_w)
    return out.squeeze(1)


def run_add(add: CompiledAdd, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Output indices of a residual add."""
    return kernels.lookup_add(add.table, add.row_start, a, b)


def run_pool(pool: CompiledPool, x_idx: torch.Tensor) -> torch.Tensor:
    """Output indices of average pooling."""
    sums = window_sum(pool.values[x_idx], pool.node.kernel_size)
    return (sums.unsqueeze(-1) >= pool.thresholds).sum(-1)


Step = Callable[..., torch.Tensor]


def compile_node(node: TableNode) -> Step:
    """A function of the node's input index tensors that computes its output indices."""
    if isinstance(node, UnitNode):
        unit = compile_unit(node)
        return lambda x: run_unit(unit, x)
    if isinstance(node, AddNode):
        add = compile_add(node)
        return lambda a, b: run_add(add, a, b)
    if isinstance(node, PoolNode):
        pool = compile_pool(node)
        return lambda x: run_pool(pool, x)
    if isinstance(node, MaxPoolNode):
        return lambda x: kernels.window_max(x, node.kernel_size, node.stride, node.padding)
    if isinstance(node, FlattenNode):
        return lambda x: x.flatten(1)
    raise TypeError(f"no executor for table node {type(node).__name__}")


def compile_tables(model: TableModel) -> list[tuple[TableNode, Step]]:
    """Every node with its executor (cached on the model by :func:`run_tables`)."""
    return [(node, compile_node(node)) for node in model.nodes]


def run_tables(
    model: TableModel, x_idx: torch.Tensor, trace: bool = False
) -> torch.Tensor | dict[str, torch.Tensor]:
    """Run ``model`` on input indices ``x_idx`` (int64, :meth:`TableModel.quantize_input`);
    return the integer outputs (``acc + bias`` of the last unit, value ``output_scale``), or
    with ``trace`` every node's output by name."""
    steps = getattr(model, "_compiled", None)
    if steps is None:
        steps = compile_tables(model)
        object.__setattr__(model, "_compiled", steps)
    values = {"input": x_idx.to(torch.int64)}
    for node, step in steps:
        values[node.name] = step(*(values[name] for name in node.inputs))
    return values if trace else values[model.output]
