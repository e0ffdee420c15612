"""FPGA cost model (methods.md §2, §6): device profiles, per-MAC costs, the Mix-and-Match ratio
solver and the cycles, resources and throughput of a network for each design.

``sp2_share_for(device, weight_bits)`` gives the SP2 share of rows that balances LUT-based SP2
PEs against DSP-based fixed-point PEs; :func:`estimate` takes an :class:`~hwquant.IntModel`
and a device. Every number is analytic (see ``docs/hw.md``), not measured.
"""

from hwquant.hw.devices import DEVICES, Device, get_device
from hwquant.hw.estimate import DESIGNS, DesignEstimate, NetworkEstimate, estimate, estimate_layers
from hwquant.hw.mac_cost import DEFAULT_COSTS, CostTable, UnitCost
from hwquant.hw.network import LayerWork, layer_work, lower_zoo_model
from hwquant.hw.solver import PEArrays, solve, sp2_share_for

__all__ = [
    "DEFAULT_COSTS",
    "DESIGNS",
    "DEVICES",
    "CostTable",
    "DesignEstimate",
    "Device",
    "LayerWork",
    "NetworkEstimate",
    "PEArrays",
    "UnitCost",
    "estimate",
    "estimate_layers",
    "get_device",
    "layer_work",
    "lower_zoo_model",
    "solve",
    "sp2_share_for",
]
