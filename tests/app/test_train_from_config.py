"""``train_from_config`` wiring, with stand-ins for the data, model-zoo and prepare modules."""

from __future__ import annotations

import copy
import dataclasses
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from hwquant.app.config import DataConfig, ModelConfig, RunConfig, TrainConfig, load_config
from hwquant.app.train import train_from_config
from hwquant.core.checkpoint import load_checkpoint, save_checkpoint
from hwquant.core.errors import ConfigError, FileFormatError
from hwquant.qat.recipe import Recipe


class FakeLoader:
    """Serves a whole uint8 NHWC split as normalised NCHW batches in a fixed order."""

    def __init__(self, data: types.SimpleNamespace, batch_size: int, **kwargs: object) -> None:
        images = torch.from_numpy(data.images).permute(0, 3, 1, 2).float() / 255
        self.x = (images - 0.5) / 0.25
        self.y = torch.from_numpy(data.labels)
        self.batch_size = batch_size

    def __len__(self) -> int:
        return len(self.x) // self.batch_size

    def set_epoch(self, epoch: int) -> None:
        pass

    def iter_from(self, step: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for i in range(step, len(self)):
            batch = slice(i * self.batch_size, (i + 1) * self.batch_size)
            yield self.x[batch], self.y[batch]


def fake_splits(name: str, root: str | None, *, progress: bool) -> types.SimpleNamespace:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 96)
    images = (labels[:, None, None, None] * 200 + rng.integers(0, 50, (96, 6, 6, 1))).astype(
        np.uint8
    )
    split = types.SimpleNamespace(images=images, labels=labels)
    return types.SimpleNamespace(train=split, test=split, num_classes=2, mean=(0.5,), std=(0.25,))


def fake_build(
    name: str, *, num_classes: int, in_channels: int, input_size: int, width: float
) -> nn.Module:
    assert (name, num_classes, in_channels, input_size, width) == ("tiny", 2, 1, 6, 1.0)
    return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * input_size**2, num_classes))


Calls = list[tuple[dict[str, torch.Tensor], Recipe]]


@pytest.fixture
def prepared(monkeypatch: pytest.MonkeyPatch) -> Calls:
    """Install the stand-in modules; returns the weights and recipe ``prepare`` was given."""
    calls: Calls = []

    def prepare(model: nn.Module, recipe: Recipe) -> nn.Module:
        calls.append((copy.deepcopy(model.state_dict()), recipe))
        return model

    modules = {
        "hwquant.data": {"BatchLoader": FakeLoader, "load_dataset": fake_splits},
        "hwquant.models": {"build": fake_build},
        "hwquant.qat.prepare": {"prepare": prepare},
    }
    for name, attributes in modules.items():
        monkeypatch.setitem(sys.modules, name, types.SimpleNamespace(**attributes))
    return calls


def run_config(out_dir: Path, **kwargs: object) -> RunConfig:
    return RunConfig(
        out_dir=str(out_dir),
        model=ModelConfig(name="tiny", **kwargs),  # type: ignore[arg-type]
        data=DataConfig(name="fake", batch_size_eval=32),
        train=TrainConfig(epochs=2, batch_size=16, lr=0.05),
    )


def test_float_run_then_qat_from_its_weights(tmp_path: Path, prepared: Calls) -> None:
    fp32 = run_config(tmp_path / "fp32")
    result = train_from_config(fp32, progress=False)
    assert result.final_accuracy == 1.0
    assert prepared == []  # no recipe: float training
    assert load_config(tmp_path / "fp32" / "config.toml") == fp32
    saved = load_checkpoint(result.checkpoint)
    assert saved["run_config"] == fp32.to_dict()

    recipe = Recipe(weight_bits=2)
    qat = dataclasses.replace(
        run_config(tmp_path / "qat", init=str(result.checkpoint)), recipe=recipe
    )
    train_from_config(qat, progress=False)
    [(weights, used_recipe)] = prepared
    assert used_recipe == recipe
    assert all(torch.equal(weights[name], saved["model"][name]) for name in weights)


def test_init_takes_a_bench_baseline_and_refuses_a_file_without_weights(
    tmp_path: Path, prepared: Calls
) -> None:
    """model.init reads the ``state_dict`` of a ``hwquant bench reproduce`` baseline (the
    committed FP32 checkpoints) as it reads a last.pt's ``model``; a checkpoint with neither is
    refused, naming both."""
    fp32 = train_from_config(run_config(tmp_path / "fp32"), progress=False)
    baseline = tmp_path / "resnet.ckpt"
    save_checkpoint(baseline, {"state_dict": load_checkpoint(fp32.checkpoint)["model"]})
    qat = dataclasses.replace(run_config(tmp_path / "qat", init=str(baseline)), recipe=Recipe())
    train_from_config(qat, progress=False)
    [(weights, _)] = prepared
    saved = load_checkpoint(fp32.checkpoint)["model"]
    assert all(torch.equal(weights[name], saved[name]) for name in weights)
    empty = tmp_path / "empty.pt"
    save_checkpoint(empty, {"history": []})
    with pytest.raises(FileFormatError, match=r"empty.pt' holds no model weights.*state_dict"):
        train_from_config(run_config(tmp_path / "run", init=str(empty)), progress=False)


