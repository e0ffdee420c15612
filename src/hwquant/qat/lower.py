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
from hwquant.ir.intmodel import InputSpec, IntModel, IntNode, WeightNode
from hwquant.ir.ops import get_op, handlers
from hwquant.qat.accumulator_bound import BoundedLinearQuantizer, record_proved_bound
from hwquant.qat.naming import describe, node_name
from hwquant.qat.nn import QuantInput, QuantWeightLayer
from hwquant.qat.registry import get_scheme
from hwquant.qat.shared_scales import tensor_inputs

_ALIAS_MODULES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity)


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
        inputs = [alias[a.name] for a in tensor_inputs(node) if a.name in alias]
        if isinstance(mod, QuantInput):
            spec = mod.out_quant.export()
            input_spec = InputSpec(mod.qname, float(spec.scale[0]), spec.bits, spec.signed)
            alias[node.name] = mod.qname
            scale_of[mod.qname] = np.array([input_spec.scale])
            continue
        int_node = _int_node(node, mod, inputs, node.name)
        if int_node is None:  # alias or a shape query
            if inputs:
                alias[node.name] = inputs[0]
            continue
        int_node.name = _unique(node_name(node), scale_of)  # the model's name (features.3)
        nodes.append(int_node)
        alias[node.name] = int_node.name
        scale_of[int_node.name] = _output_scale(int_node, scale_of)
    assert input_spec is not None, "prepare() always inserts an input quantizer"
    recipe = gm.hwquant_recipe.to_dict()
    return IntModel(input_spec, nodes, output_name, scale_of[output_name], recipe)


def _output_scale(node: IntNode, scale_of: dict[str, np.ndarray]) -> np.ndarray:
    """Value of one unit of ``node``'s output: its input's for an op that passes codes through
    (max pooling, reshapes), else its own ``out_scale`` (per channel ``acc_scale`` for a last
    layer without requantization)."""
    if get_op(node.op).passthrough:
        scales = [scale_of[name] for name in node.inputs]
        if any(not np.array_equal(s, scales[0]) for s in scales):  # a join of unequal scales
            raise HwquantError(
                f"'{node.name}' joins codes of different scales "
                f"({', '.join(f'{float(s[0]):.6g}' for s in scales)}), which it would not "
                "compute exactly. Fix: prepare() the model again with this hwquant version "
                "(it gives a concatenation's inputs one quantizer)."
            )
        return scales[0]
    if isinstance(node, WeightNode) and node.mult is None:
        return np.asarray(node.acc_scale, np.float64)
    return np.array([node.out_scale], np.float64)


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
    """The IntModel node for fx ``node`` (the first registered op that lowers it; ``name``: the
    name of a node that is no QAT layer), or None when it only passes codes through."""
    for handler in handlers():
        if handler.lower is not None and (int_node := handler.lower(node, mod, inputs, name)):
            return int_node
    if isinstance(mod, _ALIAS_MODULES) or mod is None:
        return None
    raise UnsupportedLayerError(
        f"lower() cannot express '{node_name(node)}' ({describe(node, mod)}). Fix: prepare() "
        "the model again with this hwquant version."
    )


def lower_weight_layer(
    mod: QuantWeightLayer, inputs: list[str], node_class: type[WeightNode], **geometry: object
) -> WeightNode:
    """The ``node_class`` node of QAT weight layer ``mod`` (``geometry``: the op's own fields,
    e.g. a convolution's stride), with its integer parameters and proved accumulator bound."""
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
            out_scale=out_scale(mod),
        )
    node = node_class(**common, **geometry)
    quant = mod.weight_quant
    if isinstance(quant, BoundedLinearQuantizer):
        record_proved_bound(node, quant.acc_bits, quant.digit_planes)
    else:
        record_proved_bound(node, None)
    return node


def out_scale(mod: nn.Module) -> float:
    """The value of one output code of QAT layer ``mod``."""
    return float(mod.out_quant.scale_value())
