"""The ``"tables"`` section of a run report: a table-unit run measured on its TableModel.

A run trained with ``recipe.scheme = "tables"`` (Covell et al. 2019; methods.md §3) lowers to a
:class:`hwquant.schemes.tables.TableModel`, not an IntModel. :func:`measure_table_units` lowers it
(:func:`hwquant.schemes.tables.lower_tables`, saved as ``model_tables.npz``), runs the first test
batch through the table engine under :class:`hwquant.schemes.tables.audit.MultiplyFreeAudit` (the
table compilation included: the model is fresh), compares the QAT model in eval mode with the table
engine on the whole test set (:func:`hwquant.app.bench.evaluate.compare`: the claim fake-quant ==
engine holds when no image's output integers differ), and records the compactness measures of
:func:`hwquant.schemes.tables.compactness` (methods.md §3.1), the figures ``hwquant tables`` prints.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hwquant.app.bench.evaluate import compare
from hwquant.schemes.tables import compactness, lower_tables, run_tables
from hwquant.schemes.tables.audit import MultiplyFreeAudit
from hwquant.schemes.tables.engine import resolve_kernel

MODEL_FILE = "model_tables.npz"


@torch.no_grad()
def measure_table_units(qat: nn.Module, test: Any, out_dir: Path) -> dict[str, Any]:
    """Lower ``qat`` (trained table units) into ``out_dir``, audit one batch of ``test`` (a
    :class:`hwquant.data.BatchLoader`), compare engine and QAT model on all of it, and measure
    its compactness; return the ``"tables"`` section of the results."""
    qat.eval()
    x, _ = next(iter(test))
    table_model = lower_tables(qat, x)  # x: the shapes of reshapes and concatenations
    table_model.save(out_dir / MODEL_FILE)
    x_idx = table_model.quantize_input(x.cpu())  # the float front end, outside the audit
    with MultiplyFreeAudit() as audit:
        run_tables(table_model, x_idx)
    return {
        "model_file": MODEL_FILE,
        "recipe": qat.hwquant_recipe.to_dict(),
        "engine": resolve_kernel("auto"),
        "compare": compare(qat, table_model, test),
        "audit": {
            "images": int(x_idx.shape[0]),
            "ops": len(audit.ops),
            "op_counts": dict(sorted(Counter(audit.ops).items())),
            "violations": audit.violations,
        },
        "compactness": compactness(table_model),
    }
