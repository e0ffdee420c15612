"""``prepare_tables(model, recipe)``: a float model becomes its table-unit QAT twin.

Called by :func:`hwquant.prepare` when ``recipe.scheme == "tables"``. Tracing and fusion are
those of :mod:`hwquant.prepare` (Conv2d/Linear + BN + ReLU/ReLU6, add, product, average
pooling, activations; ``Conv1d``, 1-D pools and ``ConvTranspose2d`` first rewritten as their
``Conv2d`` forms); the fused nodes become the layers of :mod:`hwquant.schemes.tables.layers`
(:data:`SUPPORTED`). Every producer owns the codebook quantizer of its output (unsigned, with
a level at 0, after ReLU), except that the producers of a concatenation's inputs share one; the
network input is quantized onto ``input_entries`` evenly spaced levels over its range: the
256 pixel values of 8-bit images.
"""

from __future__ import annotations

import copy

import torch
from torch import fx, nn

from hwquant.core.errors import UnsupportedLayerError, check_finite
from hwquant.ir.ops import handlers
from hwquant.qat import fidelity
from hwquant.qat.fusion import FusedSpec, output_signed
from hwquant.qat.naming import describe, node_name
from hwquant.qat.nn.qactivation import Elementwise
from hwquant.qat.nn.zero_insert import ZeroInsert
from hwquant.qat.prepare import (
    INPUT_NAME,
    fuse,
    insert_input,
    install,
    producers,
    shared_scales,
    trace,
)
from hwquant.qat.recipe import Recipe, TableOptions
from hwquant.qat.shared_scales import SharedScales, tensor_inputs
from hwquant.schemes.tables.layers import (
    TableActivation,
    TableAdd,
    TableAvgPool,
    TableModule,
    TableUnit,
)
from hwquant.schemes.tables.lower import is_alias, is_flatten_call, is_shape_query
from hwquant.schemes.tables.model import INDEX_OPS
from hwquant.schemes.tables.quantizer import CodebookQuantizer

SUPPORTED = (
    "Conv2d of any kernel, stride, padding, dilation and groups (depthwise), Conv1d, "
    "ConvTranspose2d (one group, no dilation), Linear, each with BatchNorm and ReLU/ReLU6 folded "
    "into integer thresholds; BatchNorm after no layer (an identity unit); residual add "
    "(+ReLU/ReLU6) and the product x * gate (broadcast) as two-input lookup tables; Sigmoid, "
    "Hardsigmoid, Hardswish, SiLU, Tanh, LeakyReLU, Hardtanh, GELU and a ReLU after no layer as "
    "activation tables; AvgPool2d(k) / AdaptiveAvgPool2d(1) / x.mean((2, 3)) (1-D forms too) "
    "as sums and thresholds; on indices as on codes: MaxPool2d / F.max_pool2d / MaxPool1d "
    "(any window, dilation, ceil_mode), torch.cat (its inputs' producers share one codebook), "
    "nearest Upsample / F.interpolate by integer factors, flatten/view/reshape/squeeze/"
    "unsqueeze, Dropout, Identity; a final Softmax/LogSoftmax kept outside (the TableModel "
    "outputs the logits). The network may end in a plain Conv2d/Linear (logits: acc + bias) "
    "or in any other layer (indices of its codebook, TableModel.output_levels)"
)
"""What the tables scheme's ``prepare`` takes (docs/supported_ops.md)."""


class TableInput(nn.Module):
    """The network input quantizer: evenly spaced levels over the input range."""

    def __init__(self, quant: CodebookQuantizer) -> None:
        super().__init__()
        self.quant = quant

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.quant(x)


def prepare_tables(model: nn.Module, recipe: Recipe) -> fx.GraphModule:
    """Return the table-unit QAT twin of ``model`` (the model itself is not changed).

    Raises:
        UnsupportedLayerError: a layer cannot become a table unit (max pooling with ceil_mode,
            a softmax, ...).
        NonFiniteError: a weight holds NaN or Inf.
    """
    for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
        check_finite(f"model tensor '{name}'", tensor)
    gm = trace(copy.deepcopy(model))
    specs = fuse(gm)
    check_table_options(gm)
    _relus_as_activations(gm, specs)
    inserted = _absorb_zero_insertion(gm, specs)
    insert_input(gm)
    _build(gm, specs, recipe.tables, inserted)
    gm.graph.lint()
    gm.recompile()
    gm.delete_all_unused_submodules()
    gm.hwquant_recipe = recipe
    return gm.train(model.training)


