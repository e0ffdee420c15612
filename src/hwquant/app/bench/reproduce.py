"""``hwquant bench reproduce``: the four methods' table on CIFAR-10 in one command.

For each model: train the FP32 baseline (or load it from ``OUT/fp32/<model>.ckpt``, or copy a
finished one there from ``--fp32-from DIR``), then for
each row of :mod:`hwquant.app.bench.rows` start from that checkpoint, QAT-train with the row's
recipe, lower (integer engine, or table engine for ``tables``) and evaluate both the fake-quant
model and the engine on the whole test set (:func:`hwquant.app.bench.evaluate.compare`). Every
finished row is written atomically to ``OUT/rows/<model>/<row>.json``; with ``resume`` a row
whose file exists is not run again, a model with no pending row needs neither its FP32
checkpoint nor training (its FP32 record is ``OUT/fp32/<model>.json``), and an interrupted
FP32 run or row continues from its trainer checkpoint (``OUT/work/<model>/fp32/`` and
``OUT/work/<model>/<row>/``, written at every epoch end; a row's recipe, training settings and
FP32 sha256 are kept beside it and checked before anything is trained). After every row
``OUT/results.json`` (machine, command, seed, config, results;
:func:`hwquant.core.provenance.write_result`) and ``OUT/results.md`` are rewritten from those
files. Finally the FP32 and W4A4 QAT training steps are timed side by
side (:func:`hwquant.app.bench.steptime.measure_step_times`) and kept in ``OUT/step_time.json``, so
that a resumed run (one that finishes the rows left by an earlier, time-limited command) reports
the figures measured then instead of timing again; remove the file to time again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import hwquant
from hwquant.app.bench.evaluate import compare, fp32_accuracy
from hwquant.app.bench.markdown import render
from hwquant.app.bench.rows import RowSpec
from hwquant.app.bench.steptime import measure_step_times
from hwquant.app.bench.tiers import Tier, settings_with_tier_defaults
from hwquant.app.config import TrainConfig
from hwquant.app.train import CHECKPOINT_NAME, Trainer, cpu_has_native_bf16, seed_everything
from hwquant.core.atomic import write_atomic
from hwquant.core.checkpoint import load_checkpoint, resume_path, save_checkpoint
from hwquant.core.errors import ConfigError, UnsupportedLayerError
from hwquant.core.provenance import file_sha256, machine_record, write_result
from hwquant.data import ArrayDataset, BatchLoader, DataSplits, load_dataset
from hwquant.data.arrays import make_splits
from hwquant.data.cifar_folder import CIFAR10_CLASSES
from hwquant.models import build
from hwquant.qat.recipe import Recipe

NAME = "cifar10_reproduce"
BENCH_MODELS: tuple[str, ...] = ("resnet20", "resnet18", "vgg_small", "mobilenetv2")
SYNTHETIC_TRAIN, SYNTHETIC_TEST = 64, 32
LOWER_EXAMPLES = 8
WEIGHT_DECAY = 5e-4
ROW_START = "start.json"
"""A row's start record in its trainer folder: recipe, training settings, FP32 sha256."""


@dataclass(frozen=True)
class Options:
    """One run of the command."""

    tier: Tier
    out: Path
    models: tuple[str, ...]
    rows: tuple[RowSpec, ...]
    resume: bool = False
    compile: bool = False
    seed: int = 0
    row_seed: int | None = None
    """Seed of every row's QAT run (its training subset, data order, augmentation, random
    initialisations) from the FP32 weights of ``seed``; None: ``seed``. Rows of another seed
    are a second sample of the same row, to tell its spread from a difference."""
    data_root: Path | None = None
    progress: bool = False
    step_time: bool = True
    stop_after: float | None = None
    """Seconds after which no further model or row starts (None: no budget)."""
    fp32_only: bool = False
    """Train (or resume, or load) the FP32 baselines only; no row runs and no step time."""
    fp32_from: Path | None = None
    """A directory whose ``fp32/<model>.ckpt`` are finished baselines (another run's ``OUT``,
    or a benchmark's run directory in the same format): the rows start from them instead of
    from a trained one. Each is copied into ``OUT/fp32/`` (sha256 checked) when first needed,
    and their sha256 are recorded in ``settings.json``, so a resume from other weights is
    refused."""
    command: str = "hwquant bench reproduce"

    @property
    def qat_seed(self) -> int:
        """The seed the rows' QAT runs use: ``row_seed``, or ``seed``."""
        return self.seed if self.row_seed is None else self.row_seed


