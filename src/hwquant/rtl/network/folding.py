"""PE x SIMD per weight layer, chosen to fit a device, and the fit check that refuses a network
no folding can fit.

A weight layer of ``R`` rows, ``C`` input channels, a ``KH x KW`` kernel and ``P`` output
pixels takes ``steps = P · NF · KH·KW·C/SIMD`` cycles (``NF = ⌈R/PE⌉``, or the MSQ lane split of
:func:`hwquant.rtl.network.weight_layer.lane_layout`), and the design's interval is its slowest
block's (:mod:`hwquant.rtl.network.graph`). :func:`choose_folding` starts every layer at
``PE = SIMD = 1`` and repeatedly widens the slowest layer by the next PE (a divisor of ``R``)
or SIMD (a divisor of ``C``), whichever costs fewer products, while the design stays within
the device's budget:

* multipliers: each multiplier lane product (fixed-point, codebook) and each requantizer lane
  takes one DSP multiplier;
* shift-add (SP2) products: at most ``luts / LUTS_PER_SHIFT_ADD`` of them [D];
* memory (:func:`check_memory`): the weight ROMs and the edges' image FIFOs must fit the block
  RAM; they do not depend on the folding, so a network over it fits at no folding
  (:class:`ConfigError` naming the resource and how far over), as does one needing more DSP
  multipliers at ``PE = SIMD = 1`` than the device has.

It stops when the slowest block is not a weight layer (the input interface takes one pixel per
cycle; pooling and adds one word per cycle) or no widening fits.

**A throughput target** (``target_ii``, :func:`target_folding`): instead of filling the device,
every free weight layer gets the *cheapest* fold whose block takes at most ``target_ii`` cycles
per image, cheapest meaning fewest products ``PE·SIMD``, then fewest lanes ``PE`` (each lane
has its own accumulator and requantizer). A block's cycles are ``steps + depth + 1``
(:mod:`hwquant.rtl.network.stream`), its pipeline depth growing with ``⌈log2 SIMD⌉``, so the
fold is checked on the emitted blocks and widened where the depth pushes it over. The
interval is then at most ``target_ii``; a target below what a block that is not folded takes
(the input interface: ``H·W`` cycles), or beyond the widest fold of a layer, or needing more
multipliers than the device has, is refused with the figure that would work.
"""

from __future__ import annotations

from collections.abc import Callable

from hwquant.core.errors import ConfigError
from hwquant.hw.devices import Device
from hwquant.hw.folding import Fold, divisors
from hwquant.ir.intmodel import IntModel, WeightNode
from hwquant.rtl.golden import lane_groups
from hwquant.rtl.network.graph import Network, network
from hwquant.rtl.network.weight_layer import lane_layout

LUTS_PER_SHIFT_ADD = 64
"""LUT budget per SP2 shift-add product with its adder-tree share [D]: a planning figure; the
placed designs give the real counts."""


def _layer_shapes(model: IntModel, shape: tuple[int, int, int]) -> dict[str, tuple[int, ...]]:
    import torch

    from hwquant.engine import run

    traced = run(model, torch.zeros((1, *shape), dtype=torch.int64), trace=True, stats=False)
    return {name: tuple(v.shape[1:]) for name, v in traced.values.items()}


def _steps(node: WeightNode, fold: Fold, out_shape: tuple[int, ...]) -> int:
    """Work items of ``node`` per image at ``fold``."""
    pixels = out_shape[1] * out_shape[2] if len(out_shape) == 3 else 1
    folds = len(lane_layout(node, fold.pe)[0][0].rows)
    return pixels * folds * node.fan_in() // fold.simd


def _word_channels(model: IntModel, node: WeightNode, shapes: dict[str, tuple[int, ...]]) -> int:
    """Channels of the pixel words ``node`` reads (a flatten keeps its input's channels)."""
    source = node.inputs[0]
    kinds = {n.name: n for n in model.nodes}
    while source in kinds and kinds[source].op == "reshape":
        source = kinds[source].inputs[0]
    return shapes[source][0]


