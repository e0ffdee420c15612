"""The synthesis sweep behind :mod:`hwquant.hw.synthesized`: emit each unit over a grid of
widths, synthesize it with Yosys (:func:`hwquant.rtl.synth.synthesize`), fit the cost formulas
by least squares and write the cached JSON (``hwquant synth sweep``).

Constants inside a unit (a codebook, a table, thresholds, a requantizer's multiplier) change
what Yosys can simplify, so each point draws them at random from a fixed seed (the point's index)
over their whole range: the formulas describe units with typical, not special, constants. The
document records every point's emitter arguments, so any point can be rebuilt and checked.
"""

from __future__ import annotations

import datetime
import itertools
import sys
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hwquant.core.intmath import qrange
from hwquant.core.provenance import git_state
from hwquant.hw.synthesized import (
    FEATURES,
    FORMULA_FEATURES,
    PARAMS,
    RESOURCES,
    SP2_SPLITS,
    features,
)
from hwquant.rtl.unit import emitters, get_emitter

TOLERANCE = 0.15
"""Issue 6's target: every fitted count within 15% of Yosys's on every swept point."""
SLACK_CELLS = 1
"""Counts below 1/TOLERANCE cells cannot be within 15% unless exact, so one cell of slack is
allowed: a point passes when ``|estimate − yosys| ≤ max(TOLERANCE·yosys, SLACK_CELLS)``."""
SWEEP_FORMAT = 1


@dataclass(frozen=True)
class SweepKind:
    """One unit kind of the sweep: how to build it from widths and the grid of widths."""

    kind: str
    emitter: str
    args: Callable[[Mapping[str, int], np.random.Generator], tuple[tuple, dict[str, Any]]]
    grid: tuple[dict[str, int], ...]


def _grid(**axes: Iterable[int]) -> tuple[dict[str, int], ...]:
    names = list(axes)
    combos = itertools.product(*axes.values())
    return tuple(dict(zip(names, combo, strict=True)) for combo in combos)


def _distinct(rng: np.random.Generator, count: int, bits: int) -> list[int]:
    """``count`` distinct signed ``bits``-bit integers drawn at random, ascending."""
    lo, hi = qrange(bits, True)
    return sorted(int(v) for v in rng.choice(np.arange(lo, hi + 1), size=count, replace=False))


def _mac_args(style: str) -> Callable:
    def args(p: Mapping[str, int], rng: np.random.Generator) -> tuple[tuple, dict[str, Any]]:
        del rng
        return tuple(p[k] for k in PARAMS["fixed_mac_dsp"]), {"style": style}

    return args


def _sp2_args(p: Mapping[str, int], rng: np.random.Generator) -> tuple[tuple, dict[str, Any]]:
    del rng
    return (p["act_bits"], p["m1"], p["m2"], p["acc_bits"]), {}


def _codebook_args(style: str) -> Callable:
    def args(p: Mapping[str, int], rng: np.random.Generator) -> tuple[tuple, dict[str, Any]]:
        book = _distinct(rng, p["codebook_size"], p["grid_bits"])
        return (p["act_bits"], book, p["grid_bits"], p["acc_bits"]), {"style": style}

    return args


def _table_args(p: Mapping[str, int], rng: np.random.Generator) -> tuple[tuple, dict[str, Any]]:
    lo, hi = qrange(p["entry_bits"], True)
    table = rng.integers(lo, hi + 1, size=(p["act_levels"], p["weight_levels"])).tolist()
    return (table, p["entry_bits"], p["acc_bits"]), {}


def _threshold_args(p: Mapping[str, int], rng: np.random.Generator) -> tuple[tuple, dict]:
    return (p["acc_bits"], _distinct(rng, p["thresholds"], p["acc_bits"])), {}


def _requantizer_args(p: Mapping[str, int], rng: np.random.Generator) -> tuple[tuple, dict]:
    m = p["multiplier_bits"]
    multiplier = int(rng.integers(2 ** (m - 1), 2**m))
    shift = m + p["acc_bits"] - p["out_bits"] - 1
    return (p["acc_bits"], multiplier, shift, p["out_bits"]), {"out_signed": False, "relu": True}


