"""Names of a traced model's nodes as the user's model spells them.

``torch.fx`` names a module call after the module's path with the dots replaced
(``features_3``) and a function call after the function (``sigmoid``, ``mean_1``); messages and
IntModel nodes use the module path itself (``features.3``) and say what a function is
(``torch.sigmoid``), never its ``repr`` (``<built-in method ... at 0x...>``).
"""

from __future__ import annotations

from torch import fx, nn

_MODULE_ALIASES = {"_operator": "operator", "torch._C._nn": "torch.nn.functional"}


def node_name(node: fx.Node) -> str:
    """The module path of a module call (``features.3``), else fx's name (``flatten``)."""
    return str(node.target) if node.op == "call_module" else node.name


def describe(node: fx.Node, module: nn.Module | None = None) -> str:
    """What ``node`` computes: ``"BatchNorm2d 'features.2'"``, ``"function torch.sigmoid"``,
    ``"method Tensor.mean"``."""
    if node.op == "call_module":
        return f"{type(module).__name__ if module is not None else 'module'} '{node.target}'"
    if node.op == "call_method":
        return f"method Tensor.{node.target}"
    if node.op == "call_function":
        target = node.target
        name = getattr(target, "__name__", None) or str(target)
        owner = getattr(target, "__module__", None) or ""
        owner = _MODULE_ALIASES.get(owner, owner)
        return f"function {owner}.{name}" if owner else f"function {name}"
    return f"{node.op} '{node.name}'"
