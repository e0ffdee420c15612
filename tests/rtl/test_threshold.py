"""The threshold unit, simulated on a table model's real accumulators and thresholds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hwquant.core.errors import ConfigError
from hwquant.rtl import simulate, stream_stimulus, threshold_unit
from hwquant.schemes.tables.kernels import count_passed
from tests.goldens import requires_iverilog


@requires_iverilog
def test_indices_equal_the_table_engine(table_goldens):
    golden = table_goldens[1]
    node = golden["node"]
    descending = np.flatnonzero(node.descending)
    channels = [0, int(descending[0])] if len(descending) else [0, 1]
    for c in channels:
        acc = golden["acc"][..., c].reshape(-1)
        expected = golden["output"][..., c].reshape(-1)
        unit = threshold_unit(32, node.thresholds[c].tolist(), bool(node.descending[c]))
        result = simulate(unit, stream_stimulus({"acc": acc}, {"out": expected}))
        assert result.errors == 0 and np.array_equal(result.outputs["out"], expected)


@requires_iverilog
def test_sentinels_and_ties_count_like_count_passed():
    taus = [-(2**40), -5, -5, 0, 7, 2**40]
    acc = np.arange(-12, 12)
    for descending in (False, True):
        row = taus[::-1] if descending else taus
        value = torch.from_numpy(acc)[:, None]
        expected = count_passed(value, torch.tensor([row]), torch.tensor([descending]))[:, 0]
        stimulus = stream_stimulus({"acc": acc}, {"out": expected.numpy()})
        result = simulate(threshold_unit(8, row, descending), stimulus)
        assert np.array_equal(result.outputs["out"], expected.numpy())


@pytest.mark.parametrize(
    ("thresholds", "descending", "match"),
    [
        ([3, 1], False, "not non-decreasing"),
        ([1, 3], True, "not non-increasing"),
        ([], False, "non-empty"),
    ],
)
def test_unsorted_thresholds_are_refused(thresholds, descending, match):
    with pytest.raises(ConfigError, match=match):
        threshold_unit(16, thresholds, descending)
