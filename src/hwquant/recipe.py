"""Quantization recipes: what ``hwquant.prepare`` builds.

A :class:`Recipe` is a frozen dataclass; every field is validated when it is made, and
:meth:`Recipe.from_dict` rejects unknown fields with the list of allowed ones, so a TOML
table maps onto it one to one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from hwquant.errors import ConfigError

ScaleGradient = Literal["llsq", "lsq"]
ScaleConstraint = Literal["free", "pow2", "fixed"]
Granularity = Literal["tensor", "channel"]

MIN_BITS, MAX_BITS = 1, 16


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
class Recipe:
    """LLSQ quantization-aware-training recipe (methods.md §4)."""

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
    2018 §3.2); None never freezes them. BN is always folded, so what trains is what deploys."""

    def __post_init__(self) -> None:
        check_bits("weight_bits", self.weight_bits)
        check_bits("act_bits", self.act_bits)
        check_bits("first_layer_bits", self.first_layer_bits, allow_none=True)
        check_bits("last_layer_bits", self.last_layer_bits, allow_none=True)
        check_bits("input_bits", self.input_bits)
        _check_choice("weight_granularity", self.weight_granularity, ("tensor", "channel"))
        _check_choice("scale_gradient", self.scale_gradient, ("llsq", "lsq"))
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
        if not isinstance(self.bias_bits, int) or not 8 <= self.bias_bits <= 48:
            raise ConfigError(f"bias_bits={self.bias_bits!r}: use an integer in 8..48.")
        if self.bn_freeze_step is not None and (
            not isinstance(self.bn_freeze_step, int) or self.bn_freeze_step < 0
        ):
            raise ConfigError(
                f"bn_freeze_step={self.bn_freeze_step!r}: use an integer >= 0, or None."
            )

    @classmethod
    def from_dict(cls, table: dict[str, Any]) -> Recipe:
        """Build a recipe from a mapping (a TOML table), rejecting unknown keys by name."""
        allowed = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(table) - set(allowed))
        if unknown:
            raise ConfigError(
                f"unknown recipe field(s) {', '.join(unknown)}. Fix: use only {', '.join(allowed)}."
            )
        return cls(**table)

    def to_dict(self) -> dict[str, Any]:
        """The recipe as a plain dict (JSON/TOML friendly)."""
        return dataclasses.asdict(self)
