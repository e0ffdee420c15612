"""``prepare(model, recipe)``: a float model becomes its QAT twin.

The model is traced with ``torch.fx``; chains ``Conv2d → [BatchNorm2d] → [ReLU|ReLU6]``,
``Linear → [ReLU|ReLU6]``, ``add → [ReLU|ReLU6]`` and average pooling are replaced by the
quantized layers of :mod:`hwquant.qat.nn`, an input quantizer is put after the input, and every
layer is bound to the quantizers of its inputs. ``x.mean((2, 3))`` becomes a global average
pool (and a flatten without ``keepdim``); a functional dropout becomes its module, which follows
the model's train/eval mode. Dropout and Identity pass codes through
unchanged, and so does every registered op that declares it keeps its float form
(``OpHandler.keeps`` in :mod:`hwquant.ir.ops`: max pooling, flatten/view/reshape, a ReLU that
follows no layer). The first layer (fed by the input) and the last layer
(feeding the output) take the recipe's ``first_layer_bits`` / ``last_layer_bits``; the last
layer has no output quantizer, so the network returns its accumulator scaled to float; its
weights take one scale for the whole tensor, so that all outputs share one scale and the integer
outputs rank exactly as the float ones (argmax of the integer logits is the prediction).
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import fx, nn

from hwquant.core.errors import ConfigError, UnsupportedLayerError, check_finite
from hwquant.ir.ops import handlers
from hwquant.qat import fidelity
from hwquant.qat.accumulator_bound import (
    bind_accumulator_bound,
    bounded_weight_quantizer,
    check_layer_names,
    layer_accumulator_bits,
)
from hwquant.qat.llsq import LinearQuantizer
from hwquant.qat.naming import describe, node_name
from hwquant.qat.nn import QAdd, QAvgPool, QConv2d, QLinear, QuantInput, QuantModule
from hwquant.qat.nn.base import Activation
from hwquant.qat.options import (
    check_add,
    check_avg_pool,
    check_module,
    check_no_shared_modules,
    check_not_prepared,
)
from hwquant.qat.quantizer import WeightQuantizer
from hwquant.qat.recipe import Recipe
from hwquant.qat.registry import get_scheme

SUPPORTED = (
    "Conv2d (+BatchNorm2d, +ReLU/ReLU6), Linear (+ReLU/ReLU6), residual add (+ReLU/ReLU6), "
    "MaxPool2d / F.max_pool2d, AdaptiveAvgPool2d(1) / x.mean((2, 3)), AvgPool2d(k) / "
    "F.avg_pool2d(x, k) with stride k, flatten/view/reshape/squeeze(dim)/unsqueeze(dim), "
    "ReLU elsewhere (e.g. after max pooling), Dropout/Dropout1d/Dropout2d (modules or "
    "functions), Identity (BatchNorm with running statistics)"
)
INPUT_NAME = "quant_input"

_PASS_MODULES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity)
DROPOUT_FUNCTIONS = {F.dropout: nn.Dropout, F.dropout1d: nn.Dropout1d, F.dropout2d: nn.Dropout2d}
"""Functional dropouts and the module each becomes, so that it follows the model's train/eval
mode (``torch.fx`` would freeze ``training=self.training`` at its value when traced)."""
_PASS_METHODS = ("contiguous",)
_SHAPE_METHODS = ("size", "dim")
_ADD_FUNCTIONS = (operator.add, torch.add, operator.iadd)


@dataclass
class FusedSpec:
    """What a rewritten node will become: its kind and the float parts it absorbs."""

    kind: str  # "conv", "linear", "add", "avgpool"
    source: nn.Module | None = None
    bn: nn.Module | None = None
    act: Activation = None
    kernel_size: int | None = None


def prepare(
    model: nn.Module,
    recipe: Recipe | None = None,
    *,
    example_input: torch.Tensor | None = None,
    check_fidelity: bool = True,
) -> fx.GraphModule:
    """Return the QAT twin of ``model`` under ``recipe`` (the model itself is not changed).

    With ``check_fidelity`` (the default) the twin, quantization bypassed, is run against the
    float model on ``example_input`` (or a seeded probe batch) and must match it at every layer
    within :data:`hwquant.qat.fidelity.RTOL` of the layer's largest magnitude
    (:mod:`hwquant.qat.fidelity`); ``check_fidelity=False`` skips that check.

    Raises:
        UnsupportedLayerError: a module or operation cannot be quantized; the message names
            it and lists what is supported. Or the fidelity check failed: the message names
            the first layer that differs.
        NonFiniteError: a weight holds NaN or Inf.
        ConfigError: ``example_input`` given with ``check_fidelity=False``, or no probe batch
            runs through the model.
    """
    recipe = recipe or Recipe()
    if example_input is not None and not check_fidelity:
        raise ConfigError(
            "example_input is the probe of prepare()'s fidelity check, which "
            "check_fidelity=False turns off. Fix: drop example_input, or keep the check on."
        )
    check_not_prepared(model)
    handler = get_scheme(recipe.scheme)
    if handler.prepare is not None:  # the scheme changes the activations too: its own path
        gm = handler.prepare(model, recipe)
    else:
        gm = _prepare_common(model, recipe)
    if check_fidelity:
        fidelity.check_fidelity(model, gm, INPUT_NAME, example_input)
    return gm


def _prepare_common(model: nn.Module, recipe: Recipe) -> fx.GraphModule:
    """The QAT twin of every scheme that quantizes weight layers one by one."""
    handler = get_scheme(recipe.scheme)
    for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
        check_finite(f"model tensor '{name}'", tensor)
    gm = trace(copy.deepcopy(model))
    specs = fuse(gm)
    insert_input(gm)
    _build_modules(gm, specs, recipe)
    gm.graph.lint()
    gm.recompile()
    gm.delete_all_unused_submodules()
    if handler.setup is not None:
        handler.setup(gm, recipe)
    gm.hwquant_recipe = recipe
    return gm.train(model.training)


def freeze_bn(model: nn.Module) -> None:
    """Freeze the folded BN statistics of every layer of a prepared model from now on."""
    for m in model.modules():
        if isinstance(m, QConv2d | QLinear):
            m.freeze_bn()


# -- tracing and fusion -----------------------------------------------------------------------
def trace(model: nn.Module) -> fx.GraphModule:
    try:
        return fx.symbolic_trace(model)
    except Exception as exc:  # fx raises many types for untraceable code
        raise UnsupportedLayerError(
            f"torch.fx could not trace {type(model).__name__}: {exc}. Fix: remove data-dependent "
            "control flow from forward(), or wrap such code in a module of the supported kinds: "
            f"{SUPPORTED}."
        ) from exc


def _module(gm: fx.GraphModule, node: fx.Node) -> nn.Module | None:
    return gm.get_submodule(node.target) if node.op == "call_module" else None


def _activation(gm: fx.GraphModule, node: fx.Node) -> Activation:
    """'relu' / 'relu6' if ``node`` applies that activation, else None."""
    mod = _module(gm, node)
    if isinstance(mod, nn.ReLU6) or (node.op == "call_function" and node.target is F.relu6):
        return "relu6"
    if (
        isinstance(mod, nn.ReLU)
        or (node.op == "call_function" and node.target in (F.relu, torch.relu))
        or (node.op == "call_method" and node.target == "relu")
    ):
        return "relu"
    return None


def _single_user(node: fx.Node) -> fx.Node | None:
    users = list(node.users)
    return users[0] if len(users) == 1 else None


def _absorb(
    gm: fx.GraphModule, head: fx.Node, bn_type: type | None
) -> tuple[fx.Node, nn.Module | None, Activation]:
    """Follow ``head`` through an optional BN and activation; return the chain's tail."""
    tail, bn = head, None
    nxt = _single_user(tail)
    if bn_type is not None and nxt is not None and isinstance(_module(gm, nxt), bn_type):
        tail, bn = nxt, _module(gm, nxt)
        if bn.running_var is None:
            raise UnsupportedLayerError(
                f"BatchNorm '{nxt.target}' keeps no running statistics, so it cannot be folded "
                "into the weights. Fix: build it with track_running_stats=True."
            )
        nxt = _single_user(tail)
    act = _activation(gm, nxt) if nxt is not None else None
    if act is not None:
        tail = nxt
    return tail, bn, act


