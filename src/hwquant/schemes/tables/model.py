"""The table model: a multiply-free network as plain data (Covell et al. 2019; methods.md §3).

A :class:`TableModel` holds the input codebook, nodes in execution order and the value of its
output: ``output_scale`` per unit of the last unit's ``acc + bias``, or, for a network that ends
in another node (a pool, an activation), ``output_levels``, the codebook its output indices
index. Tensors between nodes are **index tensors** (int64): the index of each activation
in its producer's codebook. Nodes:

* :class:`UnitNode` (conv or linear): weight indices, the integer product table
  ``T[i, j] = round(a_i·w_j / s_T)`` and per-channel integer thresholds (BN, ReLU and the next
  codebook folded in, :mod:`hwquant.schemes.tables.fold`); the last layer has no thresholds and
  returns ``acc + bias`` (value ``s_T`` per unit);
* :class:`LookupAddNode`: the residual add as a table ``S[i, j]`` of output indices (not the
  IntModel's :class:`~hwquant.ir.intmodel.AddNode`, which requantizes ``a·M_a + b·M_b``);
* :class:`PoolNode`: average pooling as a sum of integer values and thresholds;
* :class:`~hwquant.ir.intmodel.MaxPoolNode` (the IntModel's node: the maximum of a window of
  indices is the index of the maximum level, as levels are increasing),
  :class:`FlattenNode`, and the IntModel's nodes of the ops in :data:`INDEX_OPS` (concatenation,
  nearest upsampling, reshapes): indices pass through, moved as those ops move codes (the
  inputs of a concatenation share one codebook, as an IntModel's share one scale).

The float codebooks are kept for reports only; :mod:`hwquant.schemes.tables.engine` never reads
them.

File format: one ``.npz`` with every array, plus a JSON header (format name, version, nodes,
SHA-256 of every array), written atomically by :mod:`hwquant.core.npzfile`; nodes are serialised as
in :mod:`hwquant.ir.intmodel`, under the format name ``hwquant.TableModel``: a table node by its
``kind``, an IntModel node (:data:`INDEX_OPS`) by its ``op``. Version 3 added the unit's
dilation, groups and zero insertion, the IntModel nodes other than max pooling and
``output_levels``; version 1 wrote max pooling as a table
node (``kind`` "maxpool", integer kernel, stride and padding); it is read as the IntModel node.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from hwquant.core.errors import FileFormatError
from hwquant.core.npzfile import read_npz_with_header, write_npz_with_header
from hwquant.ir.intmodel import NODE_TYPES as INT_NODE_TYPES
from hwquant.ir.intmodel import IntNode, from_json, to_json
from hwquant.schemes.tables.codebooks import check_codebook, nearest_index

FORMAT_NAME = "hwquant.TableModel"
FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)  # version 1: max pooling as a table node
INDEX_OPS = ("maxpool", "reshape", "concat", "upsample", "softmax")
"""The IntModel ops whose nodes a TableModel holds: they move indices as they move codes (a
final softmax passes the last unit's ``acc + bias`` on: it stays outside, on the host)."""


@dataclass
class TableNode:
    """A node: its name and the names of the nodes it reads ("input" for the network input)."""

    name: str
    inputs: list[str]
    kind: ClassVar[str] = ""


@dataclass
class UnitNode(TableNode):
    """A conv (``op="conv"``) or linear layer as a table unit.

    A convolution's geometry: ``stride`` and ``padding`` (one number, or ``(h, w)``),
    ``dilation`` and ``groups`` as in ``nn.Conv2d`` (each group of ``O/groups`` outputs reads
    its own ``C/groups`` input channels: a unit per group); with ``insert_stride`` beyond 1 or
    ``insert_before``/``insert_after`` set, the input first gets the zeros of a transposed
    convolution (:func:`~hwquant.qat.nn.zero_insert.zero_insert`) as the padding index ``|A|``,
    whose table row is 0.
    """

    op: str
    weight_index: np.ndarray = field(repr=False)  # int64 [O, C, k, k] or [O, K]
    table: np.ndarray = field(repr=False)  # int64 [|A|, |W|]
    thresholds: np.ndarray = field(repr=False)  # int64 [O, n−1]; [O, 0] on the last layer
    descending: np.ndarray = field(repr=False)  # bool [O]: compare acc ≤ τ
    bias: np.ndarray = field(repr=False)  # int64 [O]: added on the last layer only
    act_levels: np.ndarray = field(repr=False)  # float64 [|A|] (reports only)
    weight_levels: np.ndarray = field(repr=False)  # float64 [|W|] (reports only)
    out_levels: np.ndarray = field(repr=False)  # float64 [n]; empty on the last layer
    entry_scale: float = 1.0  # s_T: value of one table unit (reports, output scale)
    entry_bits: int = 16
    stride: int | tuple[int, int] = 1
    padding: int | tuple[int, int] = 0
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    insert_stride: tuple[int, int] = (1, 1)
    insert_before: tuple[int, int] = (0, 0)
    insert_after: tuple[int, int] = (0, 0)
    kind: ClassVar[str] = "unit"

    @property
    def inserts_zeros(self) -> bool:
        """Whether the unit's input first gets a transposed convolution's zeros."""
        return (self.insert_stride, self.insert_before, self.insert_after) != (
            (1, 1),
            (0, 0),
            (0, 0),
        )


@dataclass
class LookupAddNode(TableNode):
    """Residual add by lookup: output index ``table[i, j]`` of ``act(a_i + b_j)``; with
    ``combine="mul"`` of ``a_i·b_j`` (an elementwise product, its operands broadcast)."""

    table: np.ndarray = field(repr=False)  # int64 [|A1|, |A2|]
    out_levels: np.ndarray = field(repr=False)
    combine: str = "add"
    kind: ClassVar[str] = "add"


@dataclass
class PoolNode(TableNode):
    """Average pooling: window sums of ``values[i]`` compared with ``thresholds``."""

    values: np.ndarray = field(repr=False)  # int64 [|A|]
    thresholds: np.ndarray = field(repr=False)  # int64 [n−1]
    out_levels: np.ndarray = field(repr=False)
    kernel_size: int | None = None  # None: global pooling
    kind: ClassVar[str] = "pool"


@dataclass
class ActivationNode(TableNode):
    """An elementwise activation by lookup: output index ``table[i]`` of ``f(a_i)``."""

    table: np.ndarray = field(repr=False)  # int64 [|A|]: output index of input level i
    out_levels: np.ndarray = field(repr=False)
    function: str = ""  # what the table computes, e.g. "sigmoid()" (documentation)
    kind: ClassVar[str] = "activation"


@dataclass
class FlattenNode(TableNode):
    """Flatten all but the batch dimension."""

    kind: ClassVar[str] = "flatten"


NODE_TYPES: dict[str, type[TableNode]] = {
    cls.kind: cls for cls in (UnitNode, LookupAddNode, PoolNode, ActivationNode, FlattenNode)
}
"""The table nodes by kind; max pooling is the IntModel's :class:`MaxPoolNode`."""


@dataclass
class TableModel:
    """A lowered table network; see the module docstring."""

    input_levels: np.ndarray  # float64 [input_entries]
    nodes: list[TableNode | IntNode]
    output: str
    output_scale: float
    recipe: dict[str, Any] = field(default_factory=dict)
    output_levels: np.ndarray | None = None  # float64: the output is indices into these
    format_name: ClassVar[str] = FORMAT_NAME
    """The format its files are written in, named in their header (:meth:`save`)."""

    def output_values(self, out: torch.Tensor) -> torch.Tensor:
        """Float value of the engine's outputs: ``output_levels[out]``, or ``output_scale·out``
        (float64; the data back end, outside the engine)."""
        if self.output_levels is not None:
            return torch.from_numpy(self.output_levels)[out]
        return out.double() * self.output_scale

    def __post_init__(self) -> None:
        check_codebook("of the network input", torch.from_numpy(self.input_levels))

    def quantize_input(self, x: torch.Tensor) -> torch.Tensor:
        """Index of each input value in the input codebook (the data front end: for 8-bit
        images and 256 input entries this is the pixel value itself)."""
        return nearest_index(x.double(), torch.from_numpy(self.input_levels))

    def units(self) -> list[UnitNode]:
        """The table units (conv and linear layers), in order."""
        return [n for n in self.nodes if isinstance(n, UnitNode)]

    def save(self, path: str | Path) -> Path:
        """Write the model to ``path`` (.npz with a JSON header), atomically."""
        arrays: dict[str, np.ndarray] = {"input_levels": self.input_levels}
        if self.output_levels is not None:
            arrays["output_levels"] = self.output_levels
        header = {
            "output": self.output,
            "output_scale": self.output_scale,
            "recipe": self.recipe,
            "nodes": [to_json(node, node.name, arrays) for node in self.nodes],
        }
        return write_npz_with_header(path, FORMAT_NAME, FORMAT_VERSION, header, arrays)

    @classmethod
    def load(cls, path: str | Path) -> TableModel:
        """The TableModel saved in ``path`` (:func:`load_tables`); with :attr:`format_name`,
        what :func:`hwquant.qat.registry.load_lowered` asks of a lowered model's class."""
        return load_tables(path)


def load_tables(path: str | Path) -> TableModel:
    """Read a :class:`TableModel` written by :meth:`TableModel.save`, checking its format
    name, version and the checksum of every array."""
    path = Path(path)
    fix = "Fix: lower the QAT model again (hwquant.schemes.tables.lower_tables) and save it."
    header, arrays = read_npz_with_header(path, FORMAT_NAME, READABLE_VERSIONS, fix)
    try:
        nodes = [_node_from_json(entry, arrays) for entry in header["nodes"]]
        return TableModel(
            arrays["input_levels"],
            nodes,
            header["output"],
            header["output_scale"],
            header["recipe"],
            arrays.get("output_levels"),
        )
    except (KeyError, TypeError) as exc:
        raise FileFormatError(f"'{path}' has a malformed header ({exc!r}). {fix}") from exc


def _node_from_json(entry: dict[str, Any], arrays: dict[str, np.ndarray]) -> TableNode | IntNode:
    """A table node (it has a ``kind``) or an IntModel node of :data:`INDEX_OPS` (no ``kind``;
    version 1 wrote max pooling as ``kind`` "maxpool" with integer kernel, stride and padding)."""
    if entry.get("kind") == "maxpool":
        sizes = {f: [entry[f]] * 2 for f in ("kernel_size", "stride", "padding")}
        entry = {"op": "maxpool", "name": entry["name"], "inputs": entry["inputs"], **sizes}
    if "kind" in entry:
        return from_json(NODE_TYPES[entry["kind"]], entry, arrays)
    if entry["op"] not in INDEX_OPS:
        raise KeyError(entry["op"])
    return from_json(INT_NODE_TYPES[entry["op"]], entry, arrays)
