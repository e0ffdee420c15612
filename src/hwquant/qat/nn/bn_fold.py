"""Batch-norm folding (LLSQ §4.3; Jacob et al. 2018 §3.2).

A BatchNorm after a convolution, ``BN(y) = γ (y − μ) / √(σ² + ε) + β``, folds into it (one
that follows no convolution folds into an identity layer, :func:`identity_layer`):

    s  = γ / √(σ² + ε)
    W' = s · W                      (per output channel)
    b' = β + s · (b − μ)

so the deployed layer is one convolution with weights W' and bias b'. During QAT the weights
are folded with the running σ and quantized; until the statistics freeze, the output is
corrected to batch statistics (Jacob et al. 2018, fig. C.8), see
:meth:`hwquant.qat.nn.weight_layer.QuantWeightLayer.forward`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from hwquant.core.errors import FileFormatError

FoldGain = Callable[[], torch.Tensor]
"""``() -> |s|``: per output channel, the magnitude of the BN multiplier ``s = γ/σ_run`` folded
into a layer's weights (detached, ``[C_out]``), which a weight quantizer may be bound to."""


def bn_multiplier(bn: nn.modules.batchnorm._BatchNorm) -> torch.Tensor:
    """``s = γ / √(σ²_running + ε)`` per channel."""
    gamma = bn.weight if bn.weight is not None else torch.ones_like(bn.running_var)
    return gamma / torch.sqrt(bn.running_var + bn.eps)


def fold_bn(
    weight: torch.Tensor, bias: torch.Tensor | None, bn: nn.modules.batchnorm._BatchNorm | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Weights and bias of the layer with ``bn`` (running statistics) folded in."""
    if bn is None:
        return weight, bias
    s = bn_multiplier(bn)
    w = weight * s.view(-1, *([1] * (weight.dim() - 1)))
    beta = bn.bias if bn.bias is not None else torch.zeros_like(s)
    b0 = bias if bias is not None else torch.zeros_like(s)
    return w, beta + s * (b0 - bn.running_mean)


def identity_layer(bn: nn.BatchNorm1d | nn.BatchNorm2d) -> nn.Conv2d | nn.Linear:
    """The layer a BatchNorm that follows no Conv2d/Linear folds into: an identity with weights
    fixed at 1 (not trained), so that the folded layer computes the BN's per-channel affine
    ``s·x + (β − s·μ)`` (:func:`fold_bn`) as an integer multiplier, bias and requantization.

    A ``BatchNorm2d`` gets a depthwise 1×1 convolution (one weight per channel, exact for any
    padding since it has none), a ``BatchNorm1d`` of ``[N, C]`` features a diagonal ``Linear``.

    >>> layer = identity_layer(nn.BatchNorm2d(3))
    >>> layer.groups, tuple(layer.weight.shape), layer.weight.requires_grad
    (3, (3, 1, 1, 1), False)
    """
    channels = bn.num_features
    if isinstance(bn, nn.BatchNorm2d):
        layer = nn.Conv2d(channels, channels, 1, groups=channels, bias=False)
        nn.init.ones_(layer.weight)
    else:
        layer = nn.Linear(channels, channels, bias=False)
        with torch.no_grad():
            layer.weight.copy_(torch.eye(channels))
    layer.weight.requires_grad_(False)
    return layer


def load_fold_marker(
    state_dict: dict,
    prefix: str,
    *,
    marker: str,
    checked: str,
    bound: bool,
    refusal: Callable[[str, bool, bool], str],
) -> None:
    """Check a weight quantizer's stored fold-gain marker before its state dict loads.

    A quantizer bound to a :data:`FoldGain` stores its parameters in another form than an
    unbound one, and records which in the boolean buffer ``marker``. A checkpoint whose marker
    differs from ``bound`` is refused (``FileFormatError`` with ``refusal(layer, stored,
    has_marker)``); one without the marker was written before it existed and is taken as
    unbound. A state dict without ``checked`` (a partial load) is not checked. The marker itself
    is never taken from the checkpoint: it is set to ``bound``, so it follows the model.
    """
    key = prefix + marker
    if prefix + checked in state_dict:
        stored = bool(state_dict[key]) if key in state_dict else False
        if stored != bound:
            layer = prefix.removesuffix(".").removesuffix(".weight_quant") or "the layer"
            raise FileFormatError(refusal(layer, stored, key in state_dict))
    state_dict[key] = torch.tensor(bound)
