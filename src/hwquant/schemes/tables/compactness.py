"""Compactness of a table network (Covell et al. 2019, "two simple measures"; methods.md §3.1).

Per unit: ``entries = |A|·|W|`` (the table as stored), ``distinct`` (different integer
entries) and ``distinct_magnitudes`` (different ``|T[i, j]|``: with sign symmetry ``±x`` share
one stored magnitude and a sign bit), and the bits of each form. Per network: the largest
table (``max_entries``), the largest inner table (the first unit reads the 256 pixel levels,
so it is reported apart, ``max_inner_entries``), the sum of entries and of bits. Add tables
hold output indices, ``|A₁|·|A₂|`` entries of ``⌈log₂ n⌉`` bits.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from hwquant.schemes.tables.model import LookupAddNode, TableModel, UnitNode


def unit_compactness(node: UnitNode) -> dict[str, Any]:
    """The measures of one unit's table."""
    acts, weights = node.table.shape
    distinct_magnitudes = int(np.unique(np.abs(node.table)).size)
    return {
        "layer": node.name,
        "kind": "product",
        "act_entries": acts,
        "weight_entries": weights,
        "entries": acts * weights,
        "distinct": int(np.unique(node.table).size),
        "distinct_magnitudes": distinct_magnitudes,
        "entry_bits": node.entry_bits,
        "bits": acts * weights * node.entry_bits,
        "bits_sign_symmetric": distinct_magnitudes * node.entry_bits,
    }


def add_compactness(node: LookupAddNode) -> dict[str, Any]:
    """The measures of a residual add's index table."""
    index_bits = max(1, math.ceil(math.log2(max(2, node.out_levels.size))))
    entries = int(node.table.size)
    return {
        "layer": node.name,
        "kind": "add",
        "act_entries": int(node.table.shape[0]),
        "weight_entries": int(node.table.shape[1]),
        "entries": entries,
        "distinct": int(np.unique(node.table).size),
        "distinct_magnitudes": int(np.unique(node.table).size),
        "entry_bits": index_bits,
        "bits": entries * index_bits,
        "bits_sign_symmetric": entries * index_bits,
    }


def compactness(model: TableModel) -> dict[str, Any]:
    """Per-layer and network-wide compactness of ``model`` (see the module docstring)."""
    layers = [
        unit_compactness(n) if isinstance(n, UnitNode) else add_compactness(n)
        for n in model.nodes
        if isinstance(n, UnitNode | LookupAddNode)
    ]
    products = [row for row in layers if row["kind"] == "product"]
    return {
        "layers": layers,
        "max_entries": max(row["entries"] for row in products),
        "max_inner_entries": max((row["entries"] for row in products[1:]), default=0),
        "sum_entries": sum(row["entries"] for row in layers),
        "sum_distinct_magnitudes": sum(row["distinct_magnitudes"] for row in layers),
        "total_bits": sum(row["bits"] for row in layers),
        "total_bits_sign_symmetric": sum(row["bits_sign_symmetric"] for row in layers),
    }
