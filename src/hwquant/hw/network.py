"""The work of each weight layer of an :class:`~hwquant.ir.intmodel.IntModel`, as the cost model
sees it: rows, fan-in, output positions, operand widths and the stored weight bits.

In the GEMM view of a layer (methods.md §2.2) row ``r`` is output channel ``r``; it holds
``fan_in`` weights and is applied at every output position, so it costs
``fan_in · positions`` MACs per image, and the layer ``rows · fan_in · positions``. The output
positions come from running the model's integer engine once on a zero input of the given
shape. Models come from an IntModel file (:func:`hwquant.load`) or from a zoo model lowered by
:func:`hwquant.app.zoo.lower_zoo_model`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from hwquant.core.errors import ConfigError, HwquantError
from hwquant.ir.intmodel import IntModel, WeightNode

Role = Literal["first", "inner", "last"]


@dataclass(frozen=True)
class LayerWork:
    """One weight layer's work per image.

    ``role``: "first" (reads the network input) and "last" (gives the output) are fixed-point
    layers in every scheme (they run on the DSPs); "inner" layers may be SP2. ``sp2_rows`` is the
    number of SP2 rows an MSQ encoding fixes (None: no encoding; the solver's share applies).
    """

    name: str
    op: str
    role: Role
    rows: int
    fan_in: int
    positions: int
    weight_bits: int
    act_bits: int
    act_signed: bool
    storage_bits: int
    sp2_rows: int | None = None

    @property
    def row_macs(self) -> int:
        """MACs of one row per image: ``fan_in · positions``."""
        return self.fan_in * self.positions

    @property
    def macs(self) -> int:
        """MACs of the layer per image: ``rows · fan_in · positions``."""
        return self.rows * self.row_macs


def _role(model: IntModel, node: WeightNode) -> Role:
    if model.input.name in node.inputs:
        return "first"
    return "last" if node.name == model.output else "inner"


def _layer_work(model: IntModel, node: WeightNode, out_shape: tuple[int, ...]) -> LayerWork:
    encoding, weight_bits = node.encoding, node.weight_bits
    stored, sp2_rows = node.weight.size * weight_bits, None
    if encoding is not None:
        stored, weight_bits = encoding.storage_bits(), encoding.multiplier_bits(weight_bits)
        sp2_rows = encoding.multiply_free_rows() if encoding.splits_rows else None
    return LayerWork(
        name=node.name,
        op=node.op,
        role=_role(model, node),
        rows=int(node.weight.shape[0]),
        fan_in=node.fan_in(),
        positions=math.prod(out_shape[2:]),
        weight_bits=weight_bits,
        act_bits=node.in_bits,
        act_signed=node.in_signed,
        storage_bits=int(stored),
        sp2_rows=sp2_rows,
    )


def layer_work(model: IntModel, input_shape: tuple[int, ...]) -> list[LayerWork]:
    """The work of every weight layer of ``model`` for one input of ``input_shape`` (C, H, W or
    features, without the batch).

    Raises:
        ConfigError: the model cannot run on that shape.
    """
    from hwquant.engine import run

    x = torch.zeros((1, *input_shape), dtype=torch.int64)
    try:
        values = run(model, x, trace=True, stats=False).values
    except (RuntimeError, HwquantError) as exc:  # torch shape errors, the engine's own checks
        raise ConfigError(
            f"the model does not run on inputs of shape {tuple(input_shape)} ({exc}). Fix: "
            "give the input shape the model was built for (--input-size/--in-channels)."
        ) from exc
    return [_layer_work(model, n, tuple(values[n.name].shape)) for n in model.weight_nodes()]