def _collapse(gm: fx.GraphModule, head: fx.Node, tail: fx.Node, replacement: fx.Node) -> None:
    """Route the users of ``tail`` to ``replacement`` and erase ``head..tail``."""
    chain = _chain_nodes(head, tail)
    tail.replace_all_uses_with(replacement)
    for node in chain:
        if node is not replacement:
            gm.graph.erase_node(node)


def _unsupported(node: fx.Node, mod: nn.Module | None) -> UnsupportedLayerError:
    what = type(mod).__name__ if mod is not None else describe(node)
    return UnsupportedLayerError(
        f"cannot quantize '{node_name(node)}' ({what}). Supported: {SUPPORTED}. "
        "Fix: replace it with a supported layer, or keep it outside the part of the model given "
        "to prepare()."
    )


_BN_AFTER = {nn.BatchNorm2d: nn.Conv2d, nn.BatchNorm1d: nn.Linear}
"""The layer a BatchNorm folds into."""


def check_batchnorm_positions(gm: fx.GraphModule) -> None:
    """Refuse a BatchNorm that no layer can absorb, naming it and the rule it breaks."""
    for node in gm.graph.nodes:
        bn = _module(gm, node)
        if not isinstance(bn, nn.modules.batchnorm._BatchNorm):
            continue
        layer_type = _BN_AFTER.get(type(bn))
        before = node.args[0] if node.args and isinstance(node.args[0], fx.Node) else None
        layer = _module(gm, before) if before is not None else None
        if layer_type is None:
            where = f"hwquant folds only {', '.join(t.__name__ for t in _BN_AFTER)}"
        elif before is None:
            where = "it reads no layer's output"
        elif not isinstance(layer, layer_type):
            where = f"it follows {describe(before, layer)}, not a {layer_type.__name__}"
        elif len(before.users) > 1:
            where = f"'{node_name(before)}' feeds it and other nodes too"
        else:
            continue
        raise UnsupportedLayerError(
            f"{describe(node, bn)} cannot be folded: {where}. Rule: a BatchNorm2d must come "
            "directly after a Conv2d (a BatchNorm1d after a Linear) and be that layer's only "
            "user, so that it folds into the layer's weights and bias. Fix: put it right after "
            "its Conv2d/Linear, before the activation (Conv2d -> BatchNorm2d -> ReLU), or "
            "remove it."
        )


