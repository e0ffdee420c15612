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
``Q(w) = s · c_j`` is exactly the product the integer engine computes (``s`` is a power of two;
the per-channel form below adds a per-channel factor ``g_c`` that the requantizer carries), so
what trains is what deploys. The integer weights are ``codes(w) = c_{j(w)}``; they are stored
as :class:`~hwquant.ir.intmodel.CodebookEncoding` (indices and the codebook).

The codebook is one per layer (the "single scale" of the paper); ``per_channel`` granularity
does not apply. Activations stay uniform; with ``bn_gain = "in_codebook"`` (below) a recipe of
this scheme must set ``scale_constraint = "pow2"`` (checked by :func:`setup_schedule`), so that
every scale is a power of two and every requantizer a shift.

**Where a folded BN's gain goes** (``NonUniformOptions.bn_gain``). A layer with BN folded in
has weights ``w = s·W``, ``s_c = γ_c/σ_c`` per output channel (:mod:`hwquant.qat.nn.bn_fold`).

* ``"in_codebook"`` (the default): the codebook quantizes the folded ``w`` itself, with the one
  power-of-two scale above, so every requantizer is a shift. ``|s|`` spans 0.39-4.1 within one
  layer of the cpu-long CIFAR-10 ResNet-20, so a low-gain channel gets the layer's levels, up to
  10x its own weights; the codes depend on ``σ_run``, and when BN freezes the folded running
  statistics no longer describe the network the batch statistics normalised. At 2-bit weights
  that ResNet-20 fell to chance at the freeze step (loss 0.28 → 6.06, docs/nonuniform.md §1).
* ``"per_channel"``: the codebook is bound to the layer's gain ``g = |s|`` (held constant, no
  gradient) and quantizes ``ŵ = w/g = sign(s)·W`` (its fit, noise and bins); the deployed
  weight is::

      Q(w)_c = g_c · s_grid · c_{j(ŵ)}          scale_value() = g · s_grid, one per channel

  so the multipliers still see one codebook of B-bit integers (``codes``, ``encode``) and ``g``
  lives in the per-channel requantizer, as LLSQ's folded scales do (a multiplier per
  requantizer). The codes do not depend on ``g``; before the freeze BN normalises
  ``op(x, Q(w))/s = sign(s)·op(x, s_grid·c)`` with its own statistics, so it absorbs each
  channel's gain, and the freeze changes no code (the same step: loss 0.17 → 0.18).

A marker buffer (``gain_per_channel``) records the form in the state dict: a checkpoint of the
other form is refused on load.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import fx, nn

