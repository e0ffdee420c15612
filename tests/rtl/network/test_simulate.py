"""How a simulation is judged: mismatches counted from the testbench's own output lines, and
a missing simulator named with its install command."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hwquant.cli import main
from hwquant.core.errors import ConfigError
from hwquant.core.npzfile import write_npz_with_header
from hwquant.rtl.network import build_design, simulate
from hwquant.rtl.network.simulate import compare, simulate_design


def test_mismatches_counted_from_the_output_lines_not_a_summary():
    logits = np.array([[3, -1], [0, 5], [2, 2]])
    argmax = logits.argmax(1)
    log = "\n".join(
        [
            "FIRST 2",
            "OUT 0 40 0 3 -1",
            "OUT 1 60 0 0 4",  # argmax and logit[1] differ
            "- V e r i l a t e: 0 mismatches",  # a summary line is never read
            "DONE 2",
        ]
    )
    mismatches, outputs, latency, intervals = compare(log, logits, argmax)
    assert outputs == 2 and latency == 38 and intervals == [20]
    assert [(m.image, m.field, m.expected, m.got) for m in mismatches] == [
        (1, "argmax", 1, 0),
        (1, "logit[1]", 5, 4),
        (2, "missing", None, None),
    ]


def test_missing_simulator_names_the_install_command(llsq_cnn, tmp_path, monkeypatch, capsys):
    design = build_design(llsq_cnn, "lfe5u-85f", tmp_path / "d", input_size=8)
    monkeypatch.setattr(simulate.shutil, "which", lambda name: None)
    assert main(["sim", str(design.directory), "--images", "2"]) == 1
    err = capsys.readouterr().err
    assert "not on PATH" in err and "apt-get install -y verilator" in err


def test_a_design_of_another_model_format_asks_for_its_model(tmp_path):
    """simulate_design reads the design's model.npz as an IntModel only when it is one: a
    TableModel design (its file format, not the scheme's name, tells) asks for model=."""
    (tmp_path / "design.json").write_text(json.dumps({"scheme": "anything"}))
    write_npz_with_header(tmp_path / "model.npz", "hwquant.TableModel", 1, {}, {})
    with pytest.raises(ConfigError, match=r"design of a hwquant\.TableModel.*TableCodeModel"):
        simulate_design(tmp_path, np.zeros((1, 1, 8, 8), dtype=np.int64))
