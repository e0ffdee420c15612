"""Executors of an IntModel: the bit-exact integer engine."""

from hwquant.engine.integer import LayerStats, RunResult, run
from hwquant.schemes.msq import engine as _shift_add  # noqa: F401  (registers its accumulator)
from hwquant.schemes.nonuniform import engine as _codebook  # noqa: F401  (registers its accumulator)

__all__ = ["LayerStats", "RunResult", "run"]
