"""Trainer: learning, schedules, non-finite loss and bit-exact resume on a tiny model."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

import hwquant
from hwquant.app.config import TrainConfig
from hwquant.app.train import (
    Trainer,
    build_optimizer,
    build_scheduler,
    distillation_loss,
    lr_factor,
)
from hwquant.core.checkpoint import load_checkpoint, save_checkpoint
from hwquant.core.errors import ConfigError, NonFiniteError
from hwquant.qat.nn import QuantWeightLayer
from hwquant.qat.recipe import Recipe


class TensorLoader:
    """In-memory stand-in of ``hwquant.data.BatchLoader``: seeded per-epoch order and noise."""

    def __init__(
        self, x: torch.Tensor, y: torch.Tensor, batch_size: int, *, shuffle: bool = True
    ) -> None:
        self.x, self.y, self.batch_size, self.shuffle = x, y, batch_size, shuffle
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.x) // self.batch_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def iter_from(self, step: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = torch.Generator().manual_seed(self.epoch)
        order = (
            torch.randperm(len(self.x), generator=g) if self.shuffle else torch.arange(len(self.x))
        )
        for i in range(step, len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            g.manual_seed(1000 * self.epoch + i)  # batch i's noise does not depend on batch i-1
            noise = (
                0.05 * torch.randn(len(idx), self.x.shape[1], generator=g) if self.shuffle else 0
            )
            yield self.x[idx] + noise, self.y[idx]


def make_data(n: int = 256, features: int = 8, classes: int = 3) -> tuple[torch.Tensor, ...]:
    """Linearly separable blobs."""
    g = torch.Generator().manual_seed(0)
    centers = 3 * torch.randn(classes, features, generator=g)
    y = torch.randint(classes, (n,), generator=g)
    return centers[y] + torch.randn(n, features, generator=g), y


def make_model(features: int = 8, classes: int = 3) -> nn.Module:
    """An MLP with BatchNorm (buffers) and Dropout (consumes the torch generator)."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(features, 16),
        nn.BatchNorm1d(16),
        nn.ReLU(),
        nn.Dropout(0.2),
        nn.Linear(16, classes),
    )


def make_trainer(out_dir: Path, config: TrainConfig, **kwargs: object) -> Trainer:
    x, y = make_data()
    loaders = TensorLoader(x[:192], y[:192], 16), TensorLoader(x[192:], y[192:], 64, shuffle=False)
    return Trainer(make_model(), *loaders, config, out_dir, progress=False, **kwargs)


CONFIG = TrainConfig(epochs=3, lr=0.05, weight_decay=1e-3, warmup_epochs=0.5, grad_clip=5.0)


def test_loss_decreases_and_accuracy_is_high(tmp_path: Path) -> None:
    result = make_trainer(tmp_path, CONFIG).fit()
    losses = [record["train_loss"] for record in result.history]
    assert [record["epoch"] for record in result.history] == [1, 2, 3]
    assert losses[-1] < losses[0]
    assert result.final_accuracy > 0.9
    assert result.best_accuracy == max(record["test_acc"] for record in result.history)
    assert result.checkpoint == tmp_path / "last.pt"
    assert load_checkpoint(result.checkpoint)["epoch"] == 3


class Interrupt(Exception):
    """Stands in for a kill signal."""


