"""Zero insertion: the input of a transposed convolution written as a convolution.

``ConvTranspose2d(stride=s, padding=p, output_padding=o)`` equals a stride-1 convolution, by
the transposed and flipped kernel, of the input with ``s − 1`` zeros between neighbours and
``k − 1 − p`` zeros before, ``k − 1 − p + o`` after each axis (:mod:`hwquant.qat.conv_forms`).
On codes of scale ``α`` the inserted zeros are the value 0, so the op moves codes exactly and
keeps their scale; ``prepare`` keeps it as it is.
"""

from __future__ import annotations

import torch
from torch import nn


def zero_insert(
    x: torch.Tensor,
    stride: tuple[int, int],
    before: tuple[int, int],
    after: tuple[int, int],
    fill: int = 0,
) -> torch.Tensor:
    """``x`` ``[N, C, H, W]`` with ``stride − 1`` zeros between neighbours and ``before`` /
    ``after`` zeros around, along height and width (``fill`` in their place: the table
    scheme's padding index, whose table row is 0).

    >>> zero_insert(torch.tensor([[[[1, 2]]]]), (1, 2), (0, 1), (0, 0)).tolist()
    [[[[0, 1, 0, 2]]]]
    """
    n, c, h, w = x.shape
    (sh, sw), (bh, bw), (ah, aw) = stride, before, after
    out = x.new_full((n, c, bh + (h - 1) * sh + 1 + ah, bw + (w - 1) * sw + 1 + aw), fill)
    out[:, :, bh : bh + (h - 1) * sh + 1 : sh, bw : bw + (w - 1) * sw + 1 : sw] = x
    return out


class ZeroInsert(nn.Module):
    """:func:`zero_insert` as a module (its geometry fixed)."""

    def __init__(
        self, stride: tuple[int, int], before: tuple[int, int], after: tuple[int, int]
    ) -> None:
        super().__init__()
        self.stride, self.before, self.after = stride, before, after

    def extra_repr(self) -> str:
        return f"stride={self.stride}, before={self.before}, after={self.after}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return zero_insert(x, self.stride, self.before, self.after)
