"""CIFAR-10: how well the FP32 baseline and finished QAT rows fit their own training images.

A row's gap to its FP32 baseline on the test images splits into how much less well the
quantized model fits the training images and how much worse it generalises from them. With
``train`` and ``test`` the accuracies, in eval mode, on the tier's training images (crop and flip
off) and on the test images,

    gap = test_FP32 − test_row = (train_FP32 − train_row) + (g_row − g_FP32),
    g = train − test   (the generalisation gap),

so a row whose *fit deficit* ``train_FP32 − train_row`` is most of its gap underfits, and more or
better training (length, distillation) is what can close it; a row whose ``g_row`` exceeds
``g_FP32`` overfits, and regularisation (Cutout, say) is. The rows' own logs cannot tell the two
apart: the training accuracy they record is a running mean over an epoch of augmented batches
while the weights move.

The models measured are the ones the rows were evaluated with: each row's final trainer
checkpoint (``OUT/work/<model>/<row>/last.pt`` of a ``hwquant bench reproduce`` run), rebuilt
from the row's stored recipe, and its test accuracy must equal the row's recorded fake-quant
accuracy exactly (and the baseline's its record's), or the row is refused. Rows whose trainer
folder is gone (runs committed without ``work/``) cannot be measured; they are named.

Each ``--runs`` directory's finished rows with a checkpoint (or ``--rows``, which every run
must have finished) are measured and added to the result file (default
``benchmarks/results/cifar10_train_fit.json``), keyed ``<run folder>/<model>/<row>``; the
baseline under ``fp32/<model>/<sha256 prefix>``. An entry already there is kept, not measured
again, if it is of the same row record (its sha256, stored in the entry); another record under
that key (a row trained again, or a run folder of the same name elsewhere) is refused before
anything is measured::

    python -m benchmarks.cifar10_train_fit --threads 1 --runs OUT [OUT ...]
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
from torch import nn

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import ResultRecorder, command_line
from hwquant import prepare
from hwquant.app.bench.evaluate import fp32_accuracy
from hwquant.app.bench.reproduce import (
    Options,
    TierData,
    build_model,
    load_baseline,
    load_tier_data,
    tier_memory_format,
)
from hwquant.app.bench.tiers import Tier, with_tier_defaults
from hwquant.app.config import train_fields_with_defaults
from hwquant.app.train import CHECKPOINT_NAME, load_weights
from hwquant.core.checkpoint import load_checkpoint
from hwquant.core.errors import ConfigError
from hwquant.core.provenance import file_sha256
from hwquant.data import BatchLoader
from hwquant.qat.recipe import Recipe

NAME = "cifar10_train_fit"


@dataclasses.dataclass(frozen=True)
class Row:
    """A finished row of a reproduce run, with its final trainer checkpoint."""

    run: Path
    model: str
    name: str
    record: dict[str, Any]
    record_sha256: str
    """sha256 of the row's JSON file: which training of the row an entry measured."""

    @property
    def key(self) -> str:
        """``<run folder>/<model>/<row>``: the row's entry in the result file."""
        return f"{self.run.name}/{self.model}/{self.name}"

    @property
    def checkpoint(self) -> Path:
        """``OUT/work/<model>/<row>/last.pt``."""
        return self.run / "work" / self.model / self.name / CHECKPOINT_NAME


def run_tier(run: Path) -> tuple[Tier, dict[str, Any]]:
    """The tier and settings that ``run`` (a reproduce ``--out``) recorded.

    Raises:
        ConfigError: ``run`` has no ``settings.json``.
    """
    path = run / "settings.json"
    if not path.is_file():
        raise ConfigError(
            f"{run} has no settings.json: it is not a `hwquant bench reproduce` run. Fix: name "
            "the --out directory of one."
        )
    settings = json.loads(path.read_text())
    stored = with_tier_defaults(settings["tier"])
    return Tier(**{**stored, "models": tuple(stored["models"])}), settings


