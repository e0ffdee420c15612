"""Cost figures of an IntModel: bit operations, weight memory and accumulator width
(methods.md §6).

For a weight layer with ``m`` outputs, ``n`` input channels per group, a ``k×k`` kernel (``k = 1``
for a fully connected layer), activation bits ``b_a`` and weight bits ``b_w``:

* **BOPs** (UNIQ, Baskin et al.; methods.md §6), per output position::

      BOPs = m · n · k² · ( b_a·b_w + b_a + b_w + log2(n·k²) )

  — a ``b_a × b_w`` multiply and a ``b_a + b_w + log2(n·k²)``-bit add per MAC — times the
  number of output positions of a convolution (``h_out · w_out``; UNIQ quotes the per-position
  figure, both are given). For codebook weights UNIQ counts ``b_w`` as the stored index bits
  ``b``, "assuming a look-up table" (methods.md §1.1); the single-scale integer datapath
  multiplies by the decoded ``B``-bit level, so the BOPs at ``b_w = B`` are given too.
* **Weight memory**: plain codes ``N_w · b_w``; codebook weights ``N_w · b + k · B`` (indices plus
  the table, :meth:`~hwquant.ir.intmodel.CodebookEncoding.storage_bits`), any other encoding its
  own ``storage_bits`` (and its ``code_bits`` as the stored ``b_w``).
* **Accumulator width** (worst case of the formula, methods.md §6):
  ``b_acc = b_a + b_w + ⌈log2(n·k²)⌉`` with the multiplier's operand bits ``b_w``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch

from hwquant.core.intmath import accumulator_bits
from hwquant.engine import run
from hwquant.ir.intmodel import IntModel, WeightNode


def bops(m: int, n: int, kernel_area: int, act_bits: int, weight_bits: int) -> float:
    """UNIQ's ``m·n·k²·(b_a·b_w + b_a + b_w + log2(n·k²))`` (methods.md §6)."""
    fan_in = n * kernel_area
    per_mac = act_bits * weight_bits + act_bits + weight_bits + math.log2(fan_in)
    return m * fan_in * per_mac


@dataclass(frozen=True)
class LayerCost:
    """Cost figures of one weight layer."""

    layer: str
    m: int
    n: int
    kernel_area: int
    positions: int  # output positions (h_out·w_out; 1 for a fully connected layer)
    act_bits: int  # b_a
    stored_weight_bits: int  # bits per stored weight: the index bits b, or the code bits
    multiplier_bits: int  # bits of the integer the multiplier sees (B for codebooks)
    bops_stored: float  # UNIQ's BOPs per output position with b_w = stored_weight_bits
    bops_multiplier: float  # the same with b_w = multiplier_bits
    weight_memory_bits: int
    accumulator_bits: int  # the formula's worst case, b_w = multiplier_bits


def layer_cost(node: WeightNode, positions: int = 1) -> LayerCost:
    """Cost figures of ``node`` (``positions``: its output positions per image)."""
    m = node.weight.shape[0]
    kernel_area = int(math.prod(node.weight.shape[2:]))  # 1 for a fully connected layer
    n = node.fan_in() // kernel_area
    encoding = node.encoding
    stored = node.weight_bits if encoding is None else encoding.code_bits()
    memory = node.weight.size * node.weight_bits if encoding is None else encoding.storage_bits()
    b_a = node.in_bits
    return LayerCost(
        layer=node.name,
        m=m,
        n=n,
        kernel_area=kernel_area,
        positions=positions,
        act_bits=b_a,
        stored_weight_bits=stored,
        multiplier_bits=node.weight_bits,
        bops_stored=bops(m, n, kernel_area, b_a, stored),
        bops_multiplier=bops(m, n, kernel_area, b_a, node.weight_bits),
        weight_memory_bits=int(memory),
        accumulator_bits=accumulator_bits(node.weight_bits, b_a, node.fan_in()),
    )


def output_positions(model: IntModel, x_int: torch.Tensor) -> dict[str, int]:
    """Output positions per image of every weight layer, from one traced engine run."""
    values = run(model, x_int[:1], trace=True, stats=False).values
    return {node.name: int(values[node.name][0, 0].numel()) for node in model.weight_nodes()}


def model_costs(model: IntModel, x_int: torch.Tensor | None = None) -> dict[str, Any]:
    """Per-layer :class:`LayerCost` records and network totals. With an example input
    ``x_int`` (integer codes) each layer's output positions are measured, else taken as 1.

    Totals: ``bops_stored`` / ``bops_multiplier`` per image (each layer times its positions) and
    ``weight_memory_bits``.
    """
    positions = {} if x_int is None else output_positions(model, x_int)
    layers = [layer_cost(node, positions.get(node.name, 1)) for node in model.weight_nodes()]
    return {
        "layers": [asdict(c) for c in layers],
        "bops_stored_per_image": sum(c.bops_stored * c.positions for c in layers),
        "bops_multiplier_per_image": sum(c.bops_multiplier * c.positions for c in layers),
        "weight_memory_bits": sum(c.weight_memory_bits for c in layers),
    }
