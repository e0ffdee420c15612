"""Executors of an IntModel: the bit-exact integer engine."""

from hwquant.engine import codebook as _codebook  # noqa: F401  (registers its accumulator)
from hwquant.engine import shift_add as _shift_add  # noqa: F401  (registers its accumulator)
from hwquant.engine.integer import LayerStats, RunResult, run

__all__ = ["LayerStats", "RunResult", "run"]
