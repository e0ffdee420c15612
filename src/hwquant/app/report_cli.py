"""The report of a training run directory (``hwquant report RUN_DIR``).

A RUN_DIR is the ``out_dir`` of ``hwquant train``: it holds ``config.toml`` (the effective run
config) and ``last.pt`` (the trained weights; a QAT run also names the FP32 checkpoint it
started from in ``model.init``). :func:`collect_run` rebuilds the model from them, lowers it to
an IntModel (saved as ``RUN_DIR/model.npz``), verifies it against the QAT model, measures float,
fake-quant and integer accuracy, accumulator widths and overflows, and, when
:mod:`hwquant.hw` is installed, FPGA resource estimates. The results use the schema of the demo's
``demo.json`` (one variant), so the demo's tables, plots and HTML render them.

A run whose scheme lowers to a TableModel instead (``recipe.scheme = "tables"``; its
``SchemeHandler.lowers_to_intmodel`` is false): its results hold no variant and a ``"tables"``
section (:mod:`hwquant.app.report.table_units`: engine against fake-quant on the test set, the
multiply-free audit and the compactness measures).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

import hwquant
from hwquant.app.command import parser_with_examples
from hwquant.app.config import RunConfig, load_config
from hwquant.app.train import CHECKPOINT_NAME, init_weights, load_weights
from hwquant.core.checkpoint import load_checkpoint
from hwquant.core.errors import FileFormatError, HwquantError

CONFIG_FILE = "config.toml"
RESULTS_FILE = "results.json"
MODEL_FILE = "model.npz"
HW_DEVICE = "xc7z020"
"""FPGA part of the resource estimate (the smallest profile of :mod:`hwquant.hw`)."""
TABLES_NOTE = {
    "note": "no resource estimate for table units: hwquant.hw models multiply-accumulate "
    "designs; see the table compactness for the ROM sizes."
}


def collect_run(run_dir: str | Path, device: str = HW_DEVICE) -> dict[str, Any]:
    """Measure the QAT run in ``run_dir``; return its results (demo.json schema + resources;
    a table-unit run: no variant, a ``"tables"`` section and a resources note)."""
    from hwquant.app.demo import (
        ACC16_BITS,
        FLOAT_BITS,
        DemoData,
        Variant,
        environment,
        evaluate,
        measure_variant,
    )
    from hwquant.app.report.table_units import measure_table_units
    from hwquant.data import BatchLoader, load_dataset
    from hwquant.hw.devices import get_device
    from hwquant.schemes import get as get_scheme

    get_device(device)  # an unknown part is refused before any work, listing the known ones
    start = time.perf_counter()
    run_dir = Path(run_dir)
    config = _run_config(run_dir)
    splits = load_dataset(config.data.name, config.data.root, progress=False)
    test = BatchLoader(
        splits.test,
        config.data.batch_size_eval,
        mean=splits.mean,
        std=splits.std,
        shuffle=False,
        augment=False,
    )
    x, y = zip(*test, strict=True)
    data = DemoData(splits, test, torch.cat(x), torch.cat(y))
    fp32 = _float_model(config, data)
    fp32_weights = init_weights(Path(config.model.init)) if config.model.init else None
    if fp32_weights is not None:
        load_weights(fp32, fp32_weights, Path(config.model.init))
    fp32_results = {
        "accuracy": evaluate(fp32, data) if fp32_weights is not None else None,
        "size_bits": FLOAT_BITS * sum(p.numel() for p in fp32.parameters()),
    }
    qat = hwquant.prepare(fp32, config.recipe)
    load_weights(qat, _weights(run_dir / CHECKPOINT_NAME, "the run"), run_dir / CHECKPOINT_NAME)
    if get_scheme(config.recipe.scheme).lowers_to_intmodel:
        variant = Variant(MODEL_FILE.removesuffix(".npz"), config.recipe, config.train)
        variants = [measure_variant(qat, variant, data, run_dir)]
        resources = resource_estimate(run_dir / variants[0]["model_file"], data, device)
        sections = {"resources": resources}
    else:
        variants = []
        sections = {"tables": measure_table_units(qat, test, run_dir), "resources": TABLES_NOTE}
    return {
        "title": f"hwquant run report: {run_dir.name}",
        "quick": False,
        "seed": config.train.seed,
        "dataset": {
            "name": splits.name,
            "train_examples": len(splits.train),
            "test_examples": len(splits.test),
            "image_size": data.height,
            "channels": data.channels,
            "num_classes": splits.num_classes,
        },
        "model": config.model.name,
        "fp32": fp32_results,
        "variants": variants,
        "acc16_bits": ACC16_BITS,
        **sections,
        "timings": {"total": time.perf_counter() - start},
        "environment": environment(),
    }


def resource_estimate(model_file: Path, data: Any, device: str) -> dict[str, Any]:
    """Per design and per layer FPGA figures from :mod:`hwquant.hw`, or a note saying why not."""
    try:
        from hwquant.hw import estimate
    except ImportError:
        return {"note": "hwquant.hw is not installed: no resource estimate."}
    shape = tuple(data.x_test.shape[1:])  # one example, without the batch dimension
    try:
        est = estimate(hwquant.load(model_file), device, shape)
    except HwquantError as exc:
        return {"note": f"no resource estimate: {exc}"}
    designs = {
        name: {key: used for key, (used, _) in d.usage.items()} | {"cycles": d.cycles}
        for name, d in est.designs.items()
    }
    layers = [
        {
            "name": work.name,
            "macs": work.macs,
            "cycles": {name: d.layers[i].cycles for name, d in est.designs.items()},
        }
        for i, work in enumerate(est.layers)
    ]
    available = {key: have for key, (_, have) in next(iter(est.designs.values())).usage.items()}
    return {"device": est.device.name, "available": available, "designs": designs, "layers": layers}


def _run_config(run_dir: Path) -> RunConfig:
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise FileFormatError(
            f"'{path}' does not exist: '{run_dir}' is not a run directory. Fix: pass the out_dir "
            "of a finished `hwquant train` run."
        )
    config = load_config(path)
    if config.recipe is None:
        raise FileFormatError(
            f"'{run_dir}' holds a float run; the report describes a quantized one. Fix: train "
            "with a [recipe] table (model.init = this run's last.pt) and report that run."
        )
    return config


def _weights(path: Path, what: str) -> dict[str, torch.Tensor]:
    state = load_checkpoint(path)
    if "model" not in state:
        raise FileFormatError(f"'{path}' ({what}) holds no model weights. Fix: train it again.")
    return state["model"]


def _float_model(config: RunConfig, data: Any) -> torch.nn.Module:
    from hwquant.models import build

    return build(
        config.model.name,
        num_classes=data.splits.num_classes,
        in_channels=data.channels,
        input_size=data.height,
        width=config.model.width,
    )


def report_run(run_dir: str | Path, device: str = HW_DEVICE) -> tuple[dict[str, Any], Path]:
    """Collect the results of ``run_dir``, write ``results.json`` and the report; return both."""
    from hwquant.app.report.writer import save_results, write_report

    run_dir = Path(run_dir)
    results = collect_run(run_dir, device)
    save_results(results, run_dir, RESULTS_FILE)
    return results, write_report(results, run_dir).html


def add_command(commands: argparse._SubParsersAction) -> None:
    """Register ``hwquant report``."""
    report = parser_with_examples(
        commands.add_parser,
        "report",
        help="measure a trained QAT run and write its HTML report",
        description=(
            "Rebuild the run in RUN_DIR (the out_dir of `hwquant train`: config.toml, last.pt), "
            "lower it, verify it and write RUN_DIR/model.npz (model_tables.npz for a tables "
            "run), results.json, report.html, report.md and plots/."
        ),
        examples=["hwquant report runs/digits_llsq_w4a4", "hwquant report runs/q --json"],
    )
    report.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    report.add_argument("--device", default=HW_DEVICE, help="FPGA part of the resource estimate")
    report.add_argument("--json", action="store_true", help="print the figures as JSON")
    report.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    results, html = report_run(args.run_dir, args.device)
    figures = {
        "report": str(html),
        "float_accuracy": results["fp32"]["accuracy"],
        **(_table_figures(results["tables"]) if "tables" in results else _figures(results)),
    }
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print("\n".join(f"{k}: {v}" for k, v in figures.items()))
    return 0 if figures["bit_exact"] and not figures.get("audit_violations") else 1


def _figures(results: dict[str, Any]) -> dict[str, Any]:
    """Accuracies and bit-exactness of the run's IntModel."""
    variant = results["variants"][0]
    accuracy = {f"{k}_accuracy": v for k, v in variant["accuracy"].items()}
    return accuracy | {"bit_exact": variant["verify"]["exact"]}


def _table_figures(tables: dict[str, Any]) -> dict[str, Any]:
    """Accuracies, exactness (no image's engine output differs from the QAT model's), audit
    violations and network compactness of a TableModel."""
    measures = {k: v for k, v in tables["compactness"].items() if k != "layers"}
    violations = len(tables["audit"]["violations"])
    return {
        "fake_quant_accuracy": tables["compare"]["fake_quant_acc"],
        "table_engine_accuracy": tables["compare"]["engine_acc"],
        "images_with_unequal_outputs": tables["compare"]["images_with_unequal_outputs"],
        "audit_violations": violations,
        **measures,
        "bit_exact": tables["compare"]["exact"],
    }
