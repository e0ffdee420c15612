"""TableModel save/load: round trip, checksums, versions."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import torch

from hwquant.core.errors import FileFormatError
from hwquant.ir.intmodel import MaxPoolNode
from hwquant.schemes.tables import load_tables, run_tables


def test_save_load_round_trip(residual_tables, tmp_path):
    _, table_model, x = residual_tables
    loaded = load_tables(table_model.save(tmp_path / "m.npz"))
    assert [type(n) for n in loaded.nodes] == [type(n) for n in table_model.nodes]
    for a, b in zip(loaded.units(), table_model.units(), strict=True):
        assert np.array_equal(a.table, b.table) and np.array_equal(a.thresholds, b.thresholds)
    x_idx = table_model.quantize_input(x)
    assert torch.equal(run_tables(loaded, x_idx), run_tables(table_model, x_idx))


def test_corrupted_array_is_named(small_cnn_tables, tmp_path):
    _, table_model, _ = small_cnn_tables
    path = table_model.save(tmp_path / "m.npz")
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    key = next(k for k in arrays if k.endswith("/table"))
    arrays[key] = arrays[key] + 1
    np.savez(path, **arrays)
    with pytest.raises(FileFormatError, match="checksum"):
        load_tables(path)


def test_truncated_file_and_wrong_version(small_cnn_tables, tmp_path):
    _, table_model, _ = small_cnn_tables
    path = table_model.save(tmp_path / "m.npz")
    cut = tmp_path / "cut.npz"
    cut.write_bytes(path.read_bytes()[:200])
    with pytest.raises(FileFormatError, match="Fix:"):
        load_tables(cut)
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    header = json.loads(bytes(arrays["__header__"]).decode())
    header["version"] = 99
    arrays["__header__"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    np.savez(path, **arrays)
    with pytest.raises(FileFormatError, match="version 99"):
        load_tables(path)
    assert zipfile.is_zipfile(path)


def test_version_1_max_pooling_is_read_as_the_intmodel_node(small_cnn_tables, tmp_path):
    _, table_model, x = small_cnn_tables
    path = table_model.save(tmp_path / "m.npz")
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    header = json.loads(bytes(arrays["__header__"]).decode())
    pools = [e for e in header["nodes"] if e.get("op") == "maxpool"]
    assert pools, "a degenerate test: the model has no max pooling"
    for entry in pools:  # version 1 wrote a table node with integer sizes
        v1 = {"kind": "maxpool", "name": entry["name"], "inputs": entry["inputs"]}
        v1.update({f: entry[f][0] for f in ("kernel_size", "stride", "padding")})
        entry.clear()
        entry.update(v1)
    header["version"] = 1
    arrays["__header__"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    np.savez(path, **arrays)
    loaded = load_tables(path)
    assert [type(n) for n in loaded.nodes] == [type(n) for n in table_model.nodes]
    assert [n for n in loaded.nodes if isinstance(n, MaxPoolNode)] == [
        n for n in table_model.nodes if isinstance(n, MaxPoolNode)
    ]
    x_idx = table_model.quantize_input(x)
    assert torch.equal(run_tables(loaded, x_idx), run_tables(table_model, x_idx))
