"""Table-based neural units (Covell et al. 2019; methods.md §3, §7.3): codebooks for weights
and activations, QAT, lowering to a :class:`TableModel` and the multiply-free table engine."""

import torch
from torch import fx

from hwquant.qat.recipe import TableOptions
from hwquant.qat.registry import EngineTrace, SchemeHandler, register_scheme
from hwquant.schemes.tables.compactness import compactness
from hwquant.schemes.tables.engine import run_tables
from hwquant.schemes.tables.layers import capture_indices
from hwquant.schemes.tables.lower import lower_tables
from hwquant.schemes.tables.model import TableModel, load_tables
from hwquant.schemes.tables.prepare import prepare_tables
from hwquant.schemes.tables.rtl import table_accumulator  # registers the unit emitter


def _lower(qat_model: fx.GraphModule, example_input: torch.Tensor) -> TableModel:
    """``hwquant.lower`` for tables: the codebooks fix every shape, so the example is unused."""
    del example_input
    return lower_tables(qat_model)


def _trace(table_model: TableModel, x: torch.Tensor) -> EngineTrace:
    """``hwquant.verify``'s run of a table model: every node's indices by the table engine."""
    indices = table_model.quantize_input(x)
    values = run_tables(table_model, indices, trace=True)
    return EngineTrace(indices, (0, len(table_model.input_levels) - 1), values)


register_scheme(
    SchemeHandler(
        "tables",
        TableOptions,
        prepare=prepare_tables,
        lower=_lower,
        trace=_trace,
        lowered=TableModel,
    )
)

__all__ = [
    "TableModel",
    "capture_indices",
    "compactness",
    "load_tables",
    "lower_tables",
    "prepare_tables",
    "run_tables",
    "table_accumulator",
]
