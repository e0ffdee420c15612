"""The quantizer protocol every scheme implements (DESIGN: one protocol, one file per scheme).

A quantizer is an ``nn.Module`` whose ``forward`` returns the fake-quantized value with the
scheme's own gradient rule; it gives its integer codes, its level set (for plots, tables and
the cost model) and its integer export as a small frozen dataclass. The QAT layers and
``lower`` rely on nothing else, so a new scheme (SP2, codebooks, tables) plugs in by
implementing these members.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch


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
