"""Faults on purpose: SIGKILLed training resumes exactly, failed writes keep the old
checkpoint, damaged checkpoint and IntModel files are named."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from hwquant.app.config import RunConfig
from hwquant.app.reliability import faults
from hwquant.core.checkpoint import load_checkpoint, save_checkpoint
from hwquant.ir.intmodel import load

TINY_RUN = {
    "model": {"name": "small_cnn", "width": 0.25},
    "data": {"name": "digits", "augment": False},
    "train": {"epochs": 1, "batch_size": 128, "lr": 0.05, "checkpoint_every": 1},
}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A one-epoch digits run config and the final weights of an uninterrupted run."""
    work = tmp_path_factory.mktemp("kills")
    config = work / "tiny.toml"
    config.write_text(RunConfig.from_dict(TINY_RUN).to_toml(), encoding="utf-8")
    attempt = faults.run_training(config, work / "reference")
    assert attempt.returncode == 0, attempt.stderr
    assert not attempt.killed and attempt.saved == 11  # 1437 // 128 steps, then the epoch end
    return config, faults.final_weights(work / "reference")


def test_kills_inside_a_write_and_a_step_resume_exactly(tiny_run, tmp_path: Path) -> None:
    config, reference = tiny_run
    out = tmp_path / "run"
    # between the two renames: last.pt is gone, last.prev.pt holds step 2, the new file is a temp
    first = faults.run_training(config, out, aim="install", target=3)
    assert first.killed and first.landed == "install" and first.saved == 2
    assert not (out / "last.pt").exists()
    assert faults.survivor_step(out) == 2
    # in the middle of a step (gradients computed, weights not yet updated)
    second = faults.run_training(config, out, aim="step", target=4, resume=True)
    assert second.killed and second.landed == "step"
    assert faults.survivor_step(out) == second.saved == 5
    last = faults.run_training(config, out, resume=True)
    assert last.returncode == 0 and not last.killed
    assert faults.same_weights(faults.final_weights(out), reference)


def test_random_kill_trial_loses_nothing(tiny_run, tmp_path: Path) -> None:
    config, reference = tiny_run
    trial = faults.kill_trial(config, tmp_path / "run", reference, random.Random(3), kills=1)
    assert len(trial.kills) == 1 and trial.kills[0].killed
    assert trial.lost == [] and trial.finished and trial.exact


@pytest.mark.parametrize("how", list(faults.FAILED_WRITES))
def test_failed_write_keeps_the_previous_checkpoint(tmp_path: Path, how: str) -> None:
    outcome = faults.failed_write_trial(tmp_path, how, seed=5)
    assert outcome.clear_error, outcome.error
    assert outcome.previous_intact and outcome.leftovers == []
    assert f"'{tmp_path / 'last.pt'}'" in outcome.error and "Fix:" in outcome.error


@pytest.mark.parametrize("how", faults.MUTATIONS)
def test_damaged_checkpoint_is_named(tmp_path: Path, how: str) -> None:
    state = {"model": {"w": torch.arange(64.0)}, "global_step": 3}
    save_checkpoint(tmp_path / "good.pt", state)
    original = (tmp_path / "good.pt").read_bytes()
    rng = random.Random(how)
    for _ in range(5):
        outcome = faults.damage_trial(
            tmp_path / "bad.pt",
            original,
            how,
            rng,
            load_checkpoint,
            lambda loaded: faults.same_state(loaded, state),
        )
        assert outcome.verdict == "detected", outcome


@pytest.fixture(scope="module")
def int_model_file(tmp_path_factory: pytest.TempPathFactory):
    model = faults.sample_int_model()
    path = tmp_path_factory.mktemp("intmodel") / "model.npz"
    model.save(path)
    return model, path.read_bytes()


@pytest.mark.parametrize("how", faults.MUTATIONS)
def test_damaged_int_model_is_named_or_unchanged(int_model_file, tmp_path: Path, how: str) -> None:
    model, original = int_model_file
    rng = random.Random(how)
    verdicts = {
        faults.damage_trial(
            tmp_path / "bad.npz",
            original,
            how,
            rng,
            load,
            lambda loaded: faults.same_int_model(loaded, model),
        ).verdict
        for _ in range(8)
    }
    assert verdicts <= {"detected", "unchanged", "unread"}  # unread: zeros over zeros
    if how in ("truncate", "empty"):
        assert verdicts == {"detected"}


def test_mutations_change_the_bytes() -> None:
    data = bytes(range(256)) * 4
    rng = random.Random(0)
    assert faults.mutate(data, "empty", rng) == b""
    assert len(faults.mutate(data, "truncate", rng)) < len(data)
    assert len(faults.mutate(data, "append", rng)) > len(data)
    flipped = faults.mutate(data, "flip", rng)
    assert sum(bin(a ^ b).count("1") for a, b in zip(data, flipped, strict=True)) == 1
    with pytest.raises(ValueError, match="unknown mutation"):
        faults.mutate(data, "shred", rng)
