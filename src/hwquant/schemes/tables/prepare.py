"""``prepare_tables(model, recipe)``: a float model becomes its table-unit QAT twin.

Called by :func:`hwquant.prepare` when ``recipe.scheme == "tables"``. Tracing and fusion are
those of :mod:`hwquant.prepare` (Conv2d+BN+ReLU, Linear+ReLU, add+ReLU, average pooling; max
pooling, flatten, Dropout and Identity pass through); the fused nodes become the layers of
:mod:`hwquant.schemes.tables.layers`. Every producer owns the codebook quantizer of its output
(unsigned, with a level at 0, after ReLU); the network input is quantized onto
``input_entries`` evenly spaced levels over its range: the 256 pixel values of 8-bit images.
"""

from __future__ import annotations

import copy

import torch
from torch import fx, nn

from hwquant.core.errors import UnsupportedLayerError, check_finite
from hwquant.qat.conv_forms import STANDS_FOR
from hwquant.qat.fusion import FusedSpec, output_signed
from hwquant.qat.naming import describe, node_name
from hwquant.qat.prepare import (
    INPUT_NAME,
    fuse,
    insert_input,
    install,
    producers,
    trace,
)
from hwquant.qat.recipe import Recipe, TableOptions
from hwquant.qat.shared_scales import tensor_inputs
from hwquant.schemes.tables.layers import (
    TableActivation,
    TableAdd,
    TableAvgPool,
    TableModule,
    TableUnit,
)
from hwquant.schemes.tables.lower import is_flatten_call, is_shape_query
from hwquant.schemes.tables.quantizer import CodebookQuantizer


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
        UnsupportedLayerError: a layer cannot become a table unit (ReLU6, grouped conv, ...).
        NonFiniteError: a weight holds NaN or Inf.
    """
    for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
        check_finite(f"model tensor '{name}'", tensor)
    gm = trace(copy.deepcopy(model))
    specs = fuse(gm)
    check_table_options(gm)
    insert_input(gm)
    _build(gm, specs, recipe.tables)
    gm.graph.lint()
    gm.recompile()
    gm.delete_all_unused_submodules()
    gm.hwquant_recipe = recipe
    return gm.train(model.training)


def _square_option(values: dict[str, object]) -> str | None:
    """The first of ``values`` (option -> int or pair) that is not one number on both axes."""
    for option, value in values.items():
        if not isinstance(value, int) and len(set(value)) != 1:
            return f"{option}={value}"
    return None


def check_table_options(gm: fx.GraphModule) -> None:
    """Refuse the options the table lowering and engine do not reproduce, naming the module.

    Table units take square, undilated, ungrouped convolutions; max pooling of indices takes a
    square window without dilation or ceil_mode; a flatten keeps the batch dimension only.
    """
    for node in gm.graph.nodes:
        if STANDS_FOR in node.meta:  # a Conv1d/1-D pool/ConvTranspose2d in its 2-D form
            raise UnsupportedLayerError(
                f"{node.meta[STANDS_FOR]} has no table-unit form (table units take square 2-D "
                "convolutions). Fix: use Conv2d layers, or the llsq scheme."
            )
        functional = node.op in ("call_function", "call_method")
        if functional and not (is_flatten_call(node) or is_shape_query(node)):
            raise UnsupportedLayerError(
                f"'{node_name(node)}' ({describe(node)}) has no table-unit form. Fix: use the "
                "module forms table units take (nn.MaxPool2d, nn.ReLU fused after a layer, "
                "torch.flatten/view/reshape), or the llsq scheme."
            )
        if node.op != "call_module":
            continue
        name, mod = str(node.target), gm.get_submodule(node.target)
        option = None
        if isinstance(mod, nn.Conv2d):
            option = _square_option(
                {"kernel_size": mod.kernel_size, "stride": mod.stride, "padding": mod.padding}
            )
            if mod.groups != 1:
                option = f"groups={mod.groups}"
            elif tuple(mod.dilation) != (1, 1):
                option = f"dilation={tuple(mod.dilation)}"
        elif isinstance(mod, nn.MaxPool2d):
            option = _square_option(
                {"kernel_size": mod.kernel_size, "stride": mod.stride, "padding": mod.padding}
            )
            if mod.ceil_mode:
                option = "ceil_mode=True"
            elif mod.dilation not in (1, (1, 1)):
                option = f"dilation={mod.dilation}"
        elif isinstance(mod, nn.Softmax | nn.LogSoftmax):
            raise UnsupportedLayerError(
                f"module '{name}' ({type(mod).__name__}): a TableModel has no softmax node. "
                "Fix: return the logits (their argmax is the prediction), or use the llsq "
                "scheme (which keeps a final softmax outside the integer graph)."
            )
        elif isinstance(mod, nn.Flatten) and (mod.start_dim, mod.end_dim) != (1, -1):
            option = f"start_dim={mod.start_dim}, end_dim={mod.end_dim}"
        if option is not None:
            raise UnsupportedLayerError(
                f"module '{name}' ({type(mod).__name__}) has {option}, which table units do "
                "not compute. Fix: use square, undilated, ungrouped convolutions and max "
                "pooling without ceil_mode/dilation (flatten from dim 1), or the llsq scheme."
            )


def _quantizer(opts: TableOptions, role: str, unsigned: bool = False) -> CodebookQuantizer:
    """The codebook quantizer of an "input", "act" (a layer output) or "weight" tensor."""
    family, entries, start = {
        "input": ("pixels", opts.input_entries, 0),
        "act": (opts.act_family, opts.act_entries, opts.act_start),
        "weight": (opts.weight_family, opts.weight_entries, opts.weight_start),
    }[role]
    return CodebookQuantizer(
        family,
        entries,
        unsigned,
        reestimate_every=opts.reestimate_every,
        start_step=start,
        track_samples=role != "weight",
        freeze_step=opts.freeze_step,
    )


def _build(gm: fx.GraphModule, specs: dict[fx.Node, FusedSpec], opts: TableOptions) -> None:
    producer = producers(gm, specs)
    output = next(n for n in gm.graph.nodes if n.op == "output")
    last = producer.get(output.args[0]) if isinstance(output.args[0], fx.Node) else None
    if last is None or last not in specs or not specs[last].has_weights:
        raise UnsupportedLayerError(
            "a table network must end in a Conv2d/Linear layer returning one tensor. Fix: "
            "return the classifier's output."
        )
    input_node = next(n for n in gm.graph.nodes if n.op == "call_module" and n.target == INPUT_NAME)
    input_quant = _quantizer(opts, "input")
    install(gm, INPUT_NAME, TableInput(input_quant))
    quant_of = {input_node: input_quant}
    for node in gm.graph.nodes:
        spec = specs.get(node)
        if spec is None:
            continue
        if spec.options.get("standalone_bn"):
            raise UnsupportedLayerError(
                f"BatchNorm '{node.target}' follows no Conv2d/Linear; table units fold a "
                "BatchNorm only into the layer it directly follows. Fix: put it right after "
                "its Conv2d/Linear, or use the llsq scheme (an integer per-channel affine)."
            )
        if spec.op not in ("conv2d", "linear", "add", "avgpool", "lut"):
            what = spec.options.get("function") or spec.op
            raise UnsupportedLayerError(
                f"'{node.target}' ({what}) has no table-unit form (table "
                "units: Conv2d/Linear with BatchNorm and ReLU folded, residual adds, average "
                "pools, activations). Fix: use no elementwise product, or the llsq scheme."
            )
        if spec.act == "relu6":
            raise UnsupportedLayerError(
                f"layer '{node.target}' uses ReLU6; table units fold ReLU only. Fix: use ReLU."
            )
        relu = spec.act == "relu"
        inputs = [producer[a] for a in tensor_inputs(node)]
        # the op's signedness (its `signed` facet), on the codebooks: unsigned levels start at 0
        signs = [not quant_of[p].unsigned for p in inputs]
        unsigned = not output_signed(spec, signs.__getitem__)
        out_q = None if node is last else _quantizer(opts, "act", unsigned)
        module: TableModule
        if spec.has_weights:
            weight_q = _quantizer(opts, "weight")
            module = TableUnit(spec.source, spec.bn, relu, weight_q, out_q, opts.entry_bits)
        elif spec.op == "add":
            module = TableAdd(out_q, relu)
        elif spec.op == "lut":
            module = TableActivation(spec.options["function"], out_q)
        else:
            module = TableAvgPool(out_q, spec.options["kernel_size"], opts.entry_bits)
        module.bind_inputs([quant_of[p] for p in inputs])
        module.qname = str(node.target)
        install(gm, str(node.target), module)
        if module.out_quant is not None:
            quant_of[node] = module.out_quant