def fuse(gm: fx.GraphModule) -> dict[fx.Node, FusedSpec]:
    """Rewrite the graph into quantizable nodes; return what each new node becomes."""
    specs: dict[fx.Node, FusedSpec] = {}
    counter = {"add": 0, "avgpool": 0, "dropout": 0}
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise UnsupportedLayerError(
            f"prepare() supports models with exactly one input, this one has {len(placeholders)}. "
            "Fix: wrap the model so that forward() takes one tensor."
        )
    check_no_shared_modules(gm)
    check_batchnorm_positions(gm)
    fused: set[fx.Node] = set()
    for node in list(gm.graph.nodes):
        if node in fused or node.op in ("placeholder", "output", "get_attr"):
            continue
        mod = _module(gm, node)
        if mod is not None:
            check_module(str(node.target), mod)
        if isinstance(mod, nn.Conv2d | nn.Linear):
            bn_type = nn.BatchNorm2d if isinstance(mod, nn.Conv2d) else nn.BatchNorm1d
            tail, bn, act = _absorb(gm, node, bn_type)
            kind = "conv" if isinstance(mod, nn.Conv2d) else "linear"
            specs[node] = FusedSpec(kind, source=mod, bn=bn, act=act)
            node.meta[fidelity.FLOAT_NODE] = tail.name
            fused.update(_chain_nodes(node, tail))
            _collapse(gm, node, tail, node)
        elif _is_add(node):
            check_add(node)
            tail, _, act = _absorb(gm, node, None)
            counter["add"] += 1
            new = _new_module_node(gm, node, f"add_{counter['add']}", tuple(node.args[:2]))
            specs[new] = FusedSpec("add", act=act)
            new.meta[fidelity.FLOAT_NODE] = tail.name
            fused.update(_chain_nodes(node, tail))
            _collapse(gm, node, tail, new)
        elif node.op == "call_function" and node.target in DROPOUT_FUNCTIONS:
            counter["dropout"] += 1
            p = node.args[1] if len(node.args) > 1 else node.kwargs.get("p", 0.5)
            dropout = DROPOUT_FUNCTIONS[node.target](p)
            name = f"{node.name}_{counter['dropout']}"
            gm.add_submodule(name, dropout)
            with gm.graph.inserting_before(node):
                new = gm.graph.call_module(name, (node.args[0],))
            node.replace_all_uses_with(new)
            gm.graph.erase_node(node)
        elif (kernel := _avgpool_kernel(gm, node)) is not False:
            counter["avgpool"] += 1
            new = _new_module_node(gm, node, f"avgpool_{counter['avgpool']}", (node.args[0],))
            specs[new] = FusedSpec("avgpool", kernel_size=kernel)
            if _drops_spatial_dims(node):  # x.mean((2, 3)): [N, C], a global pool + flatten
                with gm.graph.inserting_after(new):
                    out = gm.graph.call_function(torch.flatten, (new, 1))
            else:
                out = new
            out.meta[fidelity.FLOAT_NODE] = node.name  # the node whose output it stands for
            node.replace_all_uses_with(out)
            gm.graph.erase_node(node)
        elif not _is_passthrough(gm, node):
            raise _unsupported(node, mod)
    return specs


