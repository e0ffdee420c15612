"""The rows of the reproduction table: which scheme, at which bit-width, with which recipe.

Each quantized row starts from its model's FP32 checkpoint and is trained by QAT with one
:class:`hwquant.Recipe`. The row kinds and the bit-widths each method defines:

* ``llsq``: linear quantization with learned scales (LLSQ; methods.md §4) at W4A4, W3A3, W2A2,
  and W2A8 (the bits of ``nonuniform_W2A8``).
* ``nonuniform``: k-quantile levels on a single power-of-two-scale integer grid (a folded BN's
  gain in each channel's scale, :data:`NONUNIFORM_BN_GAIN`), trained by the gradual noisy
  schedule (Liss et al. / UNIQ; methods.md §1) at W4A4, W3A3, W2A2, and W2A8 (2-bit weights
  under 8-bit activations: UNIQ's own setting, which quantizes activations at 8).
* ``msq``, ``msq_fixed_only``, ``msq_sp2_only``: Mix and Match row-wise SP2 / fixed-point
  (methods.md §2) with an SP2 share of 0.5, 0 and 1, at W4A4 and W3A3 (an SP2 weight of m bits
  is the sum of two powers of two with m1 + m2 = m − 1 exponent bits, m1 ≥ m2 ≥ 1, so W2 has no
  SP2 form).
* ``tables``: table-based units (Covell et al.; methods.md §3) with ``|A|·|W|`` = 40 and 320
  entries, the two table sizes of the paper's MobileNet figures.

The first and last weight layers stay 8-bit linear in every scheme but ``tables`` (the papers'
practice). The recipe steps that the schemes count (BN freeze, MSQ assignment freeze, noisy
stages, table re-estimation) are set as fractions of the row's QAT steps, so that one table
serves a 60-step smoke run and a several-thousand-step GPU run alike.

A row's weight and activation bits are equal unless it names both (``nonuniform_W2A8``). A tier
may run a subset of the table by default (:data:`TIER_ROWS`, by tier name, kept outside
:class:`hwquant.app.bench.tiers.Tier` so that a tier's recorded settings do not change with it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import hwquant
from hwquant.core.errors import ConfigError
from hwquant.qat.recipe import MSQOptions, NonUniformOptions, TableOptions, bn_freeze_step_for

LINEAR_BITS = (4, 3, 2)
MSQ_BITS = (4, 3)
TABLE_ENTRIES = (40, 320)
TABLE_SPLITS = {40: (8, 5), 320: (16, 20)}
"""|A| x |W| of each table size: activation levels x weight levels."""
NONUNIFORM_STAGES = 4
"""Blocks of the gradual schedule: one per residual stage of a CIFAR ResNet-18 (methods.md §1)."""
NONUNIFORM_BN_GAIN = "per_channel"
"""The codebook quantizes each layer's ``sign(γ/σ)·W`` and the BN gain ``|γ/σ|`` goes to the
per-channel requantizer (``NonUniformOptions.bn_gain``, docs/nonuniform.md §1). Measured on
the cpu-long ResNet-20 with power-of-two scales
(``benchmarks/results/cifar10_cpu_long_trials/``): ``nonuniform_W4A4`` 85.53 % against 85.47 %
with one codebook of the folded weights (``"in_codebook"``); at 2-bit weights the folded
codebook fell to chance at the BN freeze.

Its requantizers multiply per channel anyway, so the rows give the non-uniform rows LLSQ's free
scales (``scale_constraint = "free"``; the single-scale form needs ``"pow2"``): they then differ
from the LLSQ rows of the same bits only in the inner layers' weight quantizer. Power-of-two
scales cost most at 2 bits: ``llsq_W2A2`` with them ended at 21.68 % against 66.90 % free, and
``nonuniform_W2A2`` (activations and 8-bit layers) at 65.67 % against 69.50 % free
(``benchmarks/results/cifar10_cpu_long_trials/``)."""
LATE_FREEZE_WEIGHT_BITS = 2
"""Rows with at most this many weight bits, or at least :data:`LATE_FREEZE_ACT_BITS` activation
bits (LLSQ and non-uniform alike), freeze BN late, halfway
through the last of ``NONUNIFORM_STAGES + 1`` equal parts of the run (:func:`late_bn_freeze_step`:
step 526 of 585), when the non-uniform gradual schedule has hard-quantized every block; the
others freeze at the tier's fraction (:func:`hwquant.qat.recipe.bn_freeze_step_for`: step 117
of 585). Measured on the cpu-long ResNet-20, one seed each (the rows of
``benchmarks/results/cifar10_cpu_long/`` and the trials of
``benchmarks/results/cifar10_cpu_long_trials/``; the non-uniform W4A4 pair with the per-channel
gain and power-of-two scales):

