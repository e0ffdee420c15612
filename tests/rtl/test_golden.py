"""Golden vectors: they are the engine's numbers, and the exported files round-trip and replay."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hwquant.core.intmath import code_format, requantize
from hwquant.rtl import from_words
from hwquant.rtl.golden import export_golden, layer_goldens
from hwquant.rtl.simulate import run_directory
from tests.goldens import lowered, requires_iverilog


def test_vectors_are_consistent_with_the_engine(llsq_goldens):
    for golden in llsq_goldens.values():
        node = golden.node
        dot = np.einsum("npk,ck->npc", golden.patches, golden.weight)
        assert np.array_equal(golden.dot, dot)  # windows in the weights' order
        bias = 0 if node.bias is None else node.bias
        assert np.array_equal(golden.acc, golden.dot + bias)
        if node.mult is not None:
            codes = requantize(
                torch.from_numpy(golden.acc),
                torch.from_numpy(node.mult),
                torch.from_numpy(node.shift),
                node.lo,
                node.hi,
            )
            assert np.array_equal(golden.output, codes.numpy())


def test_msq_accumulators_come_from_the_shift_add_engine(msq_goldens):
    golden = msq_goldens["features.1.0"]
    assert golden.node.encoding.sp2_rows.any()
    assert np.array_equal(golden.dot, np.einsum("npk,ck->npc", golden.patches, golden.weight))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model, codes = lowered("llsq")
    out = tmp_path_factory.mktemp("golden")
    benches = export_golden(model, codes, out, pixels=4)
    return model, codes, out, benches


def test_files_round_trip(exported):
    model, codes, out, _ = exported
    goldens = {g.name: g for g in layer_goldens(model, codes)}
    for node in model.weight_nodes():
        golden = goldens[node.name]
        stem = out / node.name
        assert np.array_equal(np.load(f"{stem}.weight.npy"), node.weight)
        assert np.array_equal(np.load(f"{stem}.acc.npy"), golden.acc)
        out_bits, signed = (
            code_format(node.lo, node.hi) if node.mult is not None else (node.acc_bits, True)
        )
        for kind, bits, sign, values in [
            ("input", node.in_bits, node.in_signed, golden.input),
            ("weight", node.weight_bits, True, node.weight),
            ("acc", node.acc_bits, True, golden.acc),
            ("output", out_bits, signed, golden.output),
        ]:
            words = [
                int(line, 16) for line in (out / f"{node.name}.{kind}.hex").read_text().split()
            ]
            assert np.array_equal(from_words(words, bits, sign), values.reshape(-1))
    manifest = json.loads((out / "manifest.json").read_text())
    assert [e["layer"] for e in manifest] == [n.name for n in model.weight_nodes()]


@requires_iverilog
def test_replay_testbenches_pass(exported):
    *_, benches = exported
    assert len(benches) == 3
    for bench in benches:
        last = run_directory(bench, "tb").strip().splitlines()[-1].split()
        assert last[0] == "DONE" and last[1] == "0" and int(last[2]) > 0
