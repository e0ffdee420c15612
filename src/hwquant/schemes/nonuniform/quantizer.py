"""Non-uniform weight quantizer with a single-scale integer codebook (Liss et al. 2018 on UNIQ;
methods.md §1, §7.1).

Every step the layer's weights ``w`` (BN folded in) are fitted with a CDF ``F`` and quantized to
``k = 2^b`` k-quantile levels (:mod:`~hwquant.schemes.nonuniform.kquantile`) snapped onto a
``B``-bit integer grid of one power-of-two scale ``s``
(:mod:`~hwquant.schemes.nonuniform.integer_grid`)::

    j(w) = #{ i : t_i ≤ w }              the bin of w, a b-bit index
    Q(w) = s · c_{j(w)}                  c: the layer's codebook of k B-bit integers

The forward pass depends on the layer's stage in the gradual schedule
(:mod:`~hwquant.schemes.nonuniform.gradual`): float (``w``), noisy (UNIQ's noise in ``u = F(w)``,
:mod:`~hwquant.schemes.nonuniform.noise`, no STE) or quantized (``Q(w)`` with the straight-through
gradient, or no gradient with ``freeze_quantized``). Evaluation is always quantized, and
``Q(w) = s · c_j`` is exactly the product the integer engine computes (``s`` is a power of two),
so what trains is what deploys. The integer weights are ``codes(w) = c_{j(w)}``; they are stored
as :class:`~hwquant.ir.intmodel.CodebookEncoding` (indices and the codebook).

The codebook is one per layer (the "single scale" of the paper); ``per_channel`` granularity
does not apply. Activations stay uniform with power-of-two scales: a recipe of this scheme must
set ``scale_constraint = "pow2"`` (checked by :func:`setup_schedule`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import fx, nn

from hwquant.core.errors import ConfigError
from hwquant.ir.intmodel import CodebookEncoding
from hwquant.qat.host_mirror import HostMirrored
from hwquant.qat.nn.bn_fold import fold_bn
from hwquant.qat.recipe import Recipe, check_bits
from hwquant.schemes.nonuniform.gradual import Stage, schedule_blocks, stage_at
from hwquant.schemes.nonuniform.integer_grid import check_codebook_fits, snap_levels
from hwquant.schemes.nonuniform.kquantile import (
    FittedCDF,
    assign_bins,
    fit_cdf,
    kquantile_levels,
    kquantile_thresholds,
)
from hwquant.schemes.nonuniform.noise import uniformized_noise


@dataclass(frozen=True)
class CodebookSpec:
    """Integer export of a codebook quantizer: value = scale · codebook[index]."""

    bits: int  # b: index bits, k = 2^b levels
    grid_bits: int  # B: signed bits of the codebook integers
    scale: float  # the power-of-two scale s
    codebook: np.ndarray  # int64 [k], ascending


class _ExactStraightThrough(torch.autograd.Function):
    """Value of ``hard`` exactly, gradient of ``w`` (the identity STE); ``w + (hard − w)``
    would round, and the forward value must be the deployed ``s·c`` bit for bit."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, w: torch.Tensor, hard: torch.Tensor
    ) -> torch.Tensor:
        return hard

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return grad, None


