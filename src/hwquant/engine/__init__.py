"""Executors of an IntModel: the bit-exact integer engine (``IntModel.run``'s "engine"
backend)."""

import torch

from hwquant.engine.integer import LayerStats, RunResult, run
from hwquant.ir.intmodel import IntModel, register_backend


def _run_engine(model: IntModel, x_int: torch.Tensor, four_bit: bool) -> torch.Tensor:
    """``IntModel.run(backend="engine")``: the output codes, without accumulator statistics."""
    return run(model, x_int, four_bit=four_bit, stats=False).output


register_backend("engine", _run_engine)

__all__ = ["LayerStats", "RunResult", "run"]
