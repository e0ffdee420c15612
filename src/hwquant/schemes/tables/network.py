"""A whole :class:`TableModel` as one streaming accelerator (issue 16): table lookup and
threshold compare, no multiplier.

:func:`build_table_design` builds the same dataflow design as
:func:`hwquant.rtl.network.build_design` (input interface, one block per node, image FIFOs,
output interface with argmax; :mod:`hwquant.rtl.network.graph`), from a table model:

* **feature maps** carry activation *indices* (unsigned, ``⌈log2 n⌉`` bits for a codebook of
  ``n`` levels); the input interface takes the indices of
  :meth:`TableModel.quantize_input`;
* a **unit** (conv or linear, :class:`UnitNode`) is the PE x SIMD block of
  :mod:`hwquant.rtl.network.weight_layer` whose products are the lookups ``T[x, w]`` of
  :func:`hwquant.schemes.tables.rtl.table_product` (a padding position reads the zero row,
  index ``|A|``), with ``acc_bits`` the proven bound of :func:`table_acc_bits`, and instead of a
  requantizer the threshold compare of :class:`Thresholds`; the last unit outputs ``acc +
  bias``, the engine's logits;
* **max pooling** of indices is the max-pooling block (levels increase with the index, and a
  padding position reads index 0, as :func:`hwquant.schemes.tables.kernels.window_max` does);
  **flatten** only renames its input.

Residual adds (:class:`LookupAddNode`) and average pooling (:class:`PoolNode`) have no block yet:
:func:`table_network` refuses them, naming the ops that have one.

Folding: every table product is a ROM in LUTs, so :func:`choose_table_folding` widens the
slowest unit (:func:`hwquant.rtl.network.folding.widen`) while the products' ROMs take at most
:data:`TABLE_LUT_SHARE` of the device's LUTs (``⌈entries / 2^k⌉ · entry_bits`` ``k``-input
LUTs per product [D]: a planning figure, the synthesized designs give the real counts).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hwquant.core.errors import ConfigError, HwquantError, UnsupportedLayerError
from hwquant.core.intmath import signed_bits
from hwquant.hw.devices import Device, get_device
from hwquant.hw.folding import Fold
from hwquant.ir.intmodel import MaxPoolNode
from hwquant.qat.options import pair
from hwquant.rtl.network import pool
from hwquant.rtl.network.design import Design, check_target, write_design
from hwquant.rtl.network.folding import widen
from hwquant.rtl.network.graph import BlockMaker, Network, assemble, module_name, square_shape
from hwquant.rtl.network.stream import FeatureMap
from hwquant.rtl.network.weight_layer import (
    ArraySpec,
    Lane,
    Stages,
    conv_geometry,
    dense_geometry,
    emit_array,
)
from hwquant.rtl.unit import index_bits
from hwquant.schemes.tables.engine import native_geometry, run_tables
from hwquant.schemes.tables.model import (
    FlattenNode,
    TableModel,
    TableNode,
    UnitNode,
    load_tables,
)
from hwquant.schemes.tables.rtl import table_product

BLOCK_KINDS = ("unit (conv, linear)", "maxpool", "flatten")
"""The table node kinds with a hardware block (named when one without is refused)."""

TABLE_LUT_SHARE = 0.5
"""Share of the device's LUTs the automatic folding gives the table ROMs [D]."""