def _new_module_node(gm: fx.GraphModule, before: fx.Node, name: str, args: tuple) -> fx.Node:
    """A call of a new submodule ``name`` (a stand-in until the QAT layer is installed)."""
    gm.add_submodule(name, nn.Identity())
    with gm.graph.inserting_before(before):
        return gm.graph.call_module(name, args)


def _chain_nodes(head: fx.Node, tail: fx.Node) -> list[fx.Node]:
    chain = [tail]
    while chain[-1] is not head:
        chain.append(chain[-1].args[0])
    return chain


def _is_add(node: fx.Node) -> bool:
    is_call = (node.op == "call_function" and node.target in _ADD_FUNCTIONS) or (
        node.op == "call_method" and node.target in ("add", "__add__")
    )
    return is_call and len(node.args) == 2 and all(isinstance(a, fx.Node) for a in node.args)


AVG_POOL_ARGS = (
    "kernel_size",
    "stride",
    "padding",
    "ceil_mode",
    "count_include_pad",
    "divisor_override",
)
"""The arguments of ``F.avg_pool2d`` after the input, in order."""
SPATIAL_DIMS = ({2, 3}, {-2, -1})
"""The dims of a global average pool written as a mean of an NCHW tensor."""


def _avgpool_kernel(gm: fx.GraphModule, node: fx.Node) -> int | bool | None:
    """None for a global average pool (``AdaptiveAvgPool2d(1)``, its functional form, or
    ``x.mean((2, 3))``), k for ``AvgPool2d(k)`` / ``F.avg_pool2d(x, k)`` with stride k, False
    otherwise. Other forms of ``F.avg_pool2d`` are refused, naming the option."""
    mod = _module(gm, node)
    if isinstance(mod, nn.AdaptiveAvgPool2d) and mod.output_size in (1, (1, 1)):
        return None
    if node.op == "call_function" and node.target is F.adaptive_avg_pool2d:
        size = node.args[1] if len(node.args) > 1 else node.kwargs.get("output_size")
        if size in (1, (1, 1)):
            return None
    if _spatial_mean(node) is not None:
        return None
    if node.op == "call_function" and node.target is F.avg_pool2d:
        options = dict(zip(AVG_POOL_ARGS, node.args[1:], strict=False)) | dict(node.kwargs)
        mod = nn.AvgPool2d(**options)
        check_avg_pool(node_name(node), mod)  # refuses any form other than AvgPool2d(k)
    if isinstance(mod, nn.AvgPool2d):
        k, s = mod.kernel_size, mod.stride
        if isinstance(k, int) and s in (k, None) and mod.padding == 0 and not mod.ceil_mode:
            return k
    return False


def _spatial_mean(node: fx.Node) -> bool | None:
    """``keepdim`` of ``x.mean((2, 3))`` / ``torch.mean(x, (-2, -1), keepdim)``; None when
    ``node`` is no mean over the two spatial dims (a ``dtype`` is refused)."""
    is_mean = (node.op == "call_method" and node.target == "mean") or (
        node.op == "call_function" and node.target is torch.mean
    )
    if not is_mean:
        return None
    dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    if not isinstance(dims, tuple | list) or set(dims) not in SPATIAL_DIMS:
        return None
    if node.kwargs.get("dtype") is not None:
        raise UnsupportedLayerError(
            f"mean '{node_name(node)}' has dtype={node.kwargs['dtype']}; the quantized average "
            "pool computes in codes. Fix: drop dtype."
        )
    return bool(node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False))


def _drops_spatial_dims(node: fx.Node) -> bool:
    """Whether ``node`` is a spatial mean without ``keepdim`` (its output is ``[N, C]``)."""
    return _spatial_mean(node) is False


