"""``hwquant demo``: float training, LLSQ QAT, lowering and verification, end to end.

On a built-in data set (MNIST-5k by default, sklearn's 8x8 digits with ``quick``) the demo trains
``small_cnn`` in FP32, then fine-tunes one QAT copy per :class:`Variant` (W4A4 and W2A2, first and
last layers 8-bit, and W4A4 trained for 16-bit accumulators in every layer, first and last
included: ``accumulator_bits=16``, docs/llsq.md §5) from the FP32 weights, lowers each to an
:class:`~hwquant.IntModel`, checks it bit for bit against the QAT model on the whole test set and
measures, per weight layer, the accumulator width it needs and what a 16-bit accumulator would do.
Everything measured goes into one JSON-friendly results dict, which becomes ``demo.json`` and,
through :mod:`hwquant.app.report`, the tables, plots and ``report.md`` / ``report.html``.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import torch
from rich.console import Console
from torch import nn

import hwquant
from hwquant.app.command import EXIT_ERROR, EXIT_OK
from hwquant.app.config import TrainConfig
from hwquant.app.report import print_tables, save_results, write_report
from hwquant.app.train import Trainer, TrainResult, seed_everything
from hwquant.core.intmath import interval_bits
from hwquant.data import BatchLoader, DataSplits, load_dataset
from hwquant.engine import RunResult, run
from hwquant.ir.intmodel import IntModel
from hwquant.models import build
from hwquant.qat.nn import QuantWeightLayer, quant_modules
from hwquant.qat.nn.bn_fold import fold_bn
from hwquant.qat.recipe import Recipe, bn_freeze_step_for

THREADS = 2
"""CPU threads the demo trains and evaluates with (at most the machine's cores)."""
ACC16_BITS = 16
"""The narrow accumulator whose overflows and accuracy the demo reports."""
ACC16_RECIPE = Recipe(weight_bits=4, act_bits=4, accumulator_bits=ACC16_BITS)
"""W4A4 (first and last layers 8-bit) trained so that every layer's sums fit 16 bits."""
FLOAT_BITS = 32
HISTOGRAM_BINS = 80


@dataclass(frozen=True)
class Variant:
    """One quantized model of the demo: its name, recipe and QAT fine-tuning schedule."""

    name: str
    recipe: Recipe
    train: TrainConfig

    def qat_recipe(self, steps_per_epoch: int) -> Recipe:
        """The recipe with BN frozen after a fifth of the run (:func:`bn_freeze_step_for`), so
        that the run ends on the deployed form (docs/llsq.md §1, "The end of a run")."""
        steps = self.train.epochs * steps_per_epoch
        return dataclasses.replace(self.recipe, bn_freeze_step=bn_freeze_step_for(steps))


@dataclass(frozen=True)
class DemoSettings:
    """What the demo trains, on what, and how long."""

    dataset: str
    fp32: TrainConfig
    variants: tuple[Variant, ...]
    quick: bool
    model: str = "small_cnn"
    batch_size_eval: int = 500


def _adam(epochs: int, batch_size: int, lr: float) -> TrainConfig:
    """Adam under a cosine schedule, no weight decay (short runs on small data)."""
    return TrainConfig(
        epochs=epochs, batch_size=batch_size, optimizer="adam", lr=lr, weight_decay=0.0
    )


def demo_settings(quick: bool) -> DemoSettings:
    """The default demo (MNIST-5k) or the quick one (8x8 digits)."""
    if quick:
        return DemoSettings(
            dataset="digits",
            fp32=_adam(epochs=6, batch_size=64, lr=3e-3),
            variants=(
                Variant("w4a4", Recipe(weight_bits=4, act_bits=4), _adam(2, 64, 5e-4)),
                Variant("w2a2", Recipe(weight_bits=2, act_bits=2), _adam(3, 64, 1e-3)),
                Variant("w4a4_acc16", ACC16_RECIPE, _adam(2, 64, 5e-4)),
            ),
            quick=True,
        )
    return DemoSettings(
        dataset="mnist5k",
        fp32=_adam(epochs=4, batch_size=64, lr=2e-3),
        variants=(
            Variant("w4a4", Recipe(weight_bits=4, act_bits=4), _adam(2, 64, 5e-4)),
            Variant("w2a2", Recipe(weight_bits=2, act_bits=2), _adam(4, 64, 5e-4)),
            Variant("w4a4_acc16", ACC16_RECIPE, _adam(2, 64, 5e-4)),
        ),
        quick=False,
    )


@dataclass(frozen=True)
class DemoData:
    """A data set with its test loader and the whole normalised test set as two tensors."""

    splits: DataSplits
    test: BatchLoader
    x_test: torch.Tensor
    y_test: torch.Tensor

    @property
    def height(self) -> int:
        """Image height (= width) in pixels."""
        return self.splits.train.images.shape[1]

    @property
    def channels(self) -> int:
        """Image channels."""
        return self.splits.train.images.shape[3]


def run_demo(out_dir: Path, quick: bool) -> int:
    """Run the demo into ``out_dir``; 0 when every model is bit-exact, else 1."""
    torch.set_num_threads(min(THREADS, os.cpu_count() or 1))
    out_dir = Path(out_dir)
    results = run_pipeline(demo_settings(quick), out_dir)
    report = write_report(results, out_dir)
    figures = save_results(results, out_dir)
    console = Console()
    print_tables(results, console)
    console.print(f"report: {report.markdown}, {report.html}; all figures: {figures}")
    exact = all(v["verify"]["exact"] and v["integer_matches_qat"] for v in results["variants"])
    return EXIT_OK if exact else EXIT_ERROR


def run_pipeline(settings: DemoSettings, out_dir: Path) -> dict[str, Any]:
    """Train, quantize, lower, verify and measure; return the results dict of ``demo.json``."""
    start = time.perf_counter()
    timings: dict[str, float] = {}
    with _timed(timings, "load_data"):
        data = load_data(settings)
    seed_everything(settings.fp32.seed)
    fp32 = build(
        settings.model,
        num_classes=data.splits.num_classes,
        in_channels=data.channels,
        input_size=data.height,
    )
    with _timed(timings, "train_fp32"):
        history = train(fp32, settings.fp32, data, out_dir / "checkpoints" / "fp32").history
    fp32_results = {
        "accuracy": evaluate(fp32, data),
        "size_bits": FLOAT_BITS * sum(p.numel() for p in fp32.parameters()),
        "train_config": dataclasses.asdict(settings.fp32),
        "history": history,
    }
    variants = []
    for planned in settings.variants:
        steps_per_epoch = len(train_loader(planned.train, data))
        variant = dataclasses.replace(planned, recipe=planned.qat_recipe(steps_per_epoch))
        with _timed(timings, f"qat_{variant.name}"):
            qat = hwquant.prepare(fp32, variant.recipe)
            history = train(
                qat, variant.train, data, out_dir / "checkpoints" / variant.name
            ).history
        with _timed(timings, f"lower_verify_{variant.name}"):
            measured = measure_variant(qat, variant, data, out_dir)
        steps = {"train_steps": variant.train.epochs * steps_per_epoch}
        variants.append(measured | steps | {"history": history})
    timings["total"] = time.perf_counter() - start
    return {
        "quick": settings.quick,
        "seed": settings.fp32.seed,
        "dataset": {
            "name": data.splits.name,
            "train_examples": len(data.splits.train),
            "test_examples": len(data.splits.test),
            "image_size": data.height,
            "channels": data.channels,
            "num_classes": data.splits.num_classes,
        },
        "model": settings.model,
        "fp32": fp32_results,
        "variants": variants,
        "acc16_bits": ACC16_BITS,
        "timings": timings,
        "environment": environment(),
    }


def load_data(settings: DemoSettings) -> DemoData:
    """Load the data set, its test loader and the normalised test set."""
    splits = load_dataset(settings.dataset)
    test = BatchLoader(
        splits.test,
        settings.batch_size_eval,
        mean=splits.mean,
        std=splits.std,
        shuffle=False,
        augment=False,
    )
    x, y = zip(*test, strict=True)
    return DemoData(splits, test, torch.cat(x), torch.cat(y))


def train_loader(config: TrainConfig, data: DemoData) -> BatchLoader:
    """The training batches of ``config``: shuffled, random-crop augmented, full batches only."""
    return BatchLoader(
        data.splits.train,
        config.batch_size,
        mean=data.splits.mean,
        std=data.splits.std,
        shuffle=True,
        augment=True,
        seed=config.seed,
        drop_last=True,
    )


def train(model: nn.Module, config: TrainConfig, data: DemoData, out_dir: Path) -> TrainResult:
    """Train ``model`` in place with the hwquant trainer, with random-crop augmentation."""
    return Trainer(model, train_loader(config, data), data.test, config, out_dir).fit()


@torch.no_grad()
def evaluate(model: nn.Module, data: DemoData) -> float:
    """Top-1 test accuracy of ``model`` in eval mode (a QAT model evaluates as deployed)."""
    model.eval()
    return accuracy(model(data.x_test), data.y_test)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of rows of ``logits`` whose argmax is the label."""
    return (logits.argmax(1) == labels).double().mean().item()


def integer_accuracy(int_model: IntModel, output: torch.Tensor, labels: torch.Tensor) -> float:
    """Accuracy of integer outputs, ranked by value (the last layer's scale is per channel)."""
    return accuracy(int_model.dequantize(output), labels)


def measure_variant(
    qat: nn.Module, variant: Variant, data: DemoData, out_dir: Path
) -> dict[str, Any]:
    """Lower and save a trained QAT model, verify it and measure its integer form."""
    int_model = hwquant.lower(qat, data.x_test[:1])
    model_file = f"{variant.name}.npz"
    int_model.save(out_dir / model_file)
    report = hwquant.verify(qat, int_model, data.x_test)
    x_int = int_model.quantize_input(data.x_test)
    wide = run(int_model, x_int)
    narrow_model = copy.deepcopy(int_model)
    narrow_model.set_accumulator(ACC16_BITS, "wrap")
    narrow = run(narrow_model, x_int)
    accuracies = {
        "fake_quant": evaluate(qat, data),
        "integer": integer_accuracy(int_model, wide.output, data.y_test),
        "integer_acc16": integer_accuracy(narrow_model, narrow.output, data.y_test),
    }
    return {
        "name": variant.name,
        "weight_bits": variant.recipe.weight_bits,
        "act_bits": variant.recipe.act_bits,
        "recipe": variant.recipe.to_dict(),
        "train_config": dataclasses.asdict(variant.train),
        "accuracy": accuracies,
        "integer_matches_qat": accuracies["integer"] == accuracies["fake_quant"],
        "verify": {
            "exact": report.exact,
            "compared": report.compared,
            "mismatches": report.mismatches,
            "per_layer": report.per_layer,
            "warnings": list(report.warnings),
            "summary": str(report),
        },
        "layers": layer_stats(int_model, wide, narrow),
        "size_bits": int_model.size_bits(),
        "model_file": model_file,
        "histograms": weight_histograms(qat),
    }


def layer_stats(int_model: IntModel, wide: RunResult, narrow: RunResult) -> list[dict[str, Any]]:
    """Per weight layer: widths, accumulator bits needed, and overflows of the narrow run."""
    return [
        {
            "name": node.name,
            "op": node.op,
            "scheme": node.encoding.kind if node.encoding is not None else "linear",
            "weight_bits": node.weight_bits,
            "in_bits": node.in_bits,
            "weights": int(node.weight.size),
            "worst_case_bits": node.worst_case_bits(),
            "bits_used": wide.stats[node.name].bits_used,
            "accumulations": wide.stats[node.name].macs // node.fan_in(),
            "overflows_acc16": narrow.stats[node.name].overflows,
            "acc_bits": node.acc_bits,  # P where the layer was trained for it (else 32)
            "proved_acc_bits": interval_bits(*node.acc_interval),
        }
        for node in int_model.weight_nodes()
    ]


@torch.no_grad()
def weight_histograms(qat: nn.Module) -> list[dict[str, Any]]:
    """Per weight layer: histogram of the folded float weights over their scale, ``w / α``."""
    histograms = []
    for layer in quant_modules(qat):
        if not isinstance(layer, QuantWeightLayer) or layer.weight_quant is None:
            continue
        quant = layer.weight_quant
        weight, _ = fold_bn(layer.weight, layer.bias, layer.bn)
        unit = quant.scale_value()
        ratio = (weight / unit.view(-1, *([1] * (weight.dim() - 1)))).flatten().double().numpy()
        # the integer levels of every row (levels() holds α·integers, NaN-padded per scheme)
        ints = (quant.levels() / unit.double().cpu().view(-1, 1)).flatten().numpy()
        levels = np.unique(np.round(ints[np.isfinite(ints)])).astype(int)
        low = min(ratio.min(), levels.min() - 0.5)
        high = max(ratio.max(), levels.max() + 0.5)
        counts, edges = np.histogram(ratio, bins=HISTOGRAM_BINS, range=(low, high))
        histograms.append(
            {
                "layer": layer.qname,
                "bits": quant.bits,
                "qmin": int(levels.min()),
                "qmax": int(levels.max()),
                "levels": levels.tolist(),
                "counts": counts.tolist(),
                "edges": edges.tolist(),
            }
        )
    return histograms


def environment() -> dict[str, Any]:
    """Versions and platform the demo ran on (OpenMP's wait policy sways shared-CPU timings)."""
    return {
        "hwquant": hwquant.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "matplotlib": matplotlib.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset"),
    }


@contextmanager
def _timed(timings: dict[str, float], key: str) -> Iterator[None]:
    """Record the wall time of the block in ``timings[key]`` (seconds)."""
    start = time.perf_counter()
    yield
    timings[key] = time.perf_counter() - start
