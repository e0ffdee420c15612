"""The two facets through which ``prepare`` asks each op for its QAT layer.

``prepare`` (:mod:`hwquant.qat.prepare`) walks the traced float model once. At each node it asks
every registered op (:class:`hwquant.ir.ops.OpHandler`) whose ``fuse`` facet is set whether the
node is that op; the first that says yes rewrites the graph there and returns a
:class:`FusedSpec`. Once every node is fused or kept, ``prepare`` calls the ``build`` facet of
each spec's op with a :class:`LayerContext` and installs the QAT layer it returns:

* ``fuse(fusion: Fusion, node: fx.Node, module: nn.Module | None)
  -> tuple[fx.Node, FusedSpec] | None``: recognise the op at ``node`` (``module``: the module a
  ``call_module`` node calls, else None), absorb what the QAT layer computes too (a BatchNorm,
  a ReLU: :meth:`Fusion.absorb`), rewrite the graph (:meth:`Fusion.collapse`,
  :meth:`Fusion.new_module_node`) and return the node that will call the QAT layer with its
  spec; None, graph untouched, when ``node`` is another op;
* ``build(spec: FusedSpec, layer: LayerContext) -> QuantModule``: the QAT layer of a fused node
  under the recipe, owning its output quantizer (``layer.out_quant(spec)``; none for the
  network's last weight layer). ``prepare`` binds it to its inputs' quantizers, names it and
  installs it. Whether that quantizer is signed is the op's ``signed`` facet
  (:func:`output_signed`), the one answer for the layer and for the shared quantizer of a
  concatenation's inputs (:mod:`hwquant.qat.shared_scales`).

A scheme with its own ``prepare`` (tables) reuses the ``fuse`` pass and builds its own layers
from the same specs. This module holds what every op's facets share.

>>> import hwquant
>>> from hwquant.ir.ops import handlers
>>> [h.name for h in handlers() if h.fuse is not None]
['add', 'avgpool', 'conv2d', 'linear', 'lut', 'mul']
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from hwquant.core.errors import UnsupportedLayerError
from hwquant.ir.ops import get_op
from hwquant.qat import fidelity
from hwquant.qat.llsq import LinearQuantizer
from hwquant.qat.nn.base import Activation
from hwquant.qat.recipe import Recipe


@dataclass
class FusedSpec:
    """What a rewritten node will become: the op that builds its QAT layer, and the float parts
    that layer absorbs.

    ``source`` is a weight layer's float layer (None for an op without weights), ``bn`` the
    BatchNorm folded into it, ``act`` the activation fused after it; ``options`` holds what is
    particular to the op (``kernel_size`` of an average pool: k, or None for a global pool).
    """

    op: str
    source: nn.Module | None = None
    bn: nn.Module | None = None
    act: Activation = None
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def has_weights(self) -> bool:
        """Whether the layer has weights (the network's last such layer has no output
        quantizer, and its inputs take ``last_layer_bits``)."""
        return self.source is not None


def output_signed(spec: FusedSpec, input_signed: Callable[[int], bool]) -> bool:
    """Whether the QAT layer of ``spec`` makes signed output codes, given ``input_signed(i)``:
    whether its ``i``-th input's codes are signed (asked only by an op whose answer depends on
    it). Its op's ``signed`` facet decides; an op without one is signed unless ``spec`` fuses
    an activation (a ReLU or ReLU6 clips at 0).

    >>> import hwquant
    >>> output_signed(FusedSpec("add"), bool), output_signed(FusedSpec("add", act="relu"), bool)
    (True, False)
    >>> output_signed(FusedSpec("avgpool"), lambda i: False)
    False
    """
    facet = get_op(spec.op).signed
    return facet(spec, input_signed) if facet is not None else spec.act is None


class Fusion:
    """The graph rewriting that ``fuse`` facets share, over one traced model ``gm``."""

    def __init__(self, gm: fx.GraphModule) -> None:
        self.gm = gm
        self.done: set[fx.Node] = set()
        """Nodes absorbed into a fused chain (the walk skips them)."""
        self._counts: dict[str, int] = {}

    def module(self, node: fx.Node) -> nn.Module | None:
        """The module ``node`` calls, None for a function or method call."""
        return self.gm.get_submodule(node.target) if node.op == "call_module" else None

    def activation(self, node: fx.Node) -> Activation:
        """'relu' / 'relu6' if ``node`` applies that activation, else None."""
        mod = self.module(node)
        if isinstance(mod, nn.ReLU6) or (node.op == "call_function" and node.target is F.relu6):
            return "relu6"
        if (
            isinstance(mod, nn.ReLU)
            or (node.op == "call_function" and node.target in (F.relu, torch.relu))
            or (node.op == "call_method" and node.target == "relu")
        ):
            return "relu"
        return None

    def absorb(
        self, head: fx.Node, bn_type: type | None
    ) -> tuple[fx.Node, nn.Module | None, Activation]:
        """Follow ``head`` through an optional ``bn_type`` BatchNorm and activation, each the
        only user of the node before it; return the chain's tail, the BatchNorm and the
        activation."""
        tail, bn = head, None
        nxt = _single_user(tail)
        if bn_type is not None and nxt is not None and isinstance(self.module(nxt), bn_type):
            tail, bn = nxt, self.module(nxt)
            if bn.running_var is None:
                raise UnsupportedLayerError(
                    f"BatchNorm '{nxt.target}' keeps no running statistics, so it cannot be "
                    "folded into the weights. Fix: build it with track_running_stats=True."
                )
            nxt = _single_user(tail)
        act = self.activation(nxt) if nxt is not None else None
        if act is not None:
            tail = nxt
        return tail, bn, act

    def collapse(self, head: fx.Node, tail: fx.Node, replacement: fx.Node) -> None:
        """Route the users of ``tail`` to ``replacement``, erase ``head..tail`` (the chain of
        first arguments) and record that ``replacement`` stands for ``tail``'s output (the
        fidelity check's :data:`~hwquant.qat.fidelity.FLOAT_NODE`)."""
        chain = [tail]
        while chain[-1] is not head:
            chain.append(chain[-1].args[0])
        replacement.meta[fidelity.FLOAT_NODE] = tail.name
        self.done.update(chain)
        tail.replace_all_uses_with(replacement)
        for node in chain:
            if node is not replacement:
                self.gm.graph.erase_node(node)

    def new_module_node(self, before: fx.Node, prefix: str, args: tuple) -> fx.Node:
        """A call, inserted before ``before``, of a new submodule named ``<prefix>_<k>`` (k counts
        the calls with that prefix from 1); an ``nn.Identity`` stands in until ``prepare``
        installs the QAT layer."""
        self._counts[prefix] = self._counts.get(prefix, 0) + 1
        name = f"{prefix}_{self._counts[prefix]}"
        self.gm.add_submodule(name, nn.Identity())
        with self.gm.graph.inserting_before(before):
            return self.gm.graph.call_module(name, args)


