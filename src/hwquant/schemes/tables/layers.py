"""QAT layers of table-based units (Covell et al. 2019; methods.md §3.1, §7.3).

Training forward (float, straight-through): ``out = Q_out(act(BN(op(x, Q_W(W)) + b)))`` with
codebook quantizers :class:`~hwquant.schemes.tables.quantizer.CodebookQuantizer` on the weights and
on every output; ``x`` arrives as levels of its producer's codebook.

Eval forward: the layer lowers itself (:meth:`TableUnit.to_node`, cached until the next
``train()``), turns its input into indices of the input codebook and runs the table engine's
functions (:mod:`hwquant.schemes.tables.engine`), so eval output == engine output, bit for bit. It
returns the output levels ``c[index]`` (float64), or ``s_T·(acc + bias)`` on the last layer.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hwquant.core.errors import UnsupportedLayerError
from hwquant.core.intmath import round_half_up
from hwquant.qat.nn.base import (
    RELU6_CEILING,
    Activation,
    BoundModule,
    apply_activation,
    capture_outputs,
)
from hwquant.qat.nn.bn_fold import bn_multiplier, fold_bn
from hwquant.qat.nn.qactivation import Elementwise
from hwquant.qat.nn.zero_insert import ZeroInsert
from hwquant.schemes.tables import engine, fold
from hwquant.schemes.tables.codebooks import nearest_index
from hwquant.schemes.tables.model import ActivationNode, LookupAddNode, PoolNode, UnitNode
from hwquant.schemes.tables.quantizer import CodebookQuantizer


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


class TableModule(BoundModule[CodebookQuantizer]):
    """Base: references to the input quantizers (whose codebooks the inputs are on), the eval
    cache and index capture."""

    out_quant: CodebookQuantizer | None

    def __init__(self) -> None:
        super().__init__()
        object.__setattr__(self, "_compiled", None)

    def train(self, mode: bool = True) -> TableModule:
        object.__setattr__(self, "_compiled", None)  # codebooks may change: lower again
        return super().train(mode)

    def compiled(self):
        """The engine form of this layer, built once per eval phase."""
        if self._compiled is None:
            object.__setattr__(self, "_compiled", self.compile())
        return self._compiled

    def compile(self):
        """The engine form of this layer."""
        raise NotImplementedError

    def finish(self, indices: torch.Tensor) -> torch.Tensor:
        """Emit the output indices and return their levels (float64)."""
        self.emit(indices)
        assert self.out_quant is not None
        return self.out_quant.codebook()[indices]


class TableUnit(TableModule):
    """Conv2d (any kernel, stride, padding, dilation and groups; optionally after the zero
    insertion of a transposed convolution) or Linear, with optional BN and ReLU/ReLU6, as a
    table unit."""

    def __init__(
        self,
        source: nn.Conv2d | nn.Linear,
        bn: nn.modules.batchnorm._BatchNorm | None,
        act: Activation,
        weight_quant: CodebookQuantizer,
        out_quant: CodebookQuantizer | None,
        entry_bits: int,
        inserted: ZeroInsert | None = None,
    ) -> None:
        super().__init__()
        self.is_conv = isinstance(source, nn.Conv2d)
        if self.is_conv:
            if isinstance(source.padding, str):
                raise UnsupportedLayerError(
                    f"table units take numeric padding; got {source}. Fix: prepare() the "
                    "model (it turns padding='same' into numbers)."
                )
            self.stride, self.padding = tuple(source.stride), tuple(source.padding)
            self.dilation, self.groups = tuple(source.dilation), source.groups
        if out_quant is None and (bn is not None or act is not None):
            raise UnsupportedLayerError(
                "the output layer of a table network must be a plain Conv2d/Linear (no BN, no "
                "ReLU after it). Fix: move BN/ReLU before the classifier."
            )
        self.weight = source.weight
        self.bias = source.bias
        self.bn = bn
        self.act = act
        self.weight_quant = weight_quant
        self.out_quant = out_quant
        self.entry_bits = entry_bits
        self.inserted = inserted

    def _op(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        if not self.is_conv:
            return F.linear(x, w, b)
        if self.inserted is not None:
            x = self.inserted(x)
        return F.conv2d(x, w, b, self.stride, self.padding, self.dilation, self.groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return self._forward_tables(x)
        y = self._op(x, self.weight_quant(self.weight), self.bias)
        if self.bn is not None:
            y = self.bn(y)
        y = apply_activation(self.act, y)
        return self.out_quant(y) if self.out_quant is not None else y

    def float_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Float weights, BN folded with its running statistics, ReLU/ReLU6."""
        return apply_activation(self.act, self._op(x, *fold_bn(self.weight, self.bias, self.bn)))

    @torch.no_grad()
    def to_node(self, name: str, inputs: list[str]) -> UnitNode:
        """The unit lowered: weight indices, integer table and folded thresholds."""
        act_levels = self.input_quants[0].codebook()
        weight_levels = self.weight_quant.codebook()
        table, scale = fold.product_table(act_levels, weight_levels, self.entry_bits)
        fan_in = self.weight[0].numel()  # per group: [O, C/groups, k_h, k_w]
        fold.check_table(table, self.entry_bits, fan_in, name)
        channels = self.weight.shape[0]
        bias = self.bias.double() if self.bias is not None else torch.zeros(channels).double()
        bias_int = torch.zeros(channels, dtype=torch.int64)
        out_levels = torch.zeros(0, dtype=torch.float64)
        tau = torch.zeros(channels, 0, dtype=torch.int64)
        descending = torch.zeros(channels, dtype=torch.bool)
        if self.out_quant is None:
            bias_int = round_half_up(bias / scale).to(torch.int64)
        else:
            out_levels = self.out_quant.codebook()
            gain, offset = torch.full_like(bias, scale), bias
            if self.bn is not None:
                g_hat = bn_multiplier(self.bn).double()
                gain = g_hat * scale
                beta = self.bn.bias.double() if self.bn.bias is not None else 0.0  # affine=False
                offset = g_hat * (bias - self.bn.running_mean.double()) + beta
            affine = fold.Affine(gain, offset, self.act is not None, _ceiling(self.act))
            tau, descending = fold.thresholds(affine, out_levels)
        return UnitNode(
            name,
            inputs,
            "conv" if self.is_conv else "linear",
            _np(nearest_index(self.weight.double(), weight_levels)),
            _np(table),
            _np(tau),
            _np(descending),
            _np(bias_int),
            _np(act_levels),
            _np(weight_levels),
            _np(out_levels),
            float(scale),
            self.entry_bits,
            **(self._geometry() if self.is_conv else {}),
        )

    def _geometry(self) -> dict[str, object]:
        """The convolution's fields of its :class:`UnitNode`."""
        geometry: dict[str, object] = dict(
            stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups
        )
        if self.inserted is not None:
            geometry.update(
                insert_stride=tuple(self.inserted.stride),
                insert_before=tuple(self.inserted.before),
                insert_after=tuple(self.inserted.after),
            )
        return geometry

    def compile(self) -> engine.CompiledUnit:
        return engine.compile_unit(self.to_node(self.qname, ["x"]))

    def _forward_tables(self, x: torch.Tensor) -> torch.Tensor:
        unit = self.compiled()
        out = engine.run_unit(unit, self.input_quants[0].index(x))
        if self.out_quant is not None:
            return self.finish(out)
        self.emit(out)
        scale = unit.node.entry_scale
        return out.double() * scale


