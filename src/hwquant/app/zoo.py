"""Zoo models lowered untrained, for the hardware cost model: only their shapes and widths count."""

from __future__ import annotations

import torch

from hwquant.ir.intmodel import IntModel
from hwquant.models import build
from hwquant.qat.lower import lower
from hwquant.qat.prepare import prepare
from hwquant.qat.recipe import MSQOptions, Recipe
from hwquant.schemes import msq  # noqa: F401  (registers the scheme the zoo is lowered with)


def lower_zoo_model(
    name: str,
    weight_bits: int,
    act_bits: int,
    *,
    sp2_share: float,
    num_classes: int = 10,
    in_channels: int = 3,
    input_size: int = 32,
    seed: int = 0,
) -> IntModel:
    """The zoo model ``name`` (``hwquant.models.build``), prepared at ``weight_bits``/``act_bits``
    (first and last layers 8-bit) and lowered with a random example: an untrained model, whose
    shapes and widths are all the cost model needs. The inner layers are MSQ with ``sp2_share`` of
    their rows SP2 (give the solver's share, :func:`hwquant.hw.sp2_share_for`), and their
    encodings fix the rows of the MSQ design.
    """
    torch.manual_seed(seed)
    model = build(name, num_classes=num_classes, in_channels=in_channels, input_size=input_size)
    options = MSQOptions(sp2_share=sp2_share)
    recipe = Recipe(scheme="msq", weight_bits=weight_bits, act_bits=act_bits, msq=options)
    example = torch.randn(2, in_channels, input_size, input_size)
    return lower(prepare(model.eval(), recipe), example)
