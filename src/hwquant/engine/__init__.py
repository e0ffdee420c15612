"""Executors of an IntModel: the bit-exact integer engine."""

from hwquant.engine.integer import LayerStats, RunResult, run

__all__ = ["LayerStats", "RunResult", "run"]
