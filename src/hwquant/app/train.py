"""Training loop for float and quantization-aware models, with exact resume.

:class:`Trainer` runs SGD or Adam under a per-batch learning-rate schedule, evaluates after every
epoch and writes ``out_dir/last.pt`` atomically (every ``checkpoint_every`` steps and at each epoch
end). The checkpoint holds everything the next step depends on: weights and buffers, optimizer
and scheduler state, the position in the epoch, the running epoch statistics and the Python,
NumPy and torch generator states. With a loader whose ``iter_from(step)`` replays the epoch from
any step, a run stopped anywhere and resumed ends with weights bit-identical to a run that never
stopped. :func:`train_from_config` builds model, data and recipe from a :class:`RunConfig`.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import os
import random
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from torch.optim.swa_utils import AveragedModel, update_bn

from hwquant.app.config import (
    DataConfig,
    RunConfig,
    Schedule,
    TrainConfig,
    train_fields_with_defaults,
)
from hwquant.core.checkpoint import load_checkpoint, resume_path, save_checkpoint
from hwquant.core.distributed import (
    DistContext,
    all_reduce_sum,
    broadcast_state,
    process_group,
    wrap,
)
from hwquant.core.errors import ConfigError, DataError, FileFormatError, NonFiniteError
from hwquant.core.lock import directory_lock, prepare_directory
from hwquant.qat.nn import QuantWeightLayer
from hwquant.qat.prepare import bn_frozen
from hwquant.qat.recipe import Recipe, bn_freeze_step_for

StepHook = Callable[[nn.Module, int], None]
"""Called as ``hook(model, global_step)`` before every training step (must be stateless)."""

CHECKPOINT_NAME = "last.pt"
CONFIG_NAME = "config.toml"
OUT_OPTION = "the run directory (--out or out_dir)"
ONECYCLE_RISE = 0.3
"""Fraction of the run one-cycle spends rising when ``warmup_epochs`` is 0 (torch's default)."""
ONECYCLE_START, ONECYCLE_END = 1 / 25, 1 / 25e4
"""One-cycle's first and last learning rate, as fractions of the peak (torch's defaults)."""


class BatchSource(Protocol):
    """What the trainer needs of a loader (:class:`hwquant.data.BatchLoader` is one)."""

    def __len__(self) -> int:
        """Batches per epoch."""
        ...

    def set_epoch(self, epoch: int) -> None:
        """Select the order and augmentation of epoch ``epoch``."""
        ...

    def iter_from(self, step: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(inputs, labels)`` batches of the current epoch from batch ``step`` on."""
        ...


@dataclass(frozen=True)
class TrainResult:
    """What :meth:`Trainer.fit` returns."""

    history: list[dict[str, float]]
    """Per epoch: epoch, train_loss, train_acc, test_acc, lr (at its end), seconds."""
    best_accuracy: float
    """Highest test accuracy of any epoch."""
    best_epoch: int
    """Epoch (from 1) of the highest test accuracy."""
    final_accuracy: float
    """Test accuracy after the last epoch."""
    checkpoint: Path
    """The last checkpoint (the final weights)."""


@dataclass
class _EpochStats:
    """Running sums over the steps of the current epoch (checkpointed with it)."""

    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    seconds: float = 0.0


def seed_everything(seed: int) -> None:
    """Seed the Python, NumPy and torch (all devices) generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool) -> Iterator[None]:
    """Within the block, use only deterministic kernels (warning where none exists)."""
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
    )
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.benchmark = before[2]