def test_resume_mid_epoch_is_bit_exact(tmp_path: Path) -> None:
    """A run killed mid-epoch and resumed ends exactly where an uninterrupted run ends."""
    config = dataclasses.replace(CONFIG, optimizer="sgd", checkpoint_every=5)
    reference = make_trainer(tmp_path / "reference", config)
    expected = reference.fit()

    def kill_at_step_19(model: nn.Module, global_step: int) -> None:
        if global_step == 19:  # epoch 2 (12 steps per epoch), after the checkpoint at step 15
            raise Interrupt

    with pytest.raises(Interrupt):
        make_trainer(tmp_path / "run", config, recipe_hooks=[kill_at_step_19]).fit()
    saved = load_checkpoint(tmp_path / "run" / "last.pt")
    assert (saved["epoch"], saved["step_in_epoch"], saved["global_step"]) == (1, 3, 15)

    torch.manual_seed(12345)  # the resumed run must not depend on the generators it finds
    resumed = make_trainer(tmp_path / "run", config, resume=True)
    result = resumed.fit()

    for name, tensor in reference.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name
    expected_opt, resumed_opt = reference.optimizer.state_dict(), resumed.optimizer.state_dict()
    assert expected_opt["param_groups"] == resumed_opt["param_groups"]
    for key, state in expected_opt["state"].items():
        assert torch.equal(state["momentum_buffer"], resumed_opt["state"][key]["momentum_buffer"])
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in expected.history]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in result.history]


def test_resume_without_checkpoint_starts_fresh(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, CONFIG, resume=True)
    assert (trainer.epoch, trainer.global_step) == (0, 0)


def test_resume_with_changed_config_is_refused(tmp_path: Path) -> None:
    make_trainer(tmp_path, dataclasses.replace(CONFIG, epochs=1)).fit()
    with pytest.raises(ConfigError, match=r"epochs: 1 -> 3.*original config"):
        make_trainer(tmp_path, CONFIG, resume=True)


def test_a_checkpoint_from_before_a_train_field_resumes_at_its_default(tmp_path: Path) -> None:
    """A [train] field added after a checkpoint was written counts at its default there (the
    behaviour from before it): the run resumes; a value other than the default is refused."""
    config = dataclasses.replace(CONFIG, epochs=1)
    make_trainer(tmp_path, config).fit()
    state = load_checkpoint(tmp_path / "last.pt")
    del state["train_config"]["distill_weight"], state["train_config"]["distill_temperature"]
    save_checkpoint(tmp_path / "last.pt", state)
    assert make_trainer(tmp_path, config, resume=True).epoch == 1
    with pytest.raises(ConfigError, match=r"distill_temperature: 1\.0 -> 2\.0"):
        make_trainer(tmp_path, dataclasses.replace(config, distill_temperature=2.0), resume=True)


def test_non_finite_loss_names_the_step(tmp_path: Path) -> None:
    def poison(model: nn.Module, global_step: int) -> None:
        if global_step == 14:
            with torch.no_grad():
                model[0].weight.fill_(math.nan)

    trainer = make_trainer(tmp_path, CONFIG, recipe_hooks=[poison])
    with pytest.raises(NonFiniteError, match=r"epoch 2, step 3 \(global step 15\).*lower train.lr"):
        trainer.fit()


def lr_curve(schedule: str, warmup_epochs: float = 0.0) -> list[float]:
    """The learning rate of every step of a 4-epoch, 25-step-per-epoch run."""
    config = TrainConfig(epochs=4, lr=0.2, schedule=schedule, warmup_epochs=warmup_epochs)
    optimizer = build_optimizer(nn.Linear(2, 2), config)
    scheduler = build_scheduler(optimizer, config, steps_per_epoch=25)
    lrs = []
    for _ in range(100):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_cosine_warms_up_then_decays_to_near_zero() -> None:
    lrs = lr_curve("cosine", warmup_epochs=1)
    assert lrs[0] == pytest.approx(0.2 / 25)
    assert max(lrs) == pytest.approx(0.2) == lrs[24]
    assert all(a >= b for a, b in itertools.pairwise(lrs[24:]))
    assert lrs[-1] < 1e-3


def test_onecycle_peaks_at_the_configured_lr() -> None:
    lrs = lr_curve("onecycle")
    peak = max(range(100), key=lrs.__getitem__)
    assert lrs[peak] == pytest.approx(0.2)
    assert peak == 30  # 30% of the run when warmup_epochs is 0
    assert lrs[0] == pytest.approx(0.2 / 25)
    assert lrs[-1] < 0.2 / 1000