def _ceiling(act: Activation) -> float | None:
    """The upper clip of an activation: 6 for ReLU6, else None."""
    return RELU6_CEILING if act == "relu6" else None


class TableAdd(TableModule):
    """Residual add (+ReLU/ReLU6) onto its output codebook, a table in eval mode; with
    ``product``, the elementwise product ``a·b`` (a squeeze-excitation gate, broadcast)."""

    def __init__(self, out_quant: CodebookQuantizer, act: Activation, product: bool = False):
        super().__init__()
        self.out_quant = out_quant
        self.act = act
        self.product = product

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if not self.training:
            index = [q.index(v) for q, v in zip(self.input_quants, (a, b), strict=True)]
            return self.finish(engine.run_add(self.compiled(), *index))
        return self.out_quant(self.float_forward(a, b))

    def float_forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``a + b`` (``a·b``; then ReLU/ReLU6) in float."""
        return apply_activation(self.act, a * b if self.product else a + b)

    @torch.no_grad()
    def to_node(self, name: str, inputs: list[str]) -> LookupAddNode:
        """The add (or product) table ``S[i, j]``."""
        left, right = (q.codebook() for q in self.input_quants)
        out_levels = self.out_quant.codebook()
        relu, ceiling = self.act is not None, _ceiling(self.act)
        table = fold.add_table(left, right, out_levels, relu, ceiling, self.product)
        combine = "mul" if self.product else "add"
        return LookupAddNode(name, inputs, _np(table), _np(out_levels), combine)

    def compile(self) -> engine.CompiledAdd:
        return engine.compile_add(self.to_node(self.qname, ["a", "b"]))


class TableAvgPool(TableModule):
    """Average pooling (global, or k×k with stride k) onto its own codebook."""

    def __init__(self, out_quant: CodebookQuantizer, kernel_size: int | None, entry_bits: int):
        super().__init__()
        self.out_quant = out_quant
        self.kernel_size = kernel_size
        self.entry_bits = entry_bits
        self.register_buffer("window", torch.zeros((), dtype=torch.int64))  # seen in training

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return self.finish(engine.run_pool(self.compiled(), self.input_quants[0].index(x)))
        k = self.kernel_size
        self.window.fill_(x.shape[2] * x.shape[3] if k is None else k * k)
        return self.out_quant(self.float_forward(x))

    def float_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The float average over each window."""
        k = self.kernel_size
        return F.adaptive_avg_pool2d(x, 1) if k is None else F.avg_pool2d(x, k)

    @torch.no_grad()
    def to_node(self, name: str, inputs: list[str]) -> PoolNode:
        """Integer values and thresholds of the pooling (window size seen in training)."""
        levels, out_levels = self.input_quants[0].codebook(), self.out_quant.codebook()
        values, tau = fold.pool_form(levels, out_levels, int(self.window), self.entry_bits)
        return PoolNode(name, inputs, _np(values), _np(tau), _np(out_levels), self.kernel_size)

    def compile(self) -> engine.CompiledPool:
        return engine.compile_pool(self.to_node(self.qname, ["x"]))


