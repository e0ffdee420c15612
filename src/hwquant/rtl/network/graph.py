"""From an IntModel to blocks and edges, and the cycle counts of the whole design.

:func:`network` walks an IntModel's nodes in order, asks each node's emitter
(:mod:`hwquant.rtl.network.registry`) for its block, and :func:`assemble` connects every reader
to its producer by an edge (an image FIFO, :mod:`hwquant.rtl.network.stream`). An edge gets
two banks (ping-pong) unless its producer reaches its consumer by a longer path too (the skip
connection of a residual block): then it holds ``2·L`` images, ``L`` the number of edges on the
longest such path, as many as that path can hold, so the producer never waits on it
(:func:`edge_banks`).

**Cycle model.** Block ``b`` takes ``cycles_b = steps_b + depth_b + 1`` (each block's module
docstring gives its steps and depth); the input interface ``H·W`` for an image fed one pixel
per cycle. An image committed on a block's last input edge at cycle ``e`` is on its output at
``e + cycles_b``, so with images fed back to back from cycle 0

    latency = max over paths input → output of Σ cycles_b      (first pixel in → out_valid)
    II      = max_b cycles_b                                    (out_valid to out_valid)

the interval holding from the first image on because every block upstream of the slowest one
is at least as fast and every edge has a free bank for the next image (ping-pong).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hwquant.core.errors import ConfigError, HwquantError
from hwquant.hw.folding import Fold
from hwquant.ir.intmodel import IntModel, IntNode, WeightNode
from hwquant.rtl.network.interface import INPUT, OUTPUT, emit_input, emit_output
from hwquant.rtl.network.registry import emitter, is_folded
from hwquant.rtl.network.stream import Block, FeatureMap


@dataclass(frozen=True)
class Edge:
    """An image FIFO from block ``source`` to input ``port`` of block ``target``."""

    source: str
    target: str
    port: int
    fmap: FeatureMap
    banks: int


@dataclass
class Network:
    """The blocks (input interface first, output interface last) and the edges of a design."""

    blocks: list[Block]
    edges: list[Edge]

    def block(self, name: str) -> Block:
        """The block called ``name``."""
        return next(b for b in self.blocks if b.name == name)

    def arrivals(self) -> dict[str, int]:
        """Per block, the cycle its first image is committed on its output (the input
        interface's first beat at cycle 0; module docstring)."""
        done: dict[str, int] = {}
        for block in self.blocks:
            start = max((done[e.source] for e in self.edges if e.target == block.name), default=0)
            done[block.name] = start + block.cycles
        return done

    @property
    def latency_cycles(self) -> int:
        """Cycles from an image's first input beat to its ``out_valid`` (module docstring)."""
        return self.arrivals()[OUTPUT]

    @property
    def ii_cycles(self) -> int:
        """Cycles between consecutive images at the output (module docstring)."""
        return max(b.cycles for b in self.blocks)


def module_name(name: str) -> str:
    """A Verilog module name for the block of node ``name``."""
    safe = "".join(ch if ch.isalnum() else "_" for ch in name)
    return f"hq_{safe}"


def input_shape(model: IntModel, size: int | None = None) -> tuple[int, int, int]:
    """``(C, H, W)`` of the model's input: square ``size`` x ``size`` images, or when ``size``
    is None the one square size up to :data:`MAX_INFERRED_SIZE` on which the engine runs the
    model (a global pool or a fully connected layer fixes it); several such sizes raise
    :class:`ConfigError` listing them."""
    first = model.weight_nodes()[0]
    if first.op != "conv2d":
        return (first.fan_in(), 1, 1)
    return square_shape(first.weight.shape[1], size, lambda shape: _runs(model, shape))


def square_shape(
    channels: int, size: int | None, runs: Callable[[tuple[int, int, int]], bool]
) -> tuple[int, int, int]:
    """``(channels, size, size)``, or when ``size`` is None the one square size up to
    :data:`MAX_INFERRED_SIZE` on which ``runs`` (the model's engine) succeeds; none or several
    raise :class:`ConfigError` naming them."""
    if size is not None:
        return (channels, size, size)
    fits = [s for s in range(1, MAX_INFERRED_SIZE + 1) if runs((channels, s, s))]
    if len(fits) != 1:
        found = f"it runs on {', '.join(map(str, fits[:8]))}" if fits else "it runs on none"
        raise ConfigError(
            f"the input size of the model cannot be inferred ({found}). Fix: pass input_size "
            "(--input-size) for the images it was trained on."
        )
    return (channels, fits[0], fits[0])


MAX_INFERRED_SIZE = 256
"""Largest square input size :func:`input_shape` tries."""


def _runs(model: IntModel, shape: tuple[int, int, int]) -> bool:
    """Whether the engine runs ``model`` on one image of ``shape``."""
    import torch

    from hwquant.engine import run

    try:
        run(model, torch.zeros((1, *shape), dtype=torch.int64), stats=False)
    except (HwquantError, RuntimeError):
        return False
    return True


def edge_banks(sources: dict[str, list[str]], source: str, target: str) -> int:
    """Banks of the edge ``source → target`` (module docstring): ``2·L``, ``L`` the longest
    path in edges from ``source`` to ``target`` (``sources``: each block's input blocks)."""
    longest: dict[str, int] = {source: 0}
    order = list(sources)  # blocks in topological order
    for name in order[order.index(source) + 1 :]:
        lengths = [longest[s] + 1 for s in sources[name] if s in longest]
        if lengths:
            longest[name] = max(lengths)
    return 2 * longest[target]


BlockMaker = Callable[[list[FeatureMap]], Block | None]
"""Makes a node's block from its input maps; None for a node that only renames its input (a
flatten: the next fully connected block reads the ``[C, H, W]`` map itself)."""


def assemble(
    fmap_in: FeatureMap,
    input_name: str,
    nodes: list[tuple[str, list[str], BlockMaker]],
    output: str,
) -> Network:
    """Blocks and edges of a network whose input ``input_name`` carries ``fmap_in`` images:
    ``nodes`` in execution order as ``(name, input names, block maker)``, ``output`` the node
    whose map is the logits (module docstring)."""
    blocks = [emit_input(fmap_in, input_name, "hq_input")]
    maps = {input_name: fmap_in}
    producer = {input_name: input_name}  # node -> block that holds its map
    for name, inputs, make in nodes:
        block = make([maps[i] for i in inputs])
        if block is None:  # a flatten: readers use the input's map and block
            maps[name] = maps[inputs[0]]
            producer[name] = producer[inputs[0]]
            continue
        block.inputs = [producer[i] for i in inputs]
        blocks.append(block)
        maps[name] = block.output
        producer[name] = name
    logits = maps[output]
    if logits.pixels != 1:
        raise ConfigError(
            f"the output '{output}' is a {logits.shape()} map, not a vector of logits. "
            "Fix: end the network with a fully connected layer."
        )
    blocks.append(emit_output(logits, producer[output], "hq_output"))
    sources = {b.name: b.inputs for b in blocks}
    edges = [
        Edge(src, b.name, port, maps_of(blocks, src), edge_banks(sources, src, b.name))
        for b in blocks
        for port, src in enumerate(b.inputs)
    ]
    return Network(blocks, edges)


def network(model: IntModel, folding: dict[str, Fold], shape: tuple[int, int, int]) -> Network:
    """Blocks and edges of ``model`` for input images of ``shape`` (module docstring);
    ``folding`` gives every weight layer's PE x SIMD."""
    outside = {n.name for n in model.nodes if n.outside}  # a final softmax: the host's
    output = model.integer_output
    inner = [n for n in model.nodes if n.name not in outside]
    last = inner[-1] if inner else None
    if not isinstance(last, WeightNode) or last.mult is not None or output != last.name:
        raise ConfigError(
            "the network generator needs a model ending in a weight layer that outputs its "
            "accumulators (the logits). Fix: lower a classifier whose last layer is linear."
        )

    def maker(node: IntNode) -> BlockMaker:
        make = emitter(node)
        fold = folding.get(node.name, Fold(1, 1)) if is_folded(node) else Fold(1, 1)
        return lambda inputs: make(node, inputs, fold, module_name(node.name))

    fmap_in = FeatureMap(*shape, model.input.bits, model.input.signed)
    nodes = [(node.name, node.inputs, maker(node)) for node in inner]
    return assemble(fmap_in, model.input.name, nodes, output)


def maps_of(blocks: list[Block], name: str) -> FeatureMap:
    """The output map of the block called ``name``."""
    block = next(b for b in blocks if b.name == name)
    assert block.output is not None
    return block.output


__all__ = [
    "INPUT",
    "OUTPUT",
    "BlockMaker",
    "Edge",
    "Network",
    "assemble",
    "edge_banks",
    "input_shape",
    "network",
    "square_shape",
]