def test_init_checkpoint_must_fit_the_model(tmp_path: Path, prepared: Calls) -> None:
    other = tmp_path / "other.pt"
    save_checkpoint(other, {"model": {"weight": torch.zeros(3)}})
    with pytest.raises(ConfigError, match=r"weights in '.*other.pt' do not fit the model"):
        train_from_config(run_config(tmp_path / "run", init=str(other)), progress=False)


def train_cli(config: RunConfig, tmp_path: Path, *extra: str) -> int:
    """``hwquant train`` on ``config`` (written to a file) with ``extra`` arguments."""
    from hwquant.cli import main

    path = tmp_path / "run.toml"
    path.write_text(config.to_toml())
    return main(["train", "--config", str(path), "--no-progress", *extra])


def test_out_that_is_a_file_is_refused_before_training(
    tmp_path: Path, prepared: Calls, capsys: pytest.CaptureFixture[str]
) -> None:
    afile = tmp_path / "afile"
    afile.write_text("mine")
    assert train_cli(run_config(tmp_path / "run"), tmp_path, "--out", str(afile)) == 2
    err = capsys.readouterr().err
    assert f"'{afile}' is a file, not a directory" in err
    assert train_cli(run_config(tmp_path / "run"), tmp_path, "--out", str(afile / "x")) == 2
    assert f"'{afile / 'x'}' cannot be made (Not a directory)" in capsys.readouterr().err
    assert afile.read_text() == "mine"


def test_out_that_cannot_be_written_is_refused_before_training(
    tmp_path: Path, prepared: Calls, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hwquant.core.lock as lock

    def read_only(path: object, *args: object) -> int:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(lock.os, "open", read_only)
    with pytest.raises(ConfigError, match=r"cannot be written \(Permission denied\)"):
        train_from_config(run_config(tmp_path / "run"), progress=False)
    assert not (tmp_path / "run" / "config.toml").exists()


def test_a_finished_run_is_not_overwritten_without_resume(
    tmp_path: Path, prepared: Calls, capsys: pytest.CaptureFixture[str]
) -> None:
    config = run_config(tmp_path / "run")
    train_from_config(config, progress=False)
    before = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()}
    assert train_cli(config, tmp_path) == 2
    err = capsys.readouterr().err
    assert "already holds a run (last.pt); a new run would overwrite it" in err
    assert "Fix: add --resume" in err
    assert {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()} == before
    assert train_cli(config, tmp_path, "--resume") == 0  # the finished run, left as it is


def test_resume_with_another_recipe_names_the_differing_fields(
    tmp_path: Path, prepared: Calls, capsys: pytest.CaptureFixture[str]
) -> None:
    w4a4 = dataclasses.replace(
        run_config(tmp_path / "run"), recipe=Recipe(weight_bits=4, act_bits=4)
    )
    train_from_config(w4a4, progress=False)
    w2a2 = dataclasses.replace(w4a4, recipe=Recipe(weight_bits=2, act_bits=2))
    assert train_cli(w2a2, tmp_path, "--resume") == 2
    err = capsys.readouterr().err
    assert "recipe.act_bits: 4 -> 2; recipe.weight_bits: 4 -> 2" in err
    float_run = dataclasses.replace(w4a4, recipe=None)
    with pytest.raises(ConfigError, match=r"recipe\.act_bits: 4 -> 'absent'"):
        train_from_config(float_run, progress=False, resume=True)


def test_two_runs_cannot_write_one_directory(tmp_path: Path, prepared: Calls) -> None:
    from hwquant.core.lock import DirectoryLockedError, directory_lock

    out = tmp_path / "run"
    out.mkdir()
    held = directory_lock(out, "the run directory", "another `hwquant train`")
    refused = pytest.raises(DirectoryLockedError, match="in use by another `hwquant train`")
    with held, refused:
        train_from_config(run_config(out), progress=False)
    assert list(out.iterdir()) == [out / ".hwquant.lock"]
    train_from_config(run_config(out), progress=False)  # the lock went with its holder


