"""1-D layers and transposed convolutions rewritten as 2-D convolutions, before ``prepare``
fuses the graph, so that every later stage (QAT layer, lowering, every scheme's engine kernel,
export, accumulator proofs) sees the one convolution it knows, exactly.

* ``Conv1d`` over ``[N, C, L]`` is a ``Conv2d`` with kernel ``(1, k)``, stride ``(1, s)``,
  padding ``(0, p)``, dilation ``(1, d)`` over ``[N, C, 1, L]``: the rewrite puts
  ``x.unsqueeze(2)`` before it and ``squeeze(2)`` after its chain (a following
  ``BatchNorm1d``, which becomes the same ``BatchNorm2d``, and ReLU/ReLU6), so that the
  chain fuses as ``Conv2d → BatchNorm2d → ReLU`` does. ``MaxPool1d`` and
  ``AdaptiveAvgPool1d(1)`` become their 2-D forms over ``[N, C, 1, L]`` the same way, and a
  mean over time of such a layer's output, ``x.mean(-1)``, the global average pool
  ``y.mean((2, 3))`` of its 2-D form. ``F.max_pool1d`` and ``F.adaptive_avg_pool1d`` become
  their modules first.
* ``ConvTranspose2d`` (stride ``s``, padding ``p``, output padding ``o``, one group, no
  dilation) is a convolution, stride 1, of the input with zeros inserted
  (:class:`ZeroInsert`: ``s − 1`` zeros between neighbours, ``k − 1 − p`` zeros before and
  ``k − 1 − p + o`` after each axis), by the kernel transposed and flipped,
  ``W'[o, i, u, v] = W[i, o, k_h − 1 − u, k_w − 1 − v]``. Zero codes are the value 0 (the
  quantizers have no zero point), so the inserted zeros are exact.

The rewritten nodes record the module they stand for (``node.meta[STANDS_FOR]``), so that a
scheme without those forms refuses it by the user's name.
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F
from torch import fx, nn

from hwquant.core.errors import UnsupportedLayerError
from hwquant.qat import fidelity
from hwquant.qat.nn.zero_insert import ZeroInsert
from hwquant.qat.options import check_conv

STANDS_FOR = "hwquant_stands_for"
"""Key of ``fx.Node.meta``: ``'name (Type)'`` of the user's module a rewritten node is part of."""
_ELEMENTWISE_FUNCTIONS = (F.relu, F.relu6, torch.relu)
_ELEMENTWISE_MODULES = (nn.ReLU, nn.ReLU6)


def rewrite_conv_forms(gm: fx.GraphModule) -> None:
    """Rewrite every ``Conv1d``, ``MaxPool1d``, ``AdaptiveAvgPool1d(1)`` and
    ``ConvTranspose2d`` of ``gm`` in place (module docstring).

    Raises:
        UnsupportedLayerError: a transposed convolution with groups, dilation, or a padding
            beyond ``k − 1``; a padding mode other than zeros.
    """
    for node in list(gm.graph.nodes):
        if node.op == "call_function" and node.target in _POOL_FUNCTIONS:
            node = _as_module(gm, node)
        if node.op != "call_module":
            _time_mean(gm, node)
            continue
        mod = gm.get_submodule(node.target)
        if isinstance(mod, nn.Conv1d | nn.MaxPool1d | nn.AdaptiveAvgPool1d):
            _as_2d(gm, node, mod)
        elif isinstance(mod, nn.ConvTranspose2d):
            _transposed(gm, node, mod)


def _max_pool1d(node: fx.Node) -> nn.Module:
    bound = inspect.signature(F.max_pool1d_with_indices).bind(*node.args, **node.kwargs)
    return nn.MaxPool1d(**{k: v for k, v in bound.arguments.items() if k != "input"})


def _adaptive_avg_pool1d(node: fx.Node) -> nn.Module:
    size = node.args[1] if len(node.args) > 1 else node.kwargs.get("output_size")
    return nn.AdaptiveAvgPool1d(size)


