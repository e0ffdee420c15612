"""Where MSQ's weight error comes from: each row's error on SP2 and on fixed-point levels.

For every inner weight layer of the committed cpu-long FP32 ResNet-20 (88.67 %), prepared for
the ``msq_W4A4`` row (4-bit weights, BN folded into the weights as the row trains them), the
squared error ``e(r) = Σ_k (w_q[r,k] − w[r,k])²`` of each row ``r`` on the SP2 levels and on
the fixed-point levels (docs/msq.md §1), with the error measured by the row's own quantizer:

* at the start of training, ``α_r = max|w_r|`` for both schemes (what QAT starts from), and
* at each scheme's least-error ``α_r`` (a grid of ``α_r / max|w_r|`` from 0.2 to 1), to show
  whether a learned clip could change which scheme fits a row better.

From them: the share of rows that SP2 fits better, and the layer-summed relative error
``Σ e / Σ w²`` of fixed-point only, SP2 only and the half-and-half split chosen by each row
test (``variance``, ``kurtosis``, ``error``; :mod:`hwquant.schemes.msq.quantizer`). No
training: it runs in seconds.

``python -m benchmarks.msq_row_error`` writes ``benchmarks/results/msq_row_error.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

import torch

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import hwquant
from benchmarks.accumulator_aware_cifar10 import MODEL, TIERS, fp32_state
from benchmarks.common import command_line, write_result
from hwquant.app.bench.rows import RowSpec
from hwquant.models import build
from hwquant.qat.nn.bn_fold import fold_bn
from hwquant.qat.nn.weight_layer import QuantWeightLayer
from hwquant.schemes.msq.quantizer import (
    ASSIGNMENT_TESTS,
    MixedSchemeQuantizer,
    assign_sp2_rows,
    row_scores,
)

NAME = "msq_row_error"
ROW = RowSpec("msq", 4, 4)
SHARE = ROW.recipe(qat_steps=1).msq.sp2_share
"""The row's SP2 share (one half)."""
CLIP_GRID = torch.linspace(0.2, 1.0, 41)
"""``α_r / max|w_r|`` tried for each scheme's least-error clip."""


def folded_layers(model: torch.nn.Module) -> dict[str, tuple[torch.Tensor, MixedSchemeQuantizer]]:
    """``name -> (folded weight, MSQ quantizer)`` of every MSQ layer of ``model`` prepared
    for the ``msq_W4A4`` row (the first and last layers keep LLSQ's 8-bit weights)."""
    qat = hwquant.prepare(model, ROW.recipe(qat_steps=1)).eval()
    layers = {}
    for name, module in qat.named_modules():
        if isinstance(module, QuantWeightLayer) and isinstance(
            module.weight_quant, MixedSchemeQuantizer
        ):
            weight = fold_bn(module.weight, module.bias, module.bn)[0].detach()
            layers[name] = (weight.double(), module.weight_quant)
    return layers


@torch.no_grad()
def row_errors(w: torch.Tensor, quantizer: MixedSchemeQuantizer, sp2: bool) -> torch.Tensor:
    """Each row's squared error with every row on SP2 (``sp2``) or on fixed-point, at the
    quantizer's current scales."""
    quantizer.sp2_rows.fill_(sp2)
    return (quantizer(w) - w).square().reshape(w.shape[0], -1).sum(dim=1)


@torch.no_grad()
def least_clip_errors(w: torch.Tensor, quantizer: MixedSchemeQuantizer, sp2: bool) -> torch.Tensor:
    """Each row's least squared error over the clips of :data:`CLIP_GRID` (per-row α)."""
    peak = w.abs().reshape(w.shape[0], -1).amax(dim=1).float()
    best = None
    for clip in CLIP_GRID:
        quantizer.scale.copy_(clip * peak)
        errors = row_errors(w, quantizer, sp2)
        best = errors if best is None else torch.minimum(best, errors)
    quantizer.scale.copy_(peak)
    return best


STARTS = {"alpha_max": row_errors, "alpha_least_error": least_clip_errors}
"""The two scale settings the errors are measured at (module docstring)."""


def error_sums(
    w: torch.Tensor, quantizer: MixedSchemeQuantizer
) -> dict[str, dict[str, float | int]]:
    """Per start of :data:`STARTS`: the layer's ``Σ w²``, its summed squared error with
    fixed-point only, SP2 only and each row test's split, and the rows SP2 fits better."""
    quantizer.initialize(w.float())  # α_r = max|w_r|, as training starts
    sums = {}
    for start, errors_of in STARTS.items():
        fixed, sp2 = errors_of(w, quantizer, False), errors_of(w, quantizer, True)
        layer = {"norm": float(w.square().sum()), "fixed_only": float(fixed.sum()),
                 "sp2_only": float(sp2.sum()), "rows": w.shape[0],
                 "rows_sp2_fits_better": int((sp2 < fixed).sum())}  # fmt: skip
        for test in ASSIGNMENT_TESTS:  # "error" ranks by sp2 − fixed: the least total
            chosen = assign_sp2_rows(sp2 - fixed if test == "error" else row_scores(w, test), SHARE)
            layer[test] = float(torch.where(chosen, sp2, fixed).sum())
        sums[start] = layer
    return sums


def relative(sums: dict[str, float | int]) -> dict[str, Any]:
    """Summed errors over ``Σ w²``, and the row counts."""
    return {
        "rows": int(sums["rows"]),
        "rows_sp2_fits_better": int(sums["rows_sp2_fits_better"]),
        "fixed_only": sums["fixed_only"] / sums["norm"],
        "sp2_only": sums["sp2_only"] / sums["norm"],
        "msq_by_test": {test: sums[test] / sums["norm"] for test in ASSIGNMENT_TESTS},
    }


def measure(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Per layer and network totals for the FP32 weights ``state`` of ResNet-20."""
    model = build(MODEL)
    model.load_state_dict(state)
    sums = {name: error_sums(w, q) for name, (w, q) in folded_layers(model).items()}
    network = {
        start: relative({key: sum(s[start][key] for s in sums.values()) for key in layer})
        for start, layer in next(iter(sums.values())).items()
    }
    layers = {
        name: {start: relative(values) for start, values in starts.items()}
        for name, starts in sums.items()
    }
    return {"network": network, "layers": layers}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Measure the tier's FP32 ResNet-20 and write the result file; return its results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tier", default="cpu-long", choices=TIERS)
    parser.add_argument("--out", type=Path, default=None, help="result JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    state, fp32_record = fp32_state(args.tier)
    results = measure(state)
    config = {
        "tier": args.tier,
        "fp32_checkpoint_sha256": fp32_record["checkpoint_sha256"],
        "fp32_test_acc": fp32_record["test_acc"],
        "row": ROW.name,
        "recipe_msq": dataclasses.asdict(ROW.recipe(qat_steps=1).msq),
        "sp2_share": SHARE,
        "clip_grid": [round(float(c), 4) for c in CLIP_GRID],
    }
    write_result(NAME, path=args.out, command=command_line(), seed=0, config=config,
                 results=results)  # fmt: skip
    return results


if __name__ == "__main__":
    main()
