"""Fake-quant against deployed-engine accuracy on a whole test set, image by image.

A QAT model in eval mode runs the exact integer form of every layer, so its integer outputs
must equal those of the engine that runs the lowered model: :class:`hwquant.IntModel` on the
integer engine (on the batch's device), or :class:`hwquant.schemes.tables.TableModel` on the table
engine (on the CPU). Outputs are compared on the CPU. :func:`compare` runs
both on every test batch and counts the images whose output integers differ anywhere; the
claim "fake-quant == engine" holds when that count is 0. The integers compared are those the
integer graph outputs: an IntModel's :attr:`~hwquant.IntModel.integer_output` (the logits,
before a final softmax kept outside the graph), a table model's last layer that the QAT model
captures (before a flatten or a softmax that follows it).

Accumulator widths: for an integer model, per weight layer, the worst-case width of
:meth:`WeightNode.worst_case_bits` (``Σ|w|·max|x| + |b|``) and the width the largest
|accumulator| over the test set needs (:func:`hwquant.core.intmath.bits_needed` of the engine's
``max_abs_acc``). For a table model, per unit, the worst case of a sum of ``fan_in`` table
entries plus the bias: ``fan_in · max|T| + max|b|``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from hwquant.core.errors import ConfigError
from hwquant.core.intmath import bits_needed
from hwquant.engine import run as engine_run
from hwquant.ir.intmodel import IntModel
from hwquant.qat.nn import capture_codes
from hwquant.schemes.tables import TableModel, capture_indices, run_tables
from hwquant.schemes.tables.model import UnitNode

Deployed = IntModel | TableModel


@dataclass(frozen=True)
class _Engine:
    """How to run one kind of deployed model and capture the QAT model's matching output
    (``run``: the output, or for a table model every node's, and accumulator peaks)."""

    capture: Callable[[nn.Module], AbstractContextManager[dict[str, torch.Tensor]]]
    run: Callable[[torch.Tensor], tuple[torch.Tensor | dict[str, torch.Tensor], dict[str, int]]]
    predict: Callable[[torch.Tensor], torch.Tensor]


@torch.no_grad()
def fp32_accuracy(model: nn.Module, test: Any) -> float:
    """Top-1 accuracy of ``model`` (put in eval mode) over every batch of ``test``
    (a :class:`hwquant.data.BatchLoader`)."""
    model.eval()
    correct = total = 0
    for x, y in test.iter_from(0):
        correct += int((model(x).argmax(1) == y).sum())
        total += y.numel()
    return correct / total


def _engine_of(model: Deployed) -> _Engine:
    if isinstance(model, TableModel):
        return _Engine(
            capture_indices,
            lambda x: (run_tables(model, model.quantize_input(x.cpu()), trace=True), {}),  # CPU
            lambda out: out.argmax(1),
        )

    def run_int(x: torch.Tensor) -> tuple[torch.Tensor, dict[str, int]]:
        result = engine_run(model, model.quantize_input(x))
        return result.output, {k: s.max_abs_acc for k, s in result.stats.items()}

    return _Engine(capture_codes, run_int, lambda out: model.dequantize(out).argmax(1))


@torch.no_grad()
def compare(
    qat: nn.Module, deployed: Deployed, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]
) -> dict[str, Any]:
    """Accuracy of ``qat`` (eval mode) and of ``deployed`` on ``batches``, the number of images
    whose integer graph's outputs differ, and the accumulator widths (see the module
    docstring)."""
    engine = _engine_of(deployed)
    qat.eval()
    images = fq_correct = engine_correct = unequal = 0
    peak: dict[str, int] = {}
    for x, y in batches:
        with engine.capture(qat) as captured:
            logits = qat(x)
        out, stats = engine.run(x)
        if isinstance(out, dict):  # a table model's trace: its output may follow the last
            # layer (a flatten, a softmax kept outside), so compare that layer's indices
            name = next((n for n in reversed(list(captured)) if n in out), None)
            if name is None:
                raise ConfigError(
                    f"the table model's trace holds none of the QAT model's {len(captured)} "
                    "captured layers, so nothing can be compared. Fix: lower the QAT model "
                    "that is evaluated (hwquant.lower) and evaluate the two together."
                )
            got, out = out[name].cpu(), out[deployed.output].cpu()
        else:  # an IntModel's output: its integer graph's (a final softmax passes it on)
            name = deployed.integer_output
            got = out = out.cpu()
        y = y.cpu()
        unequal += int((captured[name].cpu() != got).flatten(1).any(1).sum())
        fq_correct += int((logits.argmax(1).cpu() == y).sum())
        engine_correct += int((engine.predict(out) == y).sum())
        images += y.numel()
        for name, value in stats.items():
            peak[name] = max(peak.get(name, 0), value)
    return {
        "test_images": images,
        "fake_quant_acc": fq_correct / images,
        "engine_acc": engine_correct / images,
        "images_with_unequal_outputs": unequal,
        "exact": unequal == 0,
        "accumulators": accumulator_widths(deployed, peak),
    }


def accumulator_widths(model: Deployed, peak: dict[str, int]) -> dict[str, Any]:
    """Per layer worst-case (and, for integer models, observed) accumulator bits, and the
    widest of each over the network."""
    if isinstance(model, TableModel):
        layers = {node.name: {"worst_case_bits": _table_bound_bits(node)} for node in model.units()}
    else:
        layers = {
            node.name: {
                "worst_case_bits": node.worst_case_bits(),
                "observed_bits": bits_needed(peak[node.name]),
                "configured_bits": node.acc_bits,
            }
            for node in model.weight_nodes()
        }
    keys = sorted({key for layer in layers.values() for key in layer})
    return {
        "max": {key: max(layer[key] for layer in layers.values()) for key in keys},
        "layers": layers,
    }


def _table_bound_bits(node: UnitNode) -> int:
    """Signed bits of ``fan_in · max|T| + max|b|``: no input can drive the sum further."""
    fan_in = int(np.prod(node.weight_index.shape[1:]))
    bias = int(np.abs(node.bias).max()) if node.bias.size else 0
    return bits_needed(fan_in * int(np.abs(node.table).max()) + bias)
