"""``hwquant tables MODEL_FILE``."""

from __future__ import annotations

import json

from hwquant.cli import main


def test_tables_command_prints_the_measures(small_cnn_tables, tmp_path, capsys):
    _, table_model, _ = small_cnn_tables
    path = table_model.save(tmp_path / "m.npz")
    assert main(["tables", str(path), "--json"]) == 0
    measures = json.loads(capsys.readouterr().out)
    assert measures["max_inner_entries"] == 40
    assert main(["tables", str(path)]) == 0
    assert "max_entries: 1280" in capsys.readouterr().out


def test_missing_file_is_an_error(tmp_path, capsys):
    assert main(["tables", str(tmp_path / "none.npz")]) == 1
    assert "Fix:" in capsys.readouterr().err
