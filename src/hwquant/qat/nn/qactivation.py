"""QAT twin of an elementwise activation, computed exactly as a lookup table over input codes.

An activation ``f`` (sigmoid, tanh, SiLU, ...) reads codes ``c`` of one quantizer (scale
``α_in``, range ``[lo_in, hi_in]``) and writes codes of its own output quantizer (``α_out``,
``[lo, hi]``). Since the input takes only ``2^b`` values, the integer form is a table::

    T[c − lo_in] = clamp(round_half_up(f(α_in · c) / α_out), lo, hi)    for c in [lo_in, hi_in]
    code_out     = T[code_in − lo_in]

``f`` is evaluated once per code in float64 on the CPU (:meth:`QActivation.table`), so the QAT
model in eval mode, the IntModel and every backend read the same integers. Training:
``out = Q_out(f(x))`` on the fake-quantized input.

:func:`elementwise_of` recognises the activations of a traced model (modules, functions and
tensor methods) with their options; :class:`Elementwise` names one with its options.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import fx, nn

from hwquant.core.errors import UnsupportedLayerError
from hwquant.core.intmath import to_codes
from hwquant.qat.llsq import LinearQuantizer
from hwquant.qat.nn.base import QuantModule

Option = float | str


def _leaky_relu(x: torch.Tensor, negative_slope: float) -> torch.Tensor:
    return F.leaky_relu(x, negative_slope)


def _hardtanh(x: torch.Tensor, min_val: float, max_val: float) -> torch.Tensor:
    return F.hardtanh(x, min_val, max_val)


def _gelu(x: torch.Tensor, approximate: str) -> torch.Tensor:
    return F.gelu(x, approximate=approximate)


FUNCTIONS: dict[str, Callable[..., torch.Tensor]] = {
    "relu": torch.relu,  # not recognised as a lookup here (ops/relu.py); tables' index tables
    "sigmoid": torch.sigmoid,
    "hardsigmoid": F.hardsigmoid,
    "hardswish": F.hardswish,
    "silu": F.silu,
    "tanh": torch.tanh,
    "leaky_relu": _leaky_relu,
    "hardtanh": _hardtanh,
    "gelu": _gelu,
}
"""Each activation by name: ``f(x, **options)``."""

DEFAULTS: dict[str, dict[str, Option]] = {
    "leaky_relu": {"negative_slope": 0.01},
    "hardtanh": {"min_val": -1.0, "max_val": 1.0},
    "gelu": {"approximate": "none"},
}
"""The options of each activation that has some, with PyTorch's defaults (in argument order
after the input)."""

_MODULES: dict[type[nn.Module], str] = {
    nn.Sigmoid: "sigmoid",
    nn.Hardsigmoid: "hardsigmoid",
    nn.Hardswish: "hardswish",
    nn.SiLU: "silu",
    nn.Tanh: "tanh",
    nn.LeakyReLU: "leaky_relu",
    nn.Hardtanh: "hardtanh",  # and its subclass nn.ReLU6 (min_val 0, max_val 6)
    nn.GELU: "gelu",
}
_FUNCTIONS: dict[Callable[..., torch.Tensor], str] = {
    torch.sigmoid: "sigmoid",
    F.sigmoid: "sigmoid",
    F.hardsigmoid: "hardsigmoid",
    F.hardswish: "hardswish",
    F.silu: "silu",
    torch.tanh: "tanh",
    F.tanh: "tanh",
    F.leaky_relu: "leaky_relu",
    F.hardtanh: "hardtanh",
    F.gelu: "gelu",
}
_METHODS = {"sigmoid": "sigmoid", "tanh": "tanh"}
SUPPORTED_ACTIVATIONS = (
    "Sigmoid, Hardsigmoid, Hardswish, SiLU, Tanh, LeakyReLU(negative_slope), "
    "Hardtanh(min_val, max_val), ReLU6 and GELU(approximate) anywhere (modules, their "
    "torch/F functions, x.sigmoid()/x.tanh()) as exact lookup tables over the input codes"
)


@dataclass(frozen=True)
class Elementwise:
    """One activation and its options, e.g. ``leaky_relu(negative_slope=0.2)``.

    >>> Elementwise("hardtanh", (("min_val", 0.0), ("max_val", 6.0)))(torch.tensor([-1.0, 7.0]))
    tensor([0., 6.])
    >>> str(Elementwise("leaky_relu", (("negative_slope", 0.2),)))
    'leaky_relu(negative_slope=0.2)'
    """

    kind: str
    options: tuple[tuple[str, Option], ...] = ()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``f(x)`` in ``x``'s dtype."""
        return FUNCTIONS[self.kind](x, **dict(self.options))

    def __str__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.options)
        return f"{self.kind}({args})"

    @property
    def nonnegative(self) -> bool:
        """Whether ``f(x) >= 0`` for every x (its output quantizer is then unsigned)."""
        options = dict(self.options)
        if self.kind in ("relu", "sigmoid", "hardsigmoid"):
            return True
        if self.kind == "hardtanh":
            return float(options["min_val"]) >= 0
        return self.kind == "leaky_relu" and float(options["negative_slope"]) <= 0