def test_constant_stays_at_the_configured_lr() -> None:
    assert lr_curve("constant") == [pytest.approx(0.2)] * 100


def test_weight_decay_spares_biases_and_norms() -> None:
    optimizer = build_optimizer(make_model(), CONFIG)
    decayed, spared = optimizer.param_groups
    assert decayed["weight_decay"] == CONFIG.weight_decay
    assert [p.ndim for p in decayed["params"]] == [2, 2]
    assert spared["weight_decay"] == 0.0
    assert all(p.ndim == 1 for p in spared["params"])


@pytest.mark.parametrize(("freeze", "warns"), [(36, True), (35, False), (None, False)])
def test_a_bn_freeze_after_the_run_is_warned_about(tmp_path: Path, freeze, warns) -> None:
    """3 epochs of 12 steps: a freeze at step 36 never happens (the last step is 35)."""
    x, y = make_data()
    qat = hwquant.prepare(make_model(), Recipe(bn_freeze_step=freeze), example_input=x[:4])
    loaders = TensorLoader(x[:192], y[:192], 16), TensorLoader(x[192:], y[192:], 64, shuffle=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Trainer(qat, *loaders, CONFIG, tmp_path, progress=False)
    messages = [str(w.message) for w in caught if "bn_freeze_step" in str(w.message)]
    assert len(messages) == int(warns)
    if warns:
        assert "36 remaining training steps" in messages[0] and "bn_freeze_step to 7" in messages[0]


def qat_trainer(out_dir: Path, config: TrainConfig, freeze: int | None, **kwargs) -> Trainer:
    """The tiny MLP prepared with BN freezing at step ``freeze``, in a Trainer."""
    x, y = make_data()
    qat = hwquant.prepare(make_model(), Recipe(bn_freeze_step=freeze), example_input=x[:4])
    loaders = TensorLoader(x[:192], y[:192], 16), TensorLoader(x[192:], y[192:], 64, shuffle=False)
    return Trainer(qat, *loaders, config, out_dir, progress=False, **kwargs)


def test_the_lr_is_scaled_on_exactly_the_steps_with_frozen_bn(tmp_path: Path) -> None:
    """12 steps, BN frozen from step 5: steps 5..11 run at ρ times the schedule's rate."""
    config = dataclasses.replace(CONFIG, epochs=1, bn_freeze_lr_factor=0.25)
    seen: list[tuple[int, float, bool]] = []
    trainers: list[Trainer] = []

    def record(model: nn.Module, step: int) -> None:
        layer = next(m for m in model.modules() if isinstance(m, QuantWeightLayer) and m.bn)
        seen.append((step, trainers[0].optimizer.param_groups[0]["lr"], layer.bn_frozen))

    trainers.append(qat_trainer(tmp_path, config, 5, recipe_hooks=[record]))
    trainers[0].fit()
    warmup = round(config.warmup_epochs * 12)
    assert [frozen for _, _, frozen in seen] == [step >= 5 for step in range(12)]
    assert [lr for _, lr, _ in seen] == [
        config.lr * (lr_factor("cosine", step, 12, warmup) * (0.25 if step >= 5 else 1.0))
        for step in range(12)
    ]


def test_a_freeze_made_by_a_hook_gets_the_factor_from_its_own_step(tmp_path: Path) -> None:
    config = dataclasses.replace(CONFIG, epochs=1, bn_freeze_lr_factor=0.25)
    lrs: list[float] = []
    trainers: list[Trainer] = []

    def freeze_at_5(model: nn.Module, step: int) -> None:
        if step == 5:
            hwquant.freeze_bn(model)

    def record(model: nn.Module, args: tuple) -> None:  # each training forward's lr
        if model.training:
            lrs.append(trainers[0].optimizer.param_groups[0]["lr"])

    trainers.append(qat_trainer(tmp_path, config, 9, recipe_hooks=[freeze_at_5]))
    trainers[0].module.register_forward_pre_hook(record)
    trainers[0].fit()
    warmup = round(config.warmup_epochs * 12)
    assert lrs == [
        config.lr * (lr_factor("cosine", step, 12, warmup) * (0.25 if step >= 5 else 1.0))
        for step in range(12)
    ]


@pytest.mark.parametrize("freeze", [14, 17])  # before and after the checkpoint at step 15
def test_a_run_with_the_freeze_lr_factor_resumes_exactly(tmp_path: Path, freeze: int) -> None:
    """Killed after the checkpoint at step 15 and resumed, BN frozen from step ``freeze``."""
    config = dataclasses.replace(CONFIG, checkpoint_every=5, bn_freeze_lr_factor=0.5)
    reference = qat_trainer(tmp_path / "reference", config, freeze)
    reference.fit()

    def kill_at_step_19(model: nn.Module, global_step: int) -> None:
        if global_step == 19:
            raise Interrupt

    with pytest.raises(Interrupt):
        qat_trainer(tmp_path / "run", config, freeze, recipe_hooks=[kill_at_step_19]).fit()
    resumed = qat_trainer(tmp_path / "run", config, freeze, resume=True)
    resumed.fit()
    for name, tensor in reference.module.state_dict().items():
        assert torch.equal(tensor, resumed.module.state_dict()[name]), name
    assert (
        reference.optimizer.state_dict()["param_groups"]
        == (resumed.optimizer.state_dict()["param_groups"])
    )


def test_the_freeze_lr_factor_is_refused_where_no_bn_freezes(tmp_path: Path) -> None:
    config = dataclasses.replace(CONFIG, bn_freeze_lr_factor=0.5)
    with pytest.raises(ConfigError, match=r"bn_freeze_lr_factor = 0\.5 applies .* Fix: set"):
        make_trainer(tmp_path, config)  # a float model
    for freeze in (None, 36):  # never, or after the run's last step (35)
        with pytest.raises(ConfigError, match=r"bn_freeze_lr_factor = 0\.5 .* 36 remaining"):
            qat_trainer(tmp_path, config, freeze)
    qat_trainer(tmp_path, config, 35)  # the last step runs frozen: accepted
    with pytest.raises(ConfigError, match=r"bn_freeze_lr_factor=0 is out of range"):
        TrainConfig(bn_freeze_lr_factor=0)


def test_distillation_needs_a_teacher_and_a_teacher_needs_distillation(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"distill_weight = 0\.5 needs a teacher"):
        make_trainer(tmp_path, dataclasses.replace(CONFIG, distill_weight=0.5))
    with pytest.raises(ConfigError, match=r"distill_weight = 0\.0 with a teacher"):
        make_trainer(tmp_path, CONFIG, teacher=make_model())
    with pytest.raises(ConfigError, match=r"distill_weight=1\.5"):
        TrainConfig(distill_weight=1.5)


def test_distillation_loss_is_the_weighted_sum_of_its_terms() -> None:
    """``(1 − λ)·CE + λ·T²·KL``, KL(t ‖ s) = Σ p_t·(log p_t − log p_s), computed by hand."""
    s = torch.tensor([[1.0, -0.5, 0.2], [0.3, 0.3, 2.0]])
    t = torch.tensor([[0.5, 0.1, -1.0], [1.0, -2.0, 0.0]])
    ce = torch.tensor(0.7)
    config = TrainConfig(distill_weight=0.25, distill_temperature=2.0)
    p_t, log_t, log_s = (t / 2).softmax(1), (t / 2).log_softmax(1), (s / 2).log_softmax(1)
    kl = (p_t * (log_t - log_s)).sum(1).mean()
    expected = 0.75 * ce + 0.25 * 4.0 * kl
    assert math.isclose(float(distillation_loss(ce, s, t, config)), float(expected), rel_tol=1e-6)


def test_a_student_distils_towards_its_teacher(tmp_path: Path) -> None:
    """Pure distillation (λ = 1) from a trained teacher: the student's predictions come to agree
    with the teacher's on the test set."""
    teacher = make_trainer(tmp_path / "teacher", CONFIG).fit()
    trained = load_checkpoint(teacher.checkpoint)["model"]
    model = make_model()
    model.load_state_dict(trained)
    config = dataclasses.replace(CONFIG, distill_weight=1.0, distill_temperature=2.0)
    student = make_trainer(tmp_path / "student", config, teacher=model)
    assert student.fit().final_accuracy > 0.9
    assert not model.training and all(p.grad is None for p in model.parameters())
    assert all(torch.equal(t, trained[name]) for name, t in model.state_dict().items())
    x = make_data()[0][192:]
    with torch.no_grad():
        agree = student.module.eval()(x).argmax(1) == model.eval()(x).argmax(1)
    assert agree.float().mean() > 0.95


SWA = dataclasses.replace(CONFIG, schedule="constant", warmup_epochs=0.0)


def test_swa_ends_on_the_mean_of_the_last_epochs_weights_with_bn_recomputed(
    tmp_path: Path,
) -> None:
    """With swa_epochs = 2 of 3 the weights are the mean of those a plain run has after epochs 2
    and 3 (the averaging does not change the training), the BN statistics are recomputed for
    them, and the last epoch's test accuracy is the averaged model's."""
    ends = []
    for epochs in (2, 3):
        plain = make_trainer(tmp_path / f"plain{epochs}", dataclasses.replace(SWA, epochs=epochs))
        plain.fit()
        ends.append(copy.deepcopy(plain.module.state_dict()))
    averaged = make_trainer(tmp_path / "swa", dataclasses.replace(SWA, swa_epochs=2))
    result = averaged.fit()
    weights = averaged.module.state_dict()
    for name, param in averaged.module.named_parameters():
        torch.testing.assert_close(param.detach(), (ends[0][name] + ends[1][name]) / 2)
    assert not torch.equal(weights["1.running_mean"], ends[1]["1.running_mean"])
    assert int(weights["1.num_batches_tracked"]) == len(averaged.train_loader)  # one pass
    assert result.final_accuracy == averaged.evaluate(averaged.test_loader)
    saved = load_checkpoint(result.checkpoint)
    assert all(torch.equal(saved["model"][k], v) for k, v in weights.items())


def test_swa_resumes_exactly_and_is_refused_for_a_qat_model(tmp_path: Path) -> None:
    """A run stopped inside the averaged epochs resumes its average from the checkpoint and ends
    where an uninterrupted run ends; a QAT model has no average and is refused by name."""
    config = dataclasses.replace(SWA, swa_epochs=2, checkpoint_every=5)
    reference = make_trainer(tmp_path / "reference", config)
    reference.fit()

    def kill_at_step_31(model: nn.Module, global_step: int) -> None:
        if global_step == 31:  # epoch 3, after the checkpoint at step 30 (epoch 2 averaged)
            raise Interrupt

    with pytest.raises(Interrupt):
        make_trainer(tmp_path / "run", config, recipe_hooks=[kill_at_step_31]).fit()
    resumed = make_trainer(tmp_path / "run", config, resume=True)
    resumed.fit()
    for name, tensor in reference.module.state_dict().items():
        assert torch.equal(tensor, resumed.module.state_dict()[name]), name
    qat = hwquant.prepare(make_model(), Recipe())
    x, y = make_data()
    loader = TensorLoader(x, y, 16)
    with pytest.raises(ConfigError, match=r"swa_epochs = 2 averages float weights.*QAT model"):
        Trainer(qat, loader, loader, config, tmp_path / "qat", progress=False)