===================  ====================  ===================
row                  BN frozen at 117      BN frozen at 526
===================  ====================  ===================
``llsq_W2A8``        10.00 % (collapsed)   87.29 % (the row)
``nonuniform_W2A8``  chance by epoch 1     85.21 % (the row)
``llsq_W2A2``        66.90 %               66.93 % (the row)
``llsq_W4A4``        86.45 % (the row)     84.09 %
``nonuniform_W4A4``  85.53 %               82.97 %
===================  ====================  ===================

With 2-bit weights under 8-bit activations the early freeze is fatal for both weight quantizers;
at W2A2 it makes no difference; at 4 bits the late freeze costs 2.4-2.6 points, so those rows
keep the tier's freeze. LLSQ at W8A8 (the accumulator-aware curve of
``benchmarks/accumulator_aware_cifar10.py``, no row of the table) collapsed as well with the
early freeze (10.00 %, running train accuracy 64 % in its first epoch, chance from the second):
what the collapsing runs share is 8-bit activations, hence :data:`LATE_FREEZE_ACT_BITS`."""
LATE_FREEZE_ACT_BITS = 8
MSQ_FREEZE_FRACTION = 0.5
TABLE_ACT_START_FRACTION = 0.2
TABLE_FREEZE_FRACTION = 2 / 3
"""The table rows freeze their codebooks after this fraction of the run
(``TableOptions.freeze_step``), so that the last third fine-tunes the network to its final
tables, as the Fashion-MNIST runs that met both table targets did (docs/tables.md: 3 QAT
epochs, the last one frozen). Without it the codebooks were re-estimated every tenth of the
run to the end, the last time 5 steps before it."""
REFRESH_FRACTION = 0.1
MIN_ERROR_INIT_BITS = 2
"""Rows whose LLSQ-scaled quantizers (activations, and the weights of every scheme but the
non-uniform codebook) have at most this many bits start every linear quantizer from the
least-error scales (``scale_init = "min_error"``, docs/llsq.md §1), wider ones from the authors'
peak rule (at 2 bits it rounds every weight below half its channel's peak to 0). Measured from
the cpu-full checkpoint (``benchmarks/results/cifar10_qat_probes.json``): ``llsq_W2A2`` after
100 QAT steps of 64 at 40.81 % with ``min_error``, 10.00 % (dead) with ``peak``; ``llsq_W4A4``
right after calibration, before any step, at 72.26 % with ``min_error``, 77.44 % with ``peak``.
W3A3 is not measured and keeps the authors' rule. With the activation scales held
(:data:`ACT_SCALES`) no step can revive a dead start. The cpu-long ``nonuniform_W2A2`` row
with one codebook of the folded weights collapsed from either start; with the BN gain per
channel (:data:`NONUNIFORM_BN_GAIN`) it trains from the least-error start. ``llsq_W2A8`` takes
the least-error start for its 2-bit weights, as ``llsq_W2A2``; it collapsed from either start."""

ACT_SCALES = "calibrated"
"""Every row with linear activation quantizers (all but ``tables``) sets its activation scales
on the first training batch by its init rule and holds them (``Recipe.act_scales``); weight
scales train by LLSQ's rule. Measured from the cpu-full checkpoint
(``benchmarks/results/cifar10_qat_probes.json``, the row's 585 steps of 256): ``llsq_W4A4``
ends at 86.21 % with held activation scales against the trained-scale row's 83.66 %. Under
this trainer's SGD (lr 0.01, momentum 0.9) LLSQ's ±α² step moves an activation scale by
several per cent a step, to the least-error band within the first epoch (docs/llsq.md §1)."""


@dataclass(frozen=True)
class RowSpec:
    """One quantized row: a kind of :data:`ROW_KINDS` and its bits (table entries for tables)."""

    kind: str
    size: int
    """Weight bits, or the table entries |A|·|W| for a kind sized by entries (``tables``)."""
    act_bits: int | None = None
    """Activation bits; None: the weight bits (W = A). A kind sized by table entries has none
    (its |A| is in size)."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(
                f"unknown row kind {self.kind!r}. Fix: use one of {', '.join(ROW_KINDS)}."
            )
        if KINDS[self.kind].entries:
            if self.act_bits is not None:
                raise ConfigError(
                    f"a {self.kind} row has no activation bits (act_bits={self.act_bits}). Fix: "
                    "give the table entries |A|·|W| as its size only."
                )
        elif self.act_bits is None:  # W = A: one row, however it is spelled
            object.__setattr__(self, "act_bits", self.size)

    @property
    def name(self) -> str:
        """``llsq_W4A4``, ``msq_sp2_only_W3A3``, ``nonuniform_W2A8``, ``tables_40``, ..."""
        if KINDS[self.kind].entries:
            return f"{self.kind}_{self.size}"
        return f"{self.kind}_W{self.size}A{self.act_bits}"

    def recipe(self, qat_steps: int) -> hwquant.Recipe:
        """The recipe of this row for a QAT run of ``qat_steps`` optimizer steps."""
        return KINDS[self.kind].recipe(self, qat_steps)


def _refresh_every(qat_steps: int) -> int:
    return max(1, round(REFRESH_FRACTION * qat_steps))


def _linear(
    row: RowSpec, qat_steps: int, linear_weights: bool = True
) -> dict[str, int | str | None]:
    """The recipe fields of a row with weight and activation bits (8-bit input; activation
    scales calibrated on the first batch and held, :data:`ACT_SCALES`, from the least-error
    scales at :data:`MIN_ERROR_INIT_BITS`). ``linear_weights``: the scheme quantizes the row's
    weight bits with LLSQ's scales (False for the non-uniform codebook), so they count for the
    start too."""
    assert row.act_bits is not None  # a row with bits has activation bits
    linear_bits = min(row.size, row.act_bits) if linear_weights else row.act_bits
    return {
        "weight_bits": row.size,
        "act_bits": row.act_bits,
        "input_bits": 8,
        "scale_init": "min_error" if linear_bits <= MIN_ERROR_INIT_BITS else "peak",
        "act_scales": ACT_SCALES,
        "bn_freeze_step": (
            late_bn_freeze_step(qat_steps)
            if row.size <= LATE_FREEZE_WEIGHT_BITS or row.act_bits >= LATE_FREEZE_ACT_BITS
            else bn_freeze_step_for(qat_steps)
        ),
    }


def nonuniform_stage_steps(qat_steps: int) -> int:
    """``T``: the steps of one of the :data:`NONUNIFORM_STAGES` noisy stages of UNIQ's gradual
    schedule and of its final fine-tune, ``qat_steps // (NONUNIFORM_STAGES + 1)``.

    >>> nonuniform_stage_steps(585)
    117
    """
    return qat_steps // (NONUNIFORM_STAGES + 1)


def late_bn_freeze_step(qat_steps: int) -> int:
    """The BN freeze of a row with at most :data:`LATE_FREEZE_WEIGHT_BITS` weight bits or at
    least :data:`LATE_FREEZE_ACT_BITS` activation bits: with ``T``
    (:func:`nonuniform_stage_steps`) the non-uniform gradual schedule's stage, step
    ``NONUNIFORM_STAGES·T + T // 2``, halfway through the final fine-tune that follows the
    noisy stages.

    >>> late_bn_freeze_step(585)
    526
    """
    stage = nonuniform_stage_steps(qat_steps)
    return NONUNIFORM_STAGES * stage + stage // 2


def _llsq_recipe(row: RowSpec, qat_steps: int) -> hwquant.Recipe:
    return hwquant.Recipe(**_linear(row, qat_steps))


def _nonuniform_recipe(row: RowSpec, qat_steps: int) -> hwquant.Recipe:
    """UNIQ's gradual schedule in :data:`NONUNIFORM_STAGES` noisy stages of ``T`` steps and a
    final fine-tune of ``T`` (``T = qat_steps // (stages + 1)``); BN freezes as in every row
    (:data:`LATE_FREEZE_WEIGHT_BITS`)."""
    stage = nonuniform_stage_steps(qat_steps)
    options = NonUniformOptions(
        stages=NONUNIFORM_STAGES, steps_per_stage=stage, bn_gain=NONUNIFORM_BN_GAIN
    )
    fields = _linear(row, qat_steps, linear_weights=False)
    return hwquant.Recipe(scheme="nonuniform", nonuniform=options, **fields)


def _msq_recipe(sp2_share: float, row: RowSpec, qat_steps: int) -> hwquant.Recipe:
    msq = MSQOptions(
        sp2_share=sp2_share,
        refresh_steps=_refresh_every(qat_steps),
        freeze_step=round(MSQ_FREEZE_FRACTION * qat_steps),
    )
    return hwquant.Recipe(scheme="msq", msq=msq, **_linear(row, qat_steps))


def _tables_recipe(row: RowSpec, qat_steps: int) -> hwquant.Recipe:
    acts, weights = TABLE_SPLITS[row.size]
    options = TableOptions(
        act_entries=acts,
        weight_entries=weights,
        max_entries=row.size,
        reestimate_every=_refresh_every(qat_steps),
        act_start=round(TABLE_ACT_START_FRACTION * qat_steps),
        freeze_step=max(1, round(TABLE_FREEZE_FRACTION * qat_steps)),
    )
    return hwquant.Recipe(
        scheme="tables", tables=options, bn_freeze_step=bn_freeze_step_for(qat_steps)
    )


@dataclass(frozen=True)
class RowKind:
    """A kind of row: the sizes it runs, the recipe of one of its rows, and whether its size
    counts table entries |A|·|W| (then the row has no weight or activation bits)."""

    sizes: tuple[int, ...]
    recipe: Callable[[RowSpec, int], hwquant.Recipe]
    mixed: tuple[tuple[int, int], ...] = ()
    """Rows whose weight and activation bits differ: (weight bits, activation bits)."""
    entries: bool = False


KINDS: dict[str, RowKind] = {
    "llsq": RowKind(LINEAR_BITS, _llsq_recipe, mixed=((2, 8),)),
    "nonuniform": RowKind(LINEAR_BITS, _nonuniform_recipe, mixed=((2, 8),)),
    "msq": RowKind(MSQ_BITS, partial(_msq_recipe, 0.5)),
    "msq_fixed_only": RowKind(MSQ_BITS, partial(_msq_recipe, 0.0)),
    "msq_sp2_only": RowKind(MSQ_BITS, partial(_msq_recipe, 1.0)),
    "tables": RowKind(TABLE_ENTRIES, _tables_recipe, entries=True),
}
"""The row kinds in table order; the MSQ kinds differ in their SP2 share (0.5, 0, 1)."""
ROW_KINDS: tuple[str, ...] = tuple(KINDS)


def all_rows() -> tuple[RowSpec, ...]:
    """Every row of the table, in the order they run."""
    return tuple(
        row
        for name, kind in KINDS.items()
        for row in (
            *(RowSpec(name, size) for size in kind.sizes),
            *(RowSpec(name, w, a) for w, a in kind.mixed),
        )
    )


ROW_NAMES: tuple[str, ...] = tuple(row.name for row in all_rows())

ISSUE_ROWS: tuple[str, ...] = (
    "llsq_W4A4",
    "llsq_W3A3",
    "llsq_W2A2",
    "llsq_W2A8",
    "nonuniform_W4A4",
    "nonuniform_W2A2",
    "nonuniform_W2A8",
    "msq_W4A4",
    "msq_fixed_only_W4A4",
    "msq_sp2_only_W4A4",
    "tables_40",
    "tables_320",
)
"""The issue's set of rows at the papers' scale, and ``llsq_W2A8``: LLSQ at the bits of
``nonuniform_W2A8``, the comparison of the two weight quantizers where 2-bit activations do not
bound both (the stored cpu-full run predates it and lacks it)."""

TIER_ROWS: dict[str, tuple[str, ...]] = {
    "cpu-full": ISSUE_ROWS,
    "cpu-long": ISSUE_ROWS,
    "gpu": ("llsq_W4A4", "llsq_W2A2", "msq_W4A4", "tables_320"),
}
"""The rows a tier runs when ``--rows`` is not given (tiers not named here: every row).
``cpu-full`` and ``cpu-long``: the issue's set; ``gpu``: what fits one command on the device
(docs/results.md)."""


def select_rows(names: list[str] | None, tier: str | None = None) -> tuple[RowSpec, ...]:
    """The rows named in ``names`` (row names or kinds), in table order; None: the rows of
    ``tier`` in :data:`TIER_ROWS`, or every row.

    Raises:
        ConfigError: a name is neither a row nor a kind; the message lists both.
    """
    rows = all_rows()
    if names is None:
        if tier not in TIER_ROWS:
            return rows
        names = list(TIER_ROWS[tier])
    unknown = [n for n in names if n not in ROW_NAMES and n not in ROW_KINDS]
    if unknown:
        raise ConfigError(
            f"unknown row(s) {', '.join(unknown)}. Fix: use row names "
            f"({', '.join(ROW_NAMES)}) or row kinds ({', '.join(ROW_KINDS)})."
        )
    return tuple(r for r in rows if r.name in names or r.kind in names)
