"""CIFAR-10 ResNet-20: continue a tier's committed FP32 baseline with Cutout, and measure it.

Issue 19's cpu-long baseline ended its 200 one-cycle epochs at 88.67 % on the 10,000 test images
with 99.1 % training accuracy, its last 20 epochs lifting the training set and not the test
set: the schedule overfits (docs/results.md, "cpu-long tier"). This benchmark tests the
regularisation that was not tried: it starts from that checkpoint (``--tier``'s
``benchmarks/results/cifar10_<tier>/fp32/resnet20.ckpt``, its sha256 checked against the record
beside it) and trains ``--epochs`` more epochs of the tier's FP32 recipe (SGD-Nesterov, batch
256, weight decay 5e-4, label smoothing 0.1, random crop and flip, the whole training set) with
a cosine learning rate from ``--lr`` after ``--warmup-epochs`` of linear warm-up and Cutout of
``--cutout`` pixels (DeVries & Taylor 2017; :class:`hwquant.data.BatchLoader`). ``--cutout 0``
is the control: the same restart without Cutout. ``--swa-epochs N`` averages the weights of
the last N epochs (stochastic weight averaging, Izmailov et al. 2018; ``train.swa_epochs``),
best with ``--schedule constant``, the paper's setting.

``--start DIR`` continues a finished run of this benchmark instead (its ``--out``; the same
sha256 check), so that schedules can be chained.

It writes, in ``--out`` (a run directory):

* ``fp32/resnet20.ckpt`` and ``resnet20.json``: the continued weights, their sha256, test
  accuracy and every epoch's history, in the format of ``hwquant bench reproduce``'s baselines
  (``{"state_dict"}``), so that QAT rows can start from them;
* ``settings.json``: the tier, the start's sha256 and this run's options; a second invocation
  with other settings is refused, naming each difference;
* ``work/``: the trainer's checkpoint (every epoch end; not committed). A stopped run resumes
  from it bit-exactly with the same command; a finished one is reported, not trained again.

and the result document (``--result``; default ``benchmarks/results/cifar10_fp32_finetune_
<tier>_cutout<C>.json``): machine, command, seed, settings, start and end accuracy, history::

    python -m benchmarks.cifar10_fp32_finetune --no-amp --epochs 16 --lr 0.05 --cutout 16
    python -m benchmarks.cifar10_fp32_finetune --no-amp --epochs 16 --lr 0.05 --cutout 0
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.accumulator_aware_cifar10 import MODEL, TIERS, fp32_state, tier_dir
from benchmarks.common import (
    REPO_ROOT,
    RESULTS_DIR,
    ResultRecorder,
    command_line,
    settings_differences,
)
from hwquant.app.bench.cli import add_no_amp_argument
from hwquant.app.bench.reproduce import (
    Options,
    build_model,
    check_device,
    fit_model,
    json_differences,
    load_baseline,
    load_tier_data,
    save_baseline,
    tier_train_config,
)
from hwquant.app.bench.tiers import get_tier, settings_with_tier_defaults, with_tier_defaults
from hwquant.app.config import TrainConfig, train_fields_with_defaults
from hwquant.core.errors import ConfigError
from hwquant.data import BatchLoader

NAME = "cifar10_fp32_finetune"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tier", choices=TIERS, default=TIERS[0], help="FP32 start and recipe")
    p.add_argument(
        "--start",
        type=Path,
        default=None,
        help="start from this finished run of the benchmark (its --out) instead of the tier's "
        "committed baseline",
    )
    p.add_argument("--epochs", type=int, default=16, help="epochs added to the start")
    p.add_argument("--lr", type=float, default=0.05, help="peak learning rate of the cosine")
    p.add_argument("--warmup-epochs", type=float, default=1.0, help="linear warm-up length")
    p.add_argument("--cutout", type=int, default=16, help="Cutout square side (0: none)")
    p.add_argument(
        "--schedule",
        choices=("cosine", "constant"),
        default="cosine",
        help="learning rate after the warm-up: cosine to 0, or constant (SWA's setting)",
    )
    p.add_argument(
        "--swa-epochs",
        type=int,
        default=0,
        help="average the weights of the last N epochs (SWA; BN statistics recomputed)",
    )
    p.add_argument("--data-root", type=Path, default=None, help="CIFAR-10 image-folder copy")
    add_no_amp_argument(p, "recorded in settings.json")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--progress", action="store_true", help="print each epoch's line (stderr)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data order and Cutout")
    p.add_argument("--out", type=Path, default=None, help="run directory (default: by options)")
    p.add_argument("--result", type=Path, default=None, help="result JSON (default: by options)")
    args = p.parse_args(argv)
    if args.epochs < 1:
        p.error(f"--epochs {args.epochs}: use 1 or more")
    if args.cutout < 0:
        p.error(f"--cutout {args.cutout}: use 0 (no Cutout) or a positive number of pixels")
    if not 0 <= args.swa_epochs <= args.epochs:
        p.error(f"--swa-epochs {args.swa_epochs}: use 0 (no averaging) up to --epochs")
    variant = args.tier.replace("-", "_")
    if args.start is not None:
        variant = f"{args.start.name.removeprefix(f'{NAME}_')}_then"
    variant += f"_cutout{args.cutout}"
    variant += f"_{args.schedule}" if args.schedule != "cosine" else ""
    variant += f"_swa{args.swa_epochs}" if args.swa_epochs else ""
    args.out = args.out or RESULTS_DIR / f"{NAME}_{variant}"
    args.result = args.result or RESULTS_DIR / f"{NAME}_{variant}.json"
    return args


def train_config(args: argparse.Namespace, options: Options) -> TrainConfig:
    """The tier's FP32 training (:func:`~hwquant.app.bench.reproduce.tier_train_config`), restarted:
    ``--epochs`` of ``--schedule`` from ``--lr`` after ``--warmup-epochs``, the last
    ``--swa-epochs`` averaged."""
    return dataclasses.replace(
        tier_train_config(options, True),
        epochs=args.epochs,
        lr=args.lr,
        schedule=args.schedule,
        warmup_epochs=args.warmup_epochs,
        swa_epochs=args.swa_epochs,
    )


def shown(path: Path) -> str:
    """``path`` relative to the repository when inside it (as committed), else as given."""
    path = path.resolve()
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def check_settings(path: Path, settings: dict[str, Any]) -> None:
    """Record ``settings`` on the first run (:func:`benchmarks.common.settings_differences`);
    refuse another run's. A training or tier field the stored settings predate counts at its
    default (the behaviour from before it existed), as the trainer's own resume check does.

    Raises:
        ConfigError: names every setting that differs and the fix.
    """
    differ = settings_differences(
        path,
        settings,
        lambda stored: (
            settings_with_tier_defaults(stored)
            | {"train": train_fields_with_defaults(stored["train"])}
        ),
    )
    if differ:
        raise ConfigError(
            f"{path.parent} holds a run with other settings: {'; '.join(differ)}. Fix: rerun "
            "with its settings, or give this run another --out and --result."
        )


def begin(
    name: str, args: argparse.Namespace, argv: Sequence[str] | None
) -> tuple[ResultRecorder, Options]:
    """Set torch's threads and return the result recorder of benchmark ``name`` (the command
    as invoked) and the options of one ResNet-20 on ``--tier`` (with ``--no-amp``: float32),
    shared by this benchmark and :mod:`benchmarks.cifar10_fp32_average`.

    Raises:
        ConfigError: a bf16 tier on a CPU without native bf16 (naming ``--no-amp``).
    """
    torch.set_num_threads(args.threads)
    command = command_line([sys.argv[0], *(sys.argv[1:] if argv is None else argv)])
    recorder = ResultRecorder(name, command, args.seed, args.result)
    tier = get_tier(args.tier, amp=None if args.amp else False)
    check_device(tier)
    options = Options(
        tier=tier, out=args.out, models=(MODEL,), rows=(), seed=args.seed,
        data_root=args.data_root, progress=args.progress, command=command,
    )  # fmt: skip
    return recorder, options


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    recorder, options = begin(NAME, args, argv)
    tier = options.tier
    state, start, start_path = start_of(args, tier)
    config = train_config(args, options)
    settings = {
        "tier": dataclasses.asdict(tier),
        "start_checkpoint": shown(start_path),
        "start_checkpoint_sha256": start["checkpoint_sha256"],
        "cutout": args.cutout,
        "train": dataclasses.asdict(config),
    }
    check_settings(args.out / "settings.json", settings)
    path = args.out / "fp32" / f"{MODEL}.ckpt"
    if path.with_suffix(".json").exists():
        _, record = load_baseline(path)
        print(f"{path} is finished: {record['test_acc']:.4f} (not trained again)", file=sys.stderr)
    else:
        record = finetune(options, config, args.cutout, state, path)
    history = record["training"]["history"]
    results = {
        "start_test_acc": start["test_acc"],
        "test_acc": record["test_acc"],
        "gain_points": round(100 * (record["test_acc"] - start["test_acc"]), 2),
        "final_train_acc": history[-1]["train_acc"],
        "checkpoint": shown(path),
        "checkpoint_sha256": record["checkpoint_sha256"],
        "history": history,
        "train_seconds_sum_of_epochs": round(sum(h["seconds"] for h in history), 1),
        "notes": [
            "final_train_acc is the last epoch's running accuracy over its augmented batches "
            "(with SWA: of the weights before averaging); history.test_acc is on the tier's "
            "monitor images (with SWA, in the last epoch: of the averaged model), test_acc on "
            "the 10,000 test images.",
            "train_seconds_sum_of_epochs: each epoch's training, its monitor evaluation and, "
            "with SWA, the BN pass, over every invocation.",
        ],
    }
    recorder.save({**settings, "threads": args.threads, "out": shown(args.out)}, results)
    print(f"wrote {args.result}: {results['start_test_acc']:.4f} -> {results['test_acc']:.4f}",
          file=sys.stderr)  # fmt: skip
    return results


def start_of(
    args: argparse.Namespace, tier: Any
) -> tuple[dict[str, torch.Tensor], dict[str, Any], Path]:
    """The start's weights, record and path: the tier's committed baseline, or with ``--start``
    a finished run of this benchmark made under the same tier settings (its sha256 checked).

    Raises:
        ConfigError: the ``--start`` run was trained under other tier settings (named).
    """
    if args.start is None:
        return (*fp32_state(args.tier), tier_dir(args.tier) / "fp32" / f"{MODEL}.ckpt")
    path = args.start / "fp32" / f"{MODEL}.ckpt"
    state, record = load_baseline(path)
    stored = with_tier_defaults(json.loads((args.start / "settings.json").read_text())["tier"])
    differ = json_differences(stored, json.loads(json.dumps(dataclasses.asdict(tier))))
    if differ:
        raise ConfigError(
            f"--start {args.start} was trained under other tier settings ({'; '.join(differ)}). "
            "Fix: continue it with its own --tier and --no-amp setting."
        )
    return state, record, path


def finetune(
    options: Options,
    config: TrainConfig,
    cutout: int,
    state: dict[str, torch.Tensor],
    path: Path,
) -> dict[str, Any]:
    """Train the start ``state`` by ``config`` with ``cutout``, then evaluate it on the whole
    test set and write it as a baseline (:func:`~hwquant.app.bench.reproduce.save_baseline`)."""
    data = load_tier_data(options)
    splits = data.splits
    train = BatchLoader(
        splits.train, config.batch_size, mean=splits.mean, std=splits.std, shuffle=True,
        augment=True, cutout=cutout, seed=options.seed, drop_last=True,
        device=options.tier.device,
    )  # fmt: skip
    model = build_model(MODEL, options)
    model.load_state_dict(state)
    training = fit_model(model, config, train, data, options.out / "work", options, resume=True)
    return save_baseline(path, model, data.test, options.seed, training)[1]


if __name__ == "__main__":
    main()
