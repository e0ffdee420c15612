"""A whole table model as an accelerator: built by ``hwquant build``, simulated in Verilator on
real digits images, every logit equal to the table engine's and every cycle count to the
prediction; a flipped weight-index bit fails; nodes without a block are refused."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil

import numpy as np
import pytest
import torch

from hwquant.app.build_cli import dataset_codes
from hwquant.cli import main
from hwquant.core.errors import ConfigError, UnsupportedLayerError
from hwquant.hw.devices import get_device
from hwquant.models import build
from hwquant.rtl.unit import index_bits
from hwquant.schemes.tables import lower_tables
from hwquant.schemes.tables.engine import run_tables
from hwquant.schemes.tables.model import LookupAddNode, UnitNode
from hwquant.schemes.tables.network import BLOCK_KINDS, build_table_design, table_acc_bits
from tests.rtl.network.conftest import assert_verilog_2005, requires_verilator
from tests.schemes.tables.conftest import trained_tables

IMAGES = 6


@pytest.fixture(scope="module")
def tiny_tables():
    """The 8x8 small CNN at a quarter width (conv 8, conv 16, max pool, flatten, linear 10)
    with 8-bit input indices and 8 x 5 tables, trained three steps and lowered."""
    torch.manual_seed(0)
    x = torch.randn(6, 1, 8, 8)
    model = build("small_cnn", num_classes=10, in_channels=1, input_size=8, width=0.25)
    return lower_tables(trained_tables(model, x))


def _flip_classifier_index(model, design_dir, codes) -> None:
    """Flip the low bit of a class-0 weight index of the classifier (PE = SIMD = 1: one
    index per ROM word, fan-in order (y, x, c)) at an input where image 0's lookup changes:
    class 0's logit of image 0 then moves by that change."""
    classifier = model.units()[-1]
    source = model.nodes[model.nodes.index(classifier) - 1].inputs[0]  # the flatten's input
    acts = run_tables(model, codes, trace=True)[source][0]  # [C, H, W] indices of image 0
    channels, height, width = acts.shape
    table = np.asarray(classifier.table)
    w = classifier.weight_index.reshape(classifier.weight_index.shape[0], -1)
    for c, y, x in np.ndindex(channels, height, width):
        old = int(w[0, (c * height + y) * width + x])
        new = old ^ 1
        after = int(table[int(acts[c, y, x]), new]) if new < table.shape[1] else 0
        if after != int(table[int(acts[c, y, x]), old]):
            break
    else:
        raise AssertionError("no weight index of class 0 changes image 0's logit")
    rom = design_dir / "rtl" / "hq_classifier_weights.mem"
    lines = rom.read_text().splitlines()
    word = (y * width + x) * channels + c
    lines[word] = format(int(lines[word], 16) ^ 1, f"0{len(lines[word])}x")
    rom.write_text("\n".join(lines) + "\n")


