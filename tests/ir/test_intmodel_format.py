"""The IntModel file format: what docs/intmodel_format.md states matches what the code does."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest

import hwquant
from hwquant.core.errors import FileFormatError
from hwquant.ir.intmodel import ENCODING_TYPES, FORMAT_VERSION, NODE_TYPES, READABLE_VERSIONS
from tests.helpers import lowered_small_cnn

DOC = (Path(__file__).resolve().parents[2] / "docs" / "intmodel_format.md").read_text("utf-8")


def rewrite_header(path: Path, edit) -> None:
    """Apply ``edit(header)`` to the JSON header of the IntModel file at ``path``."""
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    header = json.loads(bytes(arrays["__header__"]).decode())
    edit(header)
    arrays["__header__"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    np.savez(path, **arrays)


def test_doc_names_every_op_encoding_and_field():
    assert f"(version {FORMAT_VERSION})" in DOC
    assert f"READABLE_VERSIONS = {READABLE_VERSIONS}" in DOC
    documented = set(re.findall(r"`([a-z_0-9]+)`", DOC))
    for op, cls in NODE_TYPES.items():
        assert op in documented
        assert {f.name for f in dataclasses.fields(cls)} <= documented, cls.__name__
    for kind, cls in ENCODING_TYPES.items():
        assert kind in documented
        assert {f.name for f in dataclasses.fields(cls)} <= documented, cls.__name__


def test_a_foreign_npz_is_not_an_intmodel(tmp_path):
    path = lowered_small_cnn(batch=2)[0].save(tmp_path / "model.npz")
    rewrite_header(path, lambda h: h.update(format="something.else"))
    with pytest.raises(FileFormatError, match=r"is not an IntModel file\. Fix"):
        hwquant.load(path)


def test_an_unknown_node_op_is_a_malformed_header(tmp_path):
    path = lowered_small_cnn(batch=2)[0].save(tmp_path / "model.npz")
    rewrite_header(path, lambda h: h["nodes"][0].update(op="conv3d"))
    with pytest.raises(FileFormatError, match=r"malformed header.*Fix"):
        hwquant.load(path)


def test_an_encoding_that_does_not_decode_to_the_weights_is_rejected(tmp_path):
    model = lowered_small_cnn(batch=2)[0]
    node = model.weight_nodes()[1]
    codebook = np.arange(-8, 8).reshape(1, 16)
    node.encoding = hwquant.ir.intmodel.CodebookEncoding(node.weight + 8, codebook, 4, 4)
    path = model.save(tmp_path / "model.npz")
    assert np.array_equal(hwquant.load(path).weight_nodes()[1].weight, node.weight)
    node.encoding.indices = np.zeros_like(node.weight)  # decodes to -8 everywhere
    path = model.save(tmp_path / "bad.npz")
    with pytest.raises(FileFormatError, match="does not decode to its weights"):
        hwquant.load(path)


def node_named(name: str):
    """An edit of the header entry of node ``name``."""

    def edit_of(change):
        def edit(header):
            change(next(n for n in header["nodes"] if n["name"] == name))

        return edit

    return edit_of


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (node_named("features.0.0")(lambda n: n.update(lo=20, hi=3)), "lo 20 > hi 3"),
        (lambda h: h["input"].update(scale=0.0), "scale of 'quant_input' is not a finite"),
        (lambda h: h["input"].update(scale=-1.5), "scale of 'quant_input' is not a finite"),
        (node_named("features.0.0")(lambda n: n.update(out_scale=-2.0)), "out_scale of"),
        (node_named("features.0.0")(lambda n: n.update(acc_bits=99)), "accumulator bits=99"),
        (node_named("features.0.0")(lambda n: n.update(stride=[0, 1])), "stride of"),
        (node_named("features.0.0")(lambda n: n.update(weight_bits=0)), "weight_bits of"),
        (node_named("classifier")(lambda n: n.update(weight_bits=2)), "outside the 2-bit range"),
    ],
    ids=["lo>hi", "scale0", "scale<0", "out_scale", "acc_bits", "stride", "bits0", "wbits"],
)
def test_a_header_that_lies_fails_at_load(tmp_path, edit, message):
    path = lowered_small_cnn(batch=2)[0].save(tmp_path / "model.npz")
    rewrite_header(path, edit)
    with pytest.raises(FileFormatError, match=r"malformed header: .*Fix") as info:
        hwquant.load(path)
    assert message in str(info.value)


def test_negative_shifts_and_weights_outside_their_bits_fail_at_load(tmp_path):
    model = lowered_small_cnn(batch=2)[0]
    first = model.weight_nodes()[0]
    first.shift = first.shift.copy()
    first.shift[0] = -3
    with pytest.raises(FileFormatError, match=rf"shift of '{first.name}' is negative"):
        hwquant.load(model.save(tmp_path / "shift.npz"))
    model = lowered_small_cnn(batch=2)[0]
    first = model.weight_nodes()[0]
    first.weight = first.weight.copy()
    first.weight.flat[0] = 2**first.weight_bits
    with pytest.raises(FileFormatError, match=r"outside the 8-bit range \[-128, 127\]"):
        hwquant.load(model.save(tmp_path / "weights.npz"))