_CODEBOOK_GRID = (
    *_grid(act_bits=(4, 8), codebook_size=(4, 16), grid_bits=(8,), acc_bits=(24,)),
    {"act_bits": 4, "codebook_size": 4, "grid_bits": 6, "acc_bits": 24},
    {"act_bits": 8, "codebook_size": 16, "grid_bits": 6, "acc_bits": 24},
    {"act_bits": 4, "codebook_size": 16, "grid_bits": 8, "acc_bits": 32},
    {"act_bits": 8, "codebook_size": 4, "grid_bits": 6, "acc_bits": 32},
)
SWEEP: tuple[SweepKind, ...] = (
    SweepKind(
        "fixed_mac_dsp",
        "fixed_mac",
        _mac_args("dsp"),
        _grid(act_bits=(2, 4, 8), weight_bits=(2, 4, 8), acc_bits=(16, 32)),
    ),
    SweepKind(
        "fixed_mac_lut",
        "fixed_mac",
        _mac_args("lut"),
        _grid(act_bits=(2, 4, 8), weight_bits=(2, 4, 8), acc_bits=(16,))
        + _grid(act_bits=(4, 8), weight_bits=(4, 8), acc_bits=(28,)),
    ),
    SweepKind(
        "sp2_mac",
        "sp2_mac",
        _sp2_args,
        tuple(
            {"act_bits": a, "m1": m1, "m2": m2, "acc_bits": acc}
            for a, (m1, m2), acc in [
                *itertools.product((2, 4, 8), SP2_SPLITS, (24,)),
                *itertools.product((4,), SP2_SPLITS, (32,)),
            ]
        ),
    ),
    SweepKind(
        "codebook_mac_dsp",
        "codebook_mac",
        _codebook_args("dsp"),
        _CODEBOOK_GRID,
    ),
    SweepKind(
        "codebook_mac_lut",
        "codebook_mac",
        _codebook_args("lut"),
        _CODEBOOK_GRID,
    ),
    SweepKind(
        "table_accumulator",
        "table_accumulator",
        _table_args,
        _grid(
            act_levels=(2, 4, 8, 16), weight_levels=(2, 4, 8, 16), entry_bits=(8,), acc_bits=(20,)
        )
        + _grid(act_levels=(4, 16), weight_levels=(16,), entry_bits=(12,), acc_bits=(24,)),
    ),
    SweepKind(
        "threshold_unit",
        "threshold_unit",
        _threshold_args,
        _grid(acc_bits=(12, 24), thresholds=(1, 3, 15)),
    ),
    SweepKind(
        "requantizer",
        "requantizer",
        _requantizer_args,
        _grid(acc_bits=(16, 32), multiplier_bits=(8, 16), out_bits=(8,))
        + _grid(acc_bits=(24,), multiplier_bits=(8, 16), out_bits=(4,)),
    ),
)
"""The sweep: every unit kind of :data:`hwquant.hw.synthesized.FEATURES` over its grid."""
assert {k.kind for k in SWEEP} == set(FEATURES)


def build(kind: SweepKind, params: Mapping[str, int], seed: int):
    """The unit of ``kind`` at ``params`` (constants drawn from ``seed``) and its arguments."""
    args, kwargs = kind.args(params, np.random.default_rng(seed))
    return get_emitter(kind.emitter)(*args, **kwargs), {"args": list(args), "kwargs": kwargs}


def fit(points: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Least-squares coefficients per resource for the points of one unit kind, with the fit's
    worst errors on those points (``rel_err = |est − yosys| / max(yosys, 1)``)."""
    from hwquant.hw.synthesized import Formula

    kind = points[0]["kind"]
    feats = [features(kind, p["params"]) for p in points]
    out = {}
    for res in RESOURCES:
        names = FORMULA_FEATURES[kind][res]
        x = np.array([[f[n] for n in names] for f in feats], dtype=np.float64)
        y = np.array([p["resources"][res] for p in points], dtype=np.float64)
        coef, *_ = np.linalg.lstsq(x, y, rcond=None)
        coef = np.where(np.abs(coef) < 1e-9, 0.0, coef)
        formula = Formula(dict(zip(names, coef.tolist(), strict=True)))
        est = np.array([formula(f) for f in feats], dtype=np.float64)
        err = np.abs(est - y)
        out[res] = {
            "coef": dict(formula.coef),
            "max_rel_err": float(np.max(err / np.maximum(y, 1))),
            "max_abs_err": int(np.max(err)),
            "within_target": bool(np.all(err <= np.maximum(TOLERANCE * y, SLACK_CELLS))),
        }
    return out


def run_sweep(
    kinds: Iterable[str] | None = None,
    *,
    family: str = "xc7",
    cache_dir: str | Path | None = None,
    jobs: int = 1,
    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
) -> dict[str, Any]:
    """Synthesize every point of :data:`SWEEP` (or of ``kinds``), ``jobs`` Yosys runs at a
    time, fit, and return the document.

    A kind whose emitter is not registered (:func:`hwquant.rtl.unit.emitters`) is skipped and
    listed under ``skipped``.

    Raises:
        ToolError: Yosys is missing or a synthesis fails.
    """
    from hwquant.rtl.synth import synth_script, synthesize, yosys_version

    chosen = [k for k in SWEEP if kinds is None or k.kind in set(kinds)]
    skipped = [k.kind for k in chosen if k.emitter not in emitters()]
    for kind in skipped:
        log(f"{kind}: no unit emitter is registered for it; skipped")
    todo = [
        (kind, index, params, *build(kind, params, index))
        for kind in chosen
        if kind.kind not in skipped
        for index, params in enumerate(kind.grid)
    ]

    def one(item: tuple) -> dict[str, Any]:
        kind, index, params, unit, call = item
        res = synthesize(unit, family, cache_dir=cache_dir)
        log(f"{unit.top}: {res.luts} LUT, {res.ffs} FF, {res.carry4} CARRY4, {res.dsps} DSP")
        return {
            "kind": kind.kind,
            "emitter": kind.emitter,
            "seed": index,
            "params": dict(params),
            "call": call,
            "top": unit.top,
            "resources": res.to_dict(),
        }

    with ThreadPoolExecutor(max_workers=max(jobs, 1)) as pool:
        points = list(pool.map(one, todo))
    fits = {
        kind.kind: fit([p for p in points if p["kind"] == kind.kind])
        for kind in chosen
        if kind.kind not in skipped
    }
    git = git_state(Path.cwd())
    return {
        "format": "hwquant synth sweep",
        "format_version": SWEEP_FORMAT,
        "yosys_version": yosys_version(),
        "family": family,
        "yosys_script": synth_script("TOP", family),
        "lut_style_script": synth_script("TOP", family, nodsp=True),
        "command": "hwquant synth sweep",
        "date_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "git_commit": git["commit"],
        "git_dirty": git["dirty"],
        "tolerance": {"relative": TOLERANCE, "slack_cells": SLACK_CELLS},
        "skipped": skipped,
        "fits": fits,
        "points": points,
    }
