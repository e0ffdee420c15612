"""Errors raised by hwquant.

Every error names the problem and the fix, so that a user can act on the message alone.
All derive from :class:`HwquantError`, so one ``except`` catches them.
"""

from __future__ import annotations


class HwquantError(Exception):
    """Base class of every error hwquant raises on purpose."""


class ConfigError(HwquantError, ValueError):
    """A recipe or config field is unknown, mistyped or out of range."""


class AccumulatorBitsError(ConfigError):
    """``accumulator_bits`` is too small for even one non-zero weight of a layer, given its
    input bits; the message names the layer and the smallest width that works."""


class UnsupportedLayerError(HwquantError, TypeError):
    """``prepare`` met a module or operation it cannot quantize."""


class NonFiniteError(HwquantError, ValueError):
    """NaN or Inf found in weights or data."""


class AccumulatorOverflowError(HwquantError, OverflowError):
    """An accumulator exceeded its width under the ``raise`` overflow policy."""


class FileFormatError(HwquantError, ValueError):
    """A checkpoint or IntModel file is truncated, corrupted or of an unknown version."""


class VerificationError(HwquantError, AssertionError):
    """``verify(strict=True)``: the integers differ, or their equality proves little."""


class DataError(HwquantError, FileNotFoundError):
    """A data set directory or file is missing or malformed."""


class ToolError(HwquantError, RuntimeError):
    """An external tool (Yosys, a simulator) is missing or its run failed; the message carries
    the tool's own error text."""


def check_finite(name: str, tensor) -> None:
    """Raise :class:`NonFiniteError` if ``tensor`` holds NaN or Inf.

    ``name`` says where the tensor came from (a parameter name, "input batch", ...).
    """
    import numpy as np
    import torch

    if isinstance(tensor, torch.Tensor):
        bad = int((~torch.isfinite(tensor)).sum()) if tensor.is_floating_point() else 0
    else:
        arr = np.asarray(tensor)
        bad = int((~np.isfinite(arr)).sum()) if np.issubdtype(arr.dtype, np.floating) else 0
    if bad:
        raise NonFiniteError(
            f"{name} holds {bad} NaN/Inf value(s). Fix: check the data pipeline or the learning "
            "rate (a diverged run produces NaN weights), then restart from the last good "
            "checkpoint."
        )