def capture_rng_state() -> dict[str, Any]:
    """The state of every generator, as tensors and primitives (``weights_only`` loadable)."""
    numpy_state = np.random.get_state(legacy=False)
    numpy_state["state"]["key"] = numpy_state["state"]["key"].tolist()
    state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Put every generator back into a state from :func:`capture_rng_state`."""
    random.setstate(state["python"])
    numpy_state = copy.deepcopy(state["numpy"])
    numpy_state["state"]["key"] = np.asarray(numpy_state["state"]["key"], dtype=np.uint32)
    np.random.set_state(numpy_state)
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def lr_factor(schedule: Schedule, step: int, total: int, warmup: int) -> float:
    """Learning rate of optimizer step ``step`` (of ``total``) as a fraction of the peak.

    "cosine" and "constant" rise linearly over ``warmup`` steps, then follow a half cosine to 0
    or stay at the peak. "onecycle" rises along a half cosine from 1/25 of the peak over
    ``warmup`` steps, then falls along another to 1/25e4 of it (``OneCycleLR``'s shape).
    """
    step = min(step, total)
    if schedule == "onecycle":
        if step < warmup:
            return _cosine(ONECYCLE_START, 1.0, step / warmup)
        return _cosine(1.0, ONECYCLE_END, (step - warmup) / (total - warmup))
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    return _cosine(1.0, 0.0, (step - warmup) / (total - warmup))


def _cosine(start: float, end: float, fraction: float) -> float:
    return end + (start - end) * (1 + math.cos(math.pi * fraction)) / 2


def distillation_loss(
    cross_entropy: torch.Tensor, logits: torch.Tensor, taught: torch.Tensor, config: TrainConfig
) -> torch.Tensor:
    """``(1 − λ)·CE + λ·T²·KL(softmax(t/T) ‖ softmax(s/T))`` per example, averaged (Hinton et
    al. 2015; the T² keeps the term's gradient scale independent of T).

    >>> s = torch.tensor([[2.0, 0.0]])
    >>> float(distillation_loss(torch.tensor(0.5), s, s, TrainConfig(distill_weight=1.0)))
    0.0
    """
    t, weight = config.distill_temperature, config.distill_weight
    kl = F.kl_div(
        F.log_softmax(logits / t, dim=1),
        F.log_softmax(taught / t, dim=1),
        reduction="batchmean",
        log_target=True,
    )
    return (1 - weight) * cross_entropy + weight * t * t * kl


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD or Adam; weight decay applies to the weight matrices and kernels only."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            is_kernel = name.rsplit(".", 1)[-1] == "weight" and param.ndim > 1
            (decay if is_kernel else no_decay).append(param)
    groups = [
        {"params": params, "weight_decay": wd}
        for params, wd in ((decay, config.weight_decay), (no_decay, 0.0))
        if params
    ]
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, lr=config.lr, betas=(config.momentum, 0.999))
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov)


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    steps_per_epoch: int,
    bn_frozen: Callable[[], bool] = lambda: False,
) -> LambdaLR:
    """The per-batch schedule of ``config`` (see :func:`lr_factor`); step it after every batch.

    The factor of a step whose forward runs with frozen BN statistics (``bn_frozen()``, asked
    when the step's learning rate is set, before its forward) is multiplied by
    ``config.bn_freeze_lr_factor``.
    """
    total = config.epochs * steps_per_epoch
    rise = config.warmup_epochs
    if config.schedule == "onecycle" and rise == 0:
        rise = ONECYCLE_RISE * config.epochs
    warmup = min(round(rise * steps_per_epoch), total - 1)

    rho = config.bn_freeze_lr_factor

    def factor(step: int) -> float:
        frozen = rho if rho != 1 and bn_frozen() else 1.0  # the model is asked only for ρ ≠ 1
        return lr_factor(config.schedule, step, total, warmup) * frozen

    return LambdaLR(optimizer, factor)


class Trainer:
    """Train ``model`` on ``train_loader``, evaluating on ``test_loader`` after every epoch.

    Args:
        model: float or prepared (QAT) network; moved to ``device``.
        train_loader, test_loader: batch sources (see :class:`BatchSource`).
        config: optimizer, schedule and checkpoint settings.
        out_dir: directory of ``last.pt`` (made if missing).
        device: where to train; bf16 autocast runs on CUDA with ``config.amp``, on the CPU with
            ``config.amp`` and ``config.cpu_amp``.
        recipe_hooks: called as ``hook(model, global_step)`` before every step.
        progress: show progress bars (on a terminal, outside CI) and per-epoch lines.
        resume: continue from ``out_dir/last.pt`` (or its previous copy) if there is one.
        run_config: the whole run's config, stored in checkpoints for reference.
        dist: this process's place in a data-parallel run (see :mod:`hwquant.core.distributed`):
            the model is wrapped in DDP, the loaders must be sharded, only rank 0 writes.
        teacher: the float network whose logits the model distils from (``config
            .distill_weight`` > 0; required then, refused otherwise); run in eval mode, under the
            same autocast, without gradients.
    """

    def __init__(
        self,
        model: nn.Module,
        train_loader: BatchSource,
        test_loader: BatchSource,
        config: TrainConfig,
        out_dir: str | Path,
        device: str | torch.device = "cpu",
        *,
        recipe_hooks: Sequence[StepHook] = (),
        progress: bool = True,
        resume: bool = False,
        run_config: RunConfig | None = None,
        dist: DistContext | None = None,
        teacher: nn.Module | None = None,
    ) -> None:
        if len(train_loader) == 0:
            raise DataError("the training loader yields no batches. Fix: use a smaller batch_size.")
        if (teacher is None) != (config.distill_weight == 0):
            raise ConfigError(
                f"train.distill_weight = {config.distill_weight} "
                + ("needs a teacher network. Fix: train a QAT model from float weights "
                   "(model.init), or set distill_weight = 0." if teacher is None else
                   "with a teacher given: the teacher would be unused. Fix: set distill_weight "
                   "> 0, or pass no teacher.")
            )  # fmt: skip
        self.device = torch.device(device)
        self.dist = dist or DistContext()
        self.module = model.to(self.device)  # the model itself; `model` may be its DDP wrapper
        self.teacher = None if teacher is None else teacher.to(self.device).eval()
        self.model = wrap(self.module, self.dist, hasattr(model, "hwquant_recipe"))
        self._ranks_synced = not self.dist.enabled
        self.train_loader, self.test_loader = train_loader, test_loader
        self.config = config
        self.out_dir = Path(out_dir)
        self.recipe_hooks = tuple(recipe_hooks)
        self.run_config = run_config
        self.optimizer = build_optimizer(model, config)
        self.scheduler = build_scheduler(
            self.optimizer, config, len(train_loader), lambda: bn_frozen(self.module)
        )
        self.epoch = self.step_in_epoch = self.global_step = 0
        self.history: list[dict[str, float]] = []
        self._stats = _EpochStats()
        self._rng_state: dict[str, Any] | None = None
        self._tick = 0.0  # time.perf_counter() at the end of the last step
        self._console = Console(stderr=True, quiet=not (progress and self.dist.is_main))
        self._bars = progress and sys.stderr.isatty() and not os.environ.get("CI")
        self._amp = _autocast_enabled(config, self.device)
        self._swa = self._averaged_model(model)
        if resume:
            self._resume()
        self._check_bn_freeze_lr_factor()
        self._warn_if_bn_never_freezes()

    @property
    def checkpoint_path(self) -> Path:
        """``out_dir/last.pt``."""
        return self.out_dir / CHECKPOINT_NAME

    def fit(self) -> TrainResult:
        """Train the remaining epochs and return the per-epoch history."""
        prepare_directory(self.out_dir, OUT_OPTION)
        if self._rng_state is None:
            seed_everything(self.config.seed)
        else:
            restore_rng_state(self._rng_state)
        with deterministic_algorithms(self.config.deterministic), self._progress() as bars:
            while self.epoch < self.config.epochs:
                self._run_epoch(bars)
        return self._result()

    @torch.no_grad()
    def evaluate(self, loader: BatchSource) -> float:
        """Top-1 accuracy of the model on the batches of ``loader.iter_from(0)``."""
        was_training = self.module.training
        self.module.eval()
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        total = 0
        for x, y in loader.iter_from(0):
            x, y = x.to(self.device), y.to(self.device)
            with self._autocast():
                correct += (self.module(x).argmax(1) == y).sum()
            total += y.numel()
        self.module.train(was_training)
        if total == 0:
            raise DataError("the evaluation loader yields no examples. Fix: check the test set.")
        return int(correct) / total

    def _remaining_steps(self) -> int:
        """Training steps left in the run."""
        return self.config.epochs * len(self.train_loader) - self.global_step

    def _bn_steps_to_freeze(self) -> dict[str, int]:
        """Steps before each layer's folded BN statistics freeze (0 once frozen), by layer
        name, for the layers with BN set to freeze."""
        return {
            name: steps for name, layer in self.module.named_modules()
            if isinstance(layer, QuantWeightLayer) and layer.bn is not None
            and (steps := layer.bn_steps_to_freeze()) is not None
        }  # fmt: skip

    def _check_bn_freeze_lr_factor(self) -> None:
        """Refuse ``bn_freeze_lr_factor`` (not 1) where no step of the run left would get it.

        Raises:
            ConfigError: no layer's folded BN statistics are frozen or set to freeze within the
                remaining steps (a float model, no BatchNorm, table units, which normalize
                with batch statistics throughout, or ``recipe.bn_freeze_step`` none or beyond
                the run).
        """
        if self.config.bn_freeze_lr_factor == 1:
            return
        remaining, steps = self._remaining_steps(), self._bn_steps_to_freeze()
        if not steps or min(steps.values()) >= remaining:
            raise ConfigError(
                f"train.bn_freeze_lr_factor = {self.config.bn_freeze_lr_factor} applies from the "
                "step a QAT model's folded BN statistics freeze, and no layer of this model "
                f"freezes within the run's {remaining} remaining steps (a float model, no "
                "BatchNorm, table units, which normalize with batch statistics throughout, or "
                "recipe.bn_freeze_step none or beyond the run). Fix: set bn_freeze_lr_factor = "
                "1, or set recipe.bn_freeze_step within the run."
            )

    def _warn_if_bn_never_freezes(self) -> None:
        """Warn when a QAT model's folded BN statistics are set to freeze after this run ends.

        Until the freeze, every training forward moves the running statistics and with them
        the deployed weights and biases (``s = γ/σ_run`` scales the weights before they are
        quantized), whatever the learning rate: the model evaluated and lowered after the last
        step is then one draw of statistics that still move (docs/llsq.md §1, "The end of a
        run"). ``bn_freeze_step=None`` (never) is taken as meant and not warned about.
        """
        total = self.config.epochs * len(self.train_loader)
        remaining = self._remaining_steps()
        late = [name for name, steps in self._bn_steps_to_freeze().items() if steps >= remaining]
        if remaining > 0 and late:
            warnings.warn(
                f"the folded BN statistics of {len(late)} layer(s) ('{late[0]}', ...) freeze only "
                f"after this run's {remaining} remaining training steps (recipe.bn_freeze_step), "
                "so they move with every batch up to the last step, also at learning rate 0, "
                "and the model evaluated and lowered at the end is one draw of them (docs/"
                f"llsq.md §1). Fix: set recipe.bn_freeze_step to {bn_freeze_step_for(total)} "
                f"(hwquant.qat.recipe.bn_freeze_step_for({total})), or none to keep batch "
                "statistics to the end.",
                stacklevel=3,
            )

    def _run_epoch(self, bars: Progress) -> None:
        """Train the rest of the current epoch, evaluate, record it and checkpoint."""
        task = bars.add_task(
            f"epoch {self.epoch + 1}/{self.config.epochs}",
            total=len(self.train_loader),
            completed=self.step_in_epoch,
            info="",
        )
        self._train_steps(bars, task)
        broadcast_state(self.module)  # ranks evaluate and keep rank 0's buffers (BN statistics)
        self._average_weights()
        test_acc = self.evaluate(self.test_loader)
        bars.remove_task(task)
        stats = self._stats
        record = {
            "epoch": self.epoch + 1,
            "train_loss": stats.loss_sum / stats.seen if stats.seen else math.nan,
            "train_acc": stats.correct / stats.seen if stats.seen else math.nan,
            "test_acc": test_acc,
            "lr": self.optimizer.param_groups[0]["lr"],
            "seconds": stats.seconds + time.perf_counter() - self._tick,
        }
        self.history.append(record)
        self._console.print(
            f"epoch {record['epoch']}/{self.config.epochs}  loss {record['train_loss']:.4f}  "
            f"train {record['train_acc']:.2%}  test {test_acc:.2%}  lr {record['lr']:.3g}  "
            f"{record['seconds']:.1f}s"
        )
        self.epoch += 1
        self.step_in_epoch = 0
        self._stats = _EpochStats()
        self._save()

    def _train_steps(self, bars: Progress, task: Any) -> None:
        """Run the steps of the current epoch from ``step_in_epoch`` on."""
        self.model.train()
        self.train_loader.set_epoch(self.epoch)
        self._tick = time.perf_counter()
        every = self.config.checkpoint_every
        for x, y in self.train_loader.iter_from(self.step_in_epoch):
            for hook in self.recipe_hooks:
                hook(self.module, self.global_step)
            if self.config.bn_freeze_lr_factor != 1:  # a hook may have frozen BN just now
                self._set_scheduled_lr()
            loss, correct, seen = self._step(x.to(self.device), y.to(self.device))
            if not self._ranks_synced:  # quantizers initialised from each rank's own shard
                broadcast_state(self.module)
                self._ranks_synced = True
            now = time.perf_counter()
            self._stats.loss_sum += loss * seen
            self._stats.correct += correct
            self._stats.seen += seen
            self._stats.seconds += now - self._tick
            self._tick = now
            self.step_in_epoch += 1
            self.global_step += 1
            if every and self.global_step % every == 0:
                self._save()
            bars.update(task, advance=1, info=f"loss {loss:.4f}")

    def _set_scheduled_lr(self) -> None:
        """Set every group's learning rate to the schedule's for this step, asked now: the
        schedule set it after the last step, before this step's hooks ran."""
        for group, base, factor in zip(
            self.optimizer.param_groups,
            self.scheduler.base_lrs,
            self.scheduler.lr_lambdas,
            strict=True,
        ):
            group["lr"] = base * factor(self.scheduler.last_epoch)

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, int, int]:
        """One optimizer step; returns the (global) batch's mean loss, number of correct
        predictions and number of examples."""
        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            logits = self.model(x)
            if self.teacher is not None:
                with torch.no_grad():
                    taught = self.teacher(x).float()
        loss = F.cross_entropy(logits.float(), y, label_smoothing=self.config.label_smoothing)
        if self.teacher is not None:
            loss = distillation_loss(loss, logits.float(), taught, self.config)
        correct = (logits.argmax(1) == y).sum()
        sums = torch.stack([loss.detach() * y.numel(), correct.float(), loss.new_tensor(y.numel())])
        loss_sum, correct_value, seen = all_reduce_sum(sums).tolist()
        loss_value = loss_sum / seen
        if not math.isfinite(loss_value):
            raise self._non_finite_error(loss_value)
        loss.backward()
        if self.config.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        return loss_value, int(correct_value), int(seen)

    def _non_finite_error(self, loss: float) -> NonFiniteError:
        lr = self.optimizer.param_groups[0]["lr"]
        return NonFiniteError(
            f"the training loss is {loss} at epoch {self.epoch + 1}, step {self.step_in_epoch + 1}"
            f" (global step {self.global_step + 1}); the weights were not updated. Fix: lower "
            f"train.lr (now {lr:.3g}), set train.grad_clip, or check the input data, then resume "
            f"from '{self.checkpoint_path}' or start again."
        )

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self._amp)

    def _progress(self) -> Progress:
        return Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=self._console,
            transient=True,
            disable=not self._bars,
        )

    def _averaged_model(self, model: nn.Module) -> AveragedModel | None:
        """The running average of ``train.swa_epochs`` (None when off); refused for a QAT model.

        Raises:
            ConfigError: ``swa_epochs`` > 0 on a model prepared by :func:`hwquant.prepare`.
        """
        if self.config.swa_epochs == 0:
            return None
        if hasattr(model, "hwquant_recipe"):
            raise swa_refusal(self.config.swa_epochs)
        return AveragedModel(self.module, use_buffers=False)

    def _average_weights(self) -> None:
        """At the end of an averaged epoch: add the weights to the average; at the end of the
        last: set the model to it and recompute its BN statistics over this epoch's batches
        (:func:`torch.optim.swa_utils.update_bn`, one pass in training mode), rank 0's kept."""
        if self._swa is None or self.epoch < self.config.epochs - self.config.swa_epochs:
            return
        self._swa.update_parameters(self.module)
        if self.epoch + 1 < self.config.epochs:
            return
        with torch.no_grad():
            for mine, averaged in zip(
                self.module.parameters(), self._swa.module.parameters(), strict=True
            ):
                mine.copy_(averaged)
        batches = (x.to(self.device) for x, _ in self.train_loader.iter_from(0))
        with self._autocast():
            update_bn(batches, self.module)
        broadcast_state(self.module)

    def _result(self) -> TrainResult:
        best = max(self.history, key=lambda record: record["test_acc"])
        return TrainResult(
            history=list(self.history),
            best_accuracy=best["test_acc"],
            best_epoch=int(best["epoch"]),
            final_accuracy=self.history[-1]["test_acc"],
            checkpoint=self.checkpoint_path,
        )

    def _save(self) -> None:
        """Write everything the next step depends on to ``last.pt`` (rank 0 only)."""
        if not self.dist.is_main:
            return
        state = {
            "world_size": self.dist.world_size,
            "model": self.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "epoch_stats": dataclasses.asdict(self._stats),
            "history": self.history,
            "rng": capture_rng_state(),
            "train_config": dataclasses.asdict(self.config),
            "run_config": self.run_config.to_dict() if self.run_config else None,
        }
        if self._swa is not None:
            state["swa"] = self._swa.state_dict()
        save_checkpoint(self.checkpoint_path, state)

    def _resume(self) -> None:
        """Load the latest checkpoint in ``out_dir``, if any."""
        path = resume_path(self.checkpoint_path)
        if path is None:
            self._console.print(f"no checkpoint in '{self.out_dir}': starting from scratch")
            return
        state = load_checkpoint(path)
        _check_same_config(path, state["train_config"], dataclasses.asdict(self.config))
        if self.run_config is not None and state.get("run_config") is not None:
            _check_same_run(path, state["run_config"], self.run_config.to_dict())
        if state.get("world_size", 1) != self.dist.world_size:
            raise ConfigError(
                f"'{path}' was written by a run of {state.get('world_size', 1)} processes; this "
                f"one has {self.dist.world_size}. Fix: resume with torchrun --nproc_per_node="
                f"{state.get('world_size', 1)} (or 1: plain `hwquant train`), or train into a "
                "new out_dir."
            )
        load_weights(self.module, state["model"], path)
        if self._swa is not None:
            self._swa.load_state_dict(state["swa"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.step_in_epoch = state["epoch"], state["step_in_epoch"]
        self.global_step = state["global_step"]
        self.history = state["history"]
        self._stats = _EpochStats(**state["epoch_stats"])
        self._rng_state = state["rng"]
        if self.epoch == self.config.epochs:
            self._console.print(f"'{path}' holds the finished run: nothing left to train")
        else:
            self._console.print(
                f"resuming from '{path}' at epoch {self.epoch + 1}, step {self.step_in_epoch}"
            )


def swa_refusal(swa_epochs: int) -> ConfigError:
    """The error for ``train.swa_epochs`` on a QAT model, whose quantizer state has no average."""
    return ConfigError(
        f"train.swa_epochs = {swa_epochs} averages float weights, and this is a QAT model "
        "([recipe]): its quantizers' scales, codebooks and row assignments have no average. "
        "Fix: set swa_epochs = 0, or average the float run it starts from (model.init)."
    )


def _check_same_config(path: Path, saved: dict[str, Any], current: dict[str, Any]) -> None:
    """An exact resume needs the training config that wrote the checkpoint. A field that the
    checkpoint predates counts at its default (an added field's default is the behaviour from
    before it)."""
    saved = train_fields_with_defaults(saved)
    changed = [f"{k}: {saved.get(k)!r} -> {v!r}" for k, v in current.items() if saved.get(k) != v]
    if changed:
        raise ConfigError(
            f"the [train] config differs from the one that wrote '{path}' ({'; '.join(changed)}). "
            "Fix: resume with the original config, or train into a new out_dir."
        )


DATA_DEFAULTS = {
    f.name: f.default
    for f in dataclasses.fields(DataConfig)
    if f.default is not dataclasses.MISSING
}
"""The ``[data]`` fields with defaults: what a checkpoint that predates one of them used."""
RUN_FIELDS = {"model": ("name", "width"), "data": ("name", "augment", "cutout"), "recipe": None}
"""The run config fields a resumed run must share with its checkpoint's (None: every field):
what the weights mean and the batches that train them. ``model.init`` (read only at the start;
a distilling run's teacher, so such a run keeps it), data paths and evaluation settings may
change."""


def _check_same_run(path: Path, saved: dict[str, Any], current: dict[str, Any]) -> None:
    """A resumed run continues the model, recipe and training batches that wrote the checkpoint,
    not others (a recipe or data field that the checkpoint predates counts at its default)."""
    if saved.get("recipe") is not None:
        saved = saved | {"recipe": Recipe.from_dict(saved["recipe"]).to_dict()}
    if saved.get("data") is not None:
        saved = saved | {"data": DATA_DEFAULTS | saved["data"]}
    fields = dict(RUN_FIELDS)
    if current.get("train", {}).get("distill_weight"):  # model.init is the teacher's weights
        fields["model"] = (*RUN_FIELDS["model"], "init")
    changed = []
    for table, names in fields.items():
        before, now = _flat(saved.get(table), table), _flat(current.get(table), table)
        keys = sorted(set(before) | set(now)) if names is None else [f"{table}.{n}" for n in names]
        changed += [
            f"{key}: {before.get(key, 'absent')!r} -> {now.get(key, 'absent')!r}"
            for key in keys
            if before.get(key, "absent") != now.get(key, "absent")
        ]
    if changed:
        raise ConfigError(
            f"the run config differs from the one that wrote '{path}' ({'; '.join(changed)}). "
            "Fix: resume with the original config, or train into a new out_dir."
        )


def _flat(table: dict[str, Any] | None, prefix: str) -> dict[str, Any]:
    """``{"recipe.msq.sp2_share": 0.5, ...}`` from nested tables (None: no table)."""
    if table is None:
        return {}
    flat: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{prefix}.{key}"
        flat |= _flat(value, name) if isinstance(value, dict) and value else {name: value}
    return flat


def init_weights(path: Path) -> dict[str, torch.Tensor]:
    """The float weights of a ``model.init`` checkpoint: ``model`` of a ``last.pt`` written by
    ``hwquant train``, or ``state_dict`` of a ``hwquant bench reproduce`` baseline (such as the
    committed ``benchmarks/results/cifar10_cpu_long/fp32/resnet20.ckpt``).

    Raises:
        FileFormatError: the checkpoint holds neither; the message names the two it takes.
    """
    state = load_checkpoint(path)
    for key in ("model", "state_dict"):
        if key in state:
            return state[key]
    raise FileFormatError(
        f"'{path}' holds no model weights (neither 'model' nor 'state_dict'). Fix: set "
        "model.init to a last.pt written by `hwquant train` or to a baseline checkpoint of "
        "`hwquant bench reproduce` (OUT/fp32/<model>.ckpt)."
    )


def load_weights(model: nn.Module, weights: dict[str, torch.Tensor], path: Path) -> None:
    """Load a state dict read from checkpoint ``path``, explaining a mismatch."""
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise ConfigError(
            f"the weights in '{path}' do not fit the model: {exc}. Fix: use the [model] (and "
            "[recipe]) of the run that wrote the checkpoint."
        ) from None


def cpu_has_native_bf16() -> bool:
    """Whether this CPU runs bf16 autocast on native kernels (oneDNN's avx512_bf16 or AMX);
    elsewhere bf16 would be emulated, slower than float32."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _autocast_enabled(config: TrainConfig, device: torch.device) -> bool:
    """Whether training on ``device`` runs under bf16 autocast (see ``TrainConfig.amp``).

    Raises:
        ConfigError: ``cpu_amp`` on a CPU without native bf16 kernels.
    """
    if device.type == "cuda":
        return config.amp
    if not (config.amp and config.cpu_amp):
        return False
    if device.type == "cpu" and not cpu_has_native_bf16():
        raise ConfigError(
            "train.cpu_amp: this CPU has no native bf16 kernels (oneDNN reports none), so bf16 "
            "autocast would be emulated and slow. Fix: set train.cpu_amp = false."
        )
    return device.type == "cpu"


def train_from_config(
    config: RunConfig, *, progress: bool = True, resume: bool = False
) -> TrainResult:
    """Build data, model (and its QAT twin when ``config.recipe`` is set) and train them.

    Under ``torchrun`` every process trains its shard of each global batch with DDP
    (:mod:`hwquant.core.distributed`); only rank 0 writes files.
    """
    with process_group() as dist:
        return _train_from_config(config, dist, progress=progress, resume=resume)


def _train_from_config(
    config: RunConfig, dist: DistContext, *, progress: bool, resume: bool
) -> TrainResult:
    """Check and lock the run directory (rank 0), then train in it."""
    out_dir = Path(config.out_dir)
    lock: contextlib.AbstractContextManager = contextlib.nullcontext()
    if dist.is_main:
        prepare_directory(out_dir, OUT_OPTION)
        lock = directory_lock(out_dir, OUT_OPTION, "`hwquant train`")
    with lock:
        _check_out_dir(out_dir, resume)
        return _train_in(config, out_dir, dist, progress=progress, resume=resume)


def _check_out_dir(out_dir: Path, resume: bool) -> None:
    """Refuse to start a fresh run over the checkpoint of another (nothing is overwritten)."""
    if resume:
        return
    existing = resume_path(out_dir / CHECKPOINT_NAME)
    if existing is not None:
        raise ConfigError(
            f"'{out_dir}' already holds a run ({existing.name}); a new run would overwrite it. "
            "Fix: add --resume to continue that run (a finished one is left as it is), or "
            "train into another directory with --out."
        )


def _train_in(
    config: RunConfig, out_dir: Path, dist: DistContext, *, progress: bool, resume: bool
) -> TrainResult:
    from hwquant.data import BatchLoader, load_dataset
    from hwquant.models import build

    if config.train.swa_epochs and config.recipe is not None:  # before any data is read
        raise swa_refusal(config.train.swa_epochs)
    seed_everything(config.train.seed)
    device = dist.device()
    splits = load_dataset(config.data.name, config.data.root, progress=progress and dist.is_main)
    _, height, _, channels = splits.train.images.shape
    model = build(
        config.model.name,
        num_classes=splits.num_classes,
        in_channels=channels,
        input_size=height,
        width=config.model.width,
    )
    if config.model.init is not None:
        init = Path(config.model.init)
        load_weights(model, init_weights(init), init)
    teacher = None
    if config.train.distill_weight > 0:
        if config.recipe is None or config.model.init is None:
            raise ConfigError(
                f"train.distill_weight = {config.train.distill_weight} distils a QAT model from "
                "its float weights, but this run "
                + ("trains no QAT model ([recipe] is missing)" if config.recipe is None
                   else "starts from no float weights (model.init is missing)")
                + ". Fix: set [recipe] and model.init, or set distill_weight = 0."
            )  # fmt: skip
        teacher = model  # prepare() leaves the float model as it is
    if config.recipe is not None:
        from hwquant.qat.prepare import prepare

        model = prepare(model, config.recipe)
    norm = {"mean": splits.mean, "std": splits.std, "device": device}
    train_loader = BatchLoader(
        splits.train,
        config.train.batch_size,
        shuffle=True,
        augment=config.data.augment,
        cutout=config.data.cutout,
        seed=config.train.seed,
        drop_last=True,
        shard=(dist.rank, dist.world_size),
        **norm,
    )
    test_loader = BatchLoader(
        splits.test, config.data.batch_size_eval, shuffle=False, augment=False, **norm
    )
    trainer = Trainer(
        model,
        train_loader,
        test_loader,
        config.train,
        out_dir,
        device,
        progress=progress,
        resume=resume,
        run_config=config,
        dist=dist,
        teacher=teacher,
    )
    if dist.is_main:  # after the resume checks: the config of the checkpoint's run
        (out_dir / CONFIG_NAME).write_text(config.to_toml(), encoding="utf-8")
    return trainer.fit()
