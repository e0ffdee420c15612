"""qonnx and onnxruntime round trips (main venv) on the folders of ``prepare``.

Per model, on every test image, each compared with the integer engine's output codes exactly:

* ``qonnx_channels_last``: the QONNX export (real-valued input) through what a qonnx user does
  before hls4ml or FINN: ``ChangeBatchSize``, ``cleanup_model``, ``InferShapes``,
  ``ConvertToChannelsLastAndClean``, ``InferDataTypes``, then qonnx's ``execute_onnx``;
* ``onnxruntime``: the QDQ export (real-valued input) in an onnxruntime session;
* ``onnxruntime_backend``: ``IntModel.run(codes, backend="onnxruntime")``, the exact backend
  (integer ``QLinearConv`` kernels where eligible).

``python -m benchmarks.interop.onnx_roundtrip DIR...`` writes ``DIR/result_<consumer>.json``.
"""

from __future__ import annotations

import json
import sys
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch

import hwquant
from benchmarks.interop.results import done, save
from hwquant.export import export_qdq, export_qonnx, run_onnxruntime


def qonnx_channels_last(proto, x: np.ndarray) -> np.ndarray:
    """Execute ``proto`` as a qonnx user does before hls4ml or FINN (module docstring)."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.change_batchsize import ChangeBatchSize
    from qonnx.transformation.channels_last import ConvertToChannelsLastAndClean
    from qonnx.transformation.infer_datatypes import InferDataTypes
    from qonnx.transformation.infer_shapes import InferShapes
    from qonnx.util.cleanup import cleanup_model

    wrapper = cleanup_model(ModelWrapper(proto).transform(ChangeBatchSize(len(x))))
    wrapper = wrapper.transform(InferShapes()).transform(ConvertToChannelsLastAndClean())
    wrapper = wrapper.transform(InferDataTypes())
    transposes = sum(n.op_type == "Transpose" for n in wrapper.graph.node)
    out = execute_onnx(wrapper, {wrapper.graph.input[0].name: x})[wrapper.graph.output[0].name]
    return out, transposes


def round_trips(model_dir: Path) -> None:
    model = hwquant.load(Path(json.loads((model_dir / "info.json").read_text())["model"]))
    images = np.load(model_dir / "images.npy")
    codes = np.load(model_dir / "inputs.npy")
    expected = np.load(model_dir / "expected.npy")
    shape = images.shape
    versions = {p: version(p) for p in ("qonnx", "onnx", "onnxruntime", "numpy")}

    def record(consumer: str, out: np.ndarray, start: float, **extra) -> None:
        out = np.asarray(out).reshape(expected.shape)
        result = {
            "consumer": consumer,
            "images": len(expected),
            "mismatches": int((out != expected).any(axis=1).sum()),
            "seconds": round(time.perf_counter() - start, 1),
            "versions": versions,
            **extra,
        }
        save(model_dir, consumer, result)

    if not done(model_dir, "qonnx_channels_last"):
        start = time.perf_counter()
        out, transposes = qonnx_channels_last(export_qonnx(model, shape), images)
        record("qonnx_channels_last", out, start, input="values", transposes=transposes)
    if not done(model_dir, "onnxruntime"):
        start = time.perf_counter()
        record("onnxruntime", run_onnxruntime(export_qdq(model, shape), images), start)
    if not done(model_dir, "onnxruntime_backend"):
        start = time.perf_counter()
        out = model.run(torch.from_numpy(codes).round().long(), backend="onnxruntime")
        record("onnxruntime_backend", out.numpy(), start, input="codes")


if __name__ == "__main__":
    torch.set_num_threads(1)
    for arg in sys.argv[1:]:
        round_trips(Path(arg))
