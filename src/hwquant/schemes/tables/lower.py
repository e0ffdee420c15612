"""``lower_tables(qat)``: a trained table-unit QAT model becomes a :class:`TableModel`.

Walks the prepared graph in order: table layers lower themselves (``to_node``); max pooling,
concatenation, nearest upsampling and reshapes become the IntModel's nodes of those ops, which
move indices as they move codes (their ``lower`` facets, through the op registry); a flatten
of all but the batch dimension is a :class:`FlattenNode`; Dropout and Identity vanish.
"""

from __future__ import annotations

import operator

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from hwquant.core.errors import ConfigError, HwquantError, UnsupportedLayerError
from hwquant.ir.intmodel import IntNode, ReshapeNode
from hwquant.ir.ops import get_op
from hwquant.qat.naming import describe, node_name
from hwquant.qat.prepare import INPUT_NAME
from hwquant.qat.shared_scales import tensor_inputs
from hwquant.schemes.tables.layers import TableModule
from hwquant.schemes.tables.model import (
    INDEX_OPS,
    FlattenNode,
    TableModel,
    TableNode,
    UnitNode,
)

_FLATTEN_METHODS = ("flatten", "view", "reshape")
_ALIAS_MODULES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity)
_SHAPE_METHODS = ("size", "dim")


def is_flatten_call(node: fx.Node) -> bool:
    """``torch.flatten(x, 1)``, ``x.flatten(1)``, ``x.view(n, -1)``, ``x.reshape(n, -1)``."""
    return (node.op == "call_function" and node.target is torch.flatten) or (
        node.op == "call_method" and node.target in _FLATTEN_METHODS
    )


def is_shape_query(node: fx.Node) -> bool:
    """``x.size(0)``, ``x.dim()``, ``x.shape`` (and indexing it): no codes flow through."""
    if node.op == "call_method":
        return node.target in _SHAPE_METHODS
    return node.op == "call_function" and node.target in (getattr, operator.getitem)


@torch.no_grad()
def lower_tables(qat: fx.GraphModule, example_input: torch.Tensor | None = None) -> TableModel:
    """The table model of ``qat`` (its codebooks must have been estimated by training).

    ``example_input`` fixes the shapes that a reshape (view, squeeze, unsqueeze) and a
    concatenation are lowered with, as for :func:`hwquant.lower`; a model without such nodes
    needs none.

    Raises:
        ConfigError: a reshape or concatenation, and no ``example_input``.
        UnsupportedLayerError: a node the table lowering has no form for.
    """
    if example_input is not None:
        _propagate_shapes(qat, example_input)
    names: dict[fx.Node, str] = {}
    source: dict[str, str] = {}  # node name -> the table node whose codebook its indices index
    nodes: list[TableNode | IntNode] = []
    input_levels = None
    for node in qat.graph.nodes:
        args = [names[a] for a in tensor_inputs(node) if a in names]
        mod = qat.get_submodule(node.target) if node.op == "call_module" else None
        if node.target == INPUT_NAME:
            input_levels = mod.quant.codebook().numpy()
            names[node] = source["input"] = "input"
            continue
        if node.op == "output":
            output = names[node.args[0]]
            continue
        lowered = _lower_node(node, mod, args)
        if lowered is not None:
            nodes.append(lowered)
            names[node] = lowered.name
            is_table = isinstance(mod, TableModule)
            source[lowered.name] = lowered.name if is_table else source[args[0]]
        elif isinstance(mod, _ALIAS_MODULES) or is_alias(node):
            names[node] = args[0]
        elif args and not is_shape_query(node):
            raise UnsupportedLayerError(
                f"the table lowering has no form for '{node_name(node)}' ({describe(node, mod)}), "
                "which reads the codes of "
                f"'{args[0]}'. Fix: use the forms table units take (docs/tables.md), or the "
                "llsq scheme."
            )
    units = [n for n in nodes if isinstance(n, UnitNode)]
    recipe = getattr(qat, "hwquant_recipe", None)
    by_name = {n.name: n for n in nodes}
    ending = by_name.get(source.get(output, ""))
    levels = getattr(ending, "out_levels", None)  # a unit without an output quantizer: empty
    if levels is not None and levels.size == 0:
        levels = None
    return TableModel(
        input_levels,
        nodes,
        output,
        units[-1].entry_scale if units else 1.0,
        recipe.to_dict() if recipe is not None else {},
        levels,
    )


def _propagate_shapes(qat: fx.GraphModule, example_input: torch.Tensor) -> None:
    """Record every node's traced shape (``node.meta["tensor_meta"]``) on ``example_input``."""
    was_training = qat.training
    qat.eval()
    try:
        ShapeProp(qat).propagate(example_input)
    except RuntimeError as exc:  # ShapeProp wraps a layer's own error: surface it
        if isinstance(exc.__cause__, HwquantError):
            raise exc.__cause__ from None
        raise
    finally:
        qat.train(was_training)


def is_alias(node: fx.Node) -> bool:
    """``x.contiguous()``: the same indices."""
    return node.op == "call_method" and node.target == "contiguous"


def _lower_node(
    node: fx.Node, mod: torch.nn.Module | None, args: list[str]
) -> TableNode | IntNode | None:
    """The TableModel node of fx ``node``: a table layer's own, a flatten, or the IntModel node
    of an op that moves indices as it moves codes (:data:`INDEX_OPS`); None for an alias."""
    if isinstance(mod, TableModule):
        return mod.to_node(str(node.target), args)
    if (
        isinstance(mod, nn.Flatten)
        or (node.op == "call_function" and node.target is torch.flatten)
        or (node.op == "call_method" and node.target == "flatten")
    ):
        return FlattenNode(node.name, args[:1])
    for op in INDEX_OPS:
        handler = get_op(op)
        if not handler.keeps(node, mod):
            continue
        if op == "reshape" and "tensor_meta" not in node.meta and is_flatten_call(node):
            return FlattenNode(node.name, args[:1])  # untraced: x.view(n, -1), as before
        if op in ("reshape", "concat") and "tensor_meta" not in node.meta:
            raise ConfigError(
                f"'{node_name(node)}' ({describe(node, mod)}) is lowered to its traced shape, "
                "and lower_tables got no example input. Fix: hwquant.lower(qat, x), or "
                "lower_tables(qat, x)."
            )
        lowered = handler.lower(node, mod, args, node.name)
        if isinstance(lowered, ReshapeNode) and len(lowered.shape) == 1:
            return FlattenNode(node.name, args[:1])  # view(n, -1): the flatten of all but N
        return lowered
    return None