def test_qat_distils_from_its_float_weights(
    tmp_path: Path, prepared: Calls, monkeypatch: pytest.MonkeyPatch
) -> None:
    """train.distill_weight > 0 makes the float model (model.init's weights, before prepare) the
    teacher, left untrained; a run without a QAT model or without float weights is refused."""
    fp32 = train_from_config(run_config(tmp_path / "fp32"), progress=False)
    distil = dataclasses.replace(TrainConfig(epochs=2, batch_size=16, lr=0.05), distill_weight=0.5)
    float_run = dataclasses.replace(run_config(tmp_path / "float"), train=distil)
    with pytest.raises(ConfigError, match=r"\[recipe\] is missing"):
        train_from_config(float_run, progress=False)
    no_init = dataclasses.replace(float_run, recipe=Recipe())
    with pytest.raises(ConfigError, match=r"model\.init is missing"):
        train_from_config(no_init, progress=False)

    teachers: list[nn.Module] = []
    student_of = sys.modules["hwquant.qat.prepare"].prepare

    def prepare(model: nn.Module, recipe: Recipe) -> nn.Module:
        teachers.append(model)
        return copy.deepcopy(student_of(model, recipe))

    monkeypatch.setattr(sys.modules["hwquant.qat.prepare"], "prepare", prepare)
    qat = dataclasses.replace(
        run_config(tmp_path / "qat", init=str(fp32.checkpoint)), train=distil, recipe=Recipe()
    )
    assert train_from_config(qat, progress=False).final_accuracy == 1.0
    [teacher] = teachers
    saved = load_checkpoint(fp32.checkpoint)["model"]
    assert all(torch.equal(p, saved[name]) for name, p in teacher.state_dict().items())


def test_a_resumed_distilling_run_keeps_its_teacher(tmp_path: Path, prepared: Calls) -> None:
    """A recipe field the checkpoint predates counts at its default; a distilling run may not
    resume with other float weights (model.init is its teacher), a plain QAT run may."""
    fp32 = train_from_config(run_config(tmp_path / "fp32"), progress=False).checkpoint
    other = tmp_path / "other.pt"
    other.write_bytes(fp32.read_bytes())
    distil = dataclasses.replace(TrainConfig(epochs=1, batch_size=16, lr=0.05), distill_weight=0.5)
    qat = dataclasses.replace(
        run_config(tmp_path / "qat", init=str(fp32)), train=distil, recipe=Recipe()
    )
    checkpoint = train_from_config(qat, progress=False).checkpoint
    state = load_checkpoint(checkpoint)
    del state["run_config"]["recipe"]["act_scales"]
    save_checkpoint(checkpoint, state)
    train_from_config(qat, progress=False, resume=True)  # finished, nothing to train
    moved = dataclasses.replace(qat, model=ModelConfig(name="tiny", init=str(other)))
    with pytest.raises(ConfigError, match=r"model\.init: .*fp32.* -> .*other\.pt"):
        train_from_config(moved, progress=False, resume=True)
    plain = dataclasses.replace(moved, train=dataclasses.replace(distil, distill_weight=0.0))
    with pytest.raises(ConfigError, match=r"distill_weight: 0\.5 -> 0\.0"):
        train_from_config(plain, progress=False, resume=True)


def test_the_data_table_reaches_the_training_batches_and_a_resume_keeps_it(
    tmp_path: Path, prepared: Calls, monkeypatch: pytest.MonkeyPatch
) -> None:
    """data.augment and data.cutout reach the training loader (the test loader gets neither),
    and a resume with another cutout is refused: it would train on other batches."""
    made: list[dict[str, object]] = []

    class Recording(FakeLoader):
        def __init__(self, data: types.SimpleNamespace, batch_size: int, **kwargs: object) -> None:
            made.append(kwargs)
            super().__init__(data, batch_size, **kwargs)

    monkeypatch.setattr(sys.modules["hwquant.data"], "BatchLoader", Recording)
    data = DataConfig(name="fake", batch_size_eval=32, cutout=3)
    config = dataclasses.replace(run_config(tmp_path / "run"), data=data)
    train_from_config(config, progress=False)
    train_kwargs, test_kwargs = made
    assert (train_kwargs["augment"], train_kwargs["cutout"]) == (True, 3)
    assert test_kwargs["augment"] is False and "cutout" not in test_kwargs
    other = dataclasses.replace(config, data=dataclasses.replace(data, cutout=0))
    with pytest.raises(ConfigError, match=r"data\.cutout: 3 -> 0"):
        train_from_config(other, progress=False, resume=True)


def test_swa_with_a_recipe_is_refused_before_any_data_is_read(
    tmp_path: Path, prepared: Calls, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_data(*args: object, **kwargs: object) -> None:
        raise AssertionError("the data was read")

    monkeypatch.setattr(sys.modules["hwquant.data"], "load_dataset", no_data)
    swa = TrainConfig(epochs=2, batch_size=16, lr=0.05, swa_epochs=1)
    config = dataclasses.replace(run_config(tmp_path / "run"), train=swa, recipe=Recipe())
    with pytest.raises(ConfigError, match=r"swa_epochs = 1 averages float weights.*QAT model"):
        train_from_config(config, progress=False)
