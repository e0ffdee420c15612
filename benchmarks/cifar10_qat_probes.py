"""Short QAT probes on CIFAR-10 ResNet-20 from the cpu-full FP32 checkpoint (issue 19).

A probe is one row of the reproduction table (:mod:`hwquant.app.bench.rows`) with recipe fields
overridden, QAT-trained for ``--steps`` steps (SGD, cosine from lr 0.01, bf16 autocast: the
cpu-full tier's QAT settings; batch ``--batch``, by default the tier's 256) on a seeded subset
of ``--steps/--evals`` batches of the training set that is passed ``--evals`` times, the
fake-quant model evaluated after each pass on a seeded 2,000 of the test images (under bf16
autocast, as the trainer's monitor) and at the end on all 10,000 (float32, as the table's
fake-quant column). The row's step-counted recipe fields (BN freeze, the non-uniform stages)
are set for ``--steps`` steps, as :meth:`RowSpec.recipe` does for a row. Each probe also
records, at initialisation (a copy of the prepared model run on the first training batch), the
fraction of each inner weight layer's codes that are 0 and its weight scales, and every
activation scale at that start and after the last step (to see where the scale rule moves
them; probes from before 2026-12-06 11:45 UTC lack these). The rows of the
table train 3 epochs (585 steps of 256); these probes compare variants after a hundred or a
few hundred steps, not final accuracies.

A variant is ``ROW`` or ``ROW,field=value,...`` with fields of :class:`hwquant.Recipe`, a
nested option as ``nonuniform.schedule=all_at_once``; values are parsed as JSON where they
can be (numbers, ``null``), else taken as strings. Finished probes are kept in the result
file (``benchmarks/results/cifar10_qat_probes.json``) and not run again::

    python -m benchmarks.cifar10_qat_probes --steps 100 --batch 64 --variants llsq_W2A2 \\
        llsq_W2A2,scale_init=min_error

``--steps 0`` is the post-training start of a row, with no optimizer step: the prepared model
(the row's recipe for a 1-step run, so BN is frozen from step 0: the FP32 running statistics,
folded, nothing updated but the scales) runs one forward pass in training mode on the first
training batch (under bf16 autocast when the probe trains under it, as the trainer's first
step does), which initialises every scale, and is then evaluated on a seeded
``--ptq-examples`` of the test images in eval mode (the integer form, as the table's
fake-quant column; its products run with autocast disabled, so the trainer's bf16 monitor
gives the same accuracy: the first PTQ probe measured both, 77.44 % each).
``--lr`` (default the tier's 0.01), ``--no-amp`` (float32 training) and ``--label-smoothing``
(default 0, as the rows) change the trainer; a probe's key in the result file names them when
they differ from the tier's. ``--amp-check`` compares a bf16 with a float32 training forward at
a row's start (:func:`run_amp_check`), ``--row-checkpoint`` reads a finished row's activation
scales (:func:`run_row_scales`).
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import hwquant
from benchmarks.common import RESULTS_DIR, ResultRecorder, command_line
from hwquant.app.bench.cli import add_no_amp_argument
from hwquant.app.bench.evaluate import fp32_accuracy
from hwquant.app.bench.reproduce import load_baseline
from hwquant.app.bench.rows import ROW_NAMES, RowSpec, all_rows
from hwquant.app.bench.tiers import CPU_FULL
from hwquant.app.config import TrainConfig
from hwquant.app.train import Trainer, seed_everything
from hwquant.core.checkpoint import load_checkpoint
from hwquant.core.errors import ConfigError
from hwquant.core.provenance import file_sha256
from hwquant.data import ArrayDataset, BatchLoader, load_dataset
from hwquant.models import build
from hwquant.qat.llsq import LinearQuantizer
from hwquant.qat.nn.weight_layer import QuantWeightLayer
from hwquant.qat.recipe import changed_fields

NAME = "cifar10_qat_probes"
FP32_DIR = Path(__file__).resolve().parent / "results" / "cifar10_cpu_full" / "fp32"
WEIGHT_DECAY = 5e-4  # the reproduce command's
MONITOR_EXAMPLES = 2_000
ROW_STEPS = 585
"""QAT steps of a cpu-full row (3 epochs of 195 batches of 256): the recipe of an amp check."""


def parse_variant(text: str, steps: int) -> tuple[RowSpec, hwquant.Recipe]:
    """``ROW[,field=value...]`` as the row and its recipe for ``steps`` steps, overridden."""
    name, *pairs = text.split(",")
    if name not in ROW_NAMES:
        raise ConfigError(f"unknown row {name!r}. Fix: use one of {', '.join(ROW_NAMES)}.")
    row = next(r for r in all_rows() if r.name == name)
    fields = row.recipe(steps).to_dict()
    for pair in pairs:
        key, _, value = pair.partition("=")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        *parents, leaf = key.split(".")
        table = fields
        for parent in parents:
            table = table[parent]
        if leaf not in table:
            raise ConfigError(f"variant {text!r}: the recipe has no field {key!r}.")
        table[leaf] = parsed
    return row, hwquant.Recipe.from_dict(fields)


def check_stored_recipe(key: str, record: dict[str, Any], variant: str, steps: int) -> None:
    """Refuse to skip the stored probe ``key`` when ``variant`` now means another recipe (its
    row's recipe changed in :mod:`hwquant.app.bench.rows` since the probe ran).

    Raises:
        ConfigError: names the probe and the recipe fields that differ.
    """
    differ = changed_fields(record["recipe"], parse_variant(variant, steps)[1])
    if differ:
        raise ConfigError(
            f"the stored probe {key!r} was run with another recipe than {variant!r} has now "
            f"(fields {', '.join(differ)}). Fix: name those fields in the variant, or remove "
            "the probe from the result file to run it again."
        )


def fp32_model() -> torch.nn.Module:
    """The committed cpu-full FP32 ResNet-20 (:data:`FP32_DIR`)."""
    model = build("resnet20", num_classes=10, input_size=32)
    model.load_state_dict(load_checkpoint(FP32_DIR / "resnet20.ckpt")["state_dict"])
    return model


def prepared_fp32(recipe: hwquant.Recipe, seed: int) -> torch.nn.Module:
    """The FP32 model, seeded with ``seed`` and prepared for ``recipe`` in training mode:
    every probe's start."""
    seed_everything(seed)
    return hwquant.prepare(fp32_model().train(), recipe)


def first_batch(data: Any, batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first augmented batch of ``batch`` training images drawn with ``seed``: the batch
    the probes calibrate on."""
    rng = np.random.default_rng(seed)
    index = np.sort(rng.permutation(len(data.train.labels))[:batch])
    norm = {"mean": data.mean, "std": data.std, "device": "cpu"}
    train = BatchLoader(ArrayDataset(data.train.images[index], data.train.labels[index]), batch,
                        shuffle=True, augment=True, seed=seed, drop_last=True, **norm)  # fmt: skip
    return next(train.iter_from(0))


def probe_train_loader(
    data: Any, batches: int, batch: int, seed: int, rng: np.random.Generator
) -> BatchLoader:
    """The probes' training batches: a subset of ``batches·batch`` training images drawn by
    ``rng``, shuffled and augmented with ``seed`` (passed once per epoch)."""
    index = np.sort(rng.permutation(len(data.train.labels))[: batches * batch])
    subset = ArrayDataset(data.train.images[index], data.train.labels[index])
    return BatchLoader(subset, batch, shuffle=True, augment=True, seed=seed, drop_last=True,
                       mean=data.mean, std=data.std, device="cpu")  # fmt: skip


def calibrate(qat: torch.nn.Module, batch: torch.Tensor, amp: bool) -> torch.nn.Module:
    """``qat`` after one forward pass in training mode on ``batch`` (no gradient), under bf16
    autocast with ``amp``: its scales initialised, its BN running statistics updated once."""
    qat.train()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        qat(batch)
    return qat


def layer_stats(probe: torch.nn.Module) -> dict[str, Any]:
    """Per inner weight layer of an initialised ``probe``: the fraction of weight codes equal
    to 0 and the mean weight scale."""
    layers = {}
    for name, module in probe.named_modules():
        if isinstance(module, QuantWeightLayer):
            ints = module.integer_params()
            codes = np.asarray(ints.weight)
            layers[name] = {
                "zero_code_fraction": round(float((codes == 0).mean()), 4),
                "mean_weight_scale": float(module.weight_quant.scale_value().detach().mean()),
            }
    return layers


def act_scales(model: torch.nn.Module) -> dict[str, float]:
    """Every initialised per-tensor activation scale of ``model``, by quantizer name."""
    return {
        name: float(module.scale_value().detach())
        for name, module in model.named_modules()
        if isinstance(module, LinearQuantizer) and module.is_activation
        and module.is_initialized()
    }  # fmt: skip


@dataclass(frozen=True)
class ProbeTraining:
    """What a probe changes in the tier's QAT training: learning rate, bf16 autocast and label
    smoothing (the tier's QAT rows train without; its FP32 baseline with 0.1)."""

    lr: float = CPU_FULL.qat_lr
    amp: bool = CPU_FULL.amp
    label_smoothing: float = 0.0
    distill_weight: float = 0.0
    """λ of distillation from the FP32 model (``TrainConfig.distill_weight``, T = 1)."""
    bn_freeze_lr_factor: float = 1.0
    """ρ of ``TrainConfig.bn_freeze_lr_factor``: the learning rate times ρ once BN freezes."""

    def suffix(self) -> str:
        """``,lr=...``, ``,amp=off``, ``,ls=...``, ``,kd=...`` and ``,bnlr=...`` where they
        differ from the tier's QAT training (probe keys). Keys ending ``,act-scales=held`` were
        written before the recipe field ``act_scales`` existed, by an option that held every
        activation scale at its start as ``act_scales=calibrated`` does."""
        parts = [f",lr={self.lr:g}"] if self.lr != CPU_FULL.qat_lr else []
        parts += [",amp=off"] if self.amp != CPU_FULL.amp else []
        parts += [f",ls={self.label_smoothing:g}"] if self.label_smoothing else []
        parts += [f",kd={self.distill_weight:g}"] if self.distill_weight else []
        parts += [f",bnlr={self.bn_freeze_lr_factor:g}"] if self.bn_freeze_lr_factor != 1 else []
        return "".join(parts)


def probe_key(variant: str, steps: int, batch: int, training: ProbeTraining, ptq: int) -> str:
    """The probe's key in the result file: ``VARIANT@STEPSxBATCH[,lr=..][,amp=off]``; a PTQ
    probe (``steps`` 0) is ``VARIANT@ptq,N`` with N evaluated test images."""
    if steps == 0:
        return f"{variant}@ptq,{ptq}{training.suffix()}"
    return f"{variant}@{steps}x{batch}{training.suffix()}"


def run_ptq(variant: str, batch: int, examples: int, data: Any, seed: int,
            training: ProbeTraining) -> dict[str, Any]:  # fmt: skip
    """The start of ``variant``'s QAT with no step (module docstring): its record."""
    start = time.perf_counter()
    row, recipe = parse_variant(variant, 1)
    rng = np.random.default_rng(seed)
    index = np.sort(rng.permutation(len(data.train.labels))[:batch])
    norm = {"mean": data.mean, "std": data.std, "device": "cpu"}
    train = BatchLoader(ArrayDataset(data.train.images[index], data.train.labels[index]), batch,
                        shuffle=True, augment=True, seed=seed, drop_last=True, **norm)  # fmt: skip
    picked = np.sort(rng.permutation(len(data.test.labels))[:examples])
    test = BatchLoader(ArrayDataset(data.test.images[picked], data.test.labels[picked]),
                       CPU_FULL.eval_batch, shuffle=False, augment=False, **norm)  # fmt: skip
    qat = prepared_fp32(recipe, seed).to(memory_format=torch.channels_last)
    calibrate(qat, next(train.iter_from(0))[0], training.amp)
    accuracy = fp32_accuracy(qat.eval(), test)
    return {
        "variant": variant,
        "row": row.name,
        "recipe": recipe.to_dict(),
        "steps": 0,
        "calibration": f"one training-mode forward on {batch} augmented training images"
        + (" under bf16 autocast" if training.amp else ""),
        "test_examples": examples,
        "test_acc_float32": accuracy,
        "init": layer_stats(qat),
        "wall_seconds": round(time.perf_counter() - start, 1),
    }


def run_amp_check(variant: str, batch: int, data: Any, seed: int) -> dict[str, Any]:
    """What bf16 autocast changes in ``variant``'s training forward pass at its start.

    The prepared model is calibrated on the first training batch under autocast (as the
    trainer's first step), then run in training mode on that batch twice, on copies: under
    bf16 autocast and in float32. Recorded: per activation quantizer, the fraction of its codes
    that differ when ``x/α`` is computed as the trainer does under autocast (the bf16 input
    divided in bf16: an 8-bit mantissa) rather than in float32 from the same bf16 input; and
    for the whole network, the loss of each pass, the largest logit difference and the
    fraction of images whose predicted class differs. Both before the BN freeze (batch
    statistics) and after it (every BN frozen); after it also the fraction of images whose
    predicted class differs from the deployed form's (eval mode, exact integers) in each pass.
    """
    start = time.perf_counter()
    row, recipe = parse_variant(variant, ROW_STEPS)
    x, y = first_batch(data, batch, seed)
    qat = calibrate(prepared_fp32(recipe, seed), x, amp=True)
    flips: dict[str, list[float]]

    def count(name: str, module: LinearQuantizer, args: tuple[torch.Tensor, ...]) -> None:
        (v,) = args
        if v.dtype != torch.bfloat16:
            return
        alpha = module.scale_value().reshape(())
        ours = (v / alpha).clamp(module.qmin, module.qmax).add(0.5).floor()
        exact = (v.float() / alpha).clamp(module.qmin, module.qmax).add(0.5).floor()
        flips.setdefault(name, []).append(float((ours.float() != exact).float().mean()))

    phases = {}
    for phase in ("bn_batch_statistics", "bn_frozen"):
        logits, flips = {}, {}
        for amp in (True, False):
            copy_ = copy.deepcopy(qat)
            for module in copy_.modules():
                if phase == "bn_frozen" and isinstance(module, QuantWeightLayer):
                    module.freeze_bn()
            hooks = [
                m.register_forward_pre_hook(lambda m, a, n=n: count(n, m, a))
                for n, m in copy_.named_modules()
                if isinstance(m, LinearQuantizer) and m.is_activation
            ]
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
                logits[amp] = copy_(x).float()
            for hook in hooks:
                hook.remove()
        loss = {a: float(torch.nn.functional.cross_entropy(out, y)) for a, out in logits.items()}
        if phase == "bn_frozen":  # the deployed form: eval mode, exact integers
            with torch.no_grad():
                deployed = copy.deepcopy(qat).eval()(x).argmax(1)
            phases["prediction_differs_from_integer_form"] = {
                "bf16": float((logits[True].argmax(1) != deployed).float().mean()),
                "float32": float((logits[False].argmax(1) != deployed).float().mean()),
            }
        phases[phase] = {
            "code_flip_fraction": {name: round(f[0], 5) for name, f in flips.items()},
            "loss_bf16": loss[True],
            "loss_float32": loss[False],
            "max_logit_difference": float((logits[True] - logits[False]).abs().max()),
            "prediction_differs_fraction": float(
                (logits[True].argmax(1) != logits[False].argmax(1)).float().mean()
            ),
        }
    return {
        "variant": variant,
        "row": row.name,
        "recipe": recipe.to_dict(),
        "steps": 0,
        "batch": batch,
        **phases,
        "wall_seconds": round(time.perf_counter() - start, 1),
    }


def run_row_scales(variant: str, checkpoint: Path, batch: int, data: Any, seed: int
                   ) -> dict[str, Any]:  # fmt: skip
    """Where a finished row's training moved its activation scales: each scale of the row's
    last trainer checkpoint (``checkpoint``, its ``model`` state) against the start that
    ``variant``'s recipe calibrates on the first training batch under bf16 autocast (the
    tier's; as in :func:`run_amp_check`)."""
    start = time.perf_counter()
    row, recipe = parse_variant(variant, ROW_STEPS)
    qat = calibrate(prepared_fp32(recipe, seed), first_batch(data, batch, seed)[0], True)
    trained = load_checkpoint(checkpoint)["model"]
    scales = {
        name: {"start": scale, "final": float(trained[f"{name}.scale"].abs())}
        for name, scale in act_scales(qat).items()
    }
    return {
        "variant": variant,
        "row": row.name,
        "recipe": recipe.to_dict(),
        "steps": ROW_STEPS,
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": file_sha256(checkpoint),
        "act_scales": scales,
        "wall_seconds": round(time.perf_counter() - start, 1),
    }


def run_probe(
    variant: str, steps: int, evals: int, batch: int, data: Any, seed: int, training: ProbeTraining
) -> dict[str, Any]:
    """Train ``variant`` for ``steps`` steps from the FP32 checkpoint; its record."""
    start = time.perf_counter()
    row, recipe = parse_variant(variant, steps)
    tier = CPU_FULL
    per_pass = steps // evals
    rng = np.random.default_rng(seed)
    train = probe_train_loader(data, per_pass, batch, seed, rng)
    norm = {"mean": data.mean, "std": data.std, "device": "cpu"}
    test = BatchLoader(data.test, tier.eval_batch, shuffle=False, augment=False, **norm)
    picked = np.sort(rng.permutation(len(data.test.labels))[:MONITOR_EXAMPLES])
    monitor = BatchLoader(ArrayDataset(data.test.images[picked], data.test.labels[picked]),
                          tier.eval_batch, shuffle=False, augment=False, **norm)  # fmt: skip
    qat = prepared_fp32(recipe, seed).to(memory_format=torch.channels_last)
    first = next(train.iter_from(0))[0]
    config = TrainConfig(
        epochs=evals, batch_size=batch, optimizer="sgd", lr=training.lr,
        weight_decay=WEIGHT_DECAY, schedule="cosine", amp=training.amp, cpu_amp=training.amp,
        label_smoothing=training.label_smoothing, distill_weight=training.distill_weight,
        bn_freeze_lr_factor=training.bn_freeze_lr_factor,
        seed=seed, deterministic=True,
    )  # fmt: skip
    start_model = calibrate(copy.deepcopy(qat), first, training.amp)
    stats, start_scales = layer_stats(start_model), act_scales(start_model)
    del start_model
    with tempfile.TemporaryDirectory() as work:
        teacher = (
            fp32_model().to(memory_format=torch.channels_last) if config.distill_weight else None
        )
        result = Trainer(qat, train, monitor, config, work, "cpu", progress=False,
                         teacher=teacher).fit()  # fmt: skip
    final_scales = act_scales(qat)
    history = [
        {"step": (i + 1) * per_pass, "monitor_acc": h["test_acc"], "train_loss": h["train_loss"]}
        for i, h in enumerate(result.history)
    ]
    return {
        "variant": variant,
        "row": row.name,
        "recipe": recipe.to_dict(),
        "steps": steps,
        "lr": training.lr,
        "amp_bf16": training.amp,
        "label_smoothing": training.label_smoothing,
        "distill_weight": training.distill_weight,
        "bn_freeze_lr_factor": training.bn_freeze_lr_factor,
        "final_test_acc": fp32_accuracy(qat.eval(), test),
        "history": history,
        "init": stats,
        "act_scales": {
            name: {"init": scale, "final": final_scales[name]}
            for name, scale in start_scales.items()
        },
        "final_weight_scales": {
            name: layer["mean_weight_scale"] for name, layer in layer_stats(qat).items()
        },
        "wall_seconds": round(time.perf_counter() - start, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", required=True)
    parser.add_argument("--steps", type=int, default=300, help="0: the PTQ start only")
    parser.add_argument("--ptq-examples", type=int, default=5_000)
    parser.add_argument("--lr", type=float, default=CPU_FULL.qat_lr)
    add_no_amp_argument(parser, 'its key in the result file ends in ",amp=off"')
    parser.add_argument("--label-smoothing", type=float, default=0.0)
    parser.add_argument("--distill", type=float, default=0.0,
                        help="λ of distillation from the FP32 model (0: none)")  # fmt: skip
    parser.add_argument("--bn-freeze-lr-factor", type=float, default=1.0,
                        help="the learning rate times this from the BN freeze on")  # fmt: skip
    parser.add_argument("--row-checkpoint", type=Path, default=None,
                        help="only read a finished row's trainer checkpoint's scales")  # fmt: skip
    parser.add_argument("--amp-check", action="store_true",
                        help="only compare bf16 with float32 training forward passes")  # fmt: skip
    parser.add_argument("--batch", type=int, default=CPU_FULL.batch_size)
    parser.add_argument("--evals", type=int, default=3, help="test evaluations (passes)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-root", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / f"{NAME}.json")
    args = parser.parse_args(argv)
    if not 0 <= args.distill <= 1:
        parser.error(f"--distill {args.distill}: use a weight in [0, 1]")
    if not 0 < args.bn_freeze_lr_factor <= 1:
        parser.error(f"--bn-freeze-lr-factor {args.bn_freeze_lr_factor}: use a factor in (0, 1]")
    for option, set_ in (
        ("--distill", args.distill),
        ("--bn-freeze-lr-factor", args.bn_freeze_lr_factor != 1),
    ):
        if set_ and (args.amp_check or args.row_checkpoint or args.steps == 0):
            parser.error(
                f"{option} trains: it has no meaning with --amp-check, --row-checkpoint or "
                "--steps 0"
            )
    if not args.amp and (args.amp_check or args.row_checkpoint):
        parser.error(
            "--no-amp sets the probes' training: it has no meaning with --amp-check (which "
            "compares the two) or --row-checkpoint (which does not train)"
        )
    torch.set_num_threads(args.threads)
    for variant in args.variants:
        parse_variant(variant, recipe_steps(args))  # refuse a bad variant before any work
    recorder = ResultRecorder(NAME, command_line(), args.seed, path=args.out)
    with recorder.exclusive():  # each save rewrites the file from what this run read
        run_all(args, recorder)


def recipe_steps(args: argparse.Namespace) -> int:
    """The QAT steps a variant's recipe is built for: a row's for the checks that read a row's
    start or checkpoint, the probe's own (at least 1; 0 is the PTQ start) otherwise."""
    return ROW_STEPS if args.amp_check or args.row_checkpoint else max(args.steps, 1)


def run_all(args: argparse.Namespace, recorder: ResultRecorder) -> None:
    """Every requested probe not yet in the result file, each saved as it finishes."""
    stored = json.loads(args.out.read_text())["results"] if args.out.exists() else {}
    probes: dict[str, Any] = stored.get("probes", {})
    _, fp32 = load_baseline(FP32_DIR / "resnet20.ckpt")  # sha256 checked
    digest = fp32["checkpoint_sha256"]
    config = {
        "model": "resnet20",
        "fp32_checkpoint": str(FP32_DIR.relative_to(RESULTS_DIR.parent.parent) / "resnet20.ckpt"),
        "fp32_checkpoint_sha256": digest,
        "fp32_test_acc": fp32["test_acc"],
        "batch_size": args.batch,
        "lr": f"{CPU_FULL.qat_lr} unless the probe records another (its lr)",
        "schedule": "cosine over the probe's steps",
        "amp_bf16": f"{CPU_FULL.amp} unless the probe records another (its amp_bf16)",
        "threads": args.threads,
        "train_subset": "seeded, steps/evals batches, passed evals times",
        "test_examples": 10_000,
        "monitor_examples": MONITOR_EXAMPLES,
    }
    data = load_dataset("cifar10-folder", args.data_root, progress=False)
    training = ProbeTraining(args.lr, CPU_FULL.amp and args.amp, args.label_smoothing,
                             args.distill, args.bn_freeze_lr_factor)  # fmt: skip
    for variant in args.variants:
        key = probe_key(variant, args.steps, args.batch, training, args.ptq_examples)
        if args.amp_check:
            key = f"{variant}@amp-check,{args.batch}"
        if args.row_checkpoint:
            key = f"{variant}@row-scales"
        if key in probes:
            check_stored_recipe(key, probes[key], variant, recipe_steps(args))
            continue
        if args.row_checkpoint:
            probes[key] = run_row_scales(variant, args.row_checkpoint, args.batch, data,
                                         args.seed)  # fmt: skip
            print(key, json.dumps(probes[key]["act_scales"]), flush=True)
        elif args.amp_check:
            probes[key] = run_amp_check(variant, args.batch, data, args.seed)
            print(key, json.dumps(probes[key]), flush=True)
        elif args.steps == 0:
            probes[key] = run_ptq(variant, args.batch, args.ptq_examples, data, args.seed,
                                  training)  # fmt: skip
            print(key, probes[key]["test_acc_float32"], flush=True)
        else:
            probes[key] = run_probe(variant, args.steps, args.evals, args.batch, data,
                                    args.seed, training)  # fmt: skip
            print(key, probes[key]["final_test_acc"], probes[key]["history"], flush=True)
        probes[key]["command"] = command_line()  # the file's own is the last invocation's
        recorder.save(config, {"probes": probes})


if __name__ == "__main__":
    main()