@dataclass(frozen=True)
class Thresholds:
    """The threshold activation of a unit (:func:`hwquant.schemes.tables.kernels.count_passed`):
    ``code = #{k : acc ≥ τ[row, k]}``, or ``#{k : acc ≤ τ[row, k]}`` on a ``descending`` row.

    Two register stages: the comparisons, then their sum. A threshold beyond the
    accumulator's ``acc_bits`` range (the ``±SENTINEL`` of "always" and "never") is clipped to
    one past that range, which passes or fails every accumulator alike, so the compare is
    ``acc_bits + 1`` bits wide.
    """

    tau: np.ndarray  # int64 [R, n-1]
    descending: np.ndarray  # bool [R]

    def out_format(self) -> tuple[int, bool]:
        """Indices ``0..n−1``, unsigned."""
        return index_bits(self.tau.shape[1] + 1), False

    def fold_words(self, lane: Lane, acc_bits: int) -> list[int]:
        """The lane's threshold word per neuron fold, ``{descending, τ_(n−2), ..., τ_0}``
        with each ``τ`` clipped (class docstring) in ``acc_bits + 1`` bits (0: an idle fold)."""
        count, width = self.tau.shape[1], acc_bits + 1
        lo, hi = -(1 << (acc_bits - 1)) - 1, 1 << (acc_bits - 1)
        words = []
        for r in lane.rows:
            if r < 0:
                words.append(0)
                continue
            word = int(bool(self.descending[r])) << (count * width)
            for k, tau in enumerate(np.clip(self.tau[r], lo, hi)):
                word |= (int(tau) & ((1 << width) - 1)) << (k * width)
            words.append(word)
        return words

    def record(self, lanes: list[tuple[Lane, np.ndarray]], acc_bits: int) -> dict:
        """design.json's ``thresholds``: per lane ``count`` compares of ``compare_bits``, and
        ``live_columns``: per lane the bit columns of its fold table (:meth:`fold_words`, and
        the ``case``'s default 0 where the fold select has codes beyond the folds) that are
        neither constant nor a copy of another column, the bits Yosys keeps of the table
        (:mod:`hwquant.rtl.network.estimate`)."""
        count, width = int(self.tau.shape[1]), acc_bits + 1
        live = []
        for lane, _ in lanes:
            words = self.fold_words(lane, acc_bits)
            if 1 << index_bits(len(words)) > len(words):  # the select's spare codes
                words.append(0)
            columns = {tuple((w >> b) & 1 for w in words) for b in range(count * width + 1)}
            live.append(sum(len(set(c)) > 1 for c in columns))
        return {
            "requantizer": None,
            "thresholds": {"count": count, "compare_bits": width, "live_columns": live},
        }

    def lines(
        self, lanes: list[tuple[Lane, np.ndarray]], stages: Stages, acc_bits: int
    ) -> list[str]:
        """Per lane: ``pass_<p>`` (one bit per threshold of its row in this fold), then
        ``code_<p>`` = their sum."""
        count = self.tau.shape[1]
        width = acc_bits + 1
        ob = self.out_format()[0]
        lines: list[str] = []
        t = stages.now
        lines += stages.advance()
        for p, (lane, _) in enumerate(lanes):
            words = self.fold_words(lane, acc_bits)
            arms = [f"{count * width + 1}'h{word:x}" for word in words]
            cases = "".join(f"            {f}: row_{p} = {arm};\n" for f, arm in enumerate(arms))
            lines += [
                f"    reg [{count * width}:0] row_{p};",
                "    always @(*) begin",
                f"        case (res_nf_{t})\n{cases}            default: row_{p} = 0;",
                "        endcase",
                "    end",
                f"    wire signed [{width - 1}:0] wide_{p} = res_{p};",
                f"    wire desc_{p} = row_{p}[{count * width}];",
                f"    reg [{count - 1}:0] pass_{p};",
                "    always @(posedge clk) begin",
            ]
            lines += [
                f"        pass_{p}[{k}] <= desc_{p} ? "
                f"wide_{p} <= $signed(row_{p}[{k * width} +: {width}]) : "
                f"wide_{p} >= $signed(row_{p}[{k * width} +: {width}]);"
                for k in range(count)
            ]
            lines.append("    end")
        lines += stages.advance()
        for p in range(len(lanes)):
            total = " + ".join(f"{{{ob - 1}'d0, pass_{p}[{k}]}}" for k in range(count))
            if ob == 1:
                total = " + ".join(f"pass_{p}[{k}]" for k in range(count))
            lines += [
                f"    reg [{ob - 1}:0] code_{p};",
                f"    always @(posedge clk) code_{p} <= {total};",
            ]
        return lines


def table_acc_bits(node: UnitNode, last: bool) -> int:
    """Signed bits that hold every accumulator of ``node``: per row ``bias + Σ_k T[x_k,
    w[row, k]]`` lies between the sums of each tap's smallest and largest entry over all
    indices ``x`` and the padding row's 0 (``bias`` on the last unit only); the adder tree and
    accumulator wrap at that width, which changes no result inside it."""
    table = np.asarray(node.table, np.int64)
    flat = node.weight_index.reshape(node.weight_index.shape[0], -1)
    low = np.minimum(table.min(0), 0)[flat].sum(1)
    high = np.maximum(table.max(0), 0)[flat].sum(1)
    if last:
        low, high = low + node.bias, high + node.bias
    return max(2, signed_bits([int(low.min()), int(high.max())]))


