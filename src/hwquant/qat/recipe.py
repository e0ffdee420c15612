"""Quantization recipes: what ``hwquant.prepare`` builds.

A :class:`Recipe` is a frozen dataclass; every field is validated when it is made, and
:meth:`Recipe.from_dict` rejects unknown fields with the list of allowed ones, so a TOML
table maps onto it one to one.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Literal, get_args

from hwquant.core.config_table import build_dataclass
from hwquant.core.errors import ConfigError
from hwquant.core.intmath import check_accumulator_bits
from hwquant.qat.registry import available, get_scheme

ScaleGradient = Literal["llsq", "lsq"]
ScaleInit = Literal["peak", "min_error"]
ActScales = Literal["trained", "calibrated"]
ScaleConstraint = Literal["free", "pow2", "fixed"]
Granularity = Literal["tensor", "channel"]
MSQAssignment = Literal["variance", "kurtosis", "error"]
CDFKind = Literal["gaussian", "empirical"]
QuantSchedule = Literal["gradual", "all_at_once"]
BNGain = Literal["per_channel", "in_codebook"]
CODEBOOK_FAMILIES: tuple[str, ...] = (
    "fixed-uniform",
    "fixed-pow2",
    "gaussian",
    "laplacian",
    "lloyd-max",
    "empirical",
    "kmeans",
)  # the estimators of hwquant.schemes.tables.codebooks (methods.md §3.1)

MIN_BITS, MAX_BITS = 1, 16
MAX_BIAS_BITS = 48  # the widest integer bias (``Recipe.bias_bits``) the engines take
BN_FREEZE_FRACTION = 0.2
"""Share of a QAT run that trains with batch statistics before the folded BN statistics freeze
(:func:`bn_freeze_step_for`); the rest trains the deployed form itself."""


def bn_freeze_step_for(qat_steps: int) -> int:
    """``Recipe.bn_freeze_step`` for a QAT run of ``qat_steps`` training steps.

    BN freezes after :data:`BN_FREEZE_FRACTION` of the run (rounded half to even), so that the
    run ends on the deployed form, where no step changes the model unless the optimizer does
    (docs/llsq.md §1, "The end of a run"). The demo's W2A2 run of 4 epochs of 62 steps:

    >>> bn_freeze_step_for(4 * 62)
    50
    """
    if isinstance(qat_steps, bool) or not isinstance(qat_steps, int) or qat_steps < 1:
        raise ConfigError(f"qat_steps={qat_steps!r}: use an integer >= 1.")
    return round(BN_FREEZE_FRACTION * qat_steps)


def check_bits(name: str, bits: int | None, allow_none: bool = False) -> None:
    """Raise :class:`ConfigError` unless ``bits`` is an int in 1..16 (or None when allowed)."""
    if bits is None and allow_none:
        return
    if isinstance(bits, bool) or not isinstance(bits, int) or not MIN_BITS <= bits <= MAX_BITS:
        none = " or None (float)" if allow_none else ""
        raise ConfigError(
            f"{name}={bits!r} is not a valid bit-width. Fix: use an integer in "
            f"{MIN_BITS}..{MAX_BITS}{none}."
        )


def _check_choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is not allowed. Fix: use one of {', '.join(allowed)}.")


@dataclass(frozen=True)
class MSQOptions:
    """Mix and Match (Chang et al., HPCA 2021; methods.md §2): SP2 or fixed-point per weight row.

    Used when ``Recipe.scheme == "msq"``; the ``[recipe.msq]`` table of a run config.
    """

    sp2_share: float | None = 0.5
    """Fraction of each layer's rows quantized with SP2 (0: fixed-point only, 1: SP2 only),
    rounded half up to whole rows; None solves it from ``device``'s LUT and DSP budget
    (:func:`hwquant.hw.sp2_share_for`)."""
    device: str | None = None
    """FPGA profile whose LUT:DSP balance sets the SP2 share when ``sp2_share`` is None."""
    assignment: MSQAssignment = "variance"
    """Row test: "variance" of the max-normalised row (smallest → SP2), "kurtosis" (largest,
    most peaked → SP2) or "error" (the rows SP2 quantizes with the least extra error → SP2)."""
    refresh_steps: int = 100
    """Training steps between re-assignments of the rows while the assignment is not frozen."""
    freeze_step: int = 500
    """Training step from which the assignment is frozen (0: fixed from the initial weights)."""
    sp2_m1: int | None = None
    """Bits m1 of the SP2 q1 term (m2 = weight_bits - 1 - m1, m1 ≥ m2); None: ceil((m-1)/2)."""

    def __post_init__(self) -> None:
        share = self.sp2_share
        if share is None:
            if self.device is None:
                raise ConfigError(
                    "sp2_share=None needs a device to solve the share from. Fix: set device "
                    "(e.g. 'xc7z020') or give sp2_share as a number in [0, 1]."
                )
        elif isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1:
            raise ConfigError(
                f"sp2_share={share!r} is outside [0, 1]. Fix: use a number in [0, 1] "
                "(0: fixed-point only, 1: SP2 only), or None with a device."
            )
        _check_choice("assignment", self.assignment, get_args(MSQAssignment))
        for name, least in (("refresh_steps", 1), ("freeze_step", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ConfigError(f"{name}={value!r}: use an integer >= {least}.")
        m1 = self.sp2_m1
        if m1 is not None and (isinstance(m1, bool) or not isinstance(m1, int) or m1 < 1):
            raise ConfigError(f"sp2_m1={m1!r}: use an integer >= 1, or None (default split).")


@dataclass(frozen=True)
class NonUniformOptions:
    """k-quantile levels on a single-scale integer grid (Liss et al. 2018, UNIQ; methods.md §1).

    Used when ``Recipe.scheme == "nonuniform"``; the ``[recipe.nonuniform]`` table.
    """

    grid_bits: int = 8
    """B: bits of the signed integer grid (one power-of-two scale per tensor) the levels snap
    onto; it must hold the k = 2^weight_bits levels apart (B > weight_bits)."""
    cdf: CDFKind = "gaussian"
    """F of the k-quantile levels: a Gaussian fitted per layer (UNIQ) or the empirical CDF."""
    schedule: QuantSchedule = "gradual"
    """"gradual": blocks of layers pass float → noisy → quantized one stage after another;
    "all_at_once": every inner layer is noisy for ``steps_per_stage`` steps, then quantized."""
    stages: int | None = None
    """Blocks of the gradual schedule when ``blocks`` is empty: the inner layers in graph order
    split into this many contiguous blocks; None: one block per inner layer."""
    blocks: str = ""
    """Explicit blocks, in the order they are quantized: layer names joined by "," and blocks by
    ";" (e.g. "conv2; conv3,fc1"); every inner layer must be in exactly one block."""
    steps_per_stage: int = 200
    """Training steps of each noisy stage; after the last stage every layer is hard-quantized
    (the final fine-tune). 0: hard quantization from the first step."""
    freeze_quantized: bool = False
    """Stop the gradient of layers once hard-quantized (else they train on with the STE)."""
    bn_gain: BNGain = "in_codebook"
    """Where the gain ``s = γ/σ_run`` of a BN folded into a layer goes. "in_codebook": the
    codebook quantizes the folded weights ``s·W`` with one power-of-two scale per layer, so the
    requantizer is a shift (no multiplier); the channels differ in gain (|s| spans 0.39-4.1
    within one layer of the cpu-long CIFAR-10 ResNet-20), so one set of 2^b levels serves them
    all. "per_channel": the codebook quantizes ``sign(s)·W`` and ``|s|`` multiplies each output
    channel's scale, as LLSQ's folded scales do (the multipliers still see one codebook of B-bit
    integers; each requantizer needs a multiplier). At 2-bit weights on that ResNet-20 only
    "per_channel" trains (docs/nonuniform.md §1)."""

    def __post_init__(self) -> None:
        check_bits("grid_bits", self.grid_bits)
        _check_choice("cdf", self.cdf, ("gaussian", "empirical"))
        _check_choice("schedule", self.schedule, ("gradual", "all_at_once"))
        _check_choice("bn_gain", self.bn_gain, ("per_channel", "in_codebook"))
        if self.stages is not None and (
            isinstance(self.stages, bool) or not isinstance(self.stages, int) or self.stages < 1
        ):
            raise ConfigError(f"stages={self.stages!r}: use an integer >= 1, or None.")
        steps = self.steps_per_stage
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ConfigError(f"steps_per_stage={steps!r}: use an integer >= 0.")


@dataclass(frozen=True)
class TableOptions:
    """Table-based neural units (Covell et al. 2019; methods.md §3).

    Used when ``Recipe.scheme == "tables"``; the ``[recipe.tables]`` table.
    """

    act_entries: int = 8
    """|A|: activation codebook size of each layer."""
    weight_entries: int = 5
    """|W|: weight codebook size of each layer (a table has |A|·|W| entries)."""
    input_entries: int = 256
    """Levels of the network input's codebook (256: the 8-bit pixel values; first table)."""
    weight_family: str = "kmeans"
    """Weight codebook family (:data:`hwquant.schemes.tables.codebooks.FAMILIES`)."""
    act_family: str = "empirical"
    """Activation codebook family (:data:`hwquant.schemes.tables.codebooks.FAMILIES`)."""
    entry_bits: int = 16
    """Signed width of the fixed-point table entries ``round(a_i·w_j / s_T)``."""
    max_entries: int | None = None
    """Entry budget of one inner table; |A|·|W| above it is refused. None: no budget."""
    reestimate_every: int = 100
    """Training steps between re-estimations of the codebooks from running statistics."""
    weight_start: int = 0
    """Training step from which the weights are quantized (staged enabling: weights first)."""
    act_start: int = 200
    """Training step from which the activations are quantized (after the weights)."""
    freeze_step: int | None = None
    """Training step from which the codebooks are frozen (no more re-estimation), so that the
    last steps fine-tune the network to its final tables. None: re-estimate to the end."""

    def __post_init__(self) -> None:
        _check_choice("weight_family", self.weight_family, CODEBOOK_FAMILIES)
        _check_choice("act_family", self.act_family, CODEBOOK_FAMILIES)
        for name in ("act_entries", "weight_entries", "input_entries"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 2 <= value <= 4096:
                raise ConfigError(f"tables.{name}={value!r}: use an integer in 2..4096.")
        check_bits("tables.entry_bits", self.entry_bits)
        entries = self.act_entries * self.weight_entries
        if self.max_entries is not None and entries > self.max_entries:
            raise ConfigError(
                f"tables: |A|·|W| = {self.act_entries}·{self.weight_entries} = {entries} entries "
                f"exceed the budget max_entries={self.max_entries}. Fix: lower act_entries or "
                "weight_entries, or raise max_entries."
            )
        for name in ("reestimate_every", "weight_start", "act_start"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < (1 if name == "reestimate_every" else 0):
                raise ConfigError(
                    f"tables.{name}={value!r} is out of range. Fix: use an integer >= 0 (>= 1 for "
                    "reestimate_every)."
                )
        if self.freeze_step is not None and (
            isinstance(self.freeze_step, bool)
            or not isinstance(self.freeze_step, int)
            or self.freeze_step < 1
        ):
            raise ConfigError(
                f"tables.freeze_step={self.freeze_step!r} is out of range. Fix: use an integer "
                ">= 1 (step 0 estimates the codebooks) or none."
            )


@dataclass(frozen=True)
class Recipe:
    """Quantization-aware-training recipe: the scheme, its bit-widths and LLSQ's scale rules.

    ``scheme`` chooses how the weights of the inner layers are quantized: "llsq" (linear,
    learned scale; methods.md §4), "msq" (row-wise SP2/fixed-point, :class:`MSQOptions`),
    "nonuniform" (k-quantile integer codebooks, :class:`NonUniformOptions`) or "tables"
    (table-based units, :class:`TableOptions`). The first and last layers are linear at
    ``first_layer_bits`` / ``last_layer_bits`` in every scheme but "tables".
    """

    scheme: str = "llsq"
    """Weight quantization scheme of the inner layers: a registered one
    (``hwquant.schemes.available()``: llsq, msq, nonuniform, tables)."""
    weight_bits: int = 4
    """Bits of the weights of every inner Conv2d/Linear (signed, symmetric)."""
    act_bits: int = 4
    """Bits of the activations between layers (unsigned after ReLU, signed otherwise)."""
    first_layer_bits: int | None = 8
    """Weight bits of the first layer; None keeps it float (then ``lower`` refuses the model)."""
    last_layer_bits: int | None = 8
    """Weight bits of the last layer and of the activation feeding it; None keeps it float."""
    input_bits: int = 8
    """Bits of the network input quantizer (signed: inputs are normalised around zero)."""
    weight_granularity: Granularity = "channel"
    """One weight scale per output channel ("channel", LLSQ's kernel-wise) or per tensor."""
    scale_gradient: ScaleGradient = "llsq"
    """Gradient rule of the scales: LLSQ's simulated ±α² (methods.md §4.2) or LSQ's."""
    llsq_norm: int = 2
    """p of the Lp quantization error that LLSQ's scale update compares (1 or 2)."""
    act_error_samples: int = 4096
    """Activation elements sampled per step for LLSQ's error comparison (0: all of them)."""
    scale_init: ScaleInit = "peak"
    """Initial scales of the linear quantizers: "peak" (LLSQ's, from the largest magnitude) or
    "min_error" (the least Lp error, p = llsq_norm; docs/llsq.md §1)."""
    act_scales: ActScales = "trained"
    """Activation scales "trained" by ``scale_gradient`` (LLSQ's rule), or "calibrated": set
    from the first batch by ``scale_init`` and then held, with no gradient (weight scales are
    trained either way; docs/llsq.md §1)."""
    scale_constraint: ScaleConstraint = "free"
    """Scales are free floats, powers of two, or short fixed-point numbers (mantissa·2^-e)."""
    scale_mantissa_bits: int = 8
    """Mantissa bits of a "fixed" scale."""
    requant_bits: int = 16
    """Bits of the integer requantization multiplier M (out = (acc·M) >> s)."""
    bias_bits: int = 32
    """Bits of the integer bias, held at accumulator precision with scale α_w·α_a."""
    bn_freeze_step: int | None = 500
    """Training steps after which the BN statistics folded into the weights freeze (Jacob et al.
    2018 §3.2); None never freezes them. BN is always folded, so what trains is what deploys.
    Freeze before the run ends (:func:`bn_freeze_step_for`): until the freeze every training
    step moves the running statistics, hence the deployed weights and biases, whatever the
    learning rate (docs/llsq.md §1)."""
    accumulator_bits: int | None = None
    """P: signed accumulator bits that every weight layer (first and last included) keeps each
    partial sum within, for any input in range, by construction (accumulator-aware weights,
    :mod:`hwquant.qat.accumulator_bound`; docs/llsq.md §5). The bias is part of that sum: a
    bounded layer holds it in ``min(bias_bits, P)`` bits, and where that is P its function
    clips the bias to them, in training and deployed alike. None: unconstrained."""
    layer_accumulator_bits: dict[str, int] = dataclasses.field(default_factory=dict)
    """Per-layer P by layer name (``[recipe.layer_accumulator_bits]``, e.g.
    ``"features.0.0" = 20``), overriding ``accumulator_bits`` for those layers."""
    accumulator_digit_planes: bool = False
    """Also keep every 4-bit digit plane's partial sums within P (hardware with 4-bit
    multipliers: the engine's ``four_bit`` mode)."""
    msq: MSQOptions = dataclasses.field(default_factory=MSQOptions)
    """Options of the "msq" scheme (the ``[recipe.msq]`` table)."""
    nonuniform: NonUniformOptions = dataclasses.field(default_factory=NonUniformOptions)
    """Options of the "nonuniform" scheme (the ``[recipe.nonuniform]`` table)."""
    tables: TableOptions = dataclasses.field(default_factory=TableOptions)
    """Options of the "tables" scheme (the ``[recipe.tables]`` table)."""

    def __post_init__(self) -> None:
        if self.scheme not in available():  # the registered schemes (hwquant.schemes)
            names = ", ".join(repr(name) for name in available())
            raise ConfigError(f"scheme={self.scheme!r} is not allowed. Fix: use one of {names}.")
        check_bits("weight_bits", self.weight_bits)
        check_bits("act_bits", self.act_bits)
        check_bits("first_layer_bits", self.first_layer_bits, allow_none=True)
        check_bits("last_layer_bits", self.last_layer_bits, allow_none=True)
        check_bits("input_bits", self.input_bits)
        _check_choice("weight_granularity", self.weight_granularity, ("tensor", "channel"))
        _check_choice("scale_gradient", self.scale_gradient, ("llsq", "lsq"))
        _check_choice("scale_init", self.scale_init, get_args(ScaleInit))
        _check_choice("act_scales", self.act_scales, get_args(ActScales))
        _check_choice("scale_constraint", self.scale_constraint, ("free", "pow2", "fixed"))
        if self.llsq_norm not in (1, 2):
            raise ConfigError(f"llsq_norm={self.llsq_norm!r} is not allowed. Fix: use 1 or 2.")
        if not isinstance(self.act_error_samples, int) or self.act_error_samples < 0:
            raise ConfigError(
                f"act_error_samples={self.act_error_samples!r} must be an integer >= 0 "
                "(0 uses every element)."
            )
        check_bits("scale_mantissa_bits", self.scale_mantissa_bits)
        if not isinstance(self.requant_bits, int) or not 2 <= self.requant_bits <= 31:
            raise ConfigError(f"requant_bits={self.requant_bits!r}: use an integer in 2..31.")
        if not isinstance(self.bias_bits, int) or not 8 <= self.bias_bits <= MAX_BIAS_BITS:
            raise ConfigError(
                f"bias_bits={self.bias_bits!r}: use an integer in 8..{MAX_BIAS_BITS}."
            )
        if self.bn_freeze_step is not None and (
            not isinstance(self.bn_freeze_step, int) or self.bn_freeze_step < 0
        ):
            raise ConfigError(
                f"bn_freeze_step={self.bn_freeze_step!r}: use an integer >= 0, or None."
            )

        if self.act_scales != "trained" and get_scheme(self.scheme).prepare is not None:
            raise ConfigError(
                f"act_scales={self.act_scales!r} holds linear activation scales; scheme="
                f"{self.scheme!r} prepares its own activation quantizers. Fix: leave act_scales "
                "at 'trained' (the scheme's options say how its activations train)."
            )
        self._check_accumulators()

    def _check_accumulators(self) -> None:
        if self.accumulator_bits is not None:
            check_accumulator_bits("accumulator_bits", self.accumulator_bits)
        if not isinstance(self.layer_accumulator_bits, dict):
            raise ConfigError(
                f"layer_accumulator_bits={self.layer_accumulator_bits!r} is not a table. Fix: "
                "map layer names to accumulator bits, e.g. {'classifier': 20}."
            )
        for name, bits in self.layer_accumulator_bits.items():
            check_accumulator_bits(f"layer_accumulator_bits[{name!r}]", bits)
        bounded = self.accumulator_bits is not None or bool(self.layer_accumulator_bits)
        if bounded and not get_scheme(self.scheme).accumulator_aware:
            aware = ", ".join(repr(n) for n in available() if get_scheme(n).accumulator_aware)
            raise ConfigError(
                f"accumulator_bits bounds linear weights; scheme={self.scheme!r} has no "
                f"accumulator-aware form. Fix: use scheme={aware}, or leave accumulator_bits "
                "and layer_accumulator_bits unset."
            )
        if self.accumulator_digit_planes and not bounded:
            raise ConfigError(
                "accumulator_digit_planes=True needs an accumulator width to bound the planes "
                "by. Fix: set accumulator_bits (or layer_accumulator_bits)."
            )

    @classmethod
    def from_dict(cls, table: dict[str, Any]) -> Recipe:
        """Build a recipe from a mapping (a TOML table or :meth:`to_dict`), checking every field
        and rejecting unknown keys by name."""
        return build_dataclass(cls, table, "recipe")

    def to_dict(self) -> dict[str, Any]:
        """The recipe as a plain dict (JSON/TOML friendly)."""
        return dataclasses.asdict(self)


def changed_fields(stored: dict[str, Any], now: Recipe) -> list[str]:
    """The fields of ``now`` that differ from ``stored``, a recipe saved by :meth:`Recipe.to_dict`
    (and read back from JSON); a field ``stored`` predates counts at its default.

    >>> changed_fields(Recipe().to_dict() | {"act_bits": 2}, Recipe())
    ['act_bits']
    """
    then = json.loads(json.dumps(Recipe.from_dict(stored).to_dict()))
    current = json.loads(json.dumps(now.to_dict()))
    return sorted(k for k in current if current[k] != then[k])
