"""The table model: a multiply-free network as plain data (Covell et al. 2019; methods.md §3).

A :class:`TableModel` holds the input codebook, nodes in execution order and the value of one
output unit. Tensors between nodes are **index tensors** (int64): the index of each activation
in its producer's codebook. Nodes:

* :class:`UnitNode` (conv or linear): weight indices, the integer product table
  ``T[i, j] = round(a_i·w_j / s_T)`` and per-channel integer thresholds (BN, ReLU and the next
  codebook folded in, :mod:`hwquant.schemes.tables.fold`); the last layer has no thresholds and
  returns ``acc + bias`` (value ``s_T`` per unit);
* :class:`AddNode`: the residual add as a table ``S[i, j]`` of output indices;
* :class:`PoolNode`: average pooling as a sum of integer values and thresholds;
* :class:`MaxPoolNode`, :class:`FlattenNode`: indices pass through (levels are increasing).

The float codebooks are kept for reports only; :mod:`hwquant.schemes.tables.engine` never reads
them.

File format: one ``.npz`` with every array, plus a JSON header (format name, version, nodes,
SHA-256 of every array), written atomically by :mod:`hwquant.core.npzfile`; nodes are serialised as
in :mod:`hwquant.ir.intmodel`, under the format name ``hwquant.TableModel``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from hwquant.core.errors import FileFormatError
from hwquant.core.npzfile import read_npz_with_header, write_npz_with_header
from hwquant.ir.intmodel import from_json, to_json
from hwquant.schemes.tables.codebooks import check_codebook, nearest_index

FORMAT_NAME = "hwquant.TableModel"
FORMAT_VERSION = 1


@dataclass
class TableNode:
    """A node: its name and the names of the nodes it reads ("input" for the network input)."""

    name: str
    inputs: list[str]
    kind: ClassVar[str] = ""


@dataclass
class UnitNode(TableNode):
    """A conv (``op="conv"``, square kernel, groups 1) or linear layer as a table unit."""

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
    stride: int = 1
    padding: int = 0
    kind: ClassVar[str] = "unit"


@dataclass
class AddNode(TableNode):
    """Residual add: output index ``table[i, j]`` of ``act(a_i + b_j)``."""

    table: np.ndarray = field(repr=False)  # int64 [|A1|, |A2|]
    out_levels: np.ndarray = field(repr=False)
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
class MaxPoolNode(TableNode):
    """Max pooling of indices."""

    kernel_size: int = 2
    stride: int = 2
    padding: int = 0
    kind: ClassVar[str] = "maxpool"


@dataclass
class FlattenNode(TableNode):
    """Flatten all but the batch dimension."""

    kind: ClassVar[str] = "flatten"


NODE_TYPES: dict[str, type[TableNode]] = {
    cls.kind: cls for cls in (UnitNode, AddNode, PoolNode, MaxPoolNode, FlattenNode)
}


@dataclass
class TableModel:
    """A lowered table network; see the module docstring."""

    input_levels: np.ndarray  # float64 [input_entries]
    nodes: list[TableNode]
    output: str
    output_scale: float
    recipe: dict[str, Any] = field(default_factory=dict)

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
        header = {
            "output": self.output,
            "output_scale": self.output_scale,
            "recipe": self.recipe,
            "nodes": [to_json(node, node.name, arrays) for node in self.nodes],
        }
        return write_npz_with_header(path, FORMAT_NAME, FORMAT_VERSION, header, arrays)


def load_tables(path: str | Path) -> TableModel:
    """Read a :class:`TableModel` written by :meth:`TableModel.save`, checking its format
    name, version and the checksum of every array."""
    path = Path(path)
    fix = "Fix: lower the QAT model again (hwquant.schemes.tables.lower_tables) and save it."
    header, arrays = read_npz_with_header(path, FORMAT_NAME, (FORMAT_VERSION,), fix)
    try:
        nodes = [from_json(NODE_TYPES[e["kind"]], e, arrays) for e in header["nodes"]]
        return TableModel(
            arrays["input_levels"],
            nodes,
            header["output"],
            header["output_scale"],
            header["recipe"],
        )
    except (KeyError, TypeError) as exc:
        raise FileFormatError(f"'{path}' has a malformed header ({exc!r}). {fix}") from exc
