"""IntModel files: round trip, checksums, versions, accumulator settings and figures."""

from __future__ import annotations

import itertools
import json
import zipfile

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import hwquant
from hwquant.core.errors import ConfigError, FileFormatError, HwquantError
from hwquant.core.intmath import ACC_MIN_BITS, qrange
from hwquant.engine.accumulators import adversarial_run
from hwquant.export.graph import _bound
from hwquant.ir.intmodel import LinearNode
from hwquant.rtl.network.weight_layer import accumulator_width
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


@st.composite
def tiny_layers(draw) -> LinearNode:
    """One output channel, fan-in 1..3, 1..3-bit inputs (signed or not), any bias."""
    in_bits, in_signed = draw(st.integers(1, 3)), draw(st.booleans())
    fan_in = draw(st.integers(1, 3))
    weight = np.array([draw(st.lists(st.integers(-8, 7), min_size=fan_in, max_size=fan_in))])
    bias = draw(st.none() | st.integers(-40, 40).map(lambda b: np.array([b])))
    return LinearNode(
        "fc", ["x"], weight, bias, np.ones(1), weight_bits=4, in_bits=in_bits, in_signed=in_signed
    )


@settings(max_examples=40, deadline=None)
@given(tiny_layers())
def test_proved_interval_is_every_partial_sum_and_every_consumer_checks_it(node):
    """Brute force: every input in range, every order of the products, the bias added at any
    point; the interval is their exact hull. At its bits under 'raise' the engine (adversarial
    inputs), the export's float32 bound and the RTL width accept the layer (issue 20)."""
    lo, hi = qrange(node.in_bits, node.in_signed)
    w, b = node.weight[0].tolist(), 0 if node.bias is None else int(node.bias[0])
    sums = set()
    for x in itertools.product(range(lo, hi + 1), repeat=len(w)):
        for terms in itertools.permutations([wk * xk for wk, xk in zip(w, x, strict=True)] + [b]):
            sums.update(itertools.accumulate(terms, initial=0))
    assert node.proved_interval() == (min(sums), max(sums))
    node.acc_bits, node.overflow = max(node.proved_bits(), ACC_MIN_BITS), "raise"
    adversarial_run(node)  # raises on an overflow
    assert _bound(node.weight, (lo, hi), node.bias) == max(-min(sums), max(sums))
    assert accumulator_width(node) in (node.acc_bits, node.worst_case_bits())
