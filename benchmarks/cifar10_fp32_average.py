"""CIFAR-10 ResNet-20: average the weights of finished FP32 runs, recompute BN, and measure it.

Stochastic weight averaging over the ends of learning-rate cycles (Izmailov et al. 2018, SWA
with a cyclical schedule, their Algorithm 1): the runs of :mod:`benchmarks.cifar10_fp32_finetune`
chained with ``--start`` are such cycles, each a cosine from a raised learning rate down to 0
that starts from the last one's end (checked: each run's start sha256 is the one before it's,
its schedule a cosine without SWA of its own). Their weights are averaged,

    w_SWA = (1/n) · Σ_i w_i      (every parameter, summed in float64),

and, since a BN layer's running statistics are not those of the averaged weights' activations,
BN's running mean and variance are then computed anew by one pass in training mode over the
training set, as the runs' own training batches make them (:func:`torch.optim.swa_utils.
update_bn`: a cumulative average over the batches; crop, flip and the runs' Cutout, drawn by
``--seed``). The runs must share the tier and the Cutout; every floating buffer of the model
must be a BN statistic, so that none of the last run's is kept unnoticed.

The control, measured in the same run: the last run alone with its BN recomputed by the same
pass, which tells the averaging's gain from the BN pass's.

It writes, in ``--out`` (a run directory):

* ``fp32/resnet20.ckpt`` and ``resnet20.json``: the averaged weights, their sha256 and test
  accuracy on the 10,000 test images, in the format of ``hwquant bench reproduce``'s baselines
  (``{"state_dict"}``), so that QAT rows can start from them (copy ``fp32/`` into a new
  reproduce ``--out``); the record's ``training.history`` is the averaged runs' epochs;
* ``settings.json``: the tier, the runs' checkpoints and sha256 and the BN pass; another
  invocation with other settings is refused, naming each difference; a finished one is
  reported, not computed again;

and the result document (``--result``): machine, command, seed, settings, each run's accuracy,
the control's and the average's::

    python -m benchmarks.cifar10_fp32_average --no-amp --runs \\
        benchmarks/results/cifar10_fp32_finetune_cpu_long_cutout16 \\
        benchmarks/results/cifar10_fp32_finetune_cpu_long_cutout16_then_cutout16
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import update_bn

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.accumulator_aware_cifar10 import MODEL, TIERS
from benchmarks.cifar10_fp32_finetune import NAME as FINETUNE
from benchmarks.cifar10_fp32_finetune import begin, shown
from benchmarks.common import RESULTS_DIR, settings_differences
from hwquant.app.bench.cli import add_no_amp_argument
from hwquant.app.bench.evaluate import fp32_accuracy
from hwquant.app.bench.reproduce import (
    Options,
    TierData,
    build_model,
    json_differences,
    load_baseline,
    load_tier_data,
    save_baseline,
)
from hwquant.app.bench.tiers import Tier, settings_with_tier_defaults, with_tier_defaults
from hwquant.core.errors import ConfigError
from hwquant.data import BatchLoader

NAME = "cifar10_fp32_average"


@dataclasses.dataclass(frozen=True)
class Run:
    """One finished fine-tune run: its directory, weights, record and settings."""

    path: Path
    state: dict[str, torch.Tensor]
    record: dict[str, Any]
    settings: dict[str, Any]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--runs",
        type=Path,
        nargs="+",
        required=True,
        help="finished runs of cifar10_fp32_finetune (their --out), two or more",
    )
    p.add_argument("--tier", choices=TIERS, default=TIERS[0], help="the runs' tier")
    p.add_argument("--data-root", type=Path, default=None, help="CIFAR-10 image-folder copy")
    add_no_amp_argument(p, "recorded in settings.json")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--progress", action="store_true", help="show the data loading")
    p.add_argument("--seed", type=int, default=0, help="seed of the BN pass's batches")
    p.add_argument("--out", type=Path, default=None, help="run directory (default: by runs)")
    p.add_argument("--result", type=Path, default=None, help="result JSON (default: by runs)")
    args = p.parse_args(argv)
    if len(args.runs) < 2:
        p.error(f"--runs names {len(args.runs)} run: an average needs two or more")
    resolved = [path.resolve() for path in args.runs]
    if len(set(resolved)) < len(resolved):
        p.error("--runs names a run twice: each run's weights count once in the average")
    last = args.runs[-1].name.removeprefix(f"{FINETUNE}_")
    variant = f"{len(args.runs)}_to_{last}"
    args.out = args.out or RESULTS_DIR / f"{NAME}_{variant}"
    args.result = args.result or RESULTS_DIR / f"{NAME}_{variant}.json"
    return args


def read_run(path: Path, tier: Tier) -> Run:
    """The finished run ``path`` (its checkpoint's sha256 checked against its record).

    Raises:
        ConfigError: not a finished run, or trained under other tier settings (named).
    """
    settings_path = path / "settings.json"
    if not settings_path.is_file():
        raise ConfigError(
            f"{path} has no settings.json: it is not a run of {FINETUNE}. Fix: name the --out "
            "directory of a finished fine-tune run."
        )
    settings = json.loads(settings_path.read_text())
    if not {"tier", "cutout", "start_checkpoint_sha256", "train"} <= settings.keys():
        raise ConfigError(
            f"{settings_path} is not the settings of a {FINETUNE} run (it lacks its cutout, "
            "start or training). Fix: name the --out directory of a finished fine-tune run."
        )
    state, record = load_baseline(path / "fp32" / f"{MODEL}.ckpt")
    stored = with_tier_defaults(settings["tier"])
    differ = json_differences(stored, json.loads(json.dumps(dataclasses.asdict(tier))))
    if differ:
        raise ConfigError(
            f"{path} was trained under other tier settings ({'; '.join(differ)}). Fix: average "
            "it with its own --tier and --no-amp setting."
        )
    return Run(path, state, record, settings)


def check_cycles(runs: Sequence[Run]) -> int:
    """Check that ``runs`` are the ends of successive cycles, as the average assumes: each a
    cosine to 0 without averaging of its own, each started from the one before it, all with one
    Cutout; return that Cutout, which the BN pass repeats.

    Raises:
        ConfigError: names the run that breaks the chain, and how.
    """
    for run in runs:
        train = run.settings["train"]
        if train["schedule"] != "cosine" or train.get("swa_epochs", 0):
            raise ConfigError(
                f"{run.path.name} ran schedule {train['schedule']!r} with swa_epochs "
                f"{train.get('swa_epochs', 0)}: it is not the end of a cosine cycle. Fix: average "
                "runs of --schedule cosine without --swa-epochs."
            )
    for before, run in itertools.pairwise(runs):
        if run.settings["start_checkpoint_sha256"] != before.record["checkpoint_sha256"]:
            raise ConfigError(
                f"{run.path.name} did not start from {before.path.name}'s checkpoint, so the two "
                "are not successive cycles. Fix: name the runs in the order of their --start "
                "chain."
            )
    sides = {run.settings["cutout"] for run in runs}
    if len(sides) > 1:
        named = ", ".join(f"{run.path.name}: {run.settings['cutout']}" for run in runs)
        raise ConfigError(
            f"the runs trained with different Cutout ({named}), so no one BN pass matches their "
            "training batches. Fix: average runs of one Cutout."
        )
    return sides.pop()


def average_parameters(model: nn.Module, states: Sequence[dict[str, torch.Tensor]]) -> None:
    """Load into ``model`` the mean of ``states``' parameters (summed in float64, then cast to
    each parameter's dtype) and the last state's buffers, which the BN pass replaces.

    >>> layer = nn.Linear(1, 1)
    >>> average_parameters(layer, [{"weight": torch.tensor([[1.0]]), "bias": torch.tensor([0.0])},
    ...                            {"weight": torch.tensor([[2.0]]), "bias": torch.tensor([1.0])}])
    >>> layer.weight.item(), layer.bias.item()
    (1.5, 0.5)

    Raises:
        ConfigError: a floating buffer outside BN, which the BN pass would not recompute.
    """
    bn = (nn.modules.batchnorm._BatchNorm,)
    for name, module in model.named_modules():
        for buffer, value in module.named_buffers(recurse=False):
            if value.is_floating_point() and not isinstance(module, bn):
                raise ConfigError(
                    f"buffer {name}.{buffer} is not a BN statistic: averaging would keep the "
                    "last run's value, which no pass recomputes. Fix: average a model whose "
                    "only floating buffers are BN's."
                )
    averaged = dict(states[-1])
    for name, parameter in model.named_parameters():
        total = sum(state[name].double() for state in states)
        averaged[name] = (total / len(states)).to(parameter.dtype)
    model.load_state_dict(averaged)


def recompute_bn(model: nn.Module, loader: BatchLoader, amp: bool) -> float:
    """BN's running statistics of ``model`` computed anew over one pass of ``loader``
    (:func:`torch.optim.swa_utils.update_bn`); returns the pass's seconds."""
    start = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        update_bn((x for x, _ in loader.iter_from(0)), model)
    return round(time.perf_counter() - start, 1)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    recorder, options = begin(NAME, args, argv)
    tier = options.tier
    runs = [read_run(path, tier) for path in args.runs]
    cutout = check_cycles(runs)
    bn_pass = {"batch_size": tier.batch_size, "shuffle": True, "augment": True,
               "cutout": cutout, "seed": args.seed, "drop_last": True}  # fmt: skip
    settings = {
        "tier": dataclasses.asdict(tier),
        "runs": [
            {"run": shown(run.path), "checkpoint_sha256": run.record["checkpoint_sha256"]}
            for run in runs
        ],
        "bn_pass": bn_pass,
    }
    differ = settings_differences(args.out / "settings.json", settings, settings_with_tier_defaults)
    if differ:
        raise ConfigError(
            f"{args.out} holds an average of other settings: {'; '.join(differ)}. Fix: rerun "
            "with its runs and settings, or give this average another --out and --result."
        )
    path = args.out / "fp32" / f"{MODEL}.ckpt"
    if path.with_suffix(".json").exists():
        _, record = load_baseline(path)
        print(f"{path} is finished: {record['test_acc']:.4f} (not computed again)",
              file=sys.stderr)  # fmt: skip
    else:
        record = average(options, runs, bn_pass, path)
    best = max(run.record["test_acc"] for run in runs)
    results = {
        "runs": [{"run": shown(run.path), "test_acc": run.record["test_acc"]} for run in runs],
        "last_run_bn_recomputed_test_acc": record["training"]["control_test_acc"],
        "test_acc": record["test_acc"],
        "gain_points_over_best_run": round(100 * (record["test_acc"] - best), 2),
        "checkpoint": shown(path),
        "checkpoint_sha256": record["checkpoint_sha256"],
        "bn_pass_seconds": record["training"]["bn_pass_seconds"],
        "notes": [
            "test_acc values are on the 10,000 test images. last_run_bn_recomputed_test_acc is "
            "the control: the last run's weights with BN recomputed by the same pass.",
            "bn_pass_seconds: the averaged model's BN pass and the control's, summed.",
        ],
    }
    recorder.save({**settings, "threads": args.threads, "out": shown(args.out)}, results)
    print(f"wrote {args.result}: best run {best:.4f} -> average {record['test_acc']:.4f}",
          file=sys.stderr)  # fmt: skip
    return results


def average(
    options: Options, runs: Sequence[Run], bn_pass: dict[str, Any], path: Path
) -> dict[str, Any]:
    """Average ``runs``, recompute BN by ``bn_pass``, measure the control (the last run with BN
    recomputed) and write the average as a baseline
    (:func:`~hwquant.app.bench.reproduce.save_baseline`)."""
    data: TierData = load_tier_data(options)
    splits, amp = data.splits, options.tier.amp

    def loader() -> BatchLoader:
        return BatchLoader(splits.train, mean=splits.mean, std=splits.std,
                           device=options.tier.device, **bn_pass)  # fmt: skip

    control = build_model(MODEL, options)
    control.load_state_dict(runs[-1].state)
    seconds = recompute_bn(control, loader(), amp)
    control_acc = fp32_accuracy(control.eval(), data.test)
    model = build_model(MODEL, options)
    average_parameters(model, [run.state for run in runs])
    seconds += recompute_bn(model, loader(), amp)
    history = [
        {"run": shown(run.path), **epoch}
        for run in runs
        for epoch in run.record["training"]["history"]
    ]
    training = {
        "averaged_runs": [
            {
                "run": shown(run.path),
                "checkpoint_sha256": run.record["checkpoint_sha256"],
                "test_acc": run.record["test_acc"],
            }
            for run in runs
        ],
        "bn_pass": bn_pass,
        "bn_pass_seconds": seconds,
        "control_test_acc": control_acc,
        "history": history,
    }
    return save_baseline(path, model.eval(), data.test, options.seed, training)[1]


if __name__ == "__main__":
    main()