class TableActivation(TableModule):
    """An elementwise activation (sigmoid, SiLU, ...) onto its own codebook: in eval mode the
    table ``T[i] = nearest output level of f(a_i)`` over the input levels ``a_i``."""

    def __init__(self, function: Elementwise, out_quant: CodebookQuantizer) -> None:
        super().__init__()
        self.function = function
        self.out_quant = out_quant

    def extra_repr(self) -> str:
        return str(self.function)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return self.finish(
                engine.run_activation(self.compiled(), self.input_quants[0].index(x))
            )
        return self.out_quant(self.function(x))

    def float_forward(self, x: torch.Tensor) -> torch.Tensor:
        """``f(x)`` in float."""
        return self.function(x)

    @torch.no_grad()
    def to_node(self, name: str, inputs: list[str]) -> ActivationNode:
        """The table: the nearest output level of ``f`` at every input level (float64)."""
        levels, out_levels = self.input_quants[0].codebook(), self.out_quant.codebook()
        table = nearest_index(self.function(levels), out_levels)
        return ActivationNode(name, inputs, _np(table), _np(out_levels), str(self.function))

    def compile(self) -> torch.Tensor:
        return engine.compile_activation(self.to_node(self.qname, ["x"]))


def capture_indices(model: nn.Module) -> contextlib.AbstractContextManager[dict[str, torch.Tensor]]:
    """Collect every table layer's eval output (indices; ``acc + bias`` of the last unit)."""
    return capture_outputs(model, TableModule)
