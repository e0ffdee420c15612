"""Fixtures of the whole-network tests: tiny lowered models, built once per session."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

import hwquant
from hwquant.models import build
from hwquant.qat.recipe import Recipe
from tests.helpers import RandomNet, trained_qat_model

requires_verilator = pytest.mark.skipif(
    shutil.which("verilator") is None,
    reason="verilator not found: apt-get install -y verilator",
)


def assert_verilog_2005(design_dir: Path, design: dict) -> None:
    """Icarus Verilog accepts the design's Verilog as Verilog-2005 (skipped without iverilog).
    Verilator takes SystemVerilog forms, such as a part-select of a part-select, that Yosys
    0.70 then mis-synthesizes silently."""
    if shutil.which("iverilog") is None:
        pytest.skip("iverilog not found: apt-get install -y iverilog")
    sources = [str(design_dir / "rtl" / name) for name in design["rtl_files"]]
    done = subprocess.run(
        ["iverilog", "-g2005", "-o", os.devnull, *sources], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def tiny_cnn(scheme: str = "llsq", **recipe_fields: object) -> hwquant.IntModel:
    """The 8x8 small CNN at a quarter width (conv 8, conv 16, max pool, flatten, linear 10),
    trained two QAT steps with ``scheme`` (and further recipe fields) and lowered."""
    torch.manual_seed(0)
    x = torch.randn(8, 1, 8, 8)
    model = build("small_cnn", in_channels=1, input_size=8, width=0.25)
    if scheme == "nonuniform":
        recipe_fields = {"scale_constraint": "pow2", **recipe_fields}
    recipe = Recipe(scheme=scheme, bn_freeze_step=1, **recipe_fields)
    return hwquant.lower(trained_qat_model(model, recipe, x), x)


def tiny_resnet(scheme: str = "llsq") -> hwquant.IntModel:
    """An 8x8 network with a residual block, a stride-2 conv and a global average pool."""
    torch.manual_seed(0)
    x = torch.randn(8, 1, 8, 8)
    blocks = [
        ("conv", 8, 3, 1, False, True, "relu", False),
        ("residual", "relu"),
        ("conv", 8, 3, 2, False, True, "relu", False),
    ]
    model = RandomNet(1, blocks, 10, True, 8)
    return hwquant.lower(trained_qat_model(model, Recipe(scheme=scheme, bn_freeze_step=1), x), x)


@pytest.fixture(scope="session")
def llsq_cnn() -> hwquant.IntModel:
    """The LLSQ tiny CNN."""
    return tiny_cnn("llsq")
