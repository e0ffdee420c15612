"""The tiers of ``hwquant bench reproduce``: one table of rows, five schedules.

* ``gpu``: one device command of at most 9 minutes on one H100 (``benchmarks/gpu_tier.sh``; a
  session is lent 15 minutes of device time, 10 per command): ResNet-18 and VGG-Small on
  CIFAR-10 (the shared JPEG copy), data held on the device, bf16 autocast, channels-last, batch
  512, and by default the rows of :data:`hwquant.app.bench.rows.TIER_ROWS` ``["gpu"]`` (LLSQ W4A4
  and W2A2, MSQ W4A4, 320-entry tables). FP32: SGD-Nesterov one-cycle (peak lr 0.2), label
  smoothing 0.1, random crop and flip, the recipe of the data README's anchor (a CIFAR
  ResNet-18 reached 90.2 % in 30 epochs, 35 s), here 15 epochs; QAT: 3 epochs per row from the
  FP32 checkpoint, cosine from lr 0.01. Sizing, from that anchor (an FP32 epoch about 1.1 s, a
  QAT epoch up to 1.5x that) with a 2x margin for our eager trainer: per model about 35 s of
  FP32, 4 x 3 QAT epochs about 40 s, the engine and fake-quant evaluations of 10,000 images a
  few seconds per integer row, the table engine (on the CPU) about a minute, the step-time
  comparison about 20 s: about 6 minutes for both models with data decoding. Unmeasured: the
  script's ``--stop-after`` budgets are the safety net.
* ``cpu``: ResNet-20 only, a seeded 8,000-image training subset for 4 FP32 epochs, and 1 QAT
  epoch per row on a seeded 4,000-image subset of it, batch 64, every row evaluated on the full
  10,000-image test set. About 40-70 minutes on one shared core; far from convergence, it shows
  the pipeline and the exactness, not the accuracy.
* ``cpu-full``: the papers' scale on a CPU: ResNet-20 on the whole training set, FP32 for 50
  epochs (SGD-Nesterov one-cycle, peak lr 0.2, batch 256, label smoothing 0.1, random crop and
  flip), bf16 autocast where the CPU has native bf16 kernels (avx512_bf16: 1.8x the FP32 step
  rate on a 2-core Xeon, channels-last), then 3 QAT epochs per row on the whole training set,
  every row evaluated on the full 10,000-image test set. Several CPU hours: run it with
  ``--resume`` and ``--stop-after`` across sessions; rows are written as they finish.
  Its FP32 baseline reached 88.01 % (train accuracy 95.4 %): short of the 90 % target.
* ``cpu-long``: ``cpu-full`` with a 200-epoch FP32 one-cycle schedule, for a baseline of at
  least 90 % (the ResNet paper's 91.25 % came from 164 epochs of a step schedule; our data is a
  JPEG-quality-75 copy, which costs some accuracy, hence the margin). About 65 s per epoch on
  one quiet core with bf16 autocast: 3.6 CPU hours, run across sessions with ``--fp32-only
  --resume`` (the trainer checkpoints at every epoch end and resumes bit-exactly; the run's
  ``settings.json`` refuses other settings).
* ``smoke``: synthetic 16x16 images and a quarter-width ResNet-20: every row kind in seconds.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, fields, replace
from typing import Any

from hwquant.core.errors import ConfigError


@dataclass(frozen=True)
class Tier:
    """A schedule for the whole table."""

    name: str
    models: tuple[str, ...]
    """Models run when ``--models`` is not given."""
    device: str
    """"cuda" or "cpu"."""
    data: str
    """"cifar10" (the shared JPEG copy) or "synthetic"."""
    train_examples: int | None
    """Size of the seeded training subset; None: the whole training set."""
    qat_train_examples: int | None
    """Size of the seeded subset of that which each QAT row trains on; None: all of it."""
    monitor_examples: int
    """Test images evaluated after every epoch (log only; results use the full test set)."""
    epochs_fp32: int
    epochs_qat: int
    batch_size: int
    eval_batch: int
    fp32_lr: float
    qat_lr: float
    label_smoothing: float
    amp: bool
    """bf16 autocast while training. On a CPU it needs native bf16 kernels (avx512_bf16 or
    AMX); elsewhere ``hwquant bench reproduce`` refuses the tier and names ``--no-amp``
    (:func:`get_tier` with ``amp=False``: float32 training)."""
    channels_last: bool
    width: float = 1.0
    """Channel multiplier of the models."""
    input_size: int = 32
    step_time_steps: int = 5
    """Steps per variant per round of the FP32-vs-QAT step-time comparison."""
    step_time_rounds: int = 5
    qat_cutout: int = 0
    """Side of the Cutout square (DeVries & Taylor 2017) of the rows' QAT training batches; 0:
    none (crop and flip only). The FP32 baselines keep their own augmentation. A field added
    after runs were stored: a stored run without it counts at this default."""
    qat_distill: float = 0.0
    """λ of the rows' knowledge distillation from their FP32 baseline (Hinton et al. 2015;
    ``TrainConfig.distill_weight``): the QAT loss is ``(1 − λ)·CE + λ·T²·KL`` with the FP32
    model, in eval mode, as the teacher. 0: cross-entropy alone. Added after runs were stored,
    like ``qat_cutout``."""
    qat_distill_temperature: float = 1.0
    """T of that distillation (``TrainConfig.distill_temperature``)."""


GPU = Tier(
    name="gpu",
    models=("resnet18", "vgg_small"),
    device="cuda",
    data="cifar10",
    train_examples=None,
    qat_train_examples=None,
    monitor_examples=2_000,
    epochs_fp32=15,
    epochs_qat=3,
    batch_size=512,
    eval_batch=1000,
    fp32_lr=0.2,
    qat_lr=0.01,
    label_smoothing=0.1,
    amp=True,
    channels_last=True,
    step_time_steps=5,
    step_time_rounds=5,
)
CPU = replace(
    GPU,
    name="cpu",
    models=("resnet20",),
    device="cpu",
    train_examples=8_000,
    qat_train_examples=4_000,
    monitor_examples=1_000,
    epochs_fp32=4,
    epochs_qat=1,
    batch_size=64,
    eval_batch=500,
    fp32_lr=0.1,
    qat_lr=0.005,
    label_smoothing=0.0,
    amp=False,
    channels_last=False,
    step_time_steps=3,
    step_time_rounds=4,
)
CPU_FULL = replace(
    GPU,
    name="cpu-full",
    models=("resnet20",),
    device="cpu",
    monitor_examples=1_000,
    epochs_fp32=50,
    epochs_qat=3,
    batch_size=256,
    eval_batch=1000,
    fp32_lr=0.2,
    qat_lr=0.01,
    step_time_steps=3,
    step_time_rounds=4,
)
CPU_LONG = replace(CPU_FULL, name="cpu-long", epochs_fp32=200)
SMOKE = replace(
    CPU,
    name="smoke",
    data="synthetic",
    train_examples=None,
    qat_train_examples=None,
    monitor_examples=32,
    epochs_fp32=2,
    batch_size=32,
    eval_batch=32,
    fp32_lr=0.05,
    width=0.25,
    input_size=16,
    step_time_steps=1,
    step_time_rounds=2,
)
TIERS: dict[str, Tier] = {tier.name: tier for tier in (GPU, CPU, CPU_FULL, CPU_LONG, SMOKE)}
TIER_DEFAULTS: dict[str, Any] = {
    f.name: f.default for f in fields(Tier) if f.default is not MISSING
}
"""The :class:`Tier` fields with defaults: what a stored run that predates one of them used."""


def with_tier_defaults(stored: dict[str, Any]) -> dict[str, Any]:
    """A tier as a run stored it (its fields as JSON), with every field the run predates at its
    default (the behaviour from before the field existed), so that it compares equal to the
    tier it was run with.

    >>> with_tier_defaults({"name": "cpu-long"})["qat_cutout"]
    0
    """
    return TIER_DEFAULTS | stored


def settings_with_tier_defaults(settings: dict[str, Any]) -> dict[str, Any]:
    """Stored run settings whose ``"tier"`` gets :func:`with_tier_defaults`."""
    return settings | {"tier": with_tier_defaults(settings["tier"])}


def get_tier(
    name: str,
    epochs_fp32: int | None = None,
    epochs_qat: int | None = None,
    amp: bool | None = None,
    qat_lr: float | None = None,
    qat_cutout: int | None = None,
    qat_distill: float | None = None,
    qat_distill_temperature: float | None = None,
) -> Tier:
    """The tier ``name`` of :data:`TIERS`, with its epochs, its rows' peak learning rate
    (``qat_lr``) and its bf16 autocast (``amp``; ``--no-amp``: float32 training, for a CPU
    without native bf16 kernels) overridden where given. The overrides are fields of the
    returned tier, so a run's ``settings.json`` records them and ``--resume`` refuses to mix
    them with rows trained otherwise.

    >>> get_tier("cpu-long", amp=False).amp, get_tier("cpu-long").amp
    (False, True)
    >>> get_tier("cpu-long", qat_lr=0.03).qat_lr, get_tier("cpu-long").qat_lr
    (0.03, 0.01)
    >>> get_tier("cpu-long", qat_cutout=16).qat_cutout, get_tier("cpu-long").qat_cutout
    (16, 0)
    >>> tier = get_tier("cpu-long", qat_distill=0.5, qat_distill_temperature=4.0)
    >>> tier.qat_distill, tier.qat_distill_temperature, get_tier("cpu-long").qat_distill
    (0.5, 4.0, 0.0)

    Raises:
        ConfigError: unknown tier (the message lists them), an epoch count below 1, a
            learning rate that is not a finite number above 0, a Cutout side below 0, above
            the tier's image side, or on a tier trained without augmentation (synthetic data),
            a distillation weight outside [0, 1], or a distillation temperature that is not
            above 0 or is given without a weight above 0 (it would be unused).
    """
    if name not in TIERS:
        raise ConfigError(f"unknown tier {name!r}. Fix: use one of {', '.join(TIERS)}.")
    tier = TIERS[name]
    for field, value in (("epochs_fp32", epochs_fp32), ("epochs_qat", epochs_qat)):
        if value is not None:
            if value < 1:
                raise ConfigError(
                    f"--{field.replace('_', '-')}={value} is not a number of epochs. "
                    "Fix: use an integer >= 1."
                )
            tier = replace(tier, **{field: value})
    if qat_lr is not None:
        if not (math.isfinite(qat_lr) and qat_lr > 0):
            raise ConfigError(
                f"--qat-lr={qat_lr} is not a learning rate. Fix: use a finite number above 0 "
                f"(the tier's is {tier.qat_lr})."
            )
        tier = replace(tier, qat_lr=qat_lr)
    if qat_cutout is not None:
        if not 0 <= qat_cutout <= tier.input_size:
            raise ConfigError(
                f"--qat-cutout={qat_cutout} is not a square side within the tier's "
                f"{tier.input_size}-pixel images. Fix: use 0 (none) to {tier.input_size} "
                "(DeVries & Taylor use 16 on CIFAR-10)."
            )
        if tier.data == "synthetic" and qat_cutout:
            raise ConfigError(
                f"--qat-cutout={qat_cutout}: tier {tier.name!r} trains on synthetic images "
                "without augmentation, and Cutout is one. Fix: leave --qat-cutout out, or use "
                "a CIFAR-10 tier."
            )
        tier = replace(tier, qat_cutout=qat_cutout)
    tier = _with_distillation(tier, qat_distill, qat_distill_temperature)
    return tier if amp is None else replace(tier, amp=amp)


def _with_distillation(tier: Tier, weight: float | None, temperature: float | None) -> Tier:
    """``tier`` with the rows' distillation weight and temperature where given, checked."""
    if weight is not None:
        if not (math.isfinite(weight) and 0 <= weight <= 1):
            raise ConfigError(
                f"--qat-distill={weight} is not a distillation weight. Fix: use a number in "
                "[0, 1] (0: cross-entropy alone, 1: the teacher's soft targets alone)."
            )
        tier = replace(tier, qat_distill=weight)
    if temperature is not None:
        if not (math.isfinite(temperature) and temperature > 0):
            raise ConfigError(
                f"--qat-distill-temperature={temperature} is not a temperature. Fix: use a "
                "finite number above 0 (1: the teacher's own softmax)."
            )
        if tier.qat_distill == 0:
            raise ConfigError(
                f"--qat-distill-temperature={temperature} without --qat-distill: the rows "
                "would not distil, so the temperature would be unused. Fix: add --qat-distill "
                "with a weight above 0, or leave the temperature out."
            )
        tier = replace(tier, qat_distill_temperature=temperature)
    return tier