@dataclass
class TierData:
    """Loaders on the tier's device: FP32 and QAT training, per-epoch monitor, whole test set."""

    splits: DataSplits
    train: BatchLoader
    qat_train: BatchLoader
    monitor: BatchLoader
    test: BatchLoader


def select_models(names: Sequence[str] | None, tier: Tier) -> tuple[str, ...]:
    """``names`` checked against :data:`BENCH_MODELS` (None: the tier's models).

    Raises:
        ConfigError: an unknown model; the message lists the allowed ones.
    """
    if names is None:
        return tier.models
    unknown = [n for n in names if n not in BENCH_MODELS]
    if unknown:
        raise ConfigError(
            f"unknown model(s) {', '.join(unknown)}. Fix: use one or more of "
            f"{', '.join(BENCH_MODELS)}."
        )
    return tuple(names)


def reproduce(options: Options) -> dict[str, Any]:
    """Run the table of ``options`` and return ``{"results", "ran", "skipped", "stopped"}``; the
    results are also in ``options.out``/results.json and results.md. With a time budget
    (``options.stop_after`` seconds) no model or row starts once it is spent: the run stops
    with ``stopped`` true, and ``resume`` continues it. With ``options.fp32_only`` only the
    FP32 baselines are trained (an interrupted one continues from its last finished epoch with
    ``resume``); the rows and the step times are left for a later run."""
    tier = options.tier
    check_device(tier)
    _check_fp32_from(options)
    _check_settings(options)
    started = time.perf_counter()
    data = load_tier_data(options)
    machine = machine_record()
    ran, skipped, stopped = [], [], False
    paths_of = {
        model_name: {
            row: options.out / "rows" / model_name / f"{row.name}.json" for row in options.rows
        }
        for model_name in options.models
    }
    pending_of = {
        model_name: [row for row, path in paths.items() if not (options.resume and path.exists())]
        for model_name, paths in paths_of.items()
    }
    if not options.fp32_only:
        _check_rows(paths_of, pending_of, options, data)
    for model_name in options.models:
        paths, pending = paths_of[model_name], pending_of[model_name]
        if options.fp32_only:
            if stopped := _out_of_time(options, started):
                break
            _fp32(model_name, data, options)
            continue
        skipped += [f"{model_name}/{row.name}" for row in options.rows if row not in pending]
        if not pending:
            continue
        if stopped := _out_of_time(options, started):
            break
        baseline = _fp32(model_name, data, options)
        for row in pending:
            if stopped := _out_of_time(options, started):
                break
            record = _quantized_row(model_name, row, baseline, data, options)
            paths[row].parent.mkdir(parents=True, exist_ok=True)
            write_atomic(paths[row], (json.dumps(record, indent=2) + "\n").encode())
            ran.append(f"{model_name}/{row.name}")
            _write(options, data, machine, started)
        if stopped:
            break
    step_time = None
    if not (stopped or options.fp32_only):
        step_time = _step_time(options) if options.step_time else {}
    return {
        "results": _write(options, data, machine, started, step_time),
        "ran": ran,
        "skipped": skipped,
        "stopped": stopped,
    }


def settings_of(options: Options) -> dict[str, Any]:
    """What every stored row and FP32 record of ``options.out`` depends on: the tier (schedule,
    data, epochs) and the seed, and the rows' seed where it is another."""
    settings: dict[str, Any] = {"tier": dataclasses.asdict(options.tier), "seed": options.seed}
    if options.qat_seed != options.seed:
        settings["row_seed"] = options.qat_seed
    if options.fp32_from is not None:
        settings["fp32_from"] = source_baselines(options.fp32_from, options.models)
    return settings


def source_baselines(directory: Path, models: Sequence[str]) -> dict[str, str]:
    """``{model: sha256}`` of ``models``' baselines in ``directory/fp32/``, as their records
    give them (each checkpoint is checked against its record when it is copied:
    :func:`_adopt_baseline`; each record's presence by :func:`_check_fp32_from`).

    Raises:
        ConfigError: a record without a sha256.
    """
    digests = {
        model: json.loads((directory / "fp32" / f"{model}.json").read_text()).get(
            "checkpoint_sha256"
        )
        for model in models
    }
    if missing := [name for name, digest in digests.items() if digest is None]:
        raise ConfigError(
            f"--fp32-from {directory}: the record(s) {', '.join(missing)} in fp32/ have no "
            "checkpoint_sha256, so they are not finished baselines. Fix: name a directory "
            "whose fp32/ holds finished baselines."
        )
    return digests