_POOL_FUNCTIONS = {F.max_pool1d: _max_pool1d, F.adaptive_avg_pool1d: _adaptive_avg_pool1d}
"""The functional 1-D pools and the module each call becomes."""


def _as_module(gm: fx.GraphModule, node: fx.Node) -> fx.Node:
    """A call of a functional 1-D pool as a call of its module (then rewritten as one)."""
    module = _POOL_FUNCTIONS[node.target](node)
    name = f"{node.name}_module"
    gm.add_submodule(name, module)
    with gm.graph.inserting_before(node):
        call = gm.graph.create_node("call_module", name, (node.args[0],), name=name)
    node.replace_all_uses_with(call)
    gm.graph.erase_node(node)
    return call


_TIME_DIMS = (-1, 2, (-1,), (2,), [-1], [2])
"""The ``dim`` of a mean over the time axis of a 1-D layer's ``[N, C, L]`` output."""


def _time_mean(gm: fx.GraphModule, node: fx.Node) -> None:
    """``x.mean(-1)`` (or ``dim=2``, no ``keepdim``) of a rewritten 1-D layer's output becomes
    ``y.mean((2, 3))`` of its ``[N, C, 1, L]`` form ``y``: a global average pool to ``[N, C]``."""
    is_mean = (node.op == "call_method" and node.target == "mean") or (
        node.op == "call_function" and node.target is torch.mean
    )
    if not is_mean or not node.args or set(node.kwargs) - {"dim"}:
        return
    source = node.args[0]
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    squeezed = (
        isinstance(source, fx.Node)
        and STANDS_FOR in source.meta
        and source.op == "call_method"
        and source.target == "squeeze"
    )
    if not squeezed or len(node.args) > 2 or dim not in _TIME_DIMS:
        return
    with gm.graph.inserting_before(node):  # named apart: the average pool stands for it
        pooled = gm.graph.create_node(
            "call_method", "mean", (source.args[0], (2, 3)), name=f"{node.name}_over_time"
        )
    pooled.meta[STANDS_FOR] = source.meta[STANDS_FOR]
    node.replace_all_uses_with(pooled)
    gm.graph.erase_node(node)


def _set(gm: fx.GraphModule, target: str, module: nn.Module) -> None:
    parent, _, leaf = target.rpartition(".")
    setattr(gm.get_submodule(parent) if parent else gm, leaf, module)


def _stands_for(node: fx.Node, mod: nn.Module) -> str:
    return f"'{node.target}' ({type(mod).__name__})"


def _as_2d(gm: fx.GraphModule, node: fx.Node, mod: nn.Module) -> None:
    """``mod`` (1-D) as its 2-D form over ``[N, C, 1, L]``, between an unsqueeze and a
    squeeze; a convolution's BatchNorm1d and activation move inside the pair."""
    target = str(node.target)
    tail = node
    if isinstance(mod, nn.Conv1d):
        check_conv(target, mod)
        conv = nn.Conv2d(
            mod.in_channels,
            mod.out_channels,
            (1, mod.kernel_size[0]),
            (1, mod.stride[0]),
            (0, mod.padding[0]),
            (1, mod.dilation[0]),
            mod.groups,
            mod.bias is not None,
        )
        conv.weight = nn.Parameter(mod.weight.detach().unsqueeze(2).clone())
        if mod.bias is not None:
            conv.bias = mod.bias
        _set(gm, target, conv)
        tail = _follow_chain(gm, node)
    elif isinstance(mod, nn.MaxPool1d):
        if mod.return_indices:
            return  # refused by prepare's option checks as the 2-D form would be
        k, s = mod.kernel_size, mod.stride or mod.kernel_size
        pool = nn.MaxPool2d(
            (1, k), (1, s), (0, mod.padding), (1, mod.dilation), False, mod.ceil_mode
        )
        _set(gm, target, pool)
    elif mod.output_size in (1, (1,)):  # AdaptiveAvgPool1d(1): a global average pool
        _set(gm, target, nn.AdaptiveAvgPool2d(1))
    else:
        return  # another adaptive size: refused by prepare as it is
    what = _stands_for(node, mod)
    with gm.graph.inserting_before(node):
        wide = gm.graph.call_method("unsqueeze", (node.args[0], 2))
    node.replace_input_with(node.args[0], wide)
    with gm.graph.inserting_after(tail):
        narrow = gm.graph.call_method("squeeze", (tail, 2))
    tail.replace_all_uses_with(narrow, delete_user_cb=lambda user: user is not narrow)
    for n in (wide, node, narrow):
        n.meta[STANDS_FOR] = what
    for n in (wide, narrow):  # no float node to compare with (not one of the same name)
        n.meta[fidelity.FLOAT_NODE] = None


