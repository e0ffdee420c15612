"""FPGA cost model (methods.md §2, §6): device profiles, per-MAC costs, the Mix-and-Match ratio
solver and the cycles, resources and throughput of a network for each design.

``sp2_share_for(device, weight_bits)`` gives the SP2 share of rows that balances LUT-based SP2
PEs against DSP-based fixed-point PEs; :func:`estimate` takes an :class:`~hwquant.IntModel`
and a device; :func:`fold_network` gives one PE x SIMD array per layer. The per-unit costs are
formulas fitted to Yosys syntheses of the emitted Verilog (:mod:`hwquant.hw.synthesized`,
``docs/rtl.md``); the analytic formulas of issue 3 remain as :data:`ANALYTIC_COSTS`.
"""

from hwquant.hw.devices import DEVICES, Device, get_device
from hwquant.hw.estimate import DESIGNS, ArrayDesign, NetworkEstimate, estimate, estimate_layers
from hwquant.hw.folding import Fold, FoldedDesign, fold_network
from hwquant.hw.mac_cost import ANALYTIC_COSTS, DEFAULT_COSTS, CostTable, UnitCost
from hwquant.hw.network import LayerWork, layer_work
from hwquant.hw.solver import PEArrays, solve, sp2_share_for
from hwquant.hw.synthesized import SynthesizedCosts

__all__ = [
    "ANALYTIC_COSTS",
    "DEFAULT_COSTS",
    "DESIGNS",
    "DEVICES",
    "ArrayDesign",
    "CostTable",
    "Device",
    "Fold",
    "FoldedDesign",
    "LayerWork",
    "NetworkEstimate",
    "PEArrays",
    "SynthesizedCosts",
    "UnitCost",
    "estimate",
    "estimate_layers",
    "fold_network",
    "get_device",
    "layer_work",
    "solve",
    "sp2_share_for",
]
