"""IntModel files: round trip, checksums, versions, accumulator settings and figures."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import torch

import hwquant
from hwquant.core.errors import ConfigError, FileFormatError, HwquantError
from tests.helpers import lowered_small_cnn


@pytest.fixture(scope="module")
def lowered():
    return lowered_small_cnn()


def test_save_load_round_trip(lowered, tmp_path):
    int_model, x = lowered
    path = int_model.save(tmp_path / "model.npz")
    loaded = hwquant.load(path)
    x_int = int_model.quantize_input(x)
    assert torch.equal(loaded.run(x_int), int_model.run(x_int))
    assert loaded.input == int_model.input and loaded.recipe == int_model.recipe
    assert [type(n) for n in loaded.nodes] == [type(n) for n in int_model.nodes]


def test_truncated_file_is_named(lowered, tmp_path):
    path = lowered[0].save(tmp_path / "model.npz")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(FileFormatError, match=r"model.npz.*truncated or corrupted"):
        hwquant.load(path)


def test_corrupted_array_fails_its_checksum(lowered, tmp_path):
    path = lowered[0].save(tmp_path / "model.npz")
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    name = next(n for n in members if n.endswith("weight.npy"))
    blob = bytearray(members[name])
    blob[-1] ^= 0x01
    members[name] = bytes(blob)
    with zipfile.ZipFile(path, "w") as zf:
        for n, b in members.items():
            zf.writestr(n, b)
    with pytest.raises(FileFormatError, match="fails its checksum"):
        hwquant.load(path)


def test_unknown_version_is_rejected(lowered, tmp_path):
    path = lowered[0].save(tmp_path / "model.npz")
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    header = json.loads(bytes(arrays["__header__"]).decode())
    header["version"] = 99
    arrays["__header__"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    np.savez(path, **arrays)
    with pytest.raises(FileFormatError, match=r"version 99.*reads versions 1, 2"):
        hwquant.load(path)


def test_version_1_file_loads_without_encodings(lowered, tmp_path):
    path = lowered[0].save(tmp_path / "model.npz")
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    header = json.loads(bytes(arrays["__header__"]).decode())
    header["version"] = 1
    for node in header["nodes"]:
        node.pop("encoding", None)
    arrays["__header__"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    np.savez(path, **arrays)
    loaded = hwquant.load(path)
    assert all(node.encoding is None for node in loaded.weight_nodes())


def test_missing_file(tmp_path):
    with pytest.raises(FileFormatError, match="does not exist"):
        hwquant.load(tmp_path / "nope.npz")


def test_accumulator_settings(lowered):
    int_model, _ = lowered
    int_model.set_accumulator(24, "saturate", layers=[int_model.weight_nodes()[0].name])
    assert int_model.weight_nodes()[0].accumulator.bits == 24
    with pytest.raises(HwquantError, match="no weight layer named nope"):
        int_model.set_accumulator(16, layers=["nope"])
    with pytest.raises(ConfigError, match="wrap, saturate, raise"):
        int_model.set_accumulator(16, "drop")  # type: ignore[arg-type]
    int_model.set_accumulator(32, "wrap")


def test_accumulator_of_one_layer_named_by_a_string(lowered):
    int_model, _ = lowered
    first, *others = int_model.weight_nodes()
    int_model.set_accumulator(20, "saturate", layers=first.name)  # not its letters
    assert (first.acc_bits, first.overflow) == (20, "saturate")
    assert all(n.acc_bits == 32 for n in others)
    with pytest.raises(HwquantError, match="no weight layer named classifer"):
        int_model.set_accumulator(16, layers="classifer")
    int_model.set_accumulator(32, "wrap")


def test_size_and_worst_case_bits(lowered):
    int_model, _ = lowered
    nodes = int_model.weight_nodes()
    expected = sum(n.weight.size * n.weight_bits + n.bias.size * n.acc_bits for n in nodes)
    assert int_model.size_bits() == expected
    for n in nodes:
        bound = (
            np.abs(n.weight).reshape(n.weight.shape[0], -1).sum(1)
            * max(
                abs(v)
                for v in (
                    (-(2 ** (n.in_bits - 1))) if n.in_signed else 0,
                    2**n.in_bits - 1 if not n.in_signed else 2 ** (n.in_bits - 1) - 1,
                )
            )
            + np.abs(n.bias)
        ).max()
        assert 2 ** (n.worst_case_bits() - 1) > bound >= 2 ** (n.worst_case_bits() - 2)
