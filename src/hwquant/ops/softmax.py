"""A final softmax or log-softmax over the classes, kept outside the integer graph.

Softmax is monotone in each logit, ``argmax softmax(z) = argmax log_softmax(z) = argmax z``, and
the last layer's logits share one scale, so the integer logits rank exactly as the float ones
(:mod:`hwquant.qat.prepare`). hwquant therefore keeps the softmax out of the integers: the QAT
model applies it in float to the dequantized logits (training sees the function the user wrote),
and the IntModel ends in a :class:`SoftmaxNode` that passes the logits through, stated in the
lowered model (the node, its ``outside`` note) and in :func:`hwquant.verify`'s report. The
probabilities are ``torch.softmax(int_model.dequantize(out), dim)`` on the host.

* IR node: :class:`SoftmaxNode` (declared here; ``dim``, ``log``);
* QAT: ``prepare`` keeps the float op when it is the model's output over dim 1 (or -1 of a
  ``[N, C]`` tensor); a softmax anywhere else is refused, naming it;
* engine, export (``Identity``): the logits unchanged; hardware: no block, the network
  generator leaves the op to the host (its design outputs the logits).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
import torch.nn.functional as F
from torch import fx, nn

from hwquant.core.errors import UnsupportedLayerError
from hwquant.engine.integer import RunContext
from hwquant.ir.intmodel import IntNode
from hwquant.ir.ops import OpHandler, register_op
from hwquant.qat.naming import describe, node_name

if TYPE_CHECKING:  # the export needs the optional onnx package: imported on use
    from hwquant.export.graph import Graph, QuantStyle

_FUNCTIONS = {F.softmax: False, torch.softmax: False, F.log_softmax: True, torch.log_softmax: True}
_METHODS = {"softmax": False, "log_softmax": True}


@dataclass
class SoftmaxNode(IntNode):
    """The model's final softmax (``log``: log-softmax) over ``dim``, outside the integer graph:
    the node passes the logits, whose argmax it keeps."""

    dim: int = 1
    log: bool = False
    op: ClassVar[str] = "softmax"
    outside: ClassVar[str] = (
        "is outside the integer graph: the IntModel outputs the logits (same argmax); "
        "apply it to int_model.dequantize(out) on the host for the probabilities"
    )


def _softmax(node: fx.Node, mod: nn.Module | None) -> tuple[object, bool] | None:
    """``(dim, log)`` of a softmax or log-softmax call (module, function, method), or None."""
    if isinstance(mod, nn.Softmax | nn.LogSoftmax):
        return mod.dim, isinstance(mod, nn.LogSoftmax)
    if node.op == "call_function" and node.target in _FUNCTIONS:
        log = _FUNCTIONS[node.target]
    elif node.op == "call_method" and node.target in _METHODS:
        log = _METHODS[node.target]
    else:
        return None
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    return dim, log


def keeps(node: fx.Node, mod: nn.Module | None) -> bool:
    """Whether fx ``node`` is the model's final softmax over the classes (``prepare`` keeps it).

    Raises:
        UnsupportedLayerError: a softmax that is not the model's output, or not over dim 1 (or
            -1), or with a ``dtype``.
    """
    found = _softmax(node, mod)
    if found is None:
        return False
    dim, _ = found
    final = all(user.op == "output" for user in node.users)
    rank = len(node.meta["tensor_meta"].shape) if "tensor_meta" in node.meta else None
    problem = None
    if not final:
        problem = "it is not the model's output"
    elif dim not in (1, -1):
        problem = f"it normalises dim={dim!r}, not the classes (dim 1)"
    elif node.kwargs.get("dtype") is not None or len(node.args) > 3:
        problem = "it is given a dtype"
    elif dim == -1 and rank not in (None, 2):
        problem = "dim=-1 of a tensor that is not [N, C]"
    if problem is not None:
        raise UnsupportedLayerError(
            f"{describe(node, mod)} '{node_name(node)}': {problem}. hwquant keeps a softmax "
            "only as the model's last op over the classes, outside the integer graph (the "
            "IntModel outputs the logits, whose argmax it keeps). Fix: return the logits, or "
            "apply softmax(dim=1) last."
        )
    return True


def lower(node: fx.Node, mod: nn.Module | None, inputs: list[str], name: str) -> SoftmaxNode | None:
    """The SoftmaxNode of the model's final softmax."""
    if not keeps(node, mod):
        return None
    dim, log = _softmax(node, mod)
    return SoftmaxNode(name, inputs, int(dim), log)


def execute(node: SoftmaxNode, inputs: list[torch.Tensor], context: RunContext) -> torch.Tensor:
    """The logits, unchanged (the softmax is the host's)."""
    return inputs[0]


def export(
    g: Graph, node: SoftmaxNode, shapes: dict[str, tuple[int, ...]], style: QuantStyle
) -> None:
    """``Identity``: the graph outputs the logits (the softmax is the host's)."""
    from hwquant.export.graph import activation_shape

    g.op("Identity", node.inputs, node.name, activation_shape(shapes[node.name]))


register_op(
    OpHandler(
        "softmax",
        SoftmaxNode,
        lower=lower,
        execute=execute,
        export=export,
        keeps=keeps,
        passthrough=True,
    )
)