KEPT_OPS = (*INDEX_OPS, "zero_insert", "relu")
"""The kept ops a table network may hold: those whose IntModel node moves indices
(:data:`~hwquant.schemes.tables.model.INDEX_OPS`), a zero insertion (it joins its transposed
convolution's unit) and a ReLU after no layer (an activation table)."""


def _kept_op(node: fx.Node, mod: nn.Module | None) -> str | None:
    """The registered op that keeps ``node`` as it is (max pooling, a concatenation, ...)."""
    for handler in handlers():
        if handler.keeps is not None and handler.keeps(node, mod):
            return handler.name
    return None


def check_table_options(gm: fx.GraphModule) -> None:
    """Refuse the forms the table lowering and engine do not reproduce, naming the layer.

    A flatten keeps the batch dimension; a function or method must be one of
    :data:`KEPT_OPS`, a flatten or a shape query.
    """
    for node in gm.graph.nodes:
        if node.op not in ("call_module", "call_function", "call_method"):
            continue
        mod = gm.get_submodule(node.target) if node.op == "call_module" else None
        kept = _kept_op(node, mod)
        if isinstance(mod, nn.Flatten) and (mod.start_dim, mod.end_dim) != (1, -1):
            raise UnsupportedLayerError(
                f"module '{node.target}' (Flatten) has start_dim={mod.start_dim}, end_dim="
                f"{mod.end_dim}, which table units do not compute. Fix: flatten from dim 1."
            )
        functional = node.op in ("call_function", "call_method")
        allowed = kept in KEPT_OPS or is_flatten_call(node)
        if functional and not (allowed or is_shape_query(node) or is_alias(node)):
            raise UnsupportedLayerError(
                f"'{node_name(node)}' ({describe(node)}) has no table-unit form. Fix: use the "
                "forms table units take (Conv2d/Conv1d/ConvTranspose2d/Linear with BatchNorm "
                "and ReLU/ReLU6, residual adds, products, activations, pools, torch.cat, "
                "nearest upsampling, flatten/view/reshape/squeeze), or the llsq scheme."
            )


def _relus_as_activations(gm: fx.GraphModule, specs: dict[fx.Node, FusedSpec]) -> None:
    """A ReLU that follows no layer (``relu(max_pool2d(conv(x)))``) becomes an activation
    table onto its own codebook (indices are no signed codes to clamp at 0)."""
    relu = Elementwise("relu")
    for node in list(gm.graph.nodes):
        mod = gm.get_submodule(node.target) if node.op == "call_module" else None
        if node.op not in ("call_module", "call_function", "call_method"):
            continue
        if _kept_op(node, mod) != "relu":
            continue
        if mod is None:  # a function or method: a module call of its own
            name = f"{node.name}_table"
            gm.add_submodule(name, nn.Identity())
            with gm.graph.inserting_before(node):
                new = gm.graph.call_module(name, (node.args[0],))
            new.meta[fidelity.FLOAT_NODE] = node.name
            node.replace_all_uses_with(new)
            gm.graph.erase_node(node)
            node = new
        specs[node] = FusedSpec("lut", options={"function": relu})


def _absorb_zero_insertion(
    gm: fx.GraphModule, specs: dict[fx.Node, FusedSpec]
) -> dict[fx.Node, ZeroInsert]:
    """Remove the zero insertion ``prepare`` put before each transposed convolution's Conv2d
    and give it to that unit (returned by the unit's node): the inserted zeros must be the
    padding index ``|A|`` of the unit's input, whose table row is 0, and not the nearest level
    to 0 of a codebook that may have none."""
    inserted: dict[fx.Node, ZeroInsert] = {}
    for node in list(gm.graph.nodes):
        mod = gm.get_submodule(node.target) if node.op == "call_module" else None
        if not isinstance(mod, ZeroInsert):
            continue
        (user,) = node.users  # conv_forms puts it right before the one Conv2d
        assert user in specs and specs[user].has_weights, "a zero insertion feeds its conv"
        inserted[user] = mod
        user.replace_input_with(node, node.args[0])
        gm.graph.erase_node(node)
    return inserted


def _quantizer(
    opts: TableOptions, role: str, unsigned: bool = False, calls: int = 1
) -> CodebookQuantizer:
    """The codebook quantizer of an "input", "act" (a layer output) or "weight" tensor, called
    ``calls`` times per training batch (the producers sharing one codebook): its step counts
    calls, so its schedule (re-estimation, start, freeze) is counted in ``calls`` steps per
    batch, and every producer is quantized from the same batch on."""
    family, entries, start = {
        "input": ("pixels", opts.input_entries, 0),
        "act": (opts.act_family, opts.act_entries, opts.act_start),
        "weight": (opts.weight_family, opts.weight_entries, opts.weight_start),
    }[role]
    return CodebookQuantizer(
        family,
        entries,
        unsigned,
        reestimate_every=opts.reestimate_every * calls,
        start_step=start * calls,
        track_samples=role != "weight",
        freeze_step=None if opts.freeze_step is None else opts.freeze_step * calls,
    )