def _products(model: IntModel, folds: dict[str, Fold]) -> tuple[int, int]:
    """(DSP multipliers, shift-add products) of a folding."""
    dsps = shift_adds = 0
    for node in model.weight_nodes():
        fold = folds[node.name]
        lanes = lane_layout(node, fold.pe)
        for lane, _ in lanes:
            if lane.product.kind == "sp2":
                shift_adds += fold.simd
            else:
                dsps += fold.simd
        if node.mult is not None:
            dsps += len(lanes)
    return dsps, shift_adds


def check_memory(net: Network, device: Device) -> None:
    """Raise :class:`ConfigError` when the weight ROMs and the edges' image FIFOs of ``net``
    exceed the device's block RAM (no folding changes them)."""
    edges = sum(e.banks * e.fmap.pixels * e.fmap.word_bits for e in net.edges)
    roms = sum(
        b.info["weight_rom"]["words"] * b.info["weight_rom"]["width"]
        for b in net.blocks
        if "weight_rom" in b.info
    )
    need = edges + roms
    if need > device.bram_bits:
        raise ConfigError(
            f"block RAM: the weight ROMs ({roms / 1024:.0f} Kbit) and feature-map buffers "
            f"({edges / 1024:.0f} Kbit) need {need / 1024:.0f} Kbit, the {device.name} has "
            f"{device.bram_bits / 1024:.0f} Kbit ({need / device.bram_bits:.2f}x, "
            f"{(need - device.bram_bits) / 1024:.0f} Kbit over) at any folding. Fix: choose a "
            "larger device or a smaller model."
        )


def choose_folding(
    model: IntModel, shape: tuple[int, int, int], device: Device, given: dict[str, Fold]
) -> dict[str, Fold]:
    """Every weight layer's fold: ``given`` ones as they are, the others chosen (module
    docstring)."""
    names = {n.name for n in model.weight_nodes()}
    unknown = sorted(set(given) - names)
    if unknown:
        raise ConfigError(
            f"the folding names {', '.join(unknown)}, which are no weight layers. Fix: use "
            f"layer names from {', '.join(sorted(names))}."
        )
    shapes = _layer_shapes(model, shape)
    # a layer with several kinds of rows (MSQ: SP2 and fixed) starts with one lane per kind
    folds = {n.name: given.get(n.name, Fold(len(lane_groups(n)), 1)) for n in model.weight_nodes()}
    dsps, _ = _products(model, folds)
    if dsps > device.dsps:
        raise ConfigError(
            f"DSP multipliers: the design needs {dsps} even at PE = SIMD = 1, the {device.name} "
            f"has {device.dsps} ({dsps / max(device.dsps, 1):.2f}x over). Fix: choose a device "
            "with more DSPs, or a scheme with shift-add (MSQ) or table layers."
        )
    nodes = {n.name: n for n in model.weight_nodes()}

    def fits(trial: dict[str, Fold]) -> bool:
        try:
            d, s = _products(model, trial)
        except ConfigError:
            return False
        return d <= device.dsps and s * LUTS_PER_SHIFT_ADD <= device.luts

    return widen(
        folds,
        [n for n in nodes if n not in given],
        lambda name, fold: _steps(nodes[name], fold, shapes[name]),
        {n: (nodes[n].weight.shape[0], _word_channels(model, nodes[n], shapes)) for n in nodes},
        fits,
        shape[1] * shape[2],
    )


def widen(
    folds: dict[str, Fold],
    free: list[str],
    steps: Callable[[str, Fold], int],
    sizes: dict[str, tuple[int, int]],
    fits: Callable[[dict[str, Fold]], bool],
    floor: int,
) -> dict[str, Fold]:
    """The greedy of the module docstring, for any scheme: from ``folds``, widen the layer
    with the most ``steps(name, fold)`` by the next PE (a divisor of its rows) or SIMD (a
    divisor of its word's channels; ``sizes[name] = (rows, channels)``), the one with fewer
    products first, while ``fits(folds)``; only the ``free`` layers change, and it stops when
    the slowest layer is not free, takes at most ``floor`` steps, or cannot widen."""
    folds = dict(folds)
    while free:
        cycles = {n: steps(n, f) for n, f in folds.items()}
        slowest = max(cycles, key=cycles.get)
        if slowest not in free or cycles[slowest] <= floor:
            break
        fold, (rows, channels) = folds[slowest], sizes[slowest]
        pes = [p for p in divisors(rows) if p > fold.pe]
        options = [Fold(pes[0], fold.simd)] if pes else []
        simds = [d for d in divisors(channels) if d > fold.simd]
        options += [Fold(fold.pe, simds[0])] if simds else []
        best = next(
            (
                o
                for o in sorted(options, key=lambda f: f.pe * f.simd)
                if fits({**folds, slowest: o})
            ),
            None,
        )
        if best is None:
            break
        folds[slowest] = best
    return folds