def _check_fp32_from(options: Options) -> None:
    """Refuse, before anything is written to ``options.out``, an ``--fp32-from`` that cannot
    give every selected model its baseline: the source is ``--out`` itself, a model has no
    finished baseline there, or one records another seed than ``--seed`` (the seed of the
    FP32 weights, which the rows' QAT seed defaults to).

    Raises:
        ConfigError: names the problem and the fix.
    """
    source = options.fp32_from
    if source is None:
        return
    if options.fp32_only:
        raise ConfigError(
            "--fp32-only trains the FP32 baselines and --fp32-from brings finished ones: they "
            "exclude each other. Fix: drop one."
        )
    if source.resolve() == options.out.resolve():
        raise ConfigError(
            f"--fp32-from {source} is --out itself. Fix: name the directory that holds the "
            "baselines and a new --out for the rows, or resume this --out as it was started "
            "(its settings.json records any fp32_from)."
        )
    for model in options.models:
        record_path = source / "fp32" / f"{model}.json"
        if not record_path.is_file():
            raise ConfigError(
                f"--fp32-from {source}: {record_path} does not exist, so there is no {model} "
                f"baseline to start from. Fix: name a directory whose fp32/ holds one, or leave "
                f"{model} out of --models."
            )
        seed = json.loads(record_path.read_text()).get("seed")
        if seed != options.seed:
            raise ConfigError(
                f"--fp32-from: {record_path} records seed {seed} (its training's; for an "
                f"average, its BN pass's), this run has --seed {options.seed}. Fix: run with "
                f"--seed {seed}, and --row-seed K for another QAT seed of the rows."
            )


def _check_settings(options: Options) -> None:
    """Record :func:`settings_of` in ``OUT/settings.json`` on the first run; refuse to resume
    with other settings, and refuse a fresh run into a directory that holds one.

    Raises:
        ConfigError: names every setting that differs, or the existing run.
    """
    path = options.out / "settings.json"
    settings = settings_of(options)
    if path.exists():
        if not options.resume:
            raise ConfigError(
                f"{options.out} already holds a reproduce run ({path.name}); running again would "
                "overwrite its rows. Fix: add --resume to continue it, or choose a new --out."
            )
        stored = settings_with_tier_defaults(json.loads(path.read_text()))
        differ = json_differences(stored, settings)
        if differ:
            raise ConfigError(
                f"--resume into {options.out} with other settings than its stored rows: "
                + "; ".join(differ)
                + ". Fix: resume with the stored settings, or choose a new --out."
            )
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, (json.dumps(settings, indent=2) + "\n").encode())


def json_differences(stored: Any, now: Any, where: str = "") -> list[str]:
    """``key: stored -> now`` for every leaf of two JSON-like dicts that differs."""
    if isinstance(stored, dict) and isinstance(now, dict):
        return [
            line
            for key in sorted(set(stored) | set(now))
            for line in json_differences(stored.get(key), now.get(key), f"{where}{key}.")
        ]
    now = list(now) if isinstance(now, tuple) else now
    return [] if stored == now else [f"{where.rstrip('.')}: stored {stored!r}, now {now!r}"]


def _check_rows(
    paths_of: dict[str, dict[RowSpec, Path]],
    pending_of: dict[str, list[RowSpec]],
    options: Options,
    data: TierData,
) -> None:
    """Before anything trains, check every model's rows: a stored row (:func:`_check_stored_row`)
    and a pending row's trainer checkpoint (:func:`_check_row_work`).

    Raises:
        ConfigError: the first row that this run would not skip or continue as it is now
            defined.
    """
    for model_name, paths in paths_of.items():
        fp32_sha256 = _fp32_sha256(model_name, options)
        for row, path in paths.items():
            if row in pending_of[model_name]:
                _check_row_work(model_name, row, options, data, fp32_sha256)
            else:
                _check_stored_row(path, model_name, row, options, data)


