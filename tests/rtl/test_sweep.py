"""The sweep's least-squares fit and its grid."""

from __future__ import annotations

import pytest

from hwquant.hw.synthesized import FORMULA_FEATURES, PARAMS, RESOURCES, features
from hwquant.rtl.sweep import SWEEP, fit


def test_fit_recovers_a_known_linear_formula() -> None:
    names = FORMULA_FEATURES["threshold_unit"]["luts"]
    truth = dict(zip(names, (3.0, 2.0, 1.0), strict=True))
    points = []
    for acc in (8, 12, 20):
        for t in (1, 4, 9):
            params = {"acc_bits": acc, "thresholds": t}
            f = features("threshold_unit", params)
            counts = {r: 0 for r in RESOURCES} | {"luts": int(sum(truth[n] * f[n] for n in names))}
            points.append({"kind": "threshold_unit", "params": params, "resources": counts})
    result = fit(points)
    assert result["luts"]["coef"] == pytest.approx(truth)
    assert result["luts"]["max_rel_err"] == 0.0 and result["luts"]["within_target"]


def test_every_grid_point_has_the_widths_its_formula_needs() -> None:
    for kind in SWEEP:
        for params in kind.grid:
            assert set(PARAMS[kind.kind]) <= set(params)
            assert set(FORMULA_FEATURES[kind.kind]["luts"]) <= set(features(kind.kind, params))