def _follow_chain(gm: fx.GraphModule, node: fx.Node) -> fx.Node:
    """The last node of ``node`` followed by BatchNorm1d and elementwise activations in any
    order (each the only user of the one before); each BatchNorm1d becomes the same
    BatchNorm2d (it normalises the channels of ``[N, C, 1, L]`` as of ``[N, C, L]``)."""
    tail = node
    while len(tail.users) == 1:
        nxt = next(iter(tail.users))
        mod = gm.get_submodule(nxt.target) if nxt.op == "call_module" else None
        if isinstance(mod, nn.BatchNorm1d):
            bn = nn.BatchNorm2d(
                mod.num_features, mod.eps, mod.momentum, mod.affine, mod.track_running_stats
            )
            bn.load_state_dict(mod.state_dict())
            _set(gm, str(nxt.target), bn)
        elif not (
            isinstance(mod, _ELEMENTWISE_MODULES)
            or (nxt.op == "call_function" and nxt.target in _ELEMENTWISE_FUNCTIONS)
            or (nxt.op == "call_method" and nxt.target == "relu")
        ):
            break
        tail = nxt
    return tail


def _transposed(gm: fx.GraphModule, node: fx.Node, mod: nn.ConvTranspose2d) -> None:
    """``mod`` as :class:`ZeroInsert` then a stride-1 ``Conv2d`` (module docstring)."""
    target = str(node.target)
    k, p, o = tuple(mod.kernel_size), tuple(mod.padding), tuple(mod.output_padding)
    option = None
    if mod.padding_mode != "zeros":
        option = f"padding_mode={mod.padding_mode!r}"
    elif mod.groups != 1:
        option = f"groups={mod.groups}"
    elif tuple(mod.dilation) != (1, 1):
        option = f"dilation={tuple(mod.dilation)}"
    elif any(pi > ki - 1 for pi, ki in zip(p, k, strict=True)):
        option = f"padding={p} beyond kernel_size - 1"
    if option is not None:
        raise UnsupportedLayerError(
            f"module '{target}' (ConvTranspose2d) has {option}, which hwquant would not compute "
            "exactly. Fix: use groups=1, dilation=1, padding_mode='zeros' and padding <= "
            "kernel_size - 1, or nn.Upsample followed by a Conv2d."
        )
    before = tuple(ki - 1 - pi for ki, pi in zip(k, p, strict=True))
    after = tuple(b + oi for b, oi in zip(before, o, strict=True))
    conv = nn.Conv2d(mod.in_channels, mod.out_channels, k, bias=mod.bias is not None)
    conv.weight = nn.Parameter(mod.weight.detach().transpose(0, 1).flip(2, 3).contiguous())
    if mod.bias is not None:
        conv.bias = mod.bias
    _set(gm, target, conv)
    stuff_name = f"{target.replace('.', '_')}_zero_insert"
    gm.add_submodule(stuff_name, ZeroInsert(tuple(mod.stride), before, after))
    with gm.graph.inserting_before(node):
        stuffed = gm.graph.call_module(stuff_name, (node.args[0],))
    node.replace_input_with(node.args[0], stuffed)
    what = _stands_for(node, mod)
    stuffed.meta[STANDS_FOR] = node.meta[STANDS_FOR] = what
    stuffed.meta[fidelity.FLOAT_NODE] = None  # no float node to compare with