def _check_stored_row(
    path: Path, model_name: str, row: RowSpec, options: Options, data: TierData
) -> None:
    """Refuse to skip a stored row whose recipe or QAT training settings are not the ones this
    version of the row table would use (the row or the trainer was redefined in code since it
    ran): its figures would be reported under a recipe they do not come from. A row recorded
    as refused has no training settings; its recipe is checked.

    Raises:
        ConfigError: names the row, every recipe field and training setting that differs, and
            the fix.
    """
    record = json.loads(path.read_text())
    config = tier_train_config(options, False)
    differ = _recipe_differences(record["recipe"], row.recipe(_qat_steps(config, data)))
    if "training" in record:
        differ += _training_differences(record["training"]["config"], config)
    if differ:
        work = _row_work(options, model_name, row)
        raise ConfigError(
            f"--resume: the stored row {path} was trained with another recipe than row "
            f"'{row.name}' has now: " + "; ".join(differ) + f". Fix: delete {path.name} and "
            f"the row's trainer folder {work} to train the row again with its current recipe, "
            "or choose a new --out."
        )


def _recipe_differences(stored: dict[str, Any], recipe: Recipe) -> list[str]:
    """The fields of a stored recipe that differ from ``recipe`` (fields added since: their
    defaults)."""
    return json_differences(Recipe.from_dict(stored).to_dict(), recipe.to_dict(), "recipe.")


def _training_differences(stored: dict[str, Any], config: TrainConfig) -> list[str]:
    """``train.<field>: stored ..., now ...`` for every stored training setting that differs
    from ``config`` or no longer exists (fields added to :class:`TrainConfig` since: their
    defaults)."""
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    gone = [f"train.{k}: stored {stored[k]!r}, no longer a setting"
            for k in sorted(set(stored) - known)]  # fmt: skip
    trained = TrainConfig(**{k: v for k, v in stored.items() if k in known})
    return gone + json_differences(
        dataclasses.asdict(trained), dataclasses.asdict(config), "train."
    )


def _out_of_time(options: Options, started: float) -> bool:
    return options.stop_after is not None and time.perf_counter() - started >= options.stop_after


def check_device(tier: Tier) -> None:
    """Refuse a tier this machine cannot train as defined, before any data is read.

    Raises:
        ConfigError: a CUDA tier without a GPU; a CPU tier under bf16 autocast on a CPU
            without native bf16 kernels (the fix names ``--no-amp``).
    """
    if tier.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "tier 'gpu' needs a CUDA device and torch sees none. Fix: run it on a machine with "
            "a GPU, or use --tier cpu (ResNet-20, reduced schedule) or --tier smoke."
        )
    if tier.device == "cpu" and tier.amp and not cpu_has_native_bf16():
        raise ConfigError(
            f"tier {tier.name!r} trains under bf16 autocast, and this CPU has no native bf16 "
            "kernels (oneDNN reports none: no avx512_bf16 or AMX), so bf16 would be emulated "
            "and slow. Fix: add --no-amp to train in float32; the run records amp false, and a "
            "run of other settings is refused, so give it a new --out."
        )


# -- data ---------------------------------------------------------------------------------------
def load_tier_data(options: Options) -> TierData:
    """The tier's data set (CIFAR-10 JPEG copy or synthetic) and its loaders."""
    tier, seed = options.tier, options.seed
    if tier.data == "synthetic":
        splits = synthetic_splits(tier.input_size, seed)
    else:
        splits = load_dataset("cifar10-folder", options.data_root, progress=options.progress)
    if tier.train_examples is not None:
        splits = dataclasses.replace(splits, train=_subset(splits.train, tier.train_examples, seed))
    norm = {"mean": splits.mean, "std": splits.std, "device": tier.device}
    train = {"shuffle": True, "augment": tier.data != "synthetic", "drop_last": True}
    qat_train = splits.train
    if tier.qat_train_examples is not None:
        qat_train = _subset(qat_train, tier.qat_train_examples, options.qat_seed)
    return TierData(
        splits,
        BatchLoader(splits.train, tier.batch_size, seed=seed, **train, **norm),
        BatchLoader(
            qat_train, tier.batch_size, seed=options.qat_seed, cutout=tier.qat_cutout, **train,
            **norm,
        ),
        BatchLoader(
            _subset(splits.test, tier.monitor_examples, seed), tier.eval_batch, shuffle=False,
            augment=False, **norm,
        ),
        BatchLoader(splits.test, tier.eval_batch, shuffle=False, augment=False, **norm),
    )  # fmt: skip


