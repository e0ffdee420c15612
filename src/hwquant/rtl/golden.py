"""Golden vectors: what the integer engine computes for each weight layer of a lowered model.

For an :class:`~hwquant.ir.intmodel.IntModel` and an input batch, :func:`layer_goldens` traces
the engine (:func:`hwquant.engine.integer.run` with ``trace=True``) for every layer's input
codes and output codes, and runs the engine once more on each weight node alone with its
requantization removed, which yields the exact accumulator the hardware must hold
(``W_int ⋆ x + b``, fitted to the node's accumulator width; the scheme's own accumulation for
encoded nodes: shift-add for MSQ, lookup for codebooks). The input windows are unfolded in the
engine's order (``C_in·kh·kw``), so ``acc[n, p, c] = Σ_k W[c, k]·patches[n, p, k] + b[c]``.

:func:`node_arrays` builds the processing array(s) of a node (:mod:`hwquant.rtl.conv_array`)
and :func:`export_golden` writes everything per layer: ``.npy`` arrays, ``.hex`` dumps in
``$readmemh`` format (two's complement at the port width, one word per line) and a
self-checking testbench directory that replays the layer's vectors through its array.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from hwquant.core.errors import UnsupportedLayerError
from hwquant.core.intmath import code_format
from hwquant.engine.integer import run
from hwquant.ir.encodings import find_encoding
from hwquant.ir.intmodel import InputSpec, IntModel, WeightNode
from hwquant.rtl.conv_array import ArrayRequant, array_stimulus, conv_array
from hwquant.rtl.fixed_mac import encode_fixed_weights, fixed_product
from hwquant.rtl.testbench import mem_text, write_testbench
from hwquant.rtl.unit import Product, Unit, check_width, to_words


@dataclass
class LayerGolden:
    """One weight layer's engine vectors (``P`` output pixels per image; 1 for linear).

    ``input``: the layer's input codes as the engine holds them; ``patches`` [N, P, K]: its
    input windows; ``weight`` [C_out, K]; ``bias`` [C_out] or None; ``dot`` and ``acc``
    [N, P, C_out]: the engine's accumulator without and with the bias; ``output`` [N, P, C_out]:
    the engine's output codes (the accumulator on the last layer).
    """

    node: WeightNode
    input: np.ndarray
    patches: np.ndarray
    weight: np.ndarray
    bias: np.ndarray | None
    dot: np.ndarray
    acc: np.ndarray
    output: np.ndarray

    @property
    def name(self) -> str:
        """The layer's name."""
        return self.node.name


def engine_accumulator(node: WeightNode, x_in: torch.Tensor, bias: bool = True) -> torch.Tensor:
    """The engine's accumulator of ``node`` on input codes ``x_in``: the node alone, run by
    :func:`hwquant.engine.integer.run` with its requantization removed (int64 backend)."""
    bare = dataclasses.replace(node, mult=None, shift=None, bias=node.bias if bias else None)
    spec = InputSpec(node.inputs[0], 1.0, node.in_bits, node.in_signed)
    model = IntModel(spec, [bare], node.name, np.ones(node.weight.shape[0]))
    return run(model, x_in.to(torch.int64), backend="int64", stats=False).output


def window_patches(node: WeightNode, x_in: torch.Tensor) -> torch.Tensor:
    """Input windows ``[N, P, K]`` of a node in the engine's unfold order (``[N, 1, K]`` for a
    linear layer)."""
    if not node.spatial:
        return x_in.to(torch.int64).reshape(x_in.shape[0], 1, -1)
    kh, kw = node.weight.shape[2:]
    # unfold has no integer kernel; float64 holds the codes exactly (as the engine does)
    cols = F.unfold(x_in.to(torch.float64), (kh, kw), node.dilation, node.padding, node.stride)
    return cols.to(torch.int64).transpose(1, 2)


def _pixels_last(t: torch.Tensor) -> np.ndarray:
    """``[N, C, H, W]`` (or ``[N, C]``) as ``[N, H·W, C]`` (or ``[N, 1, C]``)."""
    t = t.to(torch.int64)
    return t.reshape(t.shape[0], t.shape[1], -1).transpose(1, 2).contiguous().numpy()