def unit_spec(node: UnitNode, last: bool) -> ArraySpec:
    """The :class:`ArraySpec` of a table unit (module docstring)."""
    rows = node.weight_index.shape[0]
    entries, weights = node.table.shape
    flat = node.weight_index.reshape(rows, -1).astype(np.int64)
    product = table_product(node.table, node.entry_bits, image=True)
    acc_bits = table_acc_bits(node, last)
    bias = np.asarray(node.bias, np.int64) if last else np.zeros(rows, np.int64)
    activation = None if last else Thresholds(np.asarray(node.thresholds), node.descending)
    return ArraySpec(
        node.name,
        "conv2d" if node.op == "conv" else "linear",
        node.inputs[0],
        index_bits(entries),
        False,
        [("table", np.arange(rows), product, flat)],
        rows,
        bias,
        acc_bits,
        acc_bits,
        index_bits(weights),
        activation,
        pad_code=entries,
        info={"table_entries": (entries + 1) * weights},
    )


def _geometry(node: UnitNode, fmap: FeatureMap):
    if node.op == "conv":
        kernel = tuple(node.weight_index.shape[-2:])
        return conv_geometry(kernel, pair(node.stride), pair(node.padding), fmap)
    return dense_geometry(node.name, node.weight_index.shape[1], fmap)


def _maker(node: TableNode, fold: Fold, last: bool) -> BlockMaker:
    module = module_name(node.name)
    if isinstance(node, UnitNode):
        spec = unit_spec(node, last)
        return lambda maps: emit_array(
            spec, _geometry(node, maps[0]), maps[0], fold.pe, fold.simd, module
        )
    if isinstance(node, MaxPoolNode):  # the IR's own node: the IntModel pool block
        return lambda maps: pool.emit_max(node, maps, module)
    return lambda maps: None  # a flatten (check_blocks admits no other node)


@dataclass(frozen=True)
class TableCodeModel:
    """A TableModel as the simulator's :class:`~hwquant.rtl.network.simulate.CodeModel`: its
    input quantizer, and the table engine for the logits."""

    model: TableModel

    def quantize_input(self, x: torch.Tensor) -> torch.Tensor:
        """Codebook indices of the images ``x`` (the model's input quantizer)."""
        return self.model.quantize_input(x)

    def run(self, x: torch.Tensor) -> torch.Tensor:
        """The table engine's logits of the index images ``x``."""
        return run_tables(self.model, x)


def check_blocks(model: TableModel) -> None:
    """Raise :class:`UnsupportedLayerError` for the first node of ``model`` without a hardware
    block, naming the kinds that have one."""
    for node in model.nodes:
        if not isinstance(node, UnitNode | MaxPoolNode | FlattenNode):
            kind = getattr(node, "kind", None) or node.op
            raise UnsupportedLayerError(
                f"table node '{node.name}' is a '{kind}' node, which has no hardware "
                f"block. Fix: use only nodes with one: {', '.join(BLOCK_KINDS)}."
            )
        if isinstance(node, UnitNode) and (not native_geometry(node) or node.inserts_zeros):
            raise UnsupportedLayerError(
                f"table unit '{node.name}' has groups={node.groups}, kernel "
                f"{tuple(node.weight_index.shape[2:])}, stride {node.stride}, padding "
                f"{node.padding}, dilation {tuple(node.dilation)} and "
                f"{'a' if node.inserts_zeros else 'no'} zero insertion; the unit block "
                "computes one group with square kernel, stride and padding, undilated, without "
                "zero insertion. Fix: use such convolutions for the hardware design (the table "
                "engine runs the others)."
            )


def table_network(
    model: TableModel, folding: dict[str, Fold], shape: tuple[int, int, int]
) -> Network:
    """Blocks and edges of ``model`` for input index images of ``shape``; ``folding`` gives
    every unit's PE x SIMD (others: 1 x 1)."""
    check_blocks(model)
    units = model.units()
    if not units or model.output != units[-1].name or model.nodes[-1] is not units[-1]:
        raise ConfigError(
            "the network generator needs a table model ending in a unit that outputs its "
            "accumulators (the logits). Fix: lower a classifier whose last layer is linear."
        )
    levels = len(model.input_levels)
    fmap_in = FeatureMap(*shape, index_bits(levels), False)
    nodes = [
        (n.name, n.inputs, _maker(n, folding.get(n.name, Fold(1, 1)), n is units[-1]))
        for n in model.nodes
    ]
    return assemble(fmap_in, "input", nodes, model.output)