def _subset(data: ArrayDataset, n: int, seed: int) -> ArrayDataset:
    """``n`` examples drawn without replacement by a generator seeded with ``seed`` (the splits
    are stored class by class, so a head would hold few classes)."""
    if n >= len(data.labels):
        return data
    index = np.sort(np.random.default_rng(seed).permutation(len(data.labels))[:n])
    return ArrayDataset(data.images[index], data.labels[index])


def synthetic_splits(size: int, seed: int) -> DataSplits:
    """A tiny learnable 10-class set of ``size`` x ``size`` RGB images: each class has its own
    mean colour, plus uniform noise."""
    rng = np.random.default_rng(seed)
    colours = rng.integers(40, 216, size=(len(CIFAR10_CLASSES), 3))

    def split(n: int) -> ArrayDataset:
        labels = np.arange(n, dtype=np.int64) % len(CIFAR10_CLASSES)
        noise = rng.integers(-40, 41, size=(n, size, size, 3))
        images = np.clip(colours[labels][:, None, None, :] + noise, 0, 255).astype(np.uint8)
        return ArrayDataset(images, labels)

    return make_splits("synthetic", split(SYNTHETIC_TRAIN), split(SYNTHETIC_TEST), CIFAR10_CLASSES)


# -- FP32 ---------------------------------------------------------------------------------------
@dataclass
class _Baseline:
    state: dict[str, torch.Tensor]
    record: dict[str, Any]


def build_model(model_name: str, options: Options, seed: int | None = None) -> nn.Module:
    """``model_name`` at the tier's width, its initialisation drawn after seeding ``seed``
    (None: ``options.seed``)."""
    tier = options.tier
    seed_everything(options.seed if seed is None else seed)
    model = build(model_name, num_classes=10, input_size=tier.input_size, width=tier.width)
    return model.to(device=tier.device, memory_format=tier_memory_format(tier))


def tier_memory_format(tier: Tier) -> torch.memory_format:
    """Channels-last where the tier trains so, else the tensor's own layout."""
    return torch.channels_last if tier.channels_last else torch.preserve_format


def tier_train_config(options: Options, fp32: bool) -> TrainConfig:
    """The trainer's settings of the tier's FP32 baseline (``fp32``) or of its QAT rows."""
    tier = options.tier
    return TrainConfig(
        epochs=tier.epochs_fp32 if fp32 else tier.epochs_qat,
        batch_size=tier.batch_size,
        optimizer="sgd",
        lr=tier.fp32_lr if fp32 else tier.qat_lr,
        weight_decay=WEIGHT_DECAY,
        schedule="onecycle" if fp32 else "cosine",
        label_smoothing=tier.label_smoothing if fp32 else 0.0,
        distill_weight=0.0 if fp32 else tier.qat_distill,
        distill_temperature=1.0 if fp32 else tier.qat_distill_temperature,
        amp=tier.amp,
        cpu_amp=tier.amp and tier.device == "cpu",
        seed=options.seed if fp32 else options.qat_seed,
        deterministic=tier.device == "cpu",
    )


def fit_model(
    model: nn.Module,
    config: TrainConfig,
    train: BatchLoader,
    data: TierData,
    work: Path,
    options: Options,
    resume: bool,
    teacher: nn.Module | None = None,
) -> dict[str, Any]:
    """Train ``model`` (a baseline or a row) on ``train`` in ``work`` (with ``resume``, from the
    trainer's checkpoint there, if any; distilling from ``teacher`` where ``config`` says so);
    return its per-epoch history and the wall time of this call, and the global step it
    resumed at (``resumed_at_step``) when it continued a checkpoint: the epochs' own seconds,
    in the history, then span the calls."""
    start = time.perf_counter()
    trainer = Trainer(
        model, train, data.monitor, config, work, options.tier.device,
        progress=options.progress, resume=resume, teacher=teacher,
    )  # fmt: skip
    resumed_at = trainer.global_step
    result = trainer.fit()
    history = [
        {k: round(v, 5) if isinstance(v, float) else v for k, v in h.items()}
        for h in result.history
    ]
    training: dict[str, Any] = {
        "config": dataclasses.asdict(config),
        "history": history,
        "wall_seconds": round(time.perf_counter() - start, 1),
    }
    if resumed_at:
        training["resumed_at_step"] = resumed_at
    return training


