"""The quantizer protocol every scheme implements (DESIGN: one protocol, one file per scheme).

A quantizer is an ``nn.Module`` whose ``forward`` returns the fake-quantized value with the
scheme's own gradient rule; it gives its integer codes, its level set (for plots, tables and
the cost model) and its integer export as a small frozen dataclass. The QAT layers and
``lower`` rely on nothing else, so a new scheme (SP2, codebooks, tables) plugs in by
implementing these members.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch

if TYPE_CHECKING:
    from hwquant.ir.intmodel import WeightEncoding


@runtime_checkable
class Quantizer(Protocol):
    """What the QAT layers, ``lower`` and the reports need of a quantization scheme."""

    bits: int
    """Code width."""
    signed: bool
    """Whether codes can be negative."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Fake-quantized ``x`` (training: with the scheme's gradient rule)."""
        ...

    def codes(self, x: torch.Tensor) -> torch.Tensor:
        """Integer codes of ``x`` (int64), as deployed."""
        ...

    def levels(self) -> torch.Tensor:
        """Representable values, one row per scale (per tensor, channel or row)."""
        ...

    def export(self) -> Any:
        """The integer export: a frozen dataclass of codes' meaning (bits, scales, codebook)."""
        ...


@runtime_checkable
class WeightQuantizer(Quantizer, Protocol):
    """What :class:`hwquant.qat.nn.QuantWeightLayer` needs of a weight scheme.

    The deployed weight of row ``r`` is ``scale_value()[r] · codes(w)[r]`` with integer codes:
    a linear code (LLSQ), an SP2 or fixed-point integer on the row's grid (MSQ) or a codebook
    level on the layer's integer grid (non-uniform). The engine multiplies activations by these
    integers (or shifts and adds, or looks them up); ``encode`` gives the form they are stored in.
    """

    int_bits: int
    """Signed bits of the integer weights ``codes(w)`` (what a multiplier sees)."""

    def scale_value(self) -> torch.Tensor:
        """Value of one integer unit: one entry, or one per output channel (row)."""
        ...

    def encode(self, w: torch.Tensor) -> WeightEncoding | None:
        """The stored form of ``codes(w)`` (shift pairs, codebook indices), or None when the
        integer codes are stored as they are."""
        ...
