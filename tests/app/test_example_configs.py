"""Every example config in configs/ loads and names a known model, data set and recipe."""

from __future__ import annotations

from pathlib import Path

import pytest

from hwquant.app.config import load_config
from hwquant.models import MODEL_NAMES

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.toml"))


def test_there_are_example_configs():
    assert len(CONFIGS) >= 4


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_example_config_loads(path: Path):
    config = load_config(path)
    assert config.model.name in MODEL_NAMES
    quantized = "fp32" not in path.name
    assert (config.recipe is not None) == quantized
    if quantized:
        assert config.model.init is not None and config.model.init.endswith("last.pt")