def layer_goldens(
    model: IntModel, x_int: torch.Tensor, layers: list[str] | None = None
) -> list[LayerGolden]:
    """Golden vectors of the weight layers of ``model`` (all, or those named) on ``x_int``."""
    traced = run(model, x_int, backend="int64", trace=True, stats=False).values
    goldens = []
    for node in model.weight_nodes():
        if layers is not None and node.name not in layers:
            continue
        if node.groups != 1:
            raise UnsupportedLayerError(
                f"layer '{node.name}' is a grouped convolution (groups={node.groups}); the "
                "processing array computes dense layers. Fix: pick a dense layer."
            )
        x_in = traced[node.inputs[0]]
        goldens.append(
            LayerGolden(
                node,
                x_in.numpy(),
                window_patches(node, x_in).numpy(),
                node.weight.reshape(node.weight.shape[0], -1),
                node.bias,
                _pixels_last(engine_accumulator(node, x_in, bias=False)),
                _pixels_last(engine_accumulator(node, x_in)),
                _pixels_last(traced[node.name]),
            )
        )
    return goldens


@dataclass(frozen=True)
class LayerArray:
    """A processing array for the output channels ``rows`` of a layer (the array may carry
    padding channels after them, up to a multiple of ``pe``; their outputs are ignored)."""

    label: str
    rows: np.ndarray
    unit: Unit


LaneGroup = tuple[str, np.ndarray, Product, np.ndarray]
"""One row group of a processing array: (label, rows, product, weight words [rows, K])."""


def fixed_lane_group(node: WeightNode, rows: np.ndarray) -> LaneGroup:
    """Rows ``rows`` of ``node`` on fixed-point multiply lanes (its integer weight codes)."""
    flat = node.weight.reshape(node.weight.shape[0], -1)[rows]
    product = fixed_product(node.in_bits, node.weight_bits, act_signed=node.in_signed)
    return ("fixed", rows, product, encode_fixed_weights(flat, node.weight_bits))


def lane_groups(node: WeightNode) -> list[LaneGroup]:
    """The row groups of ``node``'s processing array: all rows on fixed-point lanes for plain
    integer weights, else what its encoding's handler gives (:mod:`hwquant.ir.encodings`)."""
    if node.encoding is None:
        return [fixed_lane_group(node, np.arange(node.weight.shape[0]))]
    handler = find_encoding(type(node.encoding))
    if handler is None or handler.lanes is None:
        raise UnsupportedLayerError(
            f"layer '{node.name}' stores its weights as {type(node.encoding).__name__}, which "
            "has no processing array. Fix: export a fixed-point, MSQ or codebook layer."
        )
    return handler.lanes(node)


def node_arrays(node: WeightNode, pe: int, simd: int) -> list[LayerArray]:
    """The processing array(s) of ``node``: one over all rows, or for an MSQ layer one over
    its SP2 rows (shift-add lanes) and one over its fixed-point rows (multiply lanes). Each
    includes the bias and, unless it is the last layer, the requantizer; row groups are padded
    with zero channels to a multiple of ``pe``."""
    arrays = []
    for label, rows, product, words in lane_groups(node):
        pad = -len(rows) % pe
        words = np.concatenate([words, np.zeros((pad, words.shape[1]), np.int64)])
        bias = None if node.bias is None else np.concatenate([node.bias[rows], np.zeros(pad)])
        requant = None
        if node.mult is not None and node.shift is not None:
            out_bits, out_signed = code_format(node.lo, node.hi)
            mult = np.concatenate([node.mult[rows], np.ones(pad, np.int64)])
            shift = np.concatenate([node.shift[rows], np.zeros(pad, np.int64)])
            requant = ArrayRequant(mult, shift, node.lo, node.hi, out_bits, out_signed)
        unit = conv_array(
            product,
            words,
            pe=pe,
            simd=simd,
            acc_bits=node.acc_bits,
            bias=None if bias is None else bias.astype(np.int64),
            requant=requant,
        )
        arrays.append(LayerArray(label, rows, unit))
    return arrays