def _shapes(model: TableModel, shape: tuple[int, int, int]) -> dict[str, tuple[int, ...]]:
    traced = run_tables(model, torch.zeros((1, *shape), dtype=torch.int64), trace=True)
    return {name: tuple(v.shape[1:]) for name, v in traced.items()}


def table_product_luts(node: UnitNode, device: Device) -> int:
    """LUTs of one lookup product's ROM [D] (module docstring)."""
    entries = (node.table.shape[0] + 1) * node.table.shape[1]
    return math.ceil(entries / 2**device.lut_inputs) * node.entry_bits


def choose_table_folding(
    model: TableModel, shape: tuple[int, int, int], device: Device, given: dict[str, Fold]
) -> dict[str, Fold]:
    """Every unit's fold: ``given`` ones as they are, the others widened while the table
    ROMs fit (module docstring)."""
    units = {u.name: u for u in model.units()}
    unknown = sorted(set(given) - set(units))
    if unknown:
        raise ConfigError(
            f"the folding names {', '.join(unknown)}, which are no table units. Fix: use "
            f"layer names from {', '.join(sorted(units))}."
        )
    shapes = _shapes(model, shape)
    inputs = {n.name: n.inputs[0] for n in model.nodes}
    kinds = {n.name: n for n in model.nodes}

    def channels(name: str) -> int:  # of the pixel words the unit reads (through a flatten)
        source = inputs[name]
        while isinstance(kinds.get(source), FlattenNode):
            source = inputs[source]
        return shape[0] if source == "input" else shapes[source][0]

    def steps(name: str, fold: Fold) -> int:
        out = shapes[name]
        pixels = out[1] * out[2] if len(out) == 3 else 1
        rows, fan_in = units[name].weight_index.shape[0], units[name].weight_index[0].size
        return pixels * math.ceil(rows / fold.pe) * fan_in // fold.simd

    def luts(folds: dict[str, Fold]) -> int:
        return sum(f.pe * f.simd * table_product_luts(units[n], device) for n, f in folds.items())

    start = {n: given.get(n, Fold(1, 1)) for n in units}
    if luts(start) > device.luts:
        raise ConfigError(
            f"LUTs: the table ROMs need {luts(start)} even at the given folding or PE = SIMD = "
            f"1, the {device.name} has {device.luts} ({luts(start) / device.luts:.2f}x over). "
            "Fix: choose a larger device, smaller tables (TableOptions act_entries, "
            "weight_entries, entry_bits) or a smaller given folding."
        )
    sizes = {n: (u.weight_index.shape[0], channels(n)) for n, u in units.items()}
    free = [n for n in units if n not in given]

    def fits(folds: dict[str, Fold]) -> bool:
        return luts(folds) <= TABLE_LUT_SHARE * device.luts

    return widen(start, free, steps, sizes, fits, shape[1] * shape[2])


def _runs(model: TableModel, shape: tuple[int, int, int]) -> bool:
    try:
        run_tables(model, torch.zeros((1, *shape), dtype=torch.int64))
    except (HwquantError, RuntimeError):
        return False
    return True


def build_table_design(
    model: TableModel | str | Path,
    device: str | Device,
    out_dir: str | Path,
    *,
    folding: dict[str, Fold] | None = None,
    input_size: int | None = None,
    overwrite: bool = False,
) -> Design:
    """Build the accelerator of the table model ``model`` for ``device`` into ``out_dir``, as
    :func:`hwquant.rtl.network.build_design` does for an IntModel (module docstring)."""
    if not isinstance(model, TableModel):
        model = load_tables(model)
    dev = get_device(device)
    check_target(Path(out_dir), overwrite)
    check_blocks(model)
    first = model.units()[0] if model.units() else None
    if first is not None and first.op == "conv":
        shape = square_shape(first.weight_index.shape[1], input_size, lambda s: _runs(model, s))
    elif first is not None:
        shape = (first.weight_index.shape[1], 1, 1)
    else:
        raise ConfigError("the table model has no unit. Fix: lower a network with layers.")
    folds = choose_table_folding(model, shape, dev, folding or {})
    net = table_network(model, folds, shape)
    how = {
        "given": sorted(folding or {}),
        "chosen": "widen while the table ROMs fit the device's LUT share",
        "target_ii": None,
    }
    return write_design(net, dev, out_dir, "tables", model.save, how)