def _cost(fold: Fold) -> tuple[int, int]:
    """The order of :func:`target_folding`'s candidates: products, then lanes."""
    return fold.pe * fold.simd, fold.pe


def _candidates(
    model: IntModel, node: WeightNode, shapes: dict[str, tuple[int, ...]]
) -> list[tuple[Fold, int]]:
    """Every fold of ``node`` (PE a divisor of its rows, SIMD of its input word's channels)
    with its steps per image, cheapest first (:func:`_cost`)."""
    channels = _word_channels(model, node, shapes)
    found = []
    for pe in divisors(node.weight.shape[0]):
        if pe < len(lane_groups(node)):
            continue  # an MSQ layer needs a lane of each kind of row
        for simd in divisors(channels):
            fold = Fold(pe, simd)
            found.append((fold, _steps(node, fold, shapes[node.name])))
    return sorted(found, key=lambda c: _cost(c[0]))


def target_folding(
    model: IntModel,
    shape: tuple[int, int, int],
    device: Device,
    given: dict[str, Fold],
    target_ii: int,
) -> dict[str, Fold]:
    """Every weight layer's fold for an interval of at most ``target_ii`` cycles: ``given``
    ones as they are, the others the cheapest that meet it (module docstring).

    Raises:
        ConfigError: no folding meets the target (a block that is not folded, or a layer at
            its widest fold, is slower: the message names it and its cycles), or the folding
            that meets it needs more multipliers or shift-add LUTs than ``device`` has.
    """
    if target_ii < 1:
        raise ConfigError(f"target_ii={target_ii} cycles. Fix: give a positive interval.")
    shapes = _layer_shapes(model, shape)
    nodes = {n.name: n for n in model.weight_nodes()}
    options = {n: _candidates(model, nodes[n], shapes) for n in nodes if n not in given}
    pick = {
        n: next((i for i, (_, s) in enumerate(c) if s <= target_ii), None)
        for n, c in options.items()
    }
    while True:
        stuck = {n: min(s for _, s in options[n]) for n, i in pick.items() if i is None}
        if stuck:
            name = max(stuck, key=stuck.get)
            raise ConfigError(
                f"layer '{name}' takes at least {stuck[name]} cycles per image at its widest "
                f"fold, more than target_ii={target_ii}. Fix: target an interval of at least "
                f"{stuck[name]} cycles."
            )
        folds = {**given, **{n: options[n][i][0] for n, i in pick.items()}}
        net = network(model, folds, shape)
        slow = [b for b in net.blocks if b.cycles > target_ii]
        if not slow:
            break
        for block in slow:
            if block.name not in pick:
                raise ConfigError(
                    f"block '{block.name}' ({block.op}) takes {block.cycles} cycles per image "
                    f"at {'its given fold' if block.name in given else 'any fold'}, more than "
                    f"target_ii={target_ii}. Fix: target an interval of at least "
                    f"{max(b.cycles for b in slow if b.name not in pick)} cycles."
                )
            later = options[block.name][pick[block.name] + 1 :]
            step = next((i for i, (_, s) in enumerate(later) if s < block.steps), None)
            pick[block.name] = None if step is None else pick[block.name] + 1 + step
    dsps, shift_adds = _products(model, folds)
    if dsps > device.dsps or shift_adds * LUTS_PER_SHIFT_ADD > device.luts:
        raise ConfigError(
            f"target_ii={target_ii}: the cheapest folding that meets it needs {dsps} DSP "
            f"multipliers and {shift_adds} shift-add products "
            f"(~{shift_adds * LUTS_PER_SHIFT_ADD} LUTs); the {device.name} has {device.dsps} "
            f"DSPs and {device.luts} LUTs. Fix: "
            "target a longer interval, or choose a larger device."
        )
    return folds
