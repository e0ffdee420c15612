"""Options of a user's modules that ``prepare`` honours exactly, and refusals of the rest.

A module option that the QAT layers, the lowering or the integer engines would not reproduce
must never be dropped silently: the model would pass ``prepare`` and then compute another
function. Each check here either normalises an option to an equivalent form the layers take
(``Conv2d(padding="same")`` with a symmetric pad becomes that numeric pad, ``"valid"`` becomes
0) or raises :class:`~hwquant.core.errors.UnsupportedLayerError` naming the module by its
qualified name (``features.3``), the option and the fix.

Two checks concern the model as a whole: a model already made by ``prepare`` is not prepared
again, and a module with parameters called at two call sites (weight sharing) is refused, since
the QAT twin and the IntModel hold one layer per call site.
"""

from __future__ import annotations

from collections import Counter

from torch import fx, nn

from hwquant.core.errors import UnsupportedLayerError
from hwquant.qat.nn.base import BoundModule


def check_not_prepared(model: nn.Module) -> None:
    """Refuse a model that ``prepare`` already made (or one holding its layers)."""
    prepared = hasattr(model, "hwquant_recipe") or any(
        isinstance(m, BoundModule) for m in model.modules()
    )
    if prepared:
        raise UnsupportedLayerError(
            f"this {type(model).__name__} was already made by hwquant.prepare() (it holds QAT "
            "layers). Fix: pass the original float model to prepare(), or train/lower the "
            "prepared one as it is."
        )


def check_no_shared_modules(gm: fx.GraphModule) -> None:
    """Refuse a module with parameters or buffers that ``forward`` calls more than once."""
    calls = Counter(str(n.target) for n in gm.graph.nodes if n.op == "call_module")
    for target, count in calls.items():
        mod = gm.get_submodule(target)
        stateful = any(True for _ in mod.parameters()) or any(True for _ in mod.buffers())
        if count > 1 and stateful:
            raise UnsupportedLayerError(
                f"module '{target}' ({type(mod).__name__}) is called at {count} places in "
                "forward() (weight sharing); a quantized model holds one layer, with its own "
                "scales, per call site. Fix: use a separate module for each call (e.g. "
                "copy.deepcopy it), or keep the shared part outside prepare()."
            )


def _refuse(name: str, mod: nn.Module, option: str, fix: str) -> UnsupportedLayerError:
    return UnsupportedLayerError(
        f"module '{name}' ({type(mod).__name__}) has {option}, which hwquant would not compute "
        f"exactly. Fix: {fix}"
    )


def pair(v: int | tuple[int, ...]) -> tuple[int, ...]:
    """A PyTorch size argument as a tuple of ints: ``k`` means ``(k, k)``.

    >>> pair(3), pair((2, 1))
    ((3, 3), (2, 1))
    """
    return (v, v) if isinstance(v, int) else tuple(int(x) for x in v)


def check_conv(name: str, conv: nn.Conv2d) -> None:
    """Refuse a padding mode other than zeros; turn string padding into numbers (in place).

    ``padding="same"`` pads ``d·(k−1)`` in total along each axis; PyTorch puts the odd unit on
    the right/bottom, which a symmetric numeric pad cannot express, so only even totals (odd
    kernels, or even dilation) are taken; then the pad is ``d·(k−1)/2`` on each side.
    """
    if conv.padding_mode != "zeros":
        raise _refuse(
            name,
            conv,
            f"padding_mode={conv.padding_mode!r}",
            "use padding_mode='zeros' (the integer engines pad with zero codes), or pad "
            "explicitly outside the quantized part.",
        )
    if conv.padding == "valid":
        conv.padding = (0, 0)
    elif conv.padding == "same":
        totals = [d * (k - 1) for d, k in zip(conv.dilation, conv.kernel_size, strict=True)]
        if any(t % 2 for t in totals):
            raise _refuse(
                name,
                conv,
                f"padding='same' with kernel {tuple(conv.kernel_size)} and dilation "
                f"{tuple(conv.dilation)} (an asymmetric pad)",
                "use an odd kernel size, or a numeric padding.",
            )
        conv.padding = tuple(t // 2 for t in totals)


def check_max_pool(name: str, pool: nn.MaxPool2d) -> None:
    """Refuse ``return_indices`` (the layer would return a tuple, not codes)."""
    if pool.return_indices:
        raise _refuse(name, pool, "return_indices=True", "use return_indices=False.")


def check_avg_pool(name: str, pool: nn.AvgPool2d) -> None:
    """Refuse the AvgPool2d forms other than a k×k window with stride k, no pad, no override."""
    k, s = pool.kernel_size, pool.stride
    if pair(pool.padding) != (0, 0):
        option = f"padding={pool.padding}"
    elif pool.ceil_mode:
        option = "ceil_mode=True"
    elif pool.divisor_override is not None:
        option = f"divisor_override={pool.divisor_override}"
    elif len(set(pair(k))) != 1:
        option = f"a non-square kernel_size={k}"
    elif pair(s or k) != pair(k):
        option = f"stride={s} different from kernel_size={k}"
    else:
        return
    raise _refuse(
        name,
        pool,
        option,
        "use AvgPool2d(k) (stride k, no padding, ceil_mode=False, no divisor_override) or "
        "AdaptiveAvgPool2d(1).",
    )


def check_add(node: fx.Node) -> None:
    """Refuse ``torch.add(a, b, alpha=...)`` with alpha ≠ 1 and any other keyword."""
    for key, value in node.kwargs.items():
        if key != "alpha" or value != 1:
            raise UnsupportedLayerError(
                f"add '{node.name}' is called with {key}={value!r}; the quantized add computes "
                "a + b only. Fix: scale an operand in a layer before the add (e.g. fold alpha "
                "into the preceding Conv2d), or drop the keyword."
            )


def check_module(name: str, mod: nn.Module) -> None:
    """The option checks of ``mod`` called as ``name`` (in place for conv string padding)."""
    if isinstance(mod, nn.Conv2d):
        check_conv(name, mod)
    elif isinstance(mod, nn.MaxPool2d):
        check_max_pool(name, mod)
    elif isinstance(mod, nn.AvgPool2d):
        check_avg_pool(name, mod)
