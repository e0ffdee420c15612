"""Argument types shared by the subcommands: input shapes and counts, checked at parse time.

An ``argparse`` type that raises ``argparse.ArgumentTypeError`` makes the command exit with the
usage code (2) and a message naming the option, before any work starts.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass


@dataclass(frozen=True)
class InputShape:
    """An ``--input-shape``: the per-sample shape and the batch size, when one was given."""

    sample: tuple[int, ...]
    """``C,H,W`` of an image model, ``F`` of a vector model."""
    batch: int | None = None
    """The leading ``N`` of ``N,C,H,W``, None for the per-sample form."""


def input_shape(text: str) -> InputShape:
    """Parse ``C,H,W`` or ``N,C,H,W`` (``F`` for a model on vectors).

    >>> input_shape("1,28,28")
    InputShape(sample=(1, 28, 28), batch=None)
    >>> input_shape("8,1,28,28")
    InputShape(sample=(1, 28, 28), batch=8)
    """
    try:
        sizes = tuple(int(v) for v in text.split(","))
    except ValueError:
        sizes = ()
    if len(sizes) not in (1, 3, 4) or min(sizes) < 1:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a shape. Fix: give positive sizes C,H,W (e.g. 1,28,28) or "
            "N,C,H,W (e.g. 1,1,28,28); F for a model on vectors."
        )
    if len(sizes) == 4:
        return InputShape(sizes[1:], sizes[0])
    return InputShape(sizes)


def positive_int(text: str) -> int:
    """An integer of at least 1 (a count of images, pixels, lanes ...)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a positive integer. Fix: give 1 or more."
        )
    return value