@requires_verilator
def test_table_design_exact_on_digits_with_predicted_cycles_and_mutation_fails(
    tiny_tables, tmp_path, capsys
):
    model_file = tiny_tables.save(tmp_path / "tables.npz")
    folding = tmp_path / "fold.json"
    folding.write_text(json.dumps({"features.1.0": [2, 2]}))
    out = tmp_path / "design"
    argv = ["build", str(model_file), "--device", "lfe5u-85f", "-o", str(out)]
    argv += ["--folding", str(folding), "--input-size", "8", "--simulate", str(IMAGES), "--json"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["images"] == summary["outputs"] == IMAGES
    assert summary["mismatches"] == 0 and summary["cycles_match"]
    design = json.loads((out / "design.json").read_text())
    assert design["scheme"] == "tables"
    blocks = {b["name"]: b for b in design["blocks"]}
    assert (blocks["features.1.0"]["pe"], blocks["features.1.0"]["simd"]) == (2, 2)
    units = tiny_tables.units()
    for unit in units:  # lookups only: no multiplier lane, accumulators at the proven width
        assert blocks[unit.name]["lanes"] == ["table"] * blocks[unit.name]["pe"]
        assert blocks[unit.name]["acc_bits"] == table_acc_bits(unit, unit is units[-1]) < 32
        assert blocks[unit.name]["product_registered"]  # the lookup's output in the fabric
    for unit in units:  # the products are table lookups, and no requantizer follows
        text = (out / "rtl" / f"hq_{unit.name.replace('.', '_')}.v").read_text()
        products = text.split("module hq_")[1:-1]  # the product modules precede the block
        # no multiply: no '*' once sensitivity lists and attributes are taken out
        bodies = [re.sub(r"\(\*.*?\*\)", "", b.replace("@(*)", "")) for b in products]
        assert products and all("*" not in body for body in bodies)
        # the table is a ROM image (block RAM after synthesis), written beside the Verilog
        images = re.findall(r'\$readmemh\("(table_\w+\.mem)"', "".join(products))
        assert len(images) == len(products) and all((out / "rtl" / f).is_file() for f in images)
        assert "scaled_" not in text and "mult_" not in text
    assert_verilog_2005(out, design)  # no part-select of a part-select (Yosys drops it)
    # activations travel as codebook indices: the input 256 levels in 8 bits
    assert design["input"]["bits"] == index_bits(len(tiny_tables.input_levels)) == 8
    assert summary["latency_cycles"] == sum(b["cycles"] for b in design["blocks"])
    assert summary["ii_cycles"] == [max(b["cycles"] for b in design["blocks"])]

    mutant = tmp_path / "mutant"
    shutil.copytree(out, mutant)
    _flip_classifier_index(tiny_tables, mutant, dataset_codes(tiny_tables, "digits", IMAGES))
    assert main(["sim", str(mutant), "--images", str(IMAGES)]) == 1
    assert "first difference image 0 logit[0]" in capsys.readouterr().err


def test_table_node_without_block_named_with_those_that_have_one(tiny_tables, tmp_path):
    nodes = list(tiny_tables.nodes)
    last = nodes[-1]
    assert isinstance(last, UnitNode)
    add = LookupAddNode(
        "add_1", [nodes[0].name, nodes[0].name], np.zeros((5, 5), np.int64), np.ones(5)
    )
    model = type(tiny_tables)(tiny_tables.input_levels, [nodes[0], add, *nodes[1:]], last.name, 1.0)
    with pytest.raises(UnsupportedLayerError) as err:
        build_table_design(model, "lfe5u-85f", tmp_path / "d", input_size=8)
    message = str(err.value)
    assert "'add_1'" in message and "'add'" in message
    assert all(kind in message for kind in BLOCK_KINDS)


def test_table_roms_over_the_luts_at_any_folding_named(tiny_tables, tmp_path):
    small = dataclasses.replace(get_device("ice40up5k"), luts=1000)
    with pytest.raises(ConfigError, match=r"LUTs: the table ROMs need 1392 .* has 1000 \(1\.39x"):
        build_table_design(tiny_tables, small, tmp_path / "d", input_size=8)
    assert not (tmp_path / "d").exists()


def test_threshold_table_records_its_live_columns():
    from hwquant.rtl.network.weight_layer import Lane
    from hwquant.schemes.tables.network import Thresholds

    tau = np.array([[-5, 3], [-5, 4], [-5, 3]])  # τ_0 the same in every row: constant
    act = Thresholds(tau, np.zeros(3, bool))
    # acc_bits 4: 5-bit compares; τ_1 = 3 / 4 is 00011 / 00100: three columns vary, two of
    # them equal (bits 0 and 1), so two live columns; two folds leave no default arm
    two = act.record([(Lane(None, (0, 1)), None)], 4)["thresholds"]
    assert two == {"count": 2, "compare_bits": 5, "live_columns": [2]}
    # three folds: the case's default 0 is a fourth word, so τ_0 = -5 = 11011 varies too:
    # its four 1 bits are one column (1, 1, 1, 0), its 0 bit stays constant
    three = act.record([(Lane(None, (0, 1, 2)), None)], 4)["thresholds"]
    assert three["live_columns"] == [2 + 1]