def _is_passthrough(gm: fx.GraphModule, node: fx.Node) -> bool:
    """True for operations that leave integer codes and their scale unchanged (a registered op
    that keeps its float form, or an alias)."""
    mod = _module(gm, node)
    if any(h.keeps is not None and h.keeps(node, mod) for h in handlers()):
        return True
    if node.op == "call_module":
        return isinstance(_module(gm, node), _PASS_MODULES)
    if node.op == "call_function":
        if node.target is operator.getitem:
            src = node.args[0]
            return isinstance(src, fx.Node) and (
                (src.op == "call_method" and src.target in _SHAPE_METHODS)
                or (src.op == "call_function" and src.target is getattr)
            )
        if node.target is getattr:
            return node.args[1] == "shape"
        return False
    return node.op == "call_method" and node.target in _PASS_METHODS + _SHAPE_METHODS


def insert_input(gm: fx.GraphModule) -> None:
    placeholder = next(n for n in gm.graph.nodes if n.op == "placeholder")
    # torch 2.13 cannot pickle a GraphModule whose signature is annotated `torch.Tensor` (the
    # annotation becomes a string global); the annotations carry nothing we need.
    for node in gm.graph.nodes:
        if node.op in ("placeholder", "output"):
            node.type = None
    gm.add_submodule(INPUT_NAME, nn.Identity())
    with gm.graph.inserting_after(placeholder):
        qin = gm.graph.call_module(INPUT_NAME, (placeholder,))
    qin.meta[fidelity.FLOAT_NODE] = placeholder.name
    placeholder.replace_all_uses_with(qin, delete_user_cb=lambda user: user is not qin)


# -- quantizers and bits ----------------------------------------------------------------------
def tensor_args(node: fx.Node) -> list[fx.Node]:
    return [a for a in node.args if isinstance(a, fx.Node)]


def producers(gm: fx.GraphModule, specs: dict[fx.Node, FusedSpec]) -> dict[fx.Node, fx.Node]:
    """For every tensor node, the quantizing node whose codes it carries."""
    producer: dict[fx.Node, fx.Node] = {}
    for node in gm.graph.nodes:
        if (node.op == "call_module" and node.target == INPUT_NAME) or node in specs:
            producer[node] = node
        elif node.op in ("call_module", "call_function", "call_method"):
            args = [a for a in node.args if isinstance(a, fx.Node) and a in producer]
            if args:
                producer[node] = producer[args[0]]
    return producer


def _build_modules(gm: fx.GraphModule, specs: dict[fx.Node, FusedSpec], recipe: Recipe) -> None:
    producer = producers(gm, specs)
    output = next(n for n in gm.graph.nodes if n.op == "output")
    out_arg = output.args[0]
    if not isinstance(out_arg, fx.Node):
        raise UnsupportedLayerError(
            "prepare() supports models with one tensor output. Fix: return a single tensor."
        )
    last = producer.get(out_arg)
    last_is_weight = last in specs and specs[last].kind in ("conv", "linear")
    feeds_last = {producer[a] for a in tensor_args(last)} if last_is_weight else set()
    input_node = next(n for n in gm.graph.nodes if n.op == "call_module" and n.target == INPUT_NAME)
    signed: dict[fx.Node, bool] = {input_node: True}
    quant_of: dict[fx.Node, LinearQuantizer] = {}

    def act_quant(node: fx.Node, is_signed: bool) -> LinearQuantizer:
        bits = recipe.act_bits
        if node in feeds_last and recipe.last_layer_bits is not None:
            bits = recipe.last_layer_bits
        return _act_quantizer(recipe, bits, is_signed)

    quant_of[input_node] = _act_quantizer(recipe, recipe.input_bits, signed=True)
    install(gm, INPUT_NAME, QuantInput(quant_of[input_node]))
    gm.get_submodule(INPUT_NAME).qname = INPUT_NAME

    for node in gm.graph.nodes:
        spec = specs.get(node)
        if spec is None:
            continue
        inputs = [producer[a] for a in tensor_args(node)]
        if spec.kind in ("conv", "linear"):
            is_first = inputs[0] is input_node
            bits = recipe.first_layer_bits if is_first else recipe.weight_bits
            if node is last:
                bits = recipe.last_layer_bits if not is_first else bits
            out_q = None if node is last else act_quant(node, spec.act is None)
            # the last layer's outputs share one scale, so integer logits rank like float ones
            module = _weight_layer(
                spec,
                bits,
                out_q,
                recipe,
                per_channel=node is not last,
                inner=not is_first and node is not last,
                acc_bits=layer_accumulator_bits(recipe, str(node.target), bits),
            )
        elif spec.kind == "add":
            out_q = act_quant(node, spec.act is None)
            module = QAdd(out_q, spec.act, recipe.requant_bits)
        else:
            out_q = act_quant(node, signed[inputs[0]])
            module = QAvgPool(out_q, spec.kernel_size, recipe.requant_bits)
        module.bind_inputs([quant_of[p] for p in inputs])
        module.qname = str(node.target)
        if isinstance(module, QConv2d | QLinear):
            bind_accumulator_bound(module)
        install(gm, str(node.target), module)
        if out_q is not None:
            quant_of[node], signed[node] = out_q, out_q.signed
    weight_layers = [str(n.target) for n, s in specs.items() if s.kind in ("conv", "linear")]
    check_layer_names(recipe, weight_layers)


