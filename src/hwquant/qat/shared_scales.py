"""Activation quantizers shared by the inputs of a join, so that the join is exact on codes.

A *join* is an op that ``prepare`` keeps as it is and that reads several tensors, such as
``torch.cat`` on channels (DenseNet, U-Net, Inception). Its output is exact on codes only if
every input carries codes of one scale ``α``: then ``cat(α·a, α·b) = α·cat(a, b)``, and the
integer join moves codes without arithmetic. So the layers producing a join's inputs share
*one* activation quantizer (one learned ``α``, one bit-width, one signedness), and joins that
share a producer are merged: ``cat(x, f(x))`` followed by ``cat(that, g(that))`` (a dense
block) puts ``x``'s, ``f``'s and ``g``'s producers into one group.

A group's quantizer is signed when any member wants signed codes (the input; a layer whose op
says so, :func:`hwquant.qat.fusion.output_signed`: one without a fused ReLU, an average pool of
signed codes, ...); a member with a fused ReLU then still clips at code 0. Its bit-width is the
members' common one: ``last_layer_bits`` when a member feeds the last layer (then all of them
do, through the join), ``input_bits`` for the network input; members that ask for different
widths are refused with an error naming the join.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from torch import fx

from hwquant.core.errors import ConfigError, HwquantError
from hwquant.qat.fusion import act_quantizer
from hwquant.qat.llsq import LinearQuantizer
from hwquant.qat.recipe import Recipe


def join_inputs(node: fx.Node) -> list[fx.Node]:
    """The tensors a join reads: the nodes in a list or tuple argument (``torch.cat([a, b])``).

    >>> g = fx.Graph()
    >>> a, b = g.placeholder("a"), g.placeholder("b")
    >>> [n.name for n in join_inputs(g.call_function(print, ([a, b], 1)))]
    ['a', 'b']
    """
    lists = [arg for arg in node.args if isinstance(arg, list | tuple)]
    return [a for items in lists for a in items if isinstance(a, fx.Node)]


def tensor_inputs(node: fx.Node) -> list[fx.Node]:
    """The tensor arguments of ``node`` in order, those inside a list or tuple argument
    (``torch.cat([a, b], 1)``) included.

    >>> g = fx.Graph()
    >>> a, b = g.placeholder("a"), g.placeholder("b")
    >>> [n.name for n in tensor_inputs(g.call_function(print, ([a, b], a)))]
    ['a', 'b', 'a']
    """
    found: list[fx.Node] = []
    for arg in node.args:
        items = arg if isinstance(arg, list | tuple) else [arg]
        found += [a for a in items if isinstance(a, fx.Node)]
    return found


class SharedScales:
    """The groups of producers whose output quantizer is one object (module docstring).

    ``joins``: each join node with the producers of its inputs (the quantizing nodes whose
    codes they carry).
    """

    def __init__(
        self,
        joins: Iterable[tuple[fx.Node, list[fx.Node]]],
        wants_signed: Callable[[fx.Node], bool],
    ) -> None:
        self.wants_signed = wants_signed
        self._parent: dict[fx.Node, fx.Node] = {}
        self.join_of: dict[fx.Node, fx.Node] = {}  # member -> a join it feeds (for messages)
        for join, members in joins:
            for member in members:
                self.join_of.setdefault(member, join)
                self._union(members[0], member)
        self._quantizers: dict[fx.Node, LinearQuantizer] = {}
        self._signed: dict[fx.Node, bool] = {}

    def _find(self, node: fx.Node) -> fx.Node:
        self._parent.setdefault(node, node)
        while self._parent[node] is not node:
            node = self._parent[node] = self._parent[self._parent[node]]
        return node

    def _union(self, a: fx.Node, b: fx.Node) -> None:
        self._parent[self._find(b)] = self._find(a)

    def __contains__(self, node: fx.Node) -> bool:
        return node in self._parent

    def members(self, node: fx.Node) -> list[fx.Node]:
        """Every producer in ``node``'s group (``node`` included)."""
        root = self._find(node)
        return [m for m in self._parent if self._find(m) is root]

    def signed(self, node: fx.Node) -> bool:
        """Whether ``node``'s group quantizes signed: any member ``wants_signed`` (a member
        asking through the group itself, a pool of a concatenation, adds nothing)."""
        root = self._find(node)
        if root not in self._signed:
            self._signed[root] = False  # while asking: a cycle through the group adds nothing
            self._signed[root] = any(self.wants_signed(m) for m in self.members(node))
        return self._signed[root]

    def quantizer(
        self, node: fx.Node, bits_of: Callable[[fx.Node], int], recipe: Recipe
    ) -> LinearQuantizer:
        """The group's one quantizer (made for its first member asking), of the members'
        common width (``bits_of``: each member's) and the group's signedness.

        Raises:
            ConfigError: the members ask for different bit-widths.
        """
        root = self._find(node)
        if root not in self._quantizers:
            widths = {m: bits_of(m) for m in self.members(node)}
            if len(set(widths.values())) > 1:
                join = self.join_of[node]
                asked = ", ".join(f"'{m.name}': {b}" for m, b in widths.items())
                raise ConfigError(
                    f"the inputs of '{join.name}' must share one activation quantizer (a "
                    f"concatenation is exact on codes of one scale), but they ask for "
                    f"different bit-widths ({asked}). Fix: set the recipe's input_bits, "
                    "act_bits and last_layer_bits equal for them, or put a layer between the "
                    "network input and the concatenation."
                )
            width = next(iter(widths.values()))
            self._quantizers[root] = act_quantizer(recipe, width, self.signed(node))
        return self._quantizers[root]

    def out_quant(
        self, node: fx.Node, bits_of: Callable[[fx.Node], int], recipe: Recipe
    ) -> Callable[[bool], LinearQuantizer]:
        """``signed -> quantizer`` for member ``node``'s QAT layer
        (:attr:`hwquant.qat.fusion.LayerContext.shared`): the group's quantizer.

        Raises:
            HwquantError: the layer asks for signed codes of an unsigned group (its op's
                signedness is not the one :meth:`signed` was told; a bug, never a clamp).
        """

        def shared(signed: bool) -> LinearQuantizer:
            quant = self.quantizer(node, bits_of, recipe)
            if signed and not quant.signed:
                raise HwquantError(
                    f"layer '{node.name}' asks for signed output codes, but the quantizer it "
                    f"shares with the other inputs of '{self.join_of[node].name}' is unsigned. "
                    "Fix: report this; keep the layer out of the concatenation meanwhile."
                )
            return quant

        return shared
