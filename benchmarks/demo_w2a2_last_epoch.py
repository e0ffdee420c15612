"""The demo's W2A2 drop in its last epoch (issue 19 item 3): what moves when the LR is ~0.

Before the fix, `hwquant demo` trained W2A2 (4 epochs of 62 steps, Adam, cosine to 0) with the
default ``bn_freeze_step = 500``, beyond the run: BN kept batch statistics to the last step. This
benchmark reads such a run's checkpoints (``--old-demo``: a ``hwquant demo --out DIR`` made
before the fix; the end of epoch 3 is ``checkpoints/w2a2/last.prev.pt``, of epoch 4
``last.pt``) and measures:

* ``checkpoints``: test accuracy at the end of epochs 3 and 4, the epoch-4 model with one group
  of epoch 3's tensors put back (BN running statistics, the layers' weights, the scales), and
  each layer's output on a blank image (the MNIST background, which most pixels of every image
  are): the value before rounding, in output codes, per channel, and the channels whose
  background code changed between the two checkpoints;
* ``replays``: epoch 4 again from the epoch-3 checkpoint with the demo's trainer, data order and
  threads, three ways: as trained (BN on batch statistics), without any optimizer step (only the
  training forwards, which move the running statistics), and with BN frozen from its first step;
  per step the weight codes that changed per layer, the largest relative change of the scales,
  and (every ``--probe-every`` steps and at each of the last four) the test accuracy.

``--new-demo`` adds the same variant fields of a demo run after the fix, and both runs'
``demo.json`` summaries go into the result. Run from the repository root::

    python -m benchmarks.demo_w2a2_last_epoch --old-demo OLD --new-demo runs/demo
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

import hwquant
from benchmarks.common import ResultRecorder, command_line
from hwquant.app.demo import (
    THREADS,
    DemoData,
    demo_settings,
    evaluate,
    load_data,
    train_loader,
)
from hwquant.app.train import Trainer
from hwquant.core.checkpoint import load_checkpoint
from hwquant.core.provenance import file_sha256
from hwquant.models import build
from hwquant.qat.nn import QuantWeightLayer
from hwquant.qat.nn.bn_fold import fold_bn

NAME = "demo_w2a2_last_epoch"
VARIANT = "w2a2"
REPLAYS = ("as_trained", "no_optimizer_step", "bn_frozen")
SWAPS: dict[str, Callable[[str, set[str]], bool]] = {
    "bn_running_statistics": lambda key, _: ".running_" in key,
    "kernels": lambda key, layers: key.removesuffix(".weight") in layers,
    "weight_scales": lambda key, _: key.endswith("weight_quant.scale"),
    "activation_scales": lambda key, _: key.endswith("out_quant.scale"),
}
"""Groups of epoch-3 tensors put back into the epoch-4 model, by state-dict key (``kernels``:
the convolution and linear weights, given the weight layers' names)."""


def demo_summary(run_dir: Path) -> dict[str, Any]:
    """Accuracies, histories and recipes of every model of a demo run's ``demo.json``."""
    results = json.loads((run_dir / "demo.json").read_text(encoding="utf-8"))
    return {
        "fp32_accuracy": results["fp32"]["accuracy"],
        "variants": {
            v["name"]: {
                "accuracy": v["accuracy"],
                "bn_freeze_step": v["recipe"]["bn_freeze_step"],
                "train_steps": v.get("train_steps"),
                "verify_exact": v["verify"]["exact"],
                "test_acc_per_epoch": [h["test_acc"] for h in v["history"]],
                "train_acc_per_epoch": [h["train_acc"] for h in v["history"]],
            }
            for v in results["variants"]
        },
        "timings": results["timings"],
    }


class OldRun:
    """The W2A2 model of a pre-fix demo run: its FP32 start and its two last checkpoints."""

    def __init__(self, run_dir: Path, data: DemoData) -> None:
        self.dir = run_dir / "checkpoints"
        self.data = data
        self.fp32 = build(
            "small_cnn",
            num_classes=data.splits.num_classes,
            in_channels=data.channels,
            input_size=data.height,
        )
        self.fp32.load_state_dict(load_checkpoint(self.dir / "fp32" / "last.pt")["model"])
        (self.variant,) = (v for v in demo_settings(False).variants if v.name == VARIANT)
        self.epoch3 = self.dir / VARIANT / "last.prev.pt"
        self.epoch4 = self.dir / VARIANT / "last.pt"

    def files(self) -> dict[str, str]:
        """sha256 of every checkpoint read."""
        paths = (self.dir / "fp32" / "last.pt", self.epoch3, self.epoch4)
        return {str(p.relative_to(self.dir.parent)): file_sha256(p) for p in paths}

    def model(self, checkpoint: Path | None = None) -> nn.Module:
        """The W2A2 QAT model as the old demo prepared it (``bn_freeze_step`` 500), with the
        weights of ``checkpoint``."""
        qat = hwquant.prepare(self.fp32, self.variant.recipe)
        if checkpoint is not None:
            qat.load_state_dict(load_checkpoint(checkpoint)["model"])
        return qat


def weight_layers(model: nn.Module) -> dict[str, QuantWeightLayer]:
    """The quantized weight layers by name."""
    return {
        name: m
        for name, m in model.named_modules()
        if isinstance(m, QuantWeightLayer) and m.weight_quant is not None
    }


@torch.no_grad()
def weight_codes(layer: QuantWeightLayer) -> torch.Tensor:
    """The deployed weight codes (BN folded with its running statistics)."""
    weight, _ = fold_bn(layer.weight, layer.bias, layer.bn)
    return layer.weight_quant.codes(weight)


@torch.no_grad()
def background_values(model: nn.Module, data: DemoData) -> dict[str, list[float]]:
    """Per layer with an output quantizer: each channel's output on a blank image, in output
    codes before rounding (centre pixel), from the layer's integer accumulator."""
    blank = torch.full((1, *data.x_test.shape[1:]), float(data.x_test.min()))
    values: dict[str, list[float]] = {}

    def hook(name: str) -> Callable[..., None]:
        def record(layer: QuantWeightLayer, inputs: tuple[torch.Tensor, ...], _: Any) -> None:
            p = layer.integer_params()
            acc = layer.int_op(layer.input_codes(inputs[0]), p.weight, p.bias).double()
            unit = p.acc_scale / layer.out_quant.scale_value().double()
            centre = acc[0, :, acc.shape[2] // 2, acc.shape[3] // 2] if acc.dim() == 4 else acc[0]
            values[name] = (centre * unit).tolist()

        return record

    layers = {n: m for n, m in weight_layers(model).items() if m.out_quant is not None}
    handles = [m.register_forward_hook(hook(n)) for n, m in layers.items()]
    model.eval()(blank)
    for handle in handles:
        handle.remove()
    return values


def _code(value: float, lo: int, hi: int) -> int:
    """The output code of a value in code units: rounded half up, clamped."""
    return min(max(math.floor(value + 0.5), lo), hi)


def compare_checkpoints(run: OldRun) -> dict[str, Any]:
    """Accuracy of the two checkpoints, of the swaps, and the background codes that changed."""
    e3, e4 = run.model(run.epoch3), run.model(run.epoch4)
    state3, names = e3.state_dict(), set(weight_layers(e3))
    swaps = {}
    for name, chosen in SWAPS.items():
        hybrid = copy.deepcopy(e4)
        state = hybrid.state_dict()
        hybrid.load_state_dict({k: state3[k] if chosen(k, names) else v for k, v in state.items()})
        swaps[name] = evaluate(hybrid, run.data)
    bg3, bg4 = background_values(e3, run.data), background_values(e4, run.data)
    background = {}
    for name, before in bg3.items():
        layer = weight_layers(e3)[name]
        lo, hi = layer.out_range()
        changed = [
            {"channel": c, "epoch3": round(a, 4), "epoch4": round(b, 4)}
            for c, (a, b) in enumerate(zip(before, bg4[name], strict=True))
            if _code(a, lo, hi) != _code(b, lo, hi)
        ]
        background[name] = {"channels": len(before), "background_code_changed": changed}
    codes_changed = {
        name: int((weight_codes(layer) != weight_codes(weight_layers(e4)[name])).sum())
        for name, layer in weight_layers(e3).items()
    }
    return {
        "test_acc_epoch3": evaluate(e3, run.data),
        "test_acc_epoch4": evaluate(e4, run.data),
        "epoch4_with_epoch3": swaps,
        "weight_codes_changed_in_epoch4": codes_changed,
        "background": background,
        "blank_fraction_of_test_pixels": float(
            (run.data.x_test == run.data.x_test.min()).double().mean()
        ),
    }


def _flat(named: Any, suffix: str) -> torch.Tensor:
    """The tensors of ``named`` whose names end with ``suffix``, detached, as one vector."""
    return torch.cat([t.detach().flatten().clone() for n, t in named if n.endswith(suffix)])


def _max_rel_change(now: torch.Tensor, before: torch.Tensor) -> float:
    return float(((now - before).abs() / before.abs()).max())


def replay(run: OldRun, mode: str, probe_every: int) -> dict[str, Any]:
    """Epoch 4 from the epoch-3 checkpoint, with the demo's trainer, per-step records."""
    model = run.model()
    layers = weight_layers(model)
    steps: list[dict[str, Any]] = []
    previous: dict[str, Any] = {}

    @torch.no_grad()
    def probe(module: nn.Module, step: int) -> None:
        codes = {name: weight_codes(layer) for name, layer in layers.items()}
        scales = _flat(module.named_parameters(), ".scale").abs()
        variance = _flat(module.named_buffers(), ".running_var")
        record: dict[str, Any] = {"step": step, "lr": trainer.optimizer.param_groups[0]["lr"]}
        if previous:
            record["codes_changed"] = {
                n: int((c != previous["codes"][n]).sum()) for n, c in codes.items()
            }
            record["scale_max_rel_change"] = _max_rel_change(scales, previous["scales"])
            record["running_var_max_rel_change"] = _max_rel_change(variance, previous["var"])
        previous.update(codes=codes, scales=scales, var=variance)
        if (step - start) % probe_every == 0 or step >= end - 4:
            record["test_acc"] = evaluate(module, run.data)
            module.train()
        steps.append(record)

    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(run.epoch3, Path(tmp) / "last.pt")
        loader = train_loader(run.variant.train, run.data)
        trainer = Trainer(
            model,
            loader,
            run.data.test,
            run.variant.train,
            tmp,
            recipe_hooks=[probe],
            progress=False,
            resume=True,
        )
        start, end = trainer.global_step, run.variant.train.epochs * len(loader)
        if mode == "bn_frozen":
            hwquant.freeze_bn(model)
        if mode == "no_optimizer_step":
            trainer.optimizer.step = lambda *args, **kwargs: None  # type: ignore[method-assign]
        history = trainer.fit().history
    probe(model, end)
    accuracies = [s["test_acc"] for s in steps if "test_acc" in s]
    return {
        "first_step": start,
        "final_test_acc": steps[-1]["test_acc"],
        "min_probed_test_acc": min(accuracies),
        "max_probed_test_acc": max(accuracies),
        "epoch_train_acc": history[-1]["train_acc"],
        "steps": steps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--old-demo", type=Path, required=True, help="a pre-fix demo run's --out")
    parser.add_argument("--new-demo", type=Path, help="a demo run's --out after the fix")
    parser.add_argument("--probe-every", type=int, default=4, help="steps between evaluations")
    parser.add_argument("--output", type=Path, help="result path (default benchmarks/results)")
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    data = load_data(demo_settings(False))
    run = OldRun(args.old_demo, data)
    recorder = ResultRecorder(NAME, command_line(), run.variant.train.seed, path=args.output)
    config = {
        "variant": VARIANT,
        "old_recipe_bn_freeze_step": run.variant.recipe.bn_freeze_step,
        "train": dataclasses.asdict(run.variant.train),
        "probe_every": args.probe_every,
        "files": run.files(),
    }
    results: dict[str, Any] = {"old_demo": demo_summary(args.old_demo)}
    if args.new_demo is not None:
        results["new_demo"] = demo_summary(args.new_demo)
    results["checkpoints"] = compare_checkpoints(run)
    recorder.save(config, results)
    results["replays"] = {}
    for mode in REPLAYS:
        results["replays"][mode] = replay(run, mode, args.probe_every)
        print(mode, results["replays"][mode]["final_test_acc"], flush=True)
        recorder.save(config, results)


if __name__ == "__main__":
    main()