def _shared_codebooks(
    gm: fx.GraphModule,
    specs: dict[fx.Node, FusedSpec],
    producer: dict[fx.Node, fx.Node],
    input_node: fx.Node,
    last: fx.Node,
) -> SharedScales:
    """The producers of each concatenation's inputs, grouped to share one codebook as they
    share one scale in the other schemes (:func:`hwquant.qat.prepare.shared_scales`: indices
    of one codebook concatenate exactly, as codes of one scale do).

    Raises:
        UnsupportedLayerError: the network input or the last layer feeds a concatenation.
    """
    shared = shared_scales(gm, producer, specs, input_node, last, set())
    if input_node in shared:
        raise UnsupportedLayerError(
            f"the network input feeds the concatenation '{shared.join_of[input_node].name}' "
            "directly; table units read the input on its own 256-level codebook. Fix: put a "
            "layer between the input and the concatenation, or use the llsq scheme."
        )
    return shared


def _build(
    gm: fx.GraphModule,
    specs: dict[fx.Node, FusedSpec],
    opts: TableOptions,
    inserted: dict[fx.Node, ZeroInsert],
) -> None:
    producer = producers(gm, specs)
    output = next(n for n in gm.graph.nodes if n.op == "output")
    last = producer.get(output.args[0]) if isinstance(output.args[0], fx.Node) else None
    if last is None or last not in specs:
        raise UnsupportedLayerError(
            "a table network must return one tensor computed by a layer (a Conv2d/Linear, "
            "an add, a pool or an activation). Fix: return the classifier's output."
        )
    input_node = next(n for n in gm.graph.nodes if n.op == "call_module" and n.target == INPUT_NAME)
    input_quant = _quantizer(opts, "input")
    install(gm, INPUT_NAME, TableInput(input_quant))
    quant_of = {input_node: input_quant}
    shared = _shared_codebooks(gm, specs, producer, input_node, last)
    group_quant: dict[fx.Node, CodebookQuantizer] = {}

    def out_quantizer(node: fx.Node, unsigned: bool) -> CodebookQuantizer:
        if node not in shared:
            return _quantizer(opts, "act", unsigned)
        members = shared.members(node)
        if members[0] not in group_quant:
            unsigned = not shared.signed(node)
            group_quant[members[0]] = _quantizer(opts, "act", unsigned, len(members))
        return group_quant[members[0]]

    for node in gm.graph.nodes:
        spec = specs.get(node)
        if spec is None:
            continue
        if spec.op not in ("conv2d", "linear", "add", "avgpool", "lut", "mul"):
            raise UnsupportedLayerError(
                f"'{node.target}' ({spec.op}) has no table-unit form (table units: Conv2d/"
                "Linear with BatchNorm and ReLU folded, adds, products, pools, activations). "
                "Fix: use the llsq scheme."
            )
        inputs = [producer[a] for a in tensor_inputs(node)]
        # the op's signedness (its `signed` facet), on the codebooks: unsigned levels start at 0
        signs = [not quant_of[p].unsigned for p in inputs]
        unsigned = not output_signed(spec, signs.__getitem__)
        module: TableModule
        if spec.has_weights:
            plain = spec.act is None and spec.bn is None  # the logits: acc + bias
            out_q = None if node is last and plain else out_quantizer(node, unsigned)
            weight_q = _quantizer(opts, "weight")
            module = TableUnit(
                spec.source,
                spec.bn,
                spec.act,
                weight_q,
                out_q,
                opts.entry_bits,
                inserted.get(node),
            )
        elif spec.op in ("add", "mul"):
            module = TableAdd(out_quantizer(node, unsigned), spec.act, spec.op == "mul")
        elif spec.op == "lut":
            module = TableActivation(spec.options["function"], out_quantizer(node, unsigned))
        else:
            out_q = out_quantizer(node, unsigned)
            module = TableAvgPool(out_q, spec.options["kernel_size"], opts.entry_bits)
        module.bind_inputs([quant_of[p] for p in inputs])
        module.qname = str(node.target)
        install(gm, str(node.target), module)
        if module.out_quant is not None:
            quant_of[node] = module.out_quant
