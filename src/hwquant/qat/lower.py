"""``lower(qat_model, example_input)``: the QAT model becomes an :class:`IntModel`.

Each QAT layer gives its integer form (``integer_params``: the very numbers its eval forward
uses), so the IntModel computes what the QAT model computes in eval mode, bit for bit. The
example input fixes the shapes that the integer form needs (the window of a global average
pool, the shape after a flatten) and initialises any quantizer that has not seen data yet.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from hwquant.core.errors import HwquantError, UnsupportedLayerError, check_finite
from hwquant.ir.intmodel import (
    AddNode,
    AvgPoolNode,
    ConvNode,
    InputSpec,
    IntModel,
    IntNode,
    LinearNode,
    MaxPoolNode,
    ReshapeNode,
    WeightNode,
)
from hwquant.qat.accumulator_bound import BoundedLinearQuantizer, record_proved_bound
from hwquant.qat.naming import describe, node_name
from hwquant.qat.nn import QAdd, QAvgPool, QConv2d, QLinear, QuantInput, QuantWeightLayer
from hwquant.qat.registry import get_scheme

_ALIAS_MODULES = (nn.Dropout, nn.Identity)
_RESHAPE_METHODS = ("flatten", "view", "reshape")


def lower(qat_model: fx.GraphModule, example_input: torch.Tensor) -> IntModel:
    """Return the integer-only form of a model made by :func:`hwquant.prepare`: an IntModel, or
    the lowered form of the scheme's own path (a ``TableModel`` for "tables").

    Raises:
        HwquantError: the model was not made by ``prepare``.
        UnsupportedLayerError: a layer keeps float weights (``first_layer_bits`` or
            ``last_layer_bits`` set to None).
        NonFiniteError: a weight or the example holds NaN or Inf.
    """
    if not hasattr(qat_model, "hwquant_recipe"):
        raise HwquantError(
            f"lower() takes the QAT model returned by hwquant.prepare(), got "
            f"{type(qat_model).__name__}. Fix: model = hwquant.prepare(model, recipe) first."
        )
    for name, tensor in list(qat_model.named_parameters()) + list(qat_model.named_buffers()):
        check_finite(f"QAT model tensor '{name}'", tensor)
    handler = get_scheme(qat_model.hwquant_recipe.scheme)
    if handler.lower is not None:
        return handler.lower(qat_model, example_input)
    was_training = qat_model.training
    qat_model.eval()
    try:
        with torch.no_grad():
            try:
                ShapeProp(qat_model).propagate(example_input)
            except RuntimeError as exc:  # ShapeProp wraps a layer's own error: surface it
                if isinstance(exc.__cause__, HwquantError):
                    raise exc.__cause__ from None
                raise
            return _build(qat_model)
    finally:
        qat_model.train(was_training)


def _build(gm: fx.GraphModule) -> IntModel:
    nodes: list[IntNode] = []
    alias: dict[str, str] = {}  # fx node name -> IntModel node name carrying its codes
    input_spec: InputSpec | None = None
    scale_of: dict[str, np.ndarray] = {}  # IntModel node -> value of one unit of its output
    output_name = ""
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            continue
        if node.op == "output":
            output_name = alias[node.args[0].name]
            continue
        if "tensor_meta" not in node.meta:  # a shape query such as x.size(0)
            continue
        mod = gm.get_submodule(node.target) if node.op == "call_module" else None
        inputs = [alias[a.name] for a in node.args if isinstance(a, fx.Node) and a.name in alias]
        if isinstance(mod, QuantInput):
            spec = mod.out_quant.export()
            input_spec = InputSpec(mod.qname, float(spec.scale[0]), spec.bits, spec.signed)
            alias[node.name] = mod.qname
            scale_of[mod.qname] = np.array([input_spec.scale])
            continue
        int_node = _int_node(node, mod, inputs, _unique(node_name(node), scale_of))
        if int_node is None:  # alias or a shape query
            if inputs:
                alias[node.name] = inputs[0]
            continue
        nodes.append(int_node)
        alias[node.name] = int_node.name
        scale_of[int_node.name] = _output_scale(int_node, scale_of)
    assert input_spec is not None, "prepare() always inserts an input quantizer"
    recipe = gm.hwquant_recipe.to_dict()
    return IntModel(input_spec, nodes, output_name, scale_of[output_name], recipe)


def _output_scale(node: IntNode, scale_of: dict[str, np.ndarray]) -> np.ndarray:
    """Value of one unit of ``node``'s output: its own scale, or its input's for max pooling
    and reshapes (per channel for a last layer without requantization)."""
    if isinstance(node, WeightNode) and node.mult is None:
        return np.asarray(node.acc_scale, np.float64)
    if isinstance(node, WeightNode | AddNode | AvgPoolNode):
        return np.array([node.out_scale], np.float64)
    return scale_of[node.inputs[0]]


def _unique(name: str, taken: dict[str, np.ndarray]) -> str:
    """``name``, or ``name_2``, ``name_3`` ... for the later calls of a stateless module that
    ``forward`` calls more than once (one pooling module used twice)."""
    count = 1
    unique = name
    while unique in taken:
        count += 1
        unique = f"{name}_{count}"
    return unique


def _int_node(node: fx.Node, mod: nn.Module | None, inputs: list[str], name: str) -> IntNode | None:
    """The IntModel node ``name`` for fx ``node``, or None when it only passes codes through."""
    if isinstance(mod, QuantWeightLayer):
        return _weight_node(mod, inputs)
    if isinstance(mod, QAdd):
        p = mod.integer_params()
        return AddNode(mod.qname, inputs, p.mults, p.shift, p.lo, p.hi, _out_scale(mod))
    if isinstance(mod, QAvgPool):
        shape = node.args[0].meta["tensor_meta"].shape
        window = shape[-1] * shape[-2] if mod.kernel_size is None else mod.kernel_size**2
        r = mod.integer_params(window)
        return AvgPoolNode(
            mod.qname,
            inputs,
            mod.kernel_size,
            window,
            int(r.mult[0]),
            int(r.shift[0]),
            r.lo,
            r.hi,
            _out_scale(mod),
        )
    if isinstance(mod, nn.MaxPool2d):
        return MaxPoolNode(
            name,
            inputs,
            _pair(mod.kernel_size),
            _pair(mod.stride or mod.kernel_size),
            _pair(mod.padding),
            _pair(mod.dilation),
            mod.ceil_mode,
        )
    if (
        isinstance(mod, nn.Flatten)
        or (node.op == "call_function" and node.target is torch.flatten)
        or (node.op == "call_method" and node.target in _RESHAPE_METHODS)
    ):
        shape = tuple(int(d) for d in node.meta["tensor_meta"].shape[1:])
        return ReshapeNode(name, inputs, shape)
    if isinstance(mod, _ALIAS_MODULES) or mod is None:
        return None
    raise UnsupportedLayerError(
        f"lower() cannot express '{name}' ({describe(node, mod)}). Fix: prepare() the "
        "model again with this hwquant version."
    )


def _weight_node(mod: QuantWeightLayer, inputs: list[str]) -> WeightNode:
    if mod.weight_quant is None:
        raise UnsupportedLayerError(
            f"layer '{mod.qname}' keeps float weights, so the model has no integer-only form. "
            "Fix: prepare the model with first_layer_bits/last_layer_bits set (8 by default)."
        )
    p = mod.integer_params(encode=True)
    in_quant = mod.input_quants[0]
    common = dict(
        name=mod.qname,
        inputs=inputs,
        weight=p.weight.cpu().numpy(),
        bias=None if p.bias is None else p.bias.cpu().numpy(),
        acc_scale=p.acc_scale.cpu().numpy(),
        weight_bits=mod.weight_quant.int_bits,
        encoding=p.encoding,
        in_bits=in_quant.bits,
        in_signed=in_quant.signed,
    )
    if p.requant is not None:
        common.update(
            mult=p.requant.mult.numpy(),
            shift=p.requant.shift.numpy(),
            lo=p.requant.lo,
            hi=p.requant.hi,
            out_scale=_out_scale(mod),
        )
    if isinstance(mod, QConv2d):
        node: WeightNode = ConvNode(
            **common,
            stride=mod.stride,
            padding=mod.padding,
            dilation=mod.dilation,
            groups=mod.groups,
        )
    else:
        assert isinstance(mod, QLinear)
        node = LinearNode(**common)
    quant = mod.weight_quant
    if isinstance(quant, BoundedLinearQuantizer):
        record_proved_bound(node, quant.acc_bits, quant.digit_planes)
    else:
        record_proved_bound(node, None)
    return node


def _out_scale(mod: nn.Module) -> float:
    return float(mod.out_quant.scale_value())


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))
