"""qonnx executor bindings of hwquant's custom ops (this module's path is their domain).

qonnx finds the class for a node of domain ``hwquant.export.qonnx_ops`` by importing this
module; each class runs the numpy reference executor of :mod:`hwquant.export.custom_ops`.
Importing it needs the optional ``qonnx`` package.
"""

from __future__ import annotations

import numpy as np
from onnx import helper
from qonnx.core.datatype import DataType
from qonnx.custom_op.base import CustomOp

from hwquant.export.custom_ops import codebook_weight, msq_weight

__all__ = ["CodebookWeight", "MSQWeight"]


class _WeightDecoder(CustomOp):
    """A node whose inputs are initializers and whose output is an integer weight tensor."""

    def make_shape_compatible_op(self, model):
        """A constant of the decoded weight's shape stands in for shape inference."""
        shape = model.get_tensor_shape(self.onnx_node.output[0])
        return helper.make_node(
            "ConstantOfShape",
            [],
            self.onnx_node.output,
            value=helper.make_tensor("v", 1, [1], [0.0]),
            shape=shape,
        )

    def infer_node_datatype(self, model):
        """Integer weights: annotate the output as a signed integer type."""
        model.set_tensor_datatype(self.onnx_node.output[0], DataType["INT32"])

    def verify_node(self):
        """The attributes are checked by the reference executor."""
        return []

    def execute_node(self, context, graph):
        """Decode the weights with the reference executor."""
        inputs = [np.asarray(context[name]) for name in self.onnx_node.input]
        context[self.onnx_node.output[0]] = self.decode(*inputs)


class MSQWeight(_WeightDecoder):
    """``hwquant.MSQWeight``: SP2/fixed-point rows to integer weights."""

    decode = staticmethod(msq_weight)

    def get_nodeattr_types(self):
        """bits, m1, m2 of the encoding."""
        return {"bits": ("i", True, 4), "m1": ("i", True, 2), "m2": ("i", True, 1)}


class CodebookWeight(_WeightDecoder):
    """``hwquant.CodebookWeight``: codebook indices to integer weights."""

    decode = staticmethod(codebook_weight)

    def get_nodeattr_types(self):
        """index_bits and grid_bits of the encoding."""
        return {"index_bits": ("i", True, 2), "grid_bits": ("i", True, 8)}
