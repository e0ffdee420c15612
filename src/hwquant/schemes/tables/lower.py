"""``lower_tables(qat)``: a trained table-unit QAT model becomes a :class:`TableModel`.

Walks the prepared graph in order: table layers lower themselves (``to_node``), max pooling
and flatten/view/reshape (flattening all but the batch dimension) become index moves, Dropout
and Identity vanish.
"""

from __future__ import annotations

import torch
from torch import fx, nn

from hwquant.core.errors import UnsupportedLayerError
from hwquant.ir.intmodel import MaxPoolNode
from hwquant.qat.prepare import INPUT_NAME
from hwquant.schemes.tables.layers import TableModule
from hwquant.schemes.tables.model import FlattenNode, TableModel, TableNode, UnitNode

_FLATTEN_METHODS = ("flatten", "view", "reshape")


def _square(value: int | tuple[int, ...]) -> int:
    if isinstance(value, int):
        return value
    if len(set(value)) != 1:
        raise UnsupportedLayerError(f"max pooling with non-square {value}. Fix: use square.")
    return value[0]


@torch.no_grad()
def lower_tables(qat: fx.GraphModule) -> TableModel:
    """The table model of ``qat`` (its codebooks must have been estimated by training)."""
    names: dict[fx.Node, str] = {}
    nodes: list[TableNode | MaxPoolNode] = []
    input_levels = None
    for node in qat.graph.nodes:
        args = [names[a] for a in node.args if isinstance(a, fx.Node) and a in names]
        mod = qat.get_submodule(node.target) if node.op == "call_module" else None
        if node.target == INPUT_NAME:
            input_levels = mod.quant.codebook().numpy()
            names[node] = "input"
        elif isinstance(mod, TableModule):
            nodes.append(mod.to_node(str(node.target), args))
            names[node] = nodes[-1].name
        elif isinstance(mod, nn.MaxPool2d):
            k, s, p = (_square(v) for v in (mod.kernel_size, mod.stride, mod.padding))
            nodes.append(MaxPoolNode(str(node.target), args, (k, k), (s, s), (p, p)))
            names[node] = nodes[-1].name
        elif (
            isinstance(mod, nn.Flatten)
            or node.target is torch.flatten
            or (node.op == "call_method" and node.target in _FLATTEN_METHODS)
        ):
            nodes.append(FlattenNode(node.name, args[:1]))
            names[node] = node.name
        elif isinstance(mod, nn.Dropout | nn.Identity):
            names[node] = args[0]
        elif node.op == "output":
            output = names[node.args[0]]
    units = [n for n in nodes if isinstance(n, UnitNode)]
    recipe = getattr(qat, "hwquant_recipe", None)
    return TableModel(
        input_levels,
        nodes,
        output,
        units[-1].entry_scale,
        recipe.to_dict() if recipe is not None else {},
    )