def _act_quantizer(recipe: Recipe, bits: int, signed: bool) -> LinearQuantizer:
    """An activation quantizer of ``bits`` under ``recipe``."""
    return LinearQuantizer(
        bits,
        signed,
        is_activation=True,
        gradient=recipe.scale_gradient,
        norm=recipe.llsq_norm,
        init=recipe.scale_init,
        error_samples=recipe.act_error_samples,
        constraint=recipe.scale_constraint,
        mantissa_bits=recipe.scale_mantissa_bits,
    )


def llsq_weight_quantizer(
    recipe: Recipe, bits: int, weight: torch.Tensor, per_channel: bool
) -> LinearQuantizer:
    """LLSQ's signed weight quantizer: one scale per output channel or per tensor."""
    channel_scales = per_channel and recipe.weight_granularity == "channel"
    return LinearQuantizer(
        bits,
        True,
        channels=weight.shape[0] if channel_scales else 1,
        is_activation=False,
        gradient=recipe.scale_gradient,
        norm=recipe.llsq_norm,
        init=recipe.scale_init,
        constraint=recipe.scale_constraint,
        mantissa_bits=recipe.scale_mantissa_bits,
    )


WeightQuantizerFactory = Callable[[Recipe, int, torch.Tensor, bool], WeightQuantizer]
"""``(recipe, bits, float weight, per_channel) -> weight quantizer`` of an inner layer: the type
of a scheme's ``SchemeHandler.weight_quantizer`` (the first and last layers are linear, LLSQ, in
every scheme)."""


def _weight_quantizer(
    recipe: Recipe, bits: int, weight: torch.Tensor, per_channel: bool, inner: bool
) -> WeightQuantizer:
    if not inner:
        return llsq_weight_quantizer(recipe, bits, weight, per_channel)
    factory = get_scheme(recipe.scheme).weight_quantizer
    if factory is None:
        raise ConfigError(
            f"scheme {recipe.scheme!r} has no weight quantizer in prepare(). Fix: use a scheme "
            "that quantizes weight layers one by one (llsq, msq, nonuniform)."
        )
    return factory(recipe, bits, weight, per_channel)


def _weight_layer(
    spec: FusedSpec,
    bits: int | None,
    out_q: LinearQuantizer | None,
    recipe: Recipe,
    per_channel: bool,
    inner: bool,
    acc_bits: int | None,
) -> QuantModule:
    source = spec.source
    w_quant = None
    if acc_bits is not None:
        w_quant = bounded_weight_quantizer(
            recipe, bits, source.weight.detach(), per_channel, acc_bits
        )
    elif bits is not None:
        w_quant = _weight_quantizer(recipe, bits, source.weight.detach(), per_channel, inner)
    cls = QConv2d if spec.kind == "conv" else QLinear
    return cls(
        source,
        bn=spec.bn,
        act=spec.act,
        weight_quant=w_quant,
        out_quant=out_q,
        bias_bits=recipe.bias_bits if acc_bits is None else min(recipe.bias_bits, acc_bits),
        requant_bits=recipe.requant_bits,
        bn_freeze_step=recipe.bn_freeze_step,
    )


def install(gm: fx.GraphModule, target: str, module: nn.Module) -> None:
    """Put ``module`` at the dotted path ``target`` (replacing what is there)."""
    parent_name, _, leaf = target.rpartition(".")
    parent = gm.get_submodule(parent_name) if parent_name else gm
    setattr(parent, leaf, module)
