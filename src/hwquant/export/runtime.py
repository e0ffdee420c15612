"""A fast exact backend: the IntModel's QDQ graph on onnxruntime, integer codes in and out.

``IntModel.run(x_int, backend="onnxruntime")`` exports the model once as the standard-ONNX graph
of :mod:`hwquant.export.onnx_qdq` (integer-code input, float32 only; every step proved exact) and
runs it in an onnxruntime session with every graph optimisation on. The optimisations keep the
integers exact: convolutions accumulate integers below 2^24 in any order (a fused multiply-add
of integers is exact too), the clip after each product is fused into it (and stops a scale from
being folded into the weights), and the requantization constants were proved for float32
evaluation with and without fused multiply-adds (:mod:`hwquant.export.requant`).

Sessions are cached per model content (a SHA-256 of its arrays and header), so a changed model
gets a new graph, never a stale one.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from hwquant.errors import ConfigError

if TYPE_CHECKING:
    from hwquant.intmodel import IntModel

_SESSIONS: OrderedDict[tuple[str, tuple[int, ...], int], Any] = OrderedDict()
_CACHE_SIZE = 4


def fingerprint(model: IntModel) -> str:
    """SHA-256 of everything that decides the model's outputs."""
    from hwquant.intmodel import to_json

    digest = hashlib.sha256()
    arrays: dict[str, np.ndarray] = {"output_scale": model.output_scale}
    header = [to_json(node, node.name, arrays) for node in model.nodes]
    digest.update(json.dumps([header, vars(model.input), model.output], default=str).encode())
    for name in sorted(arrays):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(arrays[name]).tobytes())
    return digest.hexdigest()


def session(model: IntModel, sample_shape: tuple[int, ...], threads: int | None = None) -> Any:
    """The cached onnxruntime session of ``model`` for inputs of ``sample_shape`` (per sample).

    ``threads``: intra-op threads (default: torch's thread count, so the backends compare
    alike).
    """
    try:
        import onnxruntime
    except ImportError as exc:
        raise ConfigError(
            "backend='onnxruntime' needs the onnxruntime package. Fix: pip install onnxruntime "
            "(the `test` extra), or use backend='engine'."
        ) from exc
    from hwquant.export.onnx_qdq import export_qdq

    threads = torch.get_num_threads() if threads is None else threads
    key = (fingerprint(model), tuple(sample_shape), threads)
    if key in _SESSIONS:
        _SESSIONS.move_to_end(key)
        return _SESSIONS[key]
    proto = export_qdq(model, (1, *sample_shape), quantize_input=False)
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    _SESSIONS[key] = onnxruntime.InferenceSession(
        proto.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    while len(_SESSIONS) > _CACHE_SIZE:
        _SESSIONS.popitem(last=False)
    return _SESSIONS[key]


def run_codes(model: IntModel, x_int: torch.Tensor, threads: int | None = None) -> torch.Tensor:
    """The engine's output codes (int64) for integer input codes ``x_int``, by onnxruntime."""
    if x_int.is_floating_point():
        raise ConfigError(
            "the onnxruntime backend takes integer codes, got a float tensor. Fix: pass "
            "int_model.quantize_input(x)."
        )
    sess = session(model, tuple(x_int.shape[1:]), threads)
    feed = {sess.get_inputs()[0].name: x_int.to(torch.float32).cpu().numpy()}
    (out,) = sess.run(None, feed)
    return torch.from_numpy(out).to(torch.int64)
