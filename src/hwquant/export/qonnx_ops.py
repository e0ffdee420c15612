"""qonnx executor bindings of hwquant's custom ops (this module's path is their domain).

qonnx finds the class for a node of domain ``hwquant.export.qonnx_ops`` by importing this
module; each class runs the numpy reference executor of :mod:`hwquant.export.custom_ops`.
Importing it needs the optional ``qonnx`` package.
"""

from __future__ import annotations

from abc import abstractmethod

import numpy as np
from qonnx.core.datatype import DataType
from qonnx.custom_op.base import CustomOp

from hwquant.export.custom_ops import codebook_weight, msq_weight
from hwquant.intmath import bits_needed

__all__ = ["CodebookWeight", "MSQWeight"]


class _WeightDecoder(CustomOp):
    """A node whose inputs are initializers and whose output is an integer weight tensor."""

    inputs: int

    def make_shape_compatible_op(self, model):
        """A constant of the decoded weight's shape (decoded from the initializers, so it holds
        after a pass that drops the graph's shapes) stands in for shape inference."""
        weights = self.decode(*(model.get_initializer(name) for name in self.onnx_node.input))
        return self.make_const_shape_op(list(weights.shape))

    def infer_node_datatype(self, model):
        """Annotate the output as ``INT{b}``, ``b`` the signed bits of the decoded weights."""
        weights = self.decode(*(model.get_initializer(name) for name in self.onnx_node.input))
        peak = int(np.abs(weights).max(initial=0))
        model.set_tensor_datatype(self.onnx_node.output[0], DataType[f"INT{bits_needed(peak)}"])

    def verify_node(self):
        """Problems with the node's input count and attributes (the tensors themselves are
        checked by the reference executor when the node runs)."""
        found = len(self.onnx_node.input)
        problems = [f"expects {self.inputs} inputs, has {found}"] if found != self.inputs else []
        return problems + self.attribute_problems()

    @abstractmethod
    def attribute_problems(self) -> list[str]:
        """Inconsistent attributes, one message each."""

    def execute_node(self, context, graph):
        """Decode the weights with the reference executor."""
        inputs = [np.asarray(context[name]) for name in self.onnx_node.input]
        context[self.onnx_node.output[0]] = self.decode(*inputs)


class MSQWeight(_WeightDecoder):
    """``hwquant.MSQWeight``: SP2/fixed-point rows to integer weights."""

    decode = staticmethod(msq_weight)
    inputs = 5

    def get_nodeattr_types(self):
        """bits, m1, m2 of the encoding."""
        return {"bits": ("i", True, 4), "m1": ("i", True, 2), "m2": ("i", True, 1)}

    def attribute_problems(self) -> list[str]:
        """``bits = m1 + m2 + 1`` (two SP2 terms and the sign)."""
        bits, m1, m2 = (self.get_nodeattr(k) for k in ("bits", "m1", "m2"))
        return [] if bits == m1 + m2 + 1 else [f"bits={bits} is not m1 + m2 + 1 = {m1 + m2 + 1}"]


class CodebookWeight(_WeightDecoder):
    """``hwquant.CodebookWeight``: codebook indices to integer weights."""

    decode = staticmethod(codebook_weight)
    inputs = 2

    def get_nodeattr_types(self):
        """index_bits and grid_bits of the encoding."""
        return {"index_bits": ("i", True, 2), "grid_bits": ("i", True, 8)}

    def attribute_problems(self) -> list[str]:
        """Both widths are at least one bit."""
        return [
            f"{k}={self.get_nodeattr(k)} is below 1"
            for k in ("index_bits", "grid_bits")
            if self.get_nodeattr(k) < 1
        ]