def array_expected(golden: LayerGolden, array: LayerArray, pixels: slice) -> np.ndarray:
    """What ``array`` outputs for image 0's output ``pixels`` ([P', C_rows + padding]): the
    engine's codes (or accumulators on the last layer), zeros on padding channels."""
    values = golden.output if golden.node.mult is not None else golden.acc
    picked = values[0, pixels][:, array.rows]
    pad = int(array.unit.params["c_out"]) - len(array.rows)
    return np.concatenate([picked, np.zeros((len(picked), pad), np.int64)], axis=1)


def default_folding(c_out: int, fan_in: int, max_pe: int, max_simd: int) -> tuple[int, int]:
    """The largest ``pe ≤ max_pe`` and ``simd ≤ max_simd`` that divide C_out and K."""
    check_width("max_pe", max_pe, 1, 2**16)
    check_width("max_simd", max_simd, 1, 2**16)
    pe = max(d for d in range(1, min(max_pe, c_out) + 1) if c_out % d == 0)
    simd = max(d for d in range(1, min(max_simd, fan_in) + 1) if fan_in % d == 0)
    return pe, simd


def _hex_dump(path: Path, values: np.ndarray, bits: int, signed: bool) -> None:
    words = to_words(values.reshape(-1), bits, signed)
    path.write_text(mem_text([int(w) for w in words], bits))


def export_golden(
    model: IntModel,
    x_int: torch.Tensor,
    directory: str | Path,
    *,
    pixels: int = 16,
    max_pe: int = 8,
    max_simd: int = 16,
) -> list[Path]:
    """Write every weight layer's golden vectors and replay testbench(es) to ``directory``.

    Per layer ``<layer>.{input,weight,acc,output}.npy`` (engine layouts) and ``.hex`` dumps
    (input at the layer's input width, weights at ``weight_bits`` signed, ``acc`` at
    ``acc_bits`` signed, output codes at their width), and per processing array a directory
    ``<layer>.<lanes>.tb/`` (``iverilog -g2005 -o sim *.v && vvp sim``, or ``hwquant rtl sim``)
    replaying the first ``pixels`` output pixels of image 0, folded with the largest PE and
    SIMD counts up to ``max_pe`` / ``max_simd`` that divide the layer (:func:`default_folding`).
    ``manifest.json`` lists them.
    Returns the testbench directories.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    manifest, benches = [], []
    for golden in layer_goldens(model, x_int):
        node = golden.node
        stem = directory / node.name
        out_bits, out_signed = (
            code_format(node.lo, node.hi) if node.mult is not None else (node.acc_bits, True)
        )
        tensors = {
            "input": (golden.input, node.in_bits, node.in_signed),
            "weight": (node.weight, node.weight_bits, True),
            "acc": (golden.acc, node.acc_bits, True),
            "output": (golden.output, out_bits, out_signed),
        }
        for kind, (values, bits, signed) in tensors.items():
            np.save(f"{stem}.{kind}.npy", values)
            _hex_dump(Path(f"{stem}.{kind}.hex"), values, bits, signed)
        c_out, fan_in = golden.weight.shape
        fold = default_folding(c_out, fan_in, max_pe, max_simd)
        span = slice(0, min(pixels, golden.patches.shape[1]))
        entry = {"layer": node.name, "tensors": sorted(tensors), "testbenches": []}
        for array in node_arrays(node, *fold):
            stimulus = array_stimulus(
                array.unit, golden.patches[0, span], array_expected(golden, array, span)
            )
            bench = write_testbench(array.unit, stimulus, f"{stem}.{array.label}.tb")
            benches.append(bench)
            entry["testbenches"].append(
                {
                    "dir": bench.name,
                    "top": array.unit.top,
                    "pe": fold[0],
                    "simd": fold[1],
                    "rows": array.rows.tolist(),
                }
            )
        manifest.append(entry)
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return benches
