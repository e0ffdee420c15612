"""Layer work read from a lowered IntModel: roles, positions, MACs (checked against the engine)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hwquant.core.errors import ConfigError
from hwquant.engine import run
from hwquant.hw import estimate, layer_work
from hwquant.ir.intmodel import MSQEncoding
from tests.helpers import lowered_small_cnn


@pytest.fixture(scope="module")
def small_cnn():
    model, _ = lowered_small_cnn(batch=2)
    return model


def test_layer_work_matches_the_engine(small_cnn) -> None:
    works = layer_work(small_cnn, (1, 8, 8))
    stats = run(small_cnn, torch.zeros((1, 1, 8, 8), dtype=torch.int64)).stats
    assert [w.role for w in works] == ["first"] + ["inner"] * (len(works) - 2) + ["last"]
    for work, node in zip(works, small_cnn.weight_nodes(), strict=True):
        assert work.macs == stats[node.name].macs  # the engine counts MACs of one image
        assert work.rows == node.weight.shape[0] and work.fan_in == node.fan_in()
        assert work.storage_bits == node.weight.size * node.weight_bits
        assert (work.act_bits, work.act_signed) == (node.in_bits, node.in_signed)
        assert work.sp2_rows is None
    assert works[0].weight_bits == 8 and works[-1].weight_bits == 8


def test_wrong_input_shape_is_a_config_error(small_cnn) -> None:
    with pytest.raises(ConfigError, match="input shape"):
        layer_work(small_cnn, (1, 12, 12))


def test_msq_encoding_fixes_the_rows(small_cnn) -> None:
    node = next(n for n in small_cnn.weight_nodes() if n.weight_bits == 4)
    rows = node.weight.shape[0]
    sp2 = np.arange(rows) < 3
    shape = node.weight.shape
    encoding = MSQEncoding(
        sp2_rows=sp2,
        sign=np.where(sp2.reshape(-1, 1, 1, 1), 1, 0).astype(np.int8) * np.ones(shape, np.int8),
        shift1=np.zeros(shape, np.int8),
        shift2=np.full(shape, -1, np.int8),
        fixed=np.where(sp2.reshape(-1, 1, 1, 1), 0, node.weight),
        bits=4,
    )
    weight = node.weight
    node.weight, node.encoding = encoding.decode(), encoding
    try:
        work = next(w for w in layer_work(small_cnn, (1, 8, 8)) if w.name == node.name)
        assert work.sp2_rows == 3 and work.weight_bits == 4
        assert work.storage_bits == encoding.storage_bits()
        msq = estimate(small_cnn, "xc7z020", (1, 8, 8), designs=["msq"]).designs["msq"]
        assert next(lc for lc in msq.layers if lc.work.name == node.name).lut_rows == 3
    finally:
        node.weight, node.encoding = weight, None
