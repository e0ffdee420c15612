"""Run configuration: one TOML file maps one to one onto frozen dataclasses.

A run file has a top-level ``out_dir`` and the tables ``[model]``, ``[data]``, ``[train]``
and, for quantization-aware training, ``[recipe]`` (see :class:`hwquant.qat.recipe.Recipe`;
without it the run trains in float)::

    out_dir = "runs/mnist-llsq4"

    [model]
    name = "lenet5"

    [data]
    name = "mnist"

    [train]
    epochs = 10
    lr = 0.05

    [recipe]
    weight_bits = 4

Every field is checked against its dataclass annotation, so an unknown name, a wrong type
or a value outside its choices fails at load time with the table, the field and the fix.
TOML has no null: write ``"none"`` for a field that may be None (an omitted field takes its
default). Relative paths are relative to the working directory.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from hwquant.core.config_table import NONE, build_dataclass
from hwquant.core.errors import ConfigError
from hwquant.qat.recipe import Recipe

Optimizer = Literal["sgd", "adam"]
Schedule = Literal["cosine", "onecycle", "constant"]


@dataclass(frozen=True)
class TrainConfig:
    """How to train: optimizer, schedule, regularisation, checkpoints (the ``[train]`` table)."""

    epochs: int = 10
    """Passes over the training set."""
    batch_size: int = 128
    """Training examples per step."""
    optimizer: Optimizer = "sgd"
    """"sgd" (with momentum) or "adam"."""
    lr: float = 0.1
    """Peak learning rate (reached after warm-up; one-cycle's maximum)."""
    momentum: float = 0.9
    """SGD momentum, or Adam's beta1."""
    nesterov: bool = True
    """Nesterov momentum (SGD only; needs momentum > 0)."""
    weight_decay: float = 5e-4
    """L2 penalty on the weight matrices/kernels of every layer; biases, norms and
    quantizer scales are not decayed."""
    schedule: Schedule = "cosine"
    """Learning-rate schedule, stepped per batch: cosine to 0, one-cycle, or constant."""
    warmup_epochs: float = 0.0
    """Linear warm-up length; for "onecycle" the rising phase (0: 30% of the run)."""
    label_smoothing: float = 0.0
    """Label smoothing of the cross-entropy loss, in [0, 1)."""
    distill_weight: float = 0.0
    """λ of knowledge distillation from a float teacher (Hinton et al. 2015): the loss is
    ``(1 − λ)·CE(s, y) + λ·T²·KL(softmax(t/T) ‖ softmax(s/T))`` with ``s`` the model's and
    ``t`` the teacher's logits. 0: cross-entropy alone. A QAT run of ``hwquant train`` takes
    its float model (``model.init``) as the teacher."""
    distill_temperature: float = 1.0
    """T of the distillation term."""
    amp: bool = True
    """bfloat16 autocast on CUDA (on the CPU only with ``cpu_amp``)."""
    cpu_amp: bool = False
    """Also autocast to bfloat16 when training on the CPU (with ``amp``). Off by default: it
    changes the trained weights. The CPU must have native bf16 kernels (oneDNN, e.g.
    avx512_bf16 or AMX); the Trainer refuses the option on one that has none."""
    seed: int = 0
    """Seed of Python, NumPy and torch generators and of the data order."""
    deterministic: bool = True
    """Use deterministic kernels (an op without one warns), so that a resumed run is bit-identical
    to an uninterrupted one."""
    checkpoint_every: int = 0
    """Also checkpoint every this many steps (0: only at the end of each epoch)."""
    grad_clip: float | None = None
    """Clip the global gradient norm to this value; None does not clip."""
    bn_freeze_lr_factor: float = 1.0
    """ρ: a QAT model's learning rate is multiplied by ρ on every step whose forward runs with
    its folded BN statistics frozen (``recipe.bn_freeze_step`` on): η_t ← ρ·η_t for t ≥ t_f,
    t_f the step of the first layer's freeze. The freeze replaces each layer's batch
    normalization, which makes the loss invariant to the scale and mean of the layer's
    pre-activations, by a fixed affine map; those directions then carry curvature, and a
    learning rate that was stable before can diverge within a few steps (docs/llsq.md §1, "The
    step the BN statistics freeze"). 1: no change. Refused where no layer's BN freezes within
    the run."""
    swa_epochs: int = 0
    """Stochastic weight averaging (Izmailov et al. 2018, SWA): the weights at the end of each
    of the last ``swa_epochs`` epochs are averaged equally, ``w̄ ← (n·w̄ + w)/(n + 1)`` (their
    eq. 2, one model an epoch), and the last epoch ends with the model set to ``w̄``, its BN
    running statistics recomputed over one pass of that epoch's training batches (their §3.2;
    under DDP on CPUs, without SyncBN, over rank 0's shard of them); the epoch's test accuracy
    is then that model's. 0: off. Float models only (a quantizer's
    scales, codebooks and row assignments have no average); the paper pairs it with a constant
    or cyclic learning rate over the averaged epochs."""

    def __post_init__(self) -> None:
        _check(self.epochs >= 1, "epochs", self.epochs, "an integer >= 1")
        _check(self.batch_size >= 1, "batch_size", self.batch_size, "an integer >= 1")
        _check(self.lr > 0, "lr", self.lr, "a float > 0")
        _check(0 <= self.momentum < 1, "momentum", self.momentum, "a float in [0, 1)")
        _check(self.weight_decay >= 0, "weight_decay", self.weight_decay, "a float >= 0")
        _check(
            0 <= self.warmup_epochs < self.epochs,
            "warmup_epochs",
            self.warmup_epochs,
            f"a float in [0, epochs={self.epochs})",
        )
        _check(
            0 <= self.label_smoothing < 1,
            "label_smoothing",
            self.label_smoothing,
            "a float in [0, 1)",
        )
        _check(0 <= self.distill_weight <= 1, "distill_weight", self.distill_weight,
               "a float in [0, 1]")  # fmt: skip
        _check(self.distill_temperature > 0, "distill_temperature", self.distill_temperature,
               "a float > 0")  # fmt: skip
        _check(0 < self.bn_freeze_lr_factor <= 1, "bn_freeze_lr_factor",
               self.bn_freeze_lr_factor, "a float in (0, 1] (1: no change)")  # fmt: skip
        _check(0 <= self.swa_epochs <= self.epochs, "swa_epochs", self.swa_epochs,
               f"an integer in [0, epochs={self.epochs}] (0: no averaging)")  # fmt: skip
        _check(0 <= self.seed < 2**32, "seed", self.seed, "an integer in 0..2^32-1 (NumPy's range)")
        _check(
            self.checkpoint_every >= 0, "checkpoint_every", self.checkpoint_every, "an integer >= 0"
        )
        _check(
            self.grad_clip is None or self.grad_clip > 0,
            "grad_clip",
            self.grad_clip,
            'a float > 0, or "none"',
        )
        _check(
            not (self.nesterov and self.optimizer == "sgd" and self.momentum == 0),
            "nesterov",
            self.nesterov,
            "false when momentum = 0 (Nesterov needs momentum)",
        )


@dataclass(frozen=True)
class DataConfig:
    """Which data set to train on (the ``[data]`` table)."""

    name: str
    """Data set name known to :func:`hwquant.data.load_dataset`."""
    root: str | None = None
    """Directory holding the data set files; None uses the loader's default."""
    batch_size_eval: int = 512
    """Examples per evaluation batch."""
    augment: bool = True
    """Random training-set augmentation (the test set is never augmented)."""
    cutout: int = 0
    """Side in pixels of the square Cutout sets to the mean pixel in each augmented training
    image (DeVries & Taylor 2017; 16 for CIFAR-10); 0: none. Needs ``augment``."""

    def __post_init__(self) -> None:
        _check(
            self.batch_size_eval >= 1, "batch_size_eval", self.batch_size_eval, "an integer >= 1"
        )
        _check(self.cutout >= 0, "cutout", self.cutout, "an integer >= 0 (0: no Cutout)")
        if self.cutout and not self.augment:
            raise ConfigError(
                f"cutout={self.cutout} with augment=False: Cutout is part of the training "
                "augmentation. Fix: set augment = true, or cutout = 0."
            )


@dataclass(frozen=True)
class ModelConfig:
    """Which network to train (the ``[model]`` table)."""

    name: str
    """Model name known to :func:`hwquant.models.build`."""
    width: float = 1.0
    """Channel-width multiplier."""
    init: str | None = None
    """Checkpoint of a float run whose weights start this run (QAT from a trained FP32 model)."""

    def __post_init__(self) -> None:
        _check(self.width > 0, "width", self.width, "a float > 0")


@dataclass(frozen=True)
class RunConfig:
    """A whole training run: where it writes, what it trains, how, and how it quantizes."""

    model: ModelConfig
    """The ``[model]`` table."""
    data: DataConfig
    """The ``[data]`` table."""
    out_dir: str = "runs/train"
    """Directory of checkpoints and the effective config."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """The ``[train]`` table."""
    recipe: Recipe | None = None
    """The ``[recipe]`` table; None (no table) trains in float."""

    @classmethod
    def from_dict(cls, table: dict[str, Any]) -> RunConfig:
        """Build a run config from a parsed TOML document, checking every field."""
        return build_dataclass(cls, table, "")

    def to_dict(self) -> dict[str, Any]:
        """The config as plain nested dicts (None stays None)."""
        return dataclasses.asdict(self)

    def to_toml(self) -> str:
        """The config as TOML text that :func:`load_config` reads back to an equal config."""
        # Imported here: only writing a config needs it, and benchmarks/gpu_tier.sh runs every
        # other command from src/ on a device image that has no tomli-w.
        import tomli_w

        return tomli_w.dumps(_with_none_marked(self.to_dict()))


def train_fields_with_defaults(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored ``[train]`` table (a checkpoint's, a result's) with every field it predates at
    its default, the behaviour from before that field existed, so that it compares with today's.

    >>> train_fields_with_defaults({"epochs": 3})["swa_epochs"]
    0
    """
    return dataclasses.asdict(TrainConfig()) | stored


def load_config(path: str | Path) -> RunConfig:
    """Read and check a run config; every problem raises :class:`ConfigError` naming the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"config file '{path}' does not exist. Fix: check the path "
            f"(relative paths start at {Path.cwd()})."
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file '{path}': {exc}") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}. Fix: correct the syntax there.") from None
    try:
        return RunConfig.from_dict(document)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _check(ok: bool, name: str, value: object, expected: str) -> None:
    if not ok:
        raise ConfigError(f"{name}={value!r} is out of range. Fix: use {expected}.")


def _with_none_marked(value: Any) -> Any:
    """``value`` with every None, in tables and arrays at any depth, replaced by the
    :data:`NONE` marker, which TOML lacks a literal for and :func:`build_dataclass` reads back
    as None.

    >>> _with_none_marked({"a": None, "b": {"c": [1, None]}}) == {"a": NONE, "b": {"c": [1, NONE]}}
    True
    """
    if value is None:
        return NONE
    if isinstance(value, dict):
        return {key: _with_none_marked(sub) for key, sub in value.items()}
    if isinstance(value, list | tuple):
        return [_with_none_marked(item) for item in value]
    return value