def elementwise_of(node: fx.Node, mod: nn.Module | None) -> Elementwise | None:
    """The activation fx ``node`` applies (module, function or method), or None.

    Raises:
        UnsupportedLayerError: an option is not a constant (a tensor computed in the model), or
            ``hardtanh`` has ``min_val >= max_val``.
    """
    if mod is not None:
        kind = next((k for cls, k in _MODULES.items() if isinstance(mod, cls)), None)
        if kind is None:
            return None
        values = {key: getattr(mod, key) for key in DEFAULTS.get(kind, {})}
    elif node.op == "call_function" and node.target in _FUNCTIONS:
        kind = _FUNCTIONS[node.target]
        values = _call_options(node, kind)
    elif node.op == "call_function" and node.target is F.relu6:
        kind, values = "hardtanh", {"min_val": 0.0, "max_val": 6.0}
    elif node.op == "call_method" and node.target in _METHODS:
        kind, values = _METHODS[node.target], {}
    else:
        return None
    for key, value in values.items():
        if not isinstance(value, int | float | str) or isinstance(value, bool):
            raise UnsupportedLayerError(
                f"activation '{node.name}' ({kind}) takes {key}={value!r}, not a constant; its "
                "lookup table is computed once. Fix: pass a number."
            )
    if kind == "hardtanh" and float(values["min_val"]) >= float(values["max_val"]):
        raise UnsupportedLayerError(
            f"hardtanh '{node.name}' has min_val {values['min_val']} >= max_val "
            f"{values['max_val']}. Fix: give min_val < max_val."
        )
    options = tuple(
        (k, v if isinstance(v, str) else float(v)) for k, v in values.items() if k != "inplace"
    )
    return Elementwise(kind, options)


def _call_options(node: fx.Node, kind: str) -> dict[str, object]:
    """The options of a functional call: positional after the input, then keywords, then the
    defaults (``inplace`` dropped: it does not change the value)."""
    names = list(DEFAULTS.get(kind, {}))
    given = dict(zip(names, node.args[1:], strict=False)) | {
        k: v for k, v in node.kwargs.items() if k != "inplace"
    }
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise UnsupportedLayerError(
            f"activation '{node.name}' ({kind}) has option {unknown[0]}, which hwquant does not "
            f"take. Fix: use {kind} with {', '.join(names) or 'no options'}."
        )
    return DEFAULTS.get(kind, {}) | given


class QActivation(QuantModule):
    """An elementwise activation between two quantizers, as a lookup table (module docstring)."""

    def __init__(self, function: Elementwise, out_quant: LinearQuantizer) -> None:
        super().__init__()
        self.function = function
        self.out_quant = out_quant

    def extra_repr(self) -> str:
        return str(self.function)

    @torch.no_grad()
    def table(self) -> torch.Tensor:
        """``T`` (int64, ``2^b_in`` entries, on the CPU): the output code of every input code
        ``lo_in + i`` at index ``i``."""
        q_in = self.input_quants[0]
        codes = torch.arange(q_in.qmin, q_in.qmax + 1, dtype=torch.float64)
        values = self.function(codes * q_in.scale_value().detach().double().cpu())
        lo, hi = self.out_range()
        return to_codes(values, self.out_quant.scale_value().detach().double().cpu(), lo, hi)

    def float_forward(self, x: torch.Tensor) -> torch.Tensor:
        """``f(x)`` in float."""
        return self.function(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Fake-quantized ``f`` in training, the table lookup in eval."""
        if self.training:
            return self.out_quant(self.function(x))
        index = self.input_codes(x) - self.input_quants[0].qmin
        return self.finish(self.table().to(index.device)[index], x.dtype)