def _single_user(node: fx.Node) -> fx.Node | None:
    users = list(node.users)
    return users[0] if len(users) == 1 else None


@dataclass(frozen=True)
class LayerContext:
    """Where a fused node sits, for its op's ``build`` facet.

    ``inputs``: the quantizers of the codes it reads, in argument order; ``first``: it reads the
    network input; ``last``: its output is the network output (a weight layer there keeps no
    output quantizer); ``out_bits``: the bits of its output codes (``last_layer_bits`` where it
    feeds the last weight layer).
    """

    recipe: Recipe
    name: str
    inputs: tuple[LinearQuantizer, ...]
    first: bool
    last: bool
    out_bits: int
    shared: Callable[[bool], LinearQuantizer] | None = None
    """For a layer whose output feeds a concatenation with others: the one quantizer they
    share (:mod:`hwquant.qat.shared_scales`), given the signedness the layer asks for."""

    def out_quant(self, spec: FusedSpec) -> LinearQuantizer:
        """A new activation quantizer of ``out_bits`` for the output of ``spec``'s layer (the
        shared one where the layer has one), signed as :func:`output_signed` says."""
        signed = output_signed(spec, lambda i: self.inputs[i].signed)
        if self.shared is not None:
            return self.shared(signed)
        return act_quantizer(self.recipe, self.out_bits, signed)


def act_quantizer(recipe: Recipe, bits: int, signed: bool) -> LinearQuantizer:
    """An activation quantizer of ``bits`` under ``recipe``."""
    return LinearQuantizer(
        bits,
        signed,
        is_activation=True,
        gradient=recipe.scale_gradient,
        norm=recipe.llsq_norm,
        init=recipe.scale_init,
        trained=recipe.act_scales == "trained",
        error_samples=recipe.act_error_samples,
        constraint=recipe.scale_constraint,
        mantissa_bits=recipe.scale_mantissa_bits,
    )
