"""``prepare(model, recipe)``: a float model becomes its QAT twin.

The model is traced with ``torch.fx`` and rewritten op by op through the op registry
(:mod:`hwquant.ir.ops`; the facets are those of :mod:`hwquant.qat.fusion`): each registered
op's ``fuse`` facet recognises its float form and what it absorbs (``Conv2d → [BatchNorm2d] →
[ReLU|ReLU6]``, ``Linear → [ReLU|ReLU6]``, ``add → [ReLU|ReLU6]``, average pooling,
``x.mean((2, 3))`` as a global average pool), its ``build`` facet makes the quantized layer of
:mod:`hwquant.qat.nn`; an input quantizer is put after the input, and every layer is bound to
the quantizers of its inputs. A BatchNorm that follows no Conv2d/Linear folds into an identity
layer of its own (:func:`fuse_batchnorm`: an integer per-channel affine). A functional dropout
becomes its module, which follows the model's train/eval mode. Dropout and Identity pass codes
through unchanged, and so does every registered op that declares it keeps its float form
(``OpHandler.keeps``: max pooling, flatten/view/reshape, a ReLU that follows no layer, a final
softmax, a concatenation, whose inputs' producers share one activation quantizer:
:mod:`hwquant.qat.shared_scales`). ``Conv1d``, 1-D pools and ``ConvTranspose2d`` are first
rewritten as their ``Conv2d`` forms (:mod:`hwquant.qat.conv_forms`). The first layer (fed by
the input) and
the last layer (feeding the output) take the recipe's ``first_layer_bits`` /
``last_layer_bits``; the last layer has no output quantizer, so the network returns its
accumulator scaled to float; its weights take one scale for the whole tensor, so that all
outputs share one scale and the integer outputs rank exactly as the float ones (argmax of the
integer logits is the prediction).
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import fx, nn

from hwquant.core.errors import ConfigError, UnsupportedLayerError, check_finite
from hwquant.ir.ops import get_op, handlers
from hwquant.qat import fidelity
from hwquant.qat.accumulator_bound import (
    bind_accumulator_bound,
    bounded_weight_quantizer,
    check_layer_names,
    layer_accumulator_bits,
)
from hwquant.qat.conv_forms import STANDS_FOR, rewrite_conv_forms
from hwquant.qat.fusion import FusedSpec, Fusion, LayerContext, act_quantizer, output_signed
from hwquant.qat.llsq import LinearQuantizer
from hwquant.qat.naming import describe, node_name
from hwquant.qat.nn import QuantInput
from hwquant.qat.nn.bn_fold import identity_layer
from hwquant.qat.nn.qactivation import SUPPORTED_ACTIVATIONS
from hwquant.qat.nn.weight_layer import QuantWeightLayer
from hwquant.qat.options import check_module, check_no_shared_modules, check_not_prepared
from hwquant.qat.quantizer import WeightQuantizer
from hwquant.qat.recipe import Recipe
from hwquant.qat.registry import get_scheme
from hwquant.qat.shared_scales import SharedScales, join_inputs, tensor_inputs

SUPPORTED = (
    "Conv2d (+BatchNorm2d, +ReLU/ReLU6; groups, depthwise), Conv1d (+BatchNorm1d, "
    "+ReLU/ReLU6), ConvTranspose2d (one group, no dilation), Linear (+ReLU/ReLU6), residual "
    "add (+ReLU/ReLU6), MaxPool1d / F.max_pool1d, AdaptiveAvgPool1d(1) / "
    "F.adaptive_avg_pool1d(x, 1) / x.mean(-1) of a Conv1d's output, nearest Upsample / "
    "F.interpolate by "
    "integer factors, "
    "MaxPool2d / F.max_pool2d, AdaptiveAvgPool2d(1) / x.mean((2, 3)), AvgPool2d(k) / "
    "F.avg_pool2d(x, k) with stride k, flatten/view/reshape/squeeze(dim)/unsqueeze(dim), "
    "ReLU elsewhere (e.g. after max pooling), torch.cat (its inputs share one activation "
    "quantizer), Dropout/Dropout1d/Dropout2d (modules or "
    "functions), Identity, BatchNorm1d/2d with running statistics elsewhere (after a ReLU, "
    "pre-activation BN -> ReLU -> Conv, affine=False: an integer per-channel affine, its "
    "multipliers of requant_bits), the product of two tensors (x * gate, a squeeze-excitation "
    "gate broadcast), a final Softmax/LogSoftmax over the classes (kept outside the integer "
    "graph: the IntModel outputs the logits), " + SUPPORTED_ACTIVATIONS
)
INPUT_NAME = "quant_input"

_PASS_MODULES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity)
DROPOUT_FUNCTIONS = {F.dropout: nn.Dropout, F.dropout1d: nn.Dropout1d, F.dropout2d: nn.Dropout2d}
"""Functional dropouts and the module each becomes, so that it follows the model's train/eval
mode (``torch.fx`` would freeze ``training=self.training`` at its value when traced)."""
_PASS_METHODS = ("contiguous",)
_SHAPE_METHODS = ("size", "dim")


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
        if isinstance(m, QuantWeightLayer):
            m.freeze_bn()


def bn_frozen(model: nn.Module) -> bool:
    """Whether the next training forward of ``model`` runs with a layer's folded BN statistics
    frozen (False for a model without folded BN)."""
    return any(
        m.bn_frozen for m in model.modules() if isinstance(m, QuantWeightLayer) and m.bn is not None
    )


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


def _unsupported(node: fx.Node, mod: nn.Module | None) -> UnsupportedLayerError:
    what = type(mod).__name__ if mod is not None else describe(node)
    return UnsupportedLayerError(
        f"cannot quantize '{node_name(node)}' ({what}). Supported: {SUPPORTED}. "
        "Fix: replace it with a supported layer, or keep it outside the part of the model given "
        "to prepare()."
    )


_BN_AFTER = {nn.BatchNorm2d: nn.Conv2d, nn.BatchNorm1d: nn.Linear}
"""The layer a BatchNorm folds into when it directly follows one (its only user)."""


def check_batchnorm_positions(gm: fx.GraphModule) -> None:
    """Refuse a BatchNorm that no layer can absorb, naming it and the rule it breaks.

    A BatchNorm2d/1d right after its Conv2d/Linear (that layer's only user) folds into it; one
    elsewhere folds into an identity layer of its own (:func:`fuse_batchnorm`). Refused: other
    BatchNorm kinds, a BatchNorm1d reading a Conv2d's 4-D output, and a BatchNorm without
    running statistics (its eval output depends on the batch).
    """
    for node in gm.graph.nodes:
        bn = _module(gm, node)
        if not isinstance(bn, nn.modules.batchnorm._BatchNorm):
            continue
        before = node.args[0] if node.args and isinstance(node.args[0], fx.Node) else None
        layer = _module(gm, before) if before is not None else None
        if type(bn) not in _BN_AFTER:
            where = f"hwquant folds only {', '.join(t.__name__ for t in _BN_AFTER)}"
        elif isinstance(bn, nn.BatchNorm1d) and isinstance(layer, nn.Conv2d):
            where = f"it follows {describe(before, layer)}, whose output is 4-D"
        elif bn.running_var is None:
            where = "it keeps no running statistics (track_running_stats=False)"
        else:
            continue
        raise UnsupportedLayerError(
            f"{describe(node, bn)} cannot be folded: {where}. Rule: a BatchNorm2d (on [N, C, H, "
            "W]) or BatchNorm1d (on [N, C]) with running statistics folds into the Conv2d/"
            "Linear it directly follows, or elsewhere into an integer per-channel affine. Fix: "
            "use BatchNorm2d after a Conv2d (BatchNorm1d after a Linear), build it with "
            "track_running_stats=True, or remove it."
        )


def fuse_weight_layer(
    fusion: Fusion,
    node: fx.Node,
    mod: nn.Module | None,
    op: str,
    layer_type: type[nn.Module],
    bn_type: type[nn.Module],
) -> tuple[fx.Node, FusedSpec] | None:
    """The ``fuse`` of weight layer op ``op``: a ``layer_type`` module with the ``bn_type``
    BatchNorm and ReLU/ReLU6 that follow it, fused into its node; a ``bn_type`` that follows
    no such layer, as op ``op``'s identity layer (:func:`fuse_batchnorm`)."""
    if isinstance(mod, bn_type):
        return fuse_batchnorm(fusion, node, mod, op)
    if not isinstance(mod, layer_type):
        return None
    tail, bn, act = fusion.absorb(node, bn_type)
    fusion.collapse(node, tail, node)
    return node, FusedSpec(op, source=mod, bn=bn, act=act)


def fuse_batchnorm(
    fusion: Fusion, node: fx.Node, bn: nn.BatchNorm1d | nn.BatchNorm2d, op: str
) -> tuple[fx.Node, FusedSpec]:
    """The ``fuse`` of a BatchNorm that follows no Conv2d/Linear (a layer's own ``fuse``
    absorbs the others first), with the ReLU/ReLU6 after it: op ``op``'s weight layer over an
    identity (:func:`~hwquant.qat.nn.bn_fold.identity_layer`) with the BatchNorm folded in,
    i.e. an integer per-channel affine (:func:`build_weight_layer` gives its multipliers
    ``requant_bits``, LLSQ in every scheme)."""
    source = node.args[0] if node.args else None
    if isinstance(bn, nn.BatchNorm1d) and isinstance(source, fx.Node) and STANDS_FOR in source.meta:
        raise UnsupportedLayerError(
            f"BatchNorm1d '{node.target}' normalises a 1-D feature map [N, C, L] "
            f"({source.meta[STANDS_FOR]}) that is not in its Conv1d's chain, and prepare folds "
            "a standalone BatchNorm1d over [N, C] features only. Fix: put it right after the "
            "Conv1d or the activation that follows it (Conv1d -> BatchNorm1d -> ReLU)."
        )
    tail, _, act = fusion.absorb(node, None)
    fusion.collapse(node, tail, node)
    spec = FusedSpec(op, source=identity_layer(bn), bn=bn, act=act)
    spec.options["standalone_bn"] = True
    return node, spec


def fuse(gm: fx.GraphModule) -> dict[fx.Node, FusedSpec]:
    """Rewrite the graph into quantizable nodes; return what each new node becomes.

    Each node is offered to the ``fuse`` facet of every registered op (:mod:`hwquant.qat.fusion`),
    in registration order; a node that no op fuses must pass codes through unchanged.
    """
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise UnsupportedLayerError(
            f"prepare() supports models with exactly one input, this one has {len(placeholders)}. "
            "Fix: wrap the model so that forward() takes one tensor."
        )
    check_no_shared_modules(gm)
    rewrite_conv_forms(gm)  # Conv1d, MaxPool1d, ConvTranspose2d as their Conv2d forms
    check_batchnorm_positions(gm)
    fusion = Fusion(gm)
    fusers = [h.fuse for h in handlers() if h.fuse is not None]
    specs: dict[fx.Node, FusedSpec] = {}
    dropouts = 0
    for node in list(gm.graph.nodes):
        if node in fusion.done or node.op in ("placeholder", "output", "get_attr"):
            continue
        mod = _module(gm, node)
        if mod is not None:
            check_module(str(node.target), mod)
        for fuse_op in fusers:
            if (fused := fuse_op(fusion, node, mod)) is not None:
                new, spec = fused
                specs[new] = spec
                break
        else:
            if node.op == "call_function" and node.target in DROPOUT_FUNCTIONS:
                dropouts += 1
                dropout_module(gm, node, f"{node.name}_{dropouts}")
            elif not _is_passthrough(gm, node):
                raise _unsupported(node, mod)
    return specs


def dropout_module(gm: fx.GraphModule, node: fx.Node, name: str) -> None:
    """Replace the functional dropout ``node`` by its module, called ``name``, which follows the
    model's train/eval mode (a pass-through)."""
    p = node.args[1] if len(node.args) > 1 else node.kwargs.get("p", 0.5)
    gm.add_submodule(name, DROPOUT_FUNCTIONS[node.target](p))
    with gm.graph.inserting_before(node):
        new = gm.graph.call_module(name, (node.args[0],))
    new.meta[fidelity.FLOAT_NODE] = node.name
    node.replace_all_uses_with(new)
    gm.graph.erase_node(node)


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
def producers(gm: fx.GraphModule, specs: dict[fx.Node, FusedSpec]) -> dict[fx.Node, fx.Node]:
    """For every tensor node, the quantizing node whose codes it carries."""
    producer: dict[fx.Node, fx.Node] = {}
    for node in gm.graph.nodes:
        if (node.op == "call_module" and node.target == INPUT_NAME) or node in specs:
            producer[node] = node
        elif node.op in ("call_module", "call_function", "call_method"):
            args = [a for a in tensor_inputs(node) if a in producer]
            if args:
                producer[node] = producer[args[0]]
    return producer


def _build_modules(gm: fx.GraphModule, specs: dict[fx.Node, FusedSpec], recipe: Recipe) -> None:
    """Install the QAT layer of every fused node, made by its op's ``build`` facet."""
    producer = producers(gm, specs)
    output = next(n for n in gm.graph.nodes if n.op == "output")
    out_arg = output.args[0]
    if not isinstance(out_arg, fx.Node):
        raise UnsupportedLayerError(
            "prepare() supports models with one tensor output. Fix: return a single tensor."
        )
    last = producer.get(out_arg)
    last_is_weight = last in specs and specs[last].has_weights
    feeds_last = {producer[a] for a in tensor_inputs(last)} if last_is_weight else set()
    input_node = next(n for n in gm.graph.nodes if n.op == "call_module" and n.target == INPUT_NAME)
    quant_of: dict[fx.Node, LinearQuantizer] = {}
    shared = shared_scales(gm, producer, specs, input_node, last, feeds_last)

    def out_bits(node: fx.Node) -> int:
        if node is input_node:
            return recipe.input_bits
        if node in feeds_last and recipe.last_layer_bits is not None:
            return recipe.last_layer_bits
        return recipe.act_bits

    quant_of[input_node] = (
        shared.quantizer(input_node, out_bits, recipe)
        if input_node in shared
        else act_quantizer(recipe, recipe.input_bits, signed=True)
    )
    install(gm, INPUT_NAME, QuantInput(quant_of[input_node]))
    gm.get_submodule(INPUT_NAME).qname = INPUT_NAME

    for node in gm.graph.nodes:
        spec = specs.get(node)
        if spec is None:
            continue
        inputs = [producer[a] for a in tensor_inputs(node)]
        build = get_op(spec.op).build
        if build is None:
            raise UnsupportedLayerError(
                f"op {spec.op!r} fuses '{node.target}' but builds no QAT layer under scheme "
                f"{recipe.scheme!r}. Fix: give the op a build facet, or use a scheme that "
                "builds its own layers."
            )
        layer = LayerContext(
            recipe,
            str(node.target),
            tuple(quant_of[p] for p in inputs),
            first=inputs[0] is input_node,
            last=node is last,
            out_bits=out_bits(node),
            shared=shared.out_quant(node, out_bits, recipe) if node in shared else None,
        )
        module = build(spec, layer)
        module.bind_inputs(layer.inputs)
        module.qname = layer.name
        if spec.has_weights:
            bind_accumulator_bound(module)
        install(gm, layer.name, module)
        if module.out_quant is not None:
            quant_of[node] = module.out_quant
    weight_layers = [str(n.target) for n, s in specs.items() if s.has_weights]
    check_layer_names(recipe, weight_layers)


def shared_scales(
    gm: fx.GraphModule,
    producer: dict[fx.Node, fx.Node],
    specs: dict[fx.Node, FusedSpec],
    input_node: fx.Node,
    last: fx.Node | None,
    feeds_last: set[fx.Node],
) -> SharedScales:
    """The producers of each join's inputs (a kept op reading several tensors, ``torch.cat``),
    grouped to share one quantizer (:mod:`hwquant.qat.shared_scales`); ``feeds_last`` grows by
    the groups of its members."""
    joins = [
        (n, [producer[a] for a in join_inputs(n)])
        for n in gm.graph.nodes
        if len(join_inputs(n)) > 1 and _is_passthrough(gm, n)
    ]

    def wants_signed(node: fx.Node) -> bool:
        """Whether ``node``'s own output would be signed: the input; a fused layer as its op
        says (:func:`hwquant.qat.fusion.output_signed`), asking in turn its inputs' groups."""
        spec = specs.get(node)
        if spec is None:
            return node is input_node
        args = tensor_inputs(node)

        def input_signed(i: int) -> bool:
            source = producer[args[i]]
            return shared.signed(source) if source in shared else wants_signed(source)

        return output_signed(spec, input_signed)

    shared = SharedScales(joins, wants_signed)
    if last in shared:
        raise UnsupportedLayerError(
            f"the last layer '{node_name(last)}' feeds the concatenation "
            f"'{shared.join_of[last].name}'; its output is the network's (an accumulator, "
            "not codes). Fix: end the network with one layer after the concatenation."
        )
    feeds_last.update(m for p in list(feeds_last) if p in shared for m in shared.members(p))
    return shared


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


def build_weight_layer(
    cls: type[QuantWeightLayer], spec: FusedSpec, layer: LayerContext
) -> QuantWeightLayer:
    """The ``build`` facet that weight layers share: ``cls`` (QConv2d, QLinear) over
    ``spec.source``, its BatchNorm folded and its activation fused.

    The first layer takes ``first_layer_bits``, the last ``last_layer_bits`` (the first wins
    for a network of one layer), the others ``weight_bits`` (a standalone BatchNorm's identity
    layer, :func:`fuse_batchnorm`: ``requant_bits``, LLSQ), quantized by the scheme's weight
    quantizer (first and last: LLSQ; a layer with an accumulator bound: LLSQ, bounded). The last
    layer has no output quantizer, and one weight scale for the whole tensor, so that its
    outputs share one scale and integer logits rank exactly as the float ones.
    """
    recipe, source = layer.recipe, spec.source
    bits = recipe.first_layer_bits if layer.first else recipe.weight_bits
    if layer.last and not layer.first:
        bits = recipe.last_layer_bits
    standalone_bn = spec.options.get("standalone_bn", False)
    if standalone_bn:  # its weights are per-channel requantization multipliers
        if bits is None:
            option = "first_layer_bits" if layer.first else "last_layer_bits"
            raise UnsupportedLayerError(
                f"BatchNorm '{layer.name}' is the network's {option.split('_')[0]} weight layer "
                f"(an integer per-channel affine) and {option}=None asks to keep that layer "
                f"float. Fix: set {option}, or put a Conv2d/Linear before the BatchNorm."
            )
        bits = recipe.requant_bits
    out_q = None if layer.last else layer.out_quant(spec)
    per_channel = not layer.last
    inner = not layer.first and not layer.last and not standalone_bn
    acc_bits = layer_accumulator_bits(recipe, layer.name, bits)
    w_quant = None
    if acc_bits is not None:
        w_quant = bounded_weight_quantizer(
            recipe, bits, source.weight.detach(), per_channel, acc_bits
        )
    elif bits is not None:
        w_quant = _weight_quantizer(recipe, bits, source.weight.detach(), per_channel, inner)
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