def load_baseline(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The weights and the record of the FP32 baseline ``path`` (``OUT/fp32/<model>.ckpt``, its
    record ``<model>.json`` beside it, written after it), the checkpoint's sha256 checked
    against the record, so that whatever starts from it starts from the weights the record
    describes.

    Raises:
        ConfigError: no record (an unfinished or missing baseline), or another sha256.
    """
    record_path = path.with_suffix(".json")
    if not record_path.is_file():
        raise ConfigError(
            f"{record_path} does not exist: {path} is not a finished baseline (its record is "
            "written last). Fix: finish its run, or name another baseline."
        )
    record = json.loads(record_path.read_text())
    digest = file_sha256(path)
    if digest != record["checkpoint_sha256"]:
        raise ConfigError(
            f"{path} has sha256 {digest}, but {record_path.name} records "
            f"{record['checkpoint_sha256']}: it is not the checkpoint its record (and whatever "
            "started from it) describes. Fix: restore that checkpoint, or start anew elsewhere."
        )
    return load_checkpoint(path)["state_dict"], record


def _fp32(model_name: str, data: TierData, options: Options) -> _Baseline:
    """The FP32 weights (``OUT/fp32/<model>.ckpt``) and record (``<model>.json``, written after
    the weights) of ``model_name``: copied from ``--fp32-from`` (:func:`_adopt_baseline`), or
    loaded when resuming and present, else trained."""
    path = options.out / "fp32" / f"{model_name}.ckpt"
    record_path = path.with_suffix(".json")
    if options.fp32_from is not None:
        return _Baseline(*_adopt_baseline(options.fp32_from / "fp32" / path.name, path))
    if options.resume and record_path.exists():
        state, record = load_baseline(path)
        if record.get("seed") != options.seed:  # a copied fp32/ of another run (--row-seed)
            raise ConfigError(
                f"{record_path} was trained with --seed {record.get('seed')}, this run has "
                f"--seed {options.seed}. Fix: resume with --seed {record.get('seed')} (and "
                "--row-seed for the rows), or train the baseline in a new --out."
            )
        return _Baseline(state, record)
    model = build_model(model_name, options)
    work = options.out / "work" / model_name / "fp32"
    training = fit_model(
        model, tier_train_config(options, True), data.train, data, work, options, options.resume
    )
    return _Baseline(*save_baseline(path, model, data.test, options.seed, training))


def _adopt_baseline(source: Path, path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The baseline ``source`` as its copy ``path``: copied on first use (the bytes written
    are the bytes whose sha256 is checked against ``source``'s record; checkpoint first, record
    last, each atomically), and on every use checked to be that baseline, whatever put it
    there (``settings.json`` holds the same sha256, from ``source``'s record).
    Returns the weights and the record.

    Raises:
        ConfigError: ``source`` does not match its record, or ``path`` holds another baseline.
    """
    expected = json.loads(source.with_suffix(".json").read_text())["checkpoint_sha256"]
    if not path.with_suffix(".json").exists():
        data = source.read_bytes()
        if (digest := hashlib.sha256(data).hexdigest()) != expected:
            raise ConfigError(
                f"{source} has sha256 {digest}, but its record gives {expected}: it is not the "
                "baseline its record describes. Fix: restore that checkpoint, or name another "
                "--fp32-from."
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, data)
        write_atomic(path.with_suffix(".json"), source.with_suffix(".json").read_bytes())
    state, record = load_baseline(path)  # the copy against its own record
    if record["checkpoint_sha256"] != expected:
        raise ConfigError(
            f"{path} is another baseline (sha256 {record['checkpoint_sha256']}) than "
            f"--fp32-from's {source} ({expected}). Fix: choose a new --out for the rows from "
            f"{source}."
        )
    return state, record


def save_baseline(
    path: Path,
    model: nn.Module,
    test: BatchLoader,
    seed: int,
    training: dict[str, Any],
    **more: Any,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Evaluate the trained FP32 ``model`` on ``test`` and write it as a baseline: the weights
    to ``path`` (``OUT/fp32/<model>.ckpt``, ``{"state_dict"}``), then its record (test
    accuracy, parameters, seed, ``training``, ``more``, the checkpoint's name and sha256) to
    ``path.with_suffix(".json")``, last and atomically, so that a record marks a finished
    baseline (:func:`load_baseline`).
    Returns the weights and the record."""
    record = {
        "model": path.stem,
        "test_acc": fp32_accuracy(model, test),
        "parameters": sum(p.numel() for p in model.parameters()),
        "seed": seed,
        "training": training,
        **more,
    }
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, {"state_dict": state})
    record["checkpoint"] = path.name
    record["checkpoint_sha256"] = file_sha256(path)
    write_atomic(path.with_suffix(".json"), (json.dumps(record, indent=2) + "\n").encode())
    return state, record


# -- quantized rows -----------------------------------------------------------------------------
def _quantized_row(
    model_name: str, row: RowSpec, baseline: _Baseline, data: TierData, options: Options
) -> dict[str, Any]:
    """QAT-train ``row`` from the FP32 weights, lower it and compare fake-quant with engine."""
    start = time.perf_counter()
    config = tier_train_config(options, False)
    recipe = row.recipe(_qat_steps(config, data))
    record: dict[str, Any] = {
        "model": model_name,
        "row": row.name,
        "kind": row.kind,
        "size": row.size,
        "recipe": recipe.to_dict(),
        "seed": options.qat_seed,
        "command": options.command,
    }
    # the draws that prepare makes follow the model's
    model = build_model(model_name, options, options.qat_seed)
    model.load_state_dict(baseline.state)
    teacher = model if config.distill_weight else None  # prepare quantizes a copy of it
    try:
        qat = hwquant.prepare(model.train(), recipe)
    except UnsupportedLayerError as err:
        return {**record, "status": "refused", "reason": str(err)}
    qat = qat.to(device=options.tier.device, memory_format=tier_memory_format(options.tier))
    work = _row_work(options, model_name, row)
    start_record = _row_start(recipe, config, baseline.record["checkpoint_sha256"])
    work.mkdir(parents=True, exist_ok=True)
    write_atomic(work / ROW_START, (json.dumps(start_record, indent=2) + "\n").encode())
    training = fit_model(qat, config, data.qat_train, data, work, options, options.resume, teacher)
    qat.eval()
    qat.cpu()  # lowering reads parameters into NumPy arrays
    deployed = hwquant.lower(qat, next(data.test.iter_from(0))[0][:LOWER_EXAMPLES].cpu())
    qat.to(options.tier.device)
    evaluation = compare(qat, deployed, data.test.iter_from(0))
    fp32_acc = baseline.record["test_acc"]
    return {
        **record,
        "status": "done",
        **evaluation,
        "fp32_acc": fp32_acc,
        "gap_to_fp32_points": round(100 * (fp32_acc - evaluation["engine_acc"]), 2),
        "training": training,
        "wall_seconds": round(time.perf_counter() - start, 1),
    }


def _qat_steps(config: TrainConfig, data: TierData) -> int:
    """The QAT steps of every row: the rows' schedules (freezes, refreshes) are fractions of it."""
    return config.epochs * len(data.qat_train)


def _row_work(options: Options, model_name: str, row: RowSpec) -> Path:
    """The trainer folder of ``row``: ``OUT/work/<model>/<row>/`` (checkpoint and start record)."""
    return options.out / "work" / model_name / row.name


def _row_start(recipe: Recipe, config: TrainConfig, fp32_sha256: str | None) -> dict[str, Any]:
    """What a row's trainer checkpoint continues: its recipe, its training settings and the
    sha256 of the FP32 checkpoint it started from (kept in :data:`ROW_START` beside it)."""
    return {
        "recipe": recipe.to_dict(),
        "train": dataclasses.asdict(config),
        "fp32_checkpoint_sha256": fp32_sha256,
    }


def _fp32_sha256(model_name: str, options: Options) -> str | None:
    """The sha256 of ``model_name``'s baseline as ``OUT/fp32/<model>.json`` records it; None
    before the baseline is trained or copied there."""
    path = options.out / "fp32" / f"{model_name}.json"
    return json.loads(path.read_text()).get("checkpoint_sha256") if path.exists() else None


def _check_row_work(
    model_name: str, row: RowSpec, options: Options, data: TierData, fp32_sha256: str | None
) -> None:
    """Before anything is trained, refuse a pending row's trainer checkpoint (left by a run
    stopped part-way through the row) that this run would not continue exactly: any, without
    ``resume``; with it, one whose start record (:data:`ROW_START`) is missing or differs from
    the row as now defined (recipe, training settings, FP32 weights). A checkpoint that passes
    is continued by the trainer from its last finished epoch: it holds the quantizers' state
    (scales, codebooks, SP2 rows, sample buffers, step counters) with the weights, and the
    random generators.

    Raises:
        ConfigError: names the row's folder, every field that differs, and the fix.
    """
    work = _row_work(options, model_name, row)
    if resume_path(work / CHECKPOINT_NAME) is None:
        return
    if not options.resume:
        raise ConfigError(
            f"{work} holds a trainer checkpoint of row '{row.name}' from an earlier run, and "
            "this run was not started with --resume. Fix: add --resume to continue it, or "
            "delete the folder to train the row from its start."
        )
    path = work / ROW_START
    if not path.exists():
        raise ConfigError(
            f"--resume: {work} holds a trainer checkpoint of row '{row.name}' without the "
            f"{ROW_START} that says what it was trained with (a run from before it was "
            "recorded). Fix: delete the folder to train the row from its start."
        )
    stored = json.loads(path.read_text())
    config = tier_train_config(options, False)
    differ = _recipe_differences(stored["recipe"], row.recipe(_qat_steps(config, data)))
    differ += _training_differences(stored["train"], config)
    differ += json_differences(
        stored["fp32_checkpoint_sha256"], fp32_sha256, "fp32_checkpoint_sha256."
    )
    if differ:
        raise ConfigError(
            f"--resume: the trainer checkpoint in {work} was trained otherwise than row "
            f"'{row.name}' is now: " + "; ".join(differ) + ". Fix: delete the folder to "
            "train the row from its start as now defined."
        )


# -- step time and results ----------------------------------------------------------------------
def _step_time(options: Options) -> dict[str, Any]:
    """FP32-vs-QAT step times of every model of the run (see :mod:`hwquant.app.bench.steptime`):
    those in ``OUT/step_time.json`` when resuming, the others measured and added to it."""
    tier = options.tier
    size = tier.input_size
    path = options.out / "step_time.json"
    stored = json.loads(path.read_text()) if options.resume and path.exists() else {}
    measured = {
        name: measure_step_times(
            build_model(name, options),
            (3, size, size),
            batch=tier.batch_size,
            device=tier.device,
            amp=tier.amp,
            channels_last=tier.channels_last,
            compile_=options.compile,
            rounds=tier.step_time_rounds,
            steps=tier.step_time_steps,
            seed=options.seed,
        )
        for name in options.models
        if name not in stored
    }
    if measured:
        write_atomic(path, (json.dumps(stored | measured, indent=2) + "\n").encode())
    return {name: (stored | measured)[name] for name in options.models}


def _write(
    options: Options,
    data: TierData,
    machine: dict[str, Any],
    started: float,
    step_time: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Gather every finished row and FP32 record under ``options.out`` into results.json and
    results.md; return the results."""
    out = options.out
    fp32 = {
        name: json.loads(path.read_text())
        for name in options.models
        if (path := out / "fp32" / f"{name}.json").exists()
    }
    rows = [
        json.loads(path.read_text())
        for name in options.models
        for row in options.rows
        if (path := out / "rows" / name / f"{row.name}.json").exists()
    ]
    done = [r for r in rows if r["status"] == "done"]
    results = {
        "complete": step_time is not None,
        "fp32": fp32,
        "rows": rows,
        "all_exact": bool(done) and all(r["exact"] for r in done),
        "step_time": step_time,
        "wall_seconds_this_invocation": round(time.perf_counter() - started, 1),
    }
    tier = options.tier
    config = {
        "tier": dataclasses.asdict(tier),
        "data": data.splits.name,
        "train_examples": len(data.splits.train.labels),
        "qat_train_batches_per_epoch": len(data.qat_train),
        "test_examples": len(data.splits.test.labels),
        "models": list(options.models),
        "rows": [r.name for r in options.rows],
        "row_seed": options.qat_seed,
        "fp32_from": None if options.fp32_from is None else str(options.fp32_from),
        "compile": options.compile,
        "threads": torch.get_num_threads(),
    }
    write_result(
        NAME,
        command=options.command,
        seed=options.seed,
        config=config,
        results=results,
        machine=machine,
        path=out / "results.json",
    )
    write_atomic(out / "results.md", render(config, results, machine).encode())
    return results
