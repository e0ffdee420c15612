"""verify() on table models: exact layer by layer, a tampered table located, kinds checked."""

from __future__ import annotations

import copy

import pytest
import torch

import hwquant
from hwquant.core.errors import HwquantError
from hwquant.models import build
from hwquant.qat.recipe import Recipe
from hwquant.schemes.tables.model import LookupAddNode, PoolNode, UnitNode
from tests.helpers import trained_qat_model


def test_table_models_are_verified_and_a_tampered_table_is_located(small_cnn_tables):
    qat, table_model, x = small_cnn_tables
    report = hwquant.verify(qat, table_model, x)
    assert report.exact and report.compared > 0
    layers = (UnitNode, LookupAddNode, PoolNode)  # max pooling and flatten pass indices on
    assert set(report.per_layer) == {n.name for n in table_model.nodes if isinstance(n, layers)}
    tampered = copy.deepcopy(table_model)
    unit = tampered.units()[1]
    unit.thresholds = unit.thresholds + 1_000_000  # every comparison now fails
    object.__setattr__(tampered, "_compiled", None)  # the engine compiles the tables again
    bad = hwquant.verify(qat, tampered, x)
    assert not bad.exact and bad.first.layer == unit.name
    assert bad.per_layer[tampered.units()[0].name] == 0


def test_a_lowered_model_of_another_kind_is_refused(small_cnn_tables):
    tables_qat, table_model, x = small_cnn_tables
    torch.manual_seed(0)
    qat = trained_qat_model(build("small_cnn", in_channels=1, input_size=8), Recipe(), x)
    int_model = hwquant.lower(qat, x)
    with pytest.raises(HwquantError, match="lowers to an IntModel"):
        hwquant.verify(qat, table_model, x)
    with pytest.raises(HwquantError, match="lowers to a TableModel"):
        hwquant.verify(tables_qat, int_model, x)