from hwquant.core.errors import ConfigError
from hwquant.ir.intmodel import CodebookEncoding
from hwquant.qat.host_mirror import HostMirrored
from hwquant.qat.nn.bn_fold import FoldGain, fold_bn, load_fold_marker
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
    scale: np.ndarray  # float64 [1] (the power-of-two s) or [C] (g·s, per channel)
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

    ``block`` (the layer's block in the schedule), ``layer_name`` (for error messages) and the
    BN fold's gain (:meth:`bind_fold_gain`, module docstring) are set by :func:`setup_schedule`;
    the training-step counter ``step`` is a buffer, saved with the model.
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
        object.__setattr__(self, "_fold_gain", None)
        # saved with the model: whether the codebook is of w/|s| (per-channel gain) or of w
        self.register_buffer("gain_per_channel", torch.zeros((), dtype=torch.bool))

    def extra_repr(self) -> str:
        gain = ", BN gain per channel" if self._fold_gain is not None else ""
        return (
            f"bits={self.bits}, grid_bits={self.grid_bits}, cdf={self.cdf_kind}, "
            f"block={self.block}, steps_per_stage={self.steps_per_stage}{gain}"
        )

    def bind_fold_gain(self, fold_gain: FoldGain | None) -> None:
        """Quantize ``w/g`` with ``g = fold_gain()`` (``|γ/σ_run|`` per output channel, at
        least 1e-12, detached) and scale the levels by ``g`` (module docstring); None: quantize
        ``w`` itself."""
        object.__setattr__(self, "_fold_gain", fold_gain)
        self.gain_per_channel.fill_(fold_gain is not None)

    def _load_from_state_dict(
        self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        """Refuse a checkpoint trained with the other ``bn_gain`` form (its weights were
        trained for another function). A state dict without this quantizer's step (a partial
        load) is not checked; one without the marker was written before it existed, when the
        codebook always quantized the folded weights. The marker itself is never loaded: it
        follows this model's binding."""
        forms = {True: '"per_channel"', False: '"in_codebook"'}

        def refusal(layer: str, stored: bool, has_marker: bool) -> str:
            return (
                f"layer '{layer}': the checkpoint was trained with recipe.nonuniform.bn_gain"
                f" = {forms[stored]}"
                + ("" if has_marker else " (it has no gain_per_channel marker)")
                + f", this model is prepared with {forms[not stored]}. Fix: set "
                f"recipe.nonuniform.bn_gain = {forms[stored]} to load it, or train again from "
                "the float checkpoint."
            )

        load_fold_marker(
            state_dict,
            prefix,
            marker="gain_per_channel",
            checked="step",
            bound=self._fold_gain is not None,
            refusal=refusal,
        )
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _gain(self, w: torch.Tensor) -> torch.Tensor | None:
        """``g`` broadcast against the weights ``w`` (output channels first), or None."""
        if self._fold_gain is None:
            return None
        return self._fold_gain().to(w.device, w.dtype).view(-1, *([1] * (w.dim() - 1)))

    def _unit(self, w: torch.Tensor) -> torch.Tensor:
        """The weights the codebook quantizes: ``w/g`` when bound to a gain, else ``w``."""
        gain = self._gain(w)
        return w if gain is None else w / gain

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
        gain = self._gain(w)
        u = w if gain is None else w / gain
        cdf, thresholds = self._fit(u)
        if stage == "noisy":
            noisy = uniformized_noise(u, cdf, self.k)
            return noisy if gain is None else noisy * gain
        hard = self.codebook[assign_bins(u, thresholds)].to(w.dtype) * self.grid_scale.to(w.dtype)
        if gain is not None:
            hard = hard * gain
        return hard if self.freeze_quantized else _ExactStraightThrough.apply(w, hard)

    @torch.no_grad()
    def indices(self, w: torch.Tensor) -> torch.Tensor:
        """The b-bit index (bin) of every weight, int64."""
        u = self._unit(w)
        return assign_bins(u, self._fit(u)[1])

    @torch.no_grad()
    def codes(self, w: torch.Tensor) -> torch.Tensor:
        """Integer weights: the codebook level of each weight's bin (int64)."""
        return self.codebook[self.indices(w)]

    def scale_value(self) -> torch.Tensor:
        """The power-of-two scale s (shape [1]), times the gain ``g`` when bound to one (shape
        [C], per output channel)."""
        if self._fold_gain is None:
            return self.grid_scale
        return self.grid_scale * self._fold_gain().to(self.grid_scale.device)

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
        """The k representable values ``s·c`` of the last weights seen, as a [1, k] row, or one
        row per output channel (``g_c·s·c``) when bound to a gain."""
        return self.scale_value().double().view(-1, 1) * self.codebook.double().view(1, -1)

    @torch.no_grad()
    def export(self) -> CodebookSpec:
        """bits, grid bits, scale(s) and codebook of the last weights seen."""
        scale = self.scale_value().double().cpu().numpy().copy()
        return CodebookSpec(self.bits, self.grid_bits, scale, self.codebook.cpu().numpy().copy())


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
    block of the schedule, its layer name and (``bn_gain = "per_channel"``, a layer with BN
    folded in) the fold's gain, and check that each layer's weights make a codebook (raising at
    prepare time rather than at the first step).

    Raises:
        ConfigError: ``scale_constraint`` is not "pow2" with ``bn_gain = "in_codebook"`` (the
            single-scale form; "per_channel" puts a multiplier in every requantizer, so it
            takes any scale constraint); the schedule's blocks do not match the inner layers; a
            layer's weights have zero variance or collapse on the grid.
    """
    if recipe.scale_constraint != "pow2" and recipe.nonuniform.bn_gain == "in_codebook":
        raise ConfigError(
            f"scheme 'nonuniform' with bn_gain = \"in_codebook\" uses single-scale integers "
            f"with power-of-two scales, but scale_constraint={recipe.scale_constraint!r}. Fix: "
            'set scale_constraint = "pow2" in the recipe, or nonuniform.bn_gain = '
            '"per_channel" (its requantizers multiply per channel).'
        )
    layers = nonuniform_layers(model)
    blocks = schedule_blocks([name for name, _ in layers], recipe.nonuniform)
    for name, layer in layers:
        quant = layer.weight_quant
        quant.block, quant.layer_name = blocks[name], name
        per_channel = recipe.nonuniform.bn_gain == "per_channel" and layer.bn is not None
        quant.bind_fold_gain(layer.fold_gain if per_channel else None)
        with torch.no_grad():
            quant.indices(fold_bn(layer.weight, layer.bias, layer.bn)[0])