def finished_rows(run: Path, names: Sequence[str] | None) -> tuple[list[Row], list[str]]:
    """The finished rows of ``run`` (``names``, or every one) that have a trainer checkpoint,
    and the keys of those that have none.

    Raises:
        ConfigError: a row of ``names`` that ``run`` has not finished.
    """
    rows, missing = [], []
    for path in sorted((run / "rows").glob("*/*.json")):
        record = json.loads(path.read_text())
        if (names is not None and path.stem not in names) or record.get("status") != "done":
            continue
        row = Row(run, path.parent.name, path.stem, record, file_sha256(path))
        (rows if row.checkpoint.is_file() else missing).append(row)
    unknown = set(names or ()) - {row.name for row in rows + missing}
    if unknown:
        raise ConfigError(
            f"{run} has no finished row {', '.join(sorted(unknown))}. Fix: name rows whose "
            f"{run}/rows/<model>/<row>.json has status done."
        )
    return rows, [row.key for row in missing]


def row_model(row: Row, options: Options) -> nn.Module:
    """The row's fake-quant model as it ended: its recipe prepared on the model, the final
    trainer checkpoint loaded, in eval mode.

    Raises:
        ConfigError: the checkpoint is not of a finished run of the row's epochs.
    """
    state = load_checkpoint(row.checkpoint)
    config = train_fields_with_defaults(row.record["training"]["config"])
    epochs = config["epochs"]
    if state["epoch"] != epochs or train_fields_with_defaults(state["train_config"]) != config:
        raise ConfigError(
            f"{row.checkpoint} is not the end of row {row.key} (epoch {state['epoch']} of "
            f"{epochs}, or other training settings). Fix: finish the row with --resume first."
        )
    qat = prepare(build_model(row.model, options).train(), Recipe.from_dict(row.record["recipe"]))
    qat = qat.to(device=options.tier.device, memory_format=tier_memory_format(options.tier))
    load_weights(qat, state["model"], row.checkpoint)
    return qat.eval()


def fit(
    model: nn.Module, train: BatchLoader, data: TierData, expected_test: float
) -> dict[str, float]:
    """Training and test accuracy of ``model`` (eval mode), the test accuracy checked against
    the one recorded when the model was evaluated (``expected_test``).

    Raises:
        ConfigError: another test accuracy: the model rebuilt is not the one recorded.
    """
    with torch.no_grad():
        test = fp32_accuracy(model, data.test)
        if test != expected_test:
            raise ConfigError(
                f"the rebuilt model's test accuracy {test} is not the recorded {expected_test}: "
                "it is not the model that was evaluated. Fix: measure the run with the commit "
                "that trained it."
            )
        train_acc = fp32_accuracy(model, train)
    return {"train_acc": train_acc, "test_acc": test, "generalisation_gap": train_acc - test}


def row_entry(row: Row, measured: dict[str, float], baseline: dict[str, float]) -> dict[str, Any]:
    """A row's entry: its accuracies, and its gap split into fit deficit and excess."""
    config = train_fields_with_defaults(row.record["training"]["config"])
    return {
        **measured,
        "test_gap": baseline["test_acc"] - measured["test_acc"],
        "fit_deficit": baseline["train_acc"] - measured["train_acc"],
        "generalisation_excess": measured["generalisation_gap"] - baseline["generalisation_gap"],
        "training": {key: config[key] for key in TRAINING_KEYS},
    }


TRAINING_KEYS = ("epochs", "lr", "distill_weight", "distill_temperature")
"""The row's training settings copied into its entry (Cutout is the tier's ``qat_cutout``)."""


@dataclasses.dataclass(frozen=True)
class Plan:
    """What measuring one run takes."""

    run: Path
    tier: Tier
    settings: dict[str, Any]
    pending: list[Row]
    """Its finished rows with a checkpoint that the result file does not hold yet."""
    missing: list[str]
    """The keys of its finished rows without a checkpoint."""


def plan_run(run: Path, names: Sequence[str] | None, stored: dict[str, Any]) -> Plan:
    """What measuring ``run`` takes, checked against the entries ``stored``.

    Raises:
        ConfigError: a tier this machine cannot evaluate, or whose rows trained on a subset
            of the training images (the ``cpu`` tier, whose loader this benchmark does not
            rebuild); a row stored from another record of the same key.
    """
    tier, settings = run_tier(run)
    if tier.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{run} is a run of tier 'gpu'. Fix: measure it on a machine with a GPU.")
    if tier.qat_train_examples is not None:
        raise ConfigError(
            f"{run}: tier {tier.name!r} trains its rows on a subset of the training images. "
            "Fix: measure a run of a tier that trains on all of them (cpu-full, cpu-long)."
        )
    rows, missing = finished_rows(run, names)
    for row in rows:
        entry = stored.get(row.key)
        if entry is not None and entry["row_record_sha256"] != row.record_sha256:
            raise ConfigError(
                f"the result file holds {row.key} measured from {entry['run']} (row record "
                f"sha256 {entry['row_record_sha256'][:12]}), and {run} has another record of "
                "it (a row trained again, or another run folder of that name). Fix: give this "
                "measurement another --out, or remove that entry from the result file."
            )
    return Plan(run, tier, settings, [row for row in rows if row.key not in stored], missing)


