"""Reliability report: faults injected on purpose and fuzzed inputs (``make reliability``).

* kills: ``hwquant train`` runs on the digits data (a float and a QAT config, deterministic,
  a checkpoint every step) are SIGKILLed at random points (inside a step, at each stage of a
  checkpoint write, after random delays) and resumed; no completed checkpoint may be lost and
  every run must end with weights equal (``torch.equal``) to an uninterrupted run's;
* failed writes: checkpoint writes failing as on a read-only or full disk, with I/O errors;
* damaged files: checkpoints and IntModel files truncated, bit-flipped, overwritten, extended;
* fuzzing (hypothesis): the config loader (documents and TOML text), the IntModel loader (damaged
  bytes, rewritten headers) and every quantizer of
  :data:`hwquant.app.reliability.fuzz.QUANTIZER_CASES`;
* accumulators: the smallest width with no overflow per layer, on the digits test set, next to
  the worst-case bound.

Writes ``benchmarks/results/reliability.json``. ``--kills`` and ``--fuzz`` set the sizes.
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from benchmarks.common import command_line, write_result
from hwquant.app.config import RunConfig
from hwquant.app.reliability import faults, fuzz
from hwquant.core.checkpoint import load_checkpoint, save_checkpoint
from hwquant.engine.accumulators import accumulator_widths
from hwquant.ir.intmodel import load

CONFIGS: dict[str, dict[str, Any]] = {
    "fp32": {
        "model": {"name": "small_cnn", "width": 0.5},
        "data": {"name": "digits", "augment": False},
        "train": {"epochs": 2, "batch_size": 64, "lr": 0.05, "checkpoint_every": 1},
    },
    "qat-w4a4": {
        "model": {"name": "small_cnn", "width": 0.5},
        "data": {"name": "digits", "augment": True},
        "train": {
            "epochs": 2,
            "batch_size": 64,
            "optimizer": "adam",
            "lr": 0.002,
            "checkpoint_every": 1,
        },
        "recipe": {"weight_bits": 4, "act_bits": 4, "bn_freeze_step": 20},
    },
}
"""Training runs that are killed: small, seconds each on one core."""


def kill_faults(work: Path, rng: random.Random, kills: int) -> dict[str, Any]:
    """Kill-and-resume trials until ``kills`` kills have landed."""
    configs, references = {}, {}
    for name, table in CONFIGS.items():
        configs[name] = work / f"{name}.toml"
        configs[name].write_text(RunConfig.from_dict(table).to_toml(), encoding="utf-8")
        attempt = faults.run_training(configs[name], work / f"{name}-ref")
        if attempt.returncode != 0:
            raise RuntimeError(f"reference run {name} failed: {attempt.stderr[-2000:]}")
        references[name] = faults.final_weights(work / f"{name}-ref")
    aimed, landed, lost = Counter(), Counter(), []
    trials = exact = injected = leftovers = 0
    while injected < kills:
        name = list(CONFIGS)[trials % len(CONFIGS)]
        out = work / f"trial-{trials}"
        trial = faults.kill_trial(
            configs[name], out, references[name], rng, min(rng.randint(3, 6), kills - injected)
        )
        trials += 1
        injected += len(trial.kills)
        exact += trial.exact and trial.finished
        lost += trial.lost
        leftovers += sum(1 for p in out.iterdir() if p.name.endswith(".tmp"))
        aimed.update(a.aim for a in trial.kills)
        landed.update(a.landed for a in trial.kills)
        shutil.rmtree(out)
    return {
        "injected": injected,
        "survived": injected - len(lost),
        "trials": trials,
        "trials_exact_final_weights": exact,
        "aimed_at": dict(aimed),
        "last_event_before_kill": dict(landed),
        "lost": lost,
        "orphan_temporary_files": leftovers,
    }


def write_faults(work: Path, rng: random.Random, count: int) -> dict[str, Any]:
    """``count`` failed checkpoint writes, cycling through :data:`faults.FAILED_WRITES`."""
    outcomes = Counter()
    bad = []
    for index in range(count):
        how = list(faults.FAILED_WRITES)[index % len(faults.FAILED_WRITES)]
        directory = work / f"write-{index}"
        directory.mkdir()
        outcome = faults.failed_write_trial(directory, how, rng.randrange(2**31))
        ok = outcome.clear_error and outcome.previous_intact and not outcome.leftovers
        outcomes[how] += 1
        if not ok:
            bad.append(str(outcome))
        shutil.rmtree(directory)
    return {
        "injected": count,
        "survived": count - len(bad),
        "by_failure": dict(outcomes),
        "bad": bad,
    }


def damage_faults(work: Path, rng: random.Random, count: int) -> dict[str, Any]:
    """``count`` damaged checkpoints and ``count`` damaged IntModel files."""
    state = {"model": {"w": torch.randn(32, 16)}, "global_step": 7, "history": [{"acc": 0.5}]}
    save_checkpoint(work / "good.pt", state)
    model = faults.sample_int_model()
    model.save(work / "good.npz")
    targets: dict[str, tuple[bytes, Callable[[Path], Any], Callable[[Any], bool]]] = {
        "checkpoint": (
            (work / "good.pt").read_bytes(),
            load_checkpoint,
            lambda loaded: faults.same_state(loaded, state),
        ),
        "intmodel": (
            (work / "good.npz").read_bytes(),
            load,
            lambda loaded: faults.same_int_model(loaded, model),
        ),
    }
    report = {}
    for name, (original, loader, equal) in targets.items():
        verdicts, failures = Counter(), []
        for index in range(count):
            how = faults.MUTATIONS[index % len(faults.MUTATIONS)]
            try:
                outcome = faults.damage_trial(
                    work / f"damaged-{name}", original, how, rng, loader, equal
                )
                verdicts[outcome.verdict] += 1
            except AssertionError as exc:
                failures.append(str(exc))
        injected = count - verdicts["unread"]
        report[name] = {
            "injected": injected,
            "survived": injected - len(failures),
            "verdicts": dict(verdicts),
            "failures": failures,
        }
    return report


def run_fuzzer(
    strategy: st.SearchStrategy[Any], oracle: Callable[[Any], str], count: int, seed_value: int
) -> dict[str, Any]:
    """Feed ``count`` inputs drawn from ``strategy`` to ``oracle``; a failure is recorded (with
    hypothesis's shrunk example) and counted as a crash or silent wrong result."""
    verdicts: Counter[str] = Counter()

    @seed(seed_value)
    @settings(
        max_examples=count,
        deadline=None,
        database=None,
        derandomize=False,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def target(value: Any) -> None:
        verdicts[oracle(value)] += 1

    failure, silent = None, False
    try:
        target()
    except Exception as exc:  # hypothesis re-raises the oracle's AssertionError (or a crash)
        failure = "".join(traceback.format_exception_only(exc))[-2000:]
        group = exc.exceptions if isinstance(exc, ExceptionGroup) else (exc,)
        silent = any(isinstance(e, faults.SilentWrongResult) for e in group)
    return {
        "cases": sum(verdicts.values()),
        "verdicts": dict(verdicts),
        "crashes": int(failure is not None and not silent),
        "silent_wrong": int(silent),
        "failure": failure,
    }


def fuzz_all(work: Path, count: int, seed_value: int) -> dict[str, Any]:
    """Every fuzz target at ``count`` inputs."""
    model = faults.sample_int_model()
    model.save(work / "fuzz.npz")
    original = (work / "fuzz.npz").read_bytes()
    x_int = model.quantize_input(
        torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    )
    npz = work / "fuzzed.npz"
    targets: dict[str, tuple[st.SearchStrategy[Any], Callable[[Any], str]]] = {
        "config_document": (fuzz.config_documents(), fuzz.check_config_document),
        "config_text": (fuzz.config_texts(), lambda t: fuzz.check_config_text(t, work / "c.toml")),
        "intmodel_bytes": (
            fuzz.damaged_bytes(original),
            lambda d: fuzz.check_int_model_file(npz, d, model, x_int),
        ),
        "intmodel_header": (
            fuzz.rewritten_headers(original),
            lambda d: fuzz.check_int_model_file(npz, d, model, x_int),
        ),
    }
    for case in fuzz.QUANTIZER_CASES:
        targets[f"quantizer/{case.name}"] = (
            fuzz.quantizer_inputs(),
            lambda value, case=case: fuzz.check_quantizer(case, value),
        )
    report = {}
    for name, (strategy, oracle) in targets.items():
        start = time.perf_counter()
        report[name] = run_fuzzer(strategy, oracle, count, seed_value)
        report[name]["seconds"] = round(time.perf_counter() - start, 1)
        print(f"fuzz {name}: {report[name]['cases']} cases, {report[name]['verdicts']}", flush=True)
    return report


def accumulator_report() -> list[dict[str, Any]]:
    """Smallest accumulator widths of the sample IntModel on the digits test set."""
    from hwquant.data import load_dataset

    model = faults.sample_int_model()
    splits = load_dataset("digits", progress=False)
    images = torch.from_numpy(splits.test.images).permute(0, 3, 1, 2).float()
    x = (images - float(splits.mean[0])) / float(splits.std[0])
    widths = accumulator_widths(model, model.quantize_input(x))
    return [dict(vars(w)) for w in widths]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=100, help="SIGKILLs to inject")
    parser.add_argument("--writes", type=int, default=60, help="failed writes to inject")
    parser.add_argument("--damages", type=int, default=300, help="damaged files of each kind")
    parser.add_argument("--fuzz", type=int, default=10_000, help="inputs per fuzz target")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = random.Random(args.seed)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hwquant-reliability-") as tmp:
        work = Path(tmp)
        fuzzed = fuzz_all(work, args.fuzz, args.seed)
        accumulators = accumulator_report()
        writes = write_faults(work, rng, args.writes)
        damaged = damage_faults(work, rng, args.damages)
        kills = kill_faults(work, rng, args.kills)
    fault_groups = [kills, writes, *damaged.values()]
    totals = {
        "faults_injected": sum(g["injected"] for g in fault_groups),
        "faults_survived": sum(g["survived"] for g in fault_groups),
        "data_lost": len(kills["lost"])
        + (kills["trials"] - kills["trials_exact_final_weights"])
        + sum(len(g["failures"]) for g in damaged.values())
        + len(writes["bad"]),
        "fuzz_cases": sum(f["cases"] for f in fuzzed.values()),
        "crashes": sum(f["crashes"] for f in fuzzed.values()),
        "silent_wrong_results": sum(f["silent_wrong"] for f in fuzzed.values()),
    }
    totals["cases_tried"] = totals["faults_injected"] + totals["fuzz_cases"]
    results = {
        "totals": totals,
        "kills": kills,
        "failed_writes": writes,
        "damaged_files": damaged,
        "fuzz": fuzzed,
        "accumulators_digits_test": accumulators,
        "seconds": round(time.perf_counter() - start, 1),
    }
    path = write_result(
        "reliability", command=command_line(), seed=args.seed, config=vars(args), results=results
    )
    print(f"{totals} -> {path}")


if __name__ == "__main__":
    main()
