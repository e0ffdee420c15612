"""Common machinery of the QAT layers.

A QAT layer that produces a quantized tensor owns the quantizer of its *output*; the layers
that consume that tensor hold references to it (set by :func:`hwquant.prepare`), so that every
layer knows the scale of each of its inputs. Tensors between layers are plain float tensors
``α · code``; a consumer recovers the exact integer codes as ``round_half_up(x / α)``.

In eval mode every layer runs its integer form, the same arithmetic as the integer engine
(:mod:`hwquant.core.intmath`), and returns ``α_out · code``. :func:`hwquant.verify` reads those
codes through :func:`capture_codes`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

import torch
from torch import nn

from hwquant.core.intmath import channel_view, max_magnitude, requantize, round_half_up, to_codes
from hwquant.qat.llsq import LinearQuantizer

Activation = Literal["relu", "relu6"] | None
RELU6_CEILING = 6.0


@dataclass(frozen=True)
class Requant:
    """Requantization of an accumulator: ``clamp((acc·mult + 2^(shift-1)) >> shift, lo, hi)``."""

    mult: torch.Tensor  # int64, one per output channel (or one)
    shift: torch.Tensor  # int64, same shape
    lo: int
    hi: int

    def apply(self, acc: torch.Tensor) -> torch.Tensor:
        """Requantize ``acc`` with the multipliers laid along its channel dimension (1)."""
        mult = channel_view(self.mult.to(acc.device), acc.dim())
        shift = channel_view(self.shift.to(acc.device), acc.dim())
        return requantize(acc, mult, shift, self.lo, self.hi)


QuantT = TypeVar("QuantT", bound=nn.Module)


class BoundModule(nn.Module, Generic[QuantT]):
    """A layer bound to the quantizers of its inputs, whose eval output can be captured.

    Base of the QAT layers (:class:`QuantModule`) and of the table layers
    (:class:`hwquant.schemes.tables.layers.TableModule`); ``QuantT`` is their quantizer type.
    """

    def __init__(self) -> None:
        super().__init__()
        self.qname = ""
        # Plain attributes (not submodules): the quantizers belong to the producing layers.
        object.__setattr__(self, "_input_quants", ())
        object.__setattr__(self, "_sink", None)

    def bind_inputs(self, quants: Sequence[QuantT]) -> None:
        """Record the quantizers that produced this layer's inputs (done by ``prepare``)."""
        object.__setattr__(self, "_input_quants", tuple(quants))

    @property
    def input_quants(self) -> tuple[QuantT, ...]:
        """Quantizers of the inputs, in argument order."""
        return self._input_quants

    def float_forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """The layer's function with quantization bypassed: the float layers it stands for, with
        BatchNorm at its running statistics (``prepare``'s fidelity check,
        :mod:`hwquant.qat.fidelity`). It changes no state."""
        raise NotImplementedError

    def emit(self, output: torch.Tensor) -> None:
        """Hand the integer output to an active :func:`capture_outputs`."""
        if self._sink is not None:
            self._sink[self.qname] = output


class QuantModule(BoundModule[LinearQuantizer]):
    """Base of the QAT layers: input-scale references, output range and code capture."""

    out_quant: LinearQuantizer | None

    def __init__(self, act: Activation = None) -> None:
        super().__init__()
        self.act = act

    def input_magnitude(self, index: int = 0) -> int:
        """Largest |code| input ``index`` can hold."""
        quant = self._input_quants[index]
        return max_magnitude(quant.bits, quant.signed)

    def input_codes(self, x: torch.Tensor, index: int = 0) -> torch.Tensor:
        """Exact integer codes of input ``index`` (int64)."""
        quant = self._input_quants[index]
        return to_codes(x.float(), quant.scale_value(), quant.qmin, quant.qmax)

    def activation(self, y: torch.Tensor) -> torch.Tensor:
        """The fused activation on float values (training path).

        An unsigned output quantizer clips at zero with a zero gradient below it, which is ReLU
        already, so ReLU is applied only where no such quantizer follows.
        """
        if self.act == "relu":
            unsigned_next = self.out_quant is not None and not self.out_quant.signed
            return y if unsigned_next else torch.relu(y)
        if self.act == "relu6":
            return y.clamp(0.0, RELU6_CEILING)
        return y

    @torch.no_grad()
    def out_range(self) -> tuple[int, int]:
        """Code range of the output: the quantizer's range, cut at 0 for a ReLU (a signed
        quantizer shared with a layer without one, :mod:`hwquant.qat.shared_scales`) and at
        6/α for ReLU6."""
        assert self.out_quant is not None
        lo, hi = self.out_quant.qmin, self.out_quant.qmax
        if self.act is not None:
            lo = max(lo, 0)
        if self.act == "relu6":
            ceiling = round_half_up(RELU6_CEILING / self.out_quant.scale_value().double())
            hi = min(hi, int(ceiling))
        return lo, hi

    def finish(self, codes: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Emit the output codes and return their float value ``α_out · code``, in at least
        float32 (a bf16 value could not carry a code exactly to the next layer)."""
        self.emit(codes)
        assert self.out_quant is not None
        dtype = torch.promote_types(dtype, torch.float32)
        return codes.to(dtype) * self.out_quant.scale_value().to(dtype)


def apply_activation(act: Activation, y: torch.Tensor) -> torch.Tensor:
    """``act`` on float values, exactly as the float model applies it."""
    if act == "relu":
        return torch.relu(y)
    if act == "relu6":
        return y.clamp(0.0, RELU6_CEILING)
    return y


def quant_modules(model: nn.Module) -> Iterator[QuantModule]:
    """Every QAT layer of ``model``, in module order."""
    return (m for m in model.modules() if isinstance(m, QuantModule))


@contextlib.contextmanager
def capture_outputs(
    model: nn.Module, layer_type: type[BoundModule]
) -> Iterator[dict[str, torch.Tensor]]:
    """Collect the eval outputs of every ``layer_type`` layer of ``model`` while it runs,
    by layer name."""
    sink: dict[str, torch.Tensor] = {}
    modules = [m for m in model.modules() if isinstance(m, layer_type)]
    for m in modules:
        object.__setattr__(m, "_sink", sink)
    try:
        yield sink
    finally:
        for m in modules:
            object.__setattr__(m, "_sink", None)


def capture_codes(model: nn.Module) -> contextlib.AbstractContextManager[dict[str, torch.Tensor]]:
    """Collect the integer outputs of every QAT layer while ``model`` runs in eval mode."""
    return capture_outputs(model, QuantModule)