def check_plans(plans: Sequence[Plan]) -> None:
    """Refuse two runs of one invocation that would write one key (same folder name).

    Raises:
        ConfigError: the key and both runs.
    """
    seen: dict[str, Path] = {}
    for plan in plans:
        for row in plan.pending:
            if row.key in seen:
                raise ConfigError(
                    f"{seen[row.key]} and {plan.run} both have row {row.key}: their entries "
                    "would share one key. Fix: measure them into separate --out files."
                )
            seen[row.key] = plan.run


def measure_run(
    plan: Plan, data_root: Path | None, recorder: ResultRecorder, document: dict[str, Any]
) -> None:
    """Measure the baselines and pending rows of ``plan`` into ``document`` (saved after
    each)."""
    run, tier, settings, pending = plan.run, plan.tier, plan.settings, plan.pending
    if not pending:
        return
    results = document["results"]
    options = Options(
        tier, run, tier.models, (), seed=settings["seed"], row_seed=settings.get("row_seed"),
        data_root=data_root,
    )  # fmt: skip
    data = load_tier_data(options)
    splits = data.splits
    train = BatchLoader(
        splits.train, tier.eval_batch, mean=splits.mean, std=splits.std, shuffle=False,
        augment=False, device=tier.device,
    )  # fmt: skip
    for model_name in sorted({row.model for row in pending}):
        state, record = load_baseline(run / "fp32" / f"{model_name}.ckpt")
        key = f"fp32/{model_name}/{record['checkpoint_sha256'][:12]}"
        if key not in results["fp32"]:
            model = build_model(model_name, options)
            model.load_state_dict(state)
            results["fp32"][key] = fit(model, train, data, record["test_acc"])
            recorder.save(document["config"], results)
        for row in (r for r in pending if r.model == model_name):
            measured = fit(row_model(row, options), train, data, row.record["fake_quant_acc"])
            entry = row_entry(row, measured, results["fp32"][key])
            entry |= {
                "fp32": key, "qat_cutout": tier.qat_cutout, "run": str(run),
                "row_record_sha256": row.record_sha256, **recorder.run_stamp(),
            }  # fmt: skip
            results["rows"][row.key] = entry
            recorder.save(document["config"], results)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", nargs="+", type=Path, required=True, metavar="DIR",
                        help="`hwquant bench reproduce` output directories")  # fmt: skip
    parser.add_argument("--rows", nargs="+", default=None, metavar="ROW",
                        help="rows to measure, finished in every run (default: every finished "
                        "row with a checkpoint)")  # fmt: skip
    parser.add_argument("--data-root", type=Path, default=None,
                        help="CIFAR-10 JPEG tarball or folder (default $HWQUANT_DATA or "
                        "../shared/data/cifar10/cifar10-jpeg-q75.tar.gz)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=None, help="result file")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    recorder = ResultRecorder(NAME, command_line(argv), seed=0, path=args.out)
    with recorder.exclusive():
        stored_rows = recorder.stored("rows")
        plans = [plan_run(run, args.rows, stored_rows) for run in args.runs]
        check_plans(plans)
        stored = json.loads(recorder.file.read_text()) if recorder.file.is_file() else {}
        runs = set(stored.get("config", {}).get("runs", [])) | {str(run) for run in args.runs}
        missing = set(recorder.stored("rows_without_checkpoint") or [])
        missing |= {key for plan in plans for key in plan.missing}
        document: dict[str, Any] = {
            "config": {"runs": sorted(runs)},
            "results": {
                "fp32": recorder.stored("fp32"),
                "rows": stored_rows,
                "rows_without_checkpoint": sorted(missing - set(stored_rows)),
            },
        }
        for plan in plans:
            measure_run(plan, args.data_root, recorder, document)
        results = document["results"]
        results["rows_without_checkpoint"] = sorted(missing - set(results["rows"]))
        recorder.save(document["config"], results)
    return results


if __name__ == "__main__":
    main()
