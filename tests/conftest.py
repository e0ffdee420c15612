"""Shared test settings: deterministic torch, few threads, a hypothesis profile for CI."""

from __future__ import annotations

import os

import torch
from hypothesis import HealthCheck, settings

torch.set_num_threads(min(2, os.cpu_count() or 1))
settings.register_profile(
    "hwquant", deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.load_profile("hwquant")

# Session fixtures shared by the RTL tests of every scheme (computed only when a test asks).
from tests.goldens import (  # noqa: E402, F401
    llsq_goldens,
    msq_goldens,
    nonuniform_goldens,
    table_goldens,
)