class NonUniformQuantizer(HostMirrored):
    """k-quantile weight quantizer on a single-scale integer grid, with UNIQ's schedule.

    Args:
        bits: b, index bits (``k = 2^b`` levels).
        grid_bits: B, signed bits of the integer grid.
        cdf: "gaussian" or "empirical".
        steps_per_stage: T, training steps of the noisy stage.
        freeze_quantized: no gradient once hard-quantized (else the STE).

    ``block`` (the layer's block in the schedule) and ``layer_name`` (for error messages) are
    set by :func:`setup_schedule`; the training-step counter ``step`` is a buffer, saved with the
    model.
    """

    def __init__(
        self,
        bits: int,
        *,
        grid_bits: int = 8,
        cdf: str = "gaussian",
        steps_per_stage: int = 0,
        freeze_quantized: bool = False,
    ) -> None:
        super().__init__()
        check_bits("bits", bits)
        check_bits("grid_bits", grid_bits)
        check_codebook_fits(bits, grid_bits)
        self.bits, self.signed, self.grid_bits = bits, True, grid_bits
        self.k = 2**bits
        self.cdf_kind = cdf
        self.steps_per_stage, self.freeze_quantized = steps_per_stage, freeze_quantized
        self.block, self.layer_name = 0, ""
        self.register_buffer("step", torch.zeros((), dtype=torch.int64))
        self.register_buffer("grid_scale", torch.ones(1))
        self.register_buffer("codebook", torch.zeros(self.k, dtype=torch.int64))

    def extra_repr(self) -> str:
        return (
            f"bits={self.bits}, grid_bits={self.grid_bits}, cdf={self.cdf_kind}, "
            f"block={self.block}, steps_per_stage={self.steps_per_stage}"
        )

    @property
    def int_bits(self) -> int:
        """B: the codebook integers are signed B-bit numbers."""
        return self.grid_bits

    def training_step(self) -> int:
        """Training steps taken so far (forward calls in training mode)."""
        return self.host("step")

    def stage(self) -> Stage:
        """The schedule stage of the next forward (evaluation is always "quantized")."""
        if not self.training:
            return "quantized"
        return stage_at(self.training_step(), self.block, self.steps_per_stage)

    def _fit(self, w: torch.Tensor) -> tuple[FittedCDF, torch.Tensor]:
        """Fit F to ``w`` (no gradient), refresh the codebook and the scale; return F and the
        thresholds t_1..t_{k−1}."""
        cdf = fit_cdf(w, self.cdf_kind, self.layer_name)
        with torch.no_grad():
            levels = kquantile_levels(cdf, self.k)
            codebook, scale = snap_levels(levels, self.grid_bits, self.layer_name)
            self.codebook.copy_(codebook)
            self.grid_scale.copy_(scale)
            return cdf, kquantile_thresholds(cdf, self.k)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        """Float, noisy or quantized ``w`` by the schedule stage; advances the step counter."""
        stage = self.stage()
        if self.training:
            self.advance("step")
        if stage == "float":  # not fitted yet: a float layer cannot fail on its codebook
            return w
        cdf, thresholds = self._fit(w)
        if stage == "noisy":
            return uniformized_noise(w, cdf, self.k)
        hard = self.codebook[assign_bins(w, thresholds)].to(w.dtype) * self.grid_scale.to(w.dtype)
        return hard if self.freeze_quantized else _ExactStraightThrough.apply(w, hard)

    @torch.no_grad()
    def indices(self, w: torch.Tensor) -> torch.Tensor:
        """The b-bit index (bin) of every weight, int64."""
        return assign_bins(w, self._fit(w)[1])

    @torch.no_grad()
    def codes(self, w: torch.Tensor) -> torch.Tensor:
        """Integer weights: the codebook level of each weight's bin (int64)."""
        return self.codebook[self.indices(w)]

    def scale_value(self) -> torch.Tensor:
        """The power-of-two scale s (shape [1])."""
        return self.grid_scale

    @torch.no_grad()
    def encode(self, w: torch.Tensor) -> CodebookEncoding:
        """Indices plus the layer's integer codebook (one row)."""
        indices = self.indices(w)
        return CodebookEncoding(
            indices=indices.cpu().numpy(),
            codebook=self.codebook.view(1, -1).cpu().numpy(),
            index_bits=self.bits,
            grid_bits=self.grid_bits,
        )

    @torch.no_grad()
    def levels(self) -> torch.Tensor:
        """The k representable values ``s·c`` of the last weights seen, as a [1, k] row."""
        return (self.grid_scale.double() * self.codebook.double()).view(1, -1)

    @torch.no_grad()
    def export(self) -> CodebookSpec:
        """bits, grid bits, scale and codebook of the last weights seen."""
        return CodebookSpec(
            self.bits, self.grid_bits, float(self.grid_scale), self.codebook.cpu().numpy().copy()
        )


def nonuniform_weight_quantizer(
    recipe: Recipe, bits: int, weight: torch.Tensor, per_channel: bool
) -> NonUniformQuantizer:
    """``prepare``'s factory for scheme "nonuniform" (one codebook per layer, so
    ``per_channel`` does not apply); :func:`setup_schedule` then places it in the schedule."""
    options = recipe.nonuniform
    return NonUniformQuantizer(
        bits,
        grid_bits=options.grid_bits,
        cdf=options.cdf,
        steps_per_stage=options.steps_per_stage,
        freeze_quantized=options.freeze_quantized,
    )


def nonuniform_layers(model: fx.GraphModule) -> list[tuple[str, nn.Module]]:
    """``(name, layer)`` of every layer with a :class:`NonUniformQuantizer`, in graph order."""
    layers = []
    for node in model.graph.nodes:
        if node.op == "call_module":
            module = model.get_submodule(node.target)
            if isinstance(getattr(module, "weight_quant", None), NonUniformQuantizer):
                layers.append((str(node.target), module))
    return layers


def setup_schedule(model: fx.GraphModule, recipe: Recipe) -> None:
    """Called by ``prepare`` for scheme "nonuniform": check the recipe, give every quantizer its
    block of the schedule and its layer name, and check that each layer's weights make a
    codebook (raising at prepare time rather than at the first step).

    Raises:
        ConfigError: ``scale_constraint`` is not "pow2"; the schedule's blocks do not match the
            inner layers; a layer's weights have zero variance or collapse on the grid.
    """
    if recipe.scale_constraint != "pow2":
        raise ConfigError(
            f"scheme 'nonuniform' uses single-scale integers with power-of-two scales, but "
            f"scale_constraint={recipe.scale_constraint!r}. Fix: set scale_constraint = "
            '"pow2" in the recipe.'
        )
    layers = nonuniform_layers(model)
    blocks = schedule_blocks([name for name, _ in layers], recipe.nonuniform)
    for name, layer in layers:
        quant = layer.weight_quant
        quant.block, quant.layer_name = blocks[name], name
        with torch.no_grad():
            quant.indices(fold_bn(layer.weight, layer.bias, layer.bn)[0])
