"""``prepare``'s fidelity check: the QAT twin, quantization bypassed, is the float model.

``prepare`` rewrites a traced model: chains such as Conv2d → BatchNorm2d → ReLU become one QAT
layer, the other operations stay as they are. If the rewrite dropped anything (a forward hook,
a replaced ``forward``, an option a layer does not take), the twin would compute another
function however well it is trained. So ``prepare`` runs both on a probe batch ``x``: the float
model in eval mode, and the twin with every QAT layer's :meth:`float_forward` (its float
layers, BatchNorm at its running statistics, no quantizer) in place of its forward. Every node
of the twin is compared with the float node it stands for (recorded by ``prepare`` in the
node's ``meta[FLOAT_NODE]``; a node it kept has the same name in both graphs), in graph order:

    max |twin − float|  ≤  RTOL · max |float|        (per node, over the whole batch)

and the first node beyond it is named in an :class:`~hwquant.core.errors.UnsupportedLayerError`.
Folding BatchNorm into the weights moves float32 results by a few units in the last place, far
below ``RTOL``; a dropped operation moves them by its whole effect.

The probe is the ``example_input`` given to ``prepare``, else one seeded N(0, 1) sample (a
private generator: the global random state is untouched) of the first shape the float model
accepts among :data:`PROBE_SIZES` (``(1, C, s, s)`` when the first weight layer ``forward``
calls is a Conv2d or ConvTranspose2d with C input channels, ``(1, C, s)`` for a Conv1d;
``(1, F)`` when it is a Linear of F inputs, then
images of 1 to 4 channels, which may reach it through pooling and a flatten). Both models are
left in the train/eval state and with the parameters and buffers they had.

A node whose value is a tuple, list or dict (a shape, several outputs) is compared item by
item, its structure and its plain values (sizes, numbers) exactly; a value of any other type
cannot be compared and is refused, naming its type.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import fx, nn

from hwquant.core.errors import ConfigError, UnsupportedLayerError
from hwquant.qat.nn.base import BoundModule

FLOAT_NODE = "hwquant_float_node"
"""Key of ``fx.Node.meta`` naming the float model's node whose value a rewritten node carries
(None: a node ``prepare`` inserted that stands for none, such as a 1-D layer's unsqueeze)."""
RTOL = 1e-3
"""Largest difference allowed at a node, relative to the float node's largest magnitude."""
PROBE_SIZES = (32, 28, 8, *(s for s in range(1, 257) if s not in (32, 28, 8)))
"""Image sizes tried, in order, for a probe when no ``example_input`` is given: the data sets'
sizes first (CIFAR-10, MNIST, the 8x8 digits), then every size up to 256. The first is run at
once; the others are first tried on the ``meta`` device (shapes only, no arithmetic)."""
PROBE_SEED = 0


class _Recorder(fx.Interpreter):
    """Runs a graph, keeping every node's value; QAT layers run their float form.

    ``check(node, value)``, when given, sees each value as it is computed, so that a difference
    is found at its first node, before a later node fails on it (a wrong shape).
    """

    def __init__(
        self,
        gm: fx.GraphModule,
        passthrough: str | None = None,
        check: Callable[[fx.Node, Any], None] | None = None,
    ) -> None:
        super().__init__(gm)
        self.values: dict[str, Any] = {}
        self.passthrough = passthrough  # the input quantizer: its float form is the identity
        self.check = check

    def run_node(self, n: fx.Node) -> Any:
        value = super().run_node(n)
        # a copy: an in-place operation further on (ReLU(inplace=True), +=) would change it
        self.values[n.name] = value.clone() if isinstance(value, torch.Tensor) else value
        if self.check is not None:
            self.check(n, value)
        return value

    def call_module(self, target: str, args: tuple, kwargs: dict) -> Any:
        if target == self.passthrough:
            return args[0]
        module = self.fetch_attr(target)
        if isinstance(module, BoundModule):
            return module.float_forward(*args, **kwargs)
        return super().call_module(target, args, kwargs)


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Every module in eval mode for the block, each restored to its own mode after it."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode


def _first_weight_layer(float_gm: fx.GraphModule) -> nn.Module | None:
    """The first Conv2d, Conv1d, ConvTranspose2d or Linear that ``forward`` calls (not the
    first one defined)."""
    for node in float_gm.graph.nodes:
        if node.op == "call_module":
            module = float_gm.get_submodule(node.target)
            if isinstance(module, nn.Conv2d | nn.Conv1d | nn.ConvTranspose2d | nn.Linear):
                return module
    return None


def _record(float_gm: fx.GraphModule, x: torch.Tensor) -> dict[str, Any]:
    recorder = _Recorder(float_gm)
    recorder.run(x)
    return recorder.values


def reference_run(
    model: nn.Module, float_gm: fx.GraphModule, example_input: torch.Tensor | None
) -> tuple[torch.Tensor, dict[str, Any]]:
    """The probe batch (see the module docstring) and the float model's value at every node.

    Raises:
        ConfigError: ``example_input`` does not run through the float model, or no candidate
            shape does.
    """
    if example_input is not None:
        try:
            return example_input, _record(float_gm, example_input)
        except Exception as exc:
            raise ConfigError(
                f"example_input of shape {tuple(example_input.shape)} does not run through the "
                f"float {type(model).__name__}: {exc}. Fix: pass a batch of the model's inputs."
            ) from exc
    first = _first_weight_layer(float_gm)
    if isinstance(first, nn.Conv2d | nn.ConvTranspose2d):
        shapes = [(1, first.in_channels, s, s) for s in PROBE_SIZES]
    elif isinstance(first, nn.Conv1d):
        shapes = [(1, first.in_channels, s) for s in PROBE_SIZES]
    else:  # a Linear's inputs, or images that reach it through pooling and a flatten
        shapes = [(1, first.in_features)] if isinstance(first, nn.Linear) else []
        shapes += [(1, c, s, s) for c in (1, 3, 2, 4) for s in PROBE_SIZES]
    dtype = first.weight.dtype if first is not None else torch.float32
    device = first.weight.device if first is not None else torch.device("cpu")
    fits = None
    for shape in shapes:
        if shape is not shapes[0]:  # the common size is run at once; the others asked first
            fits = fits or _shape_finder(float_gm)
            if not fits(shape, dtype):
                continue
        generator = torch.Generator().manual_seed(PROBE_SEED)
        x = torch.randn(shape, generator=generator, dtype=dtype).to(device)
        try:
            return x, _record(float_gm, x)
        except Exception:  # any failure means: not this shape
            continue
    tried = f"{shapes[0]} to {shapes[-1]}" if shapes else "none"
    raise ConfigError(
        f"prepare() checks the prepared model against the float model on a probe batch, but "
        f"no input shape it tried ({tried}) runs through this {type(model).__name__}. Fix: "
        "pass a batch of real inputs, prepare(model, recipe, example_input=x), or skip the "
        "check with check_fidelity=False."
    )


def _shape_finder(float_gm: fx.GraphModule) -> Callable[[tuple[int, ...], torch.dtype], bool]:
    """Whether an input of a shape runs through ``float_gm``, asked of a copy of its tensors
    on the ``meta`` device (shapes only: no arithmetic, whatever the size)."""
    tensors = {
        name: torch.empty_like(t, device="meta")
        for name, t in [*float_gm.named_parameters(), *float_gm.named_buffers()]
    }

    def fits(shape: tuple[int, ...], dtype: torch.dtype) -> bool:
        x = torch.empty(shape, dtype=dtype, device="meta")
        try:
            torch.func.functional_call(float_gm, tensors, (x,))
        except Exception:  # any failure means: not this shape
            return False
        return True

    return fits


def _describe(gm: fx.GraphModule, node: fx.Node) -> str:
    """``'features.3' (Conv2d)`` for a module, ``'add' (add)`` for a function or method."""
    if node.op == "call_module":
        return f"'{node.target}' ({type(gm.get_submodule(node.target)).__name__})"
    if node.op == "placeholder":
        return f"'{node.name}' (the input)"
    return f"'{node.name}' ({getattr(node.target, '__name__', node.target)})"


@torch.no_grad()
def check_fidelity(
    model: nn.Module,
    qat: fx.GraphModule,
    input_name: str,
    example_input: torch.Tensor | None = None,
) -> None:
    """Check that ``qat`` with quantization bypassed computes ``model`` (see the module
    docstring); ``input_name`` is the twin's input quantizer.

    Raises:
        UnsupportedLayerError: a node differs from the float node it stands for by more than
            ``RTOL``; the message names the first one.
        ConfigError: no probe batch could be made.
    """
    with _eval_mode(model):  # `training=self.training` arguments are traced as in eval
        float_gm = fx.symbolic_trace(model)  # prepare() traced a copy already: this succeeds
    float_nodes = {n.name: n for n in float_gm.graph.nodes}

    def check(node: fx.Node, got: Any) -> None:
        float_name = node.meta.get(FLOAT_NODE, node.name)
        if float_name in reference:
            problem = compare(reference[float_name], got)
            if problem is not None:
                raise UnsupportedLayerError(
                    f"prepare() would change what the model computes: with quantization "
                    f"bypassed, layer {_describe(qat, node)} of the prepared model should equal "
                    f"the float model's {_describe(float_gm, float_nodes[float_name])}, but "
                    f"{problem}. Something of the float model is not carried over (a forward "
                    "hook, a replaced forward(), an option the layer does not take). Fix: "
                    "remove it from that module (or keep the module outside the part given to "
                    "prepare()); prepare(..., check_fidelity=False) skips this check at your "
                    "own risk."
                )

    with _eval_mode(model), _eval_mode(qat):
        x, reference = reference_run(model, float_gm, example_input)
        _Recorder(qat, passthrough=input_name, check=check).run(x)


def _dims(t: torch.Tensor) -> list[int]:
    """The sizes of ``t`` other than 1: a 1-D layer's ``[N, C, L]`` and its 2-D form's
    ``[N, C, 1, L]`` (:mod:`hwquant.qat.conv_forms`) hold the same values in the same order.

    >>> _dims(torch.zeros(2, 3, 1, 5)) == _dims(torch.zeros(2, 3, 5))
    True
    """
    return [d for d in t.shape if d != 1]


def _difference(expected: torch.Tensor, got: torch.Tensor) -> str | None:
    """What is wrong with ``got`` as a stand-in for ``expected``, or None within ``RTOL``."""
    if _dims(got) != _dims(expected):  # [N, C, 1, L] stands for a 1-D layer's [N, C, L]
        return f"its output has shape {tuple(got.shape)}, not {tuple(expected.shape)}"
    got = got.reshape(expected.shape)
    if not got.numel():
        return None
    peak = float(expected.abs().max())
    error = float((got.double() - expected.double()).abs().max())
    if error <= RTOL * peak:
        return None
    return (
        f"its output differs by up to {error:.4g} ({error / max(peak, 1e-30):.3g} of the float "
        f"output's largest magnitude {peak:.4g}; tolerance {RTOL:g} of it)"
    )


_PLAIN = (int, float, bool, str, type(None), torch.dtype, torch.device)
"""Non-tensor values compared with ``==`` (sizes, dims, flags)."""


def compare(expected: Any, got: Any) -> str | None:
    """What is wrong with the value ``got`` as a stand-in for ``expected`` (a tensor within
    ``RTOL``; tuples, lists and dicts item by item; plain values exactly), or None."""
    if isinstance(expected, torch.Tensor) or isinstance(got, torch.Tensor):
        if not (isinstance(expected, torch.Tensor) and isinstance(got, torch.Tensor)):
            return f"its output is a {type(got).__name__}, not a {type(expected).__name__}"
        return _difference(expected, got)
    if isinstance(expected, tuple | list) and isinstance(got, tuple | list):
        if len(expected) != len(got):
            return f"its output has {len(got)} items, not {len(expected)}"
        items = enumerate(zip(expected, got, strict=True))
        problems = ((f"item {i}", compare(e, g)) for i, (e, g) in items)
    elif isinstance(expected, dict) and isinstance(got, dict):
        if list(expected) != list(got):
            return f"its output has keys {list(got)}, not {list(expected)}"
        problems = ((f"key {k!r}", compare(expected[k], got[k])) for k in expected)
    elif isinstance(expected, _PLAIN) and isinstance(got, _PLAIN):
        return None if expected == got else f"its output is {got!r}, not {expected!r}"
    else:
        raise UnsupportedLayerError(
            f"prepare()'s fidelity check cannot compare a {type(got).__name__} value (float "
            f"model: {type(expected).__name__}); it compares tensors, tuples, lists, dicts and "
            "plain numbers. Fix: return tensors (or containers of them) from that operation, "
            "or skip the check with prepare(..., check_fidelity=False) at your own risk."
        )
    return next((f"{where}: {p}" for where, p in problems if p is not None), None)
