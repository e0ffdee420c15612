"""FINN round trip (run in the finn-plus environment, not the main one): the QONNX export with
integer-code input goes through finn-plus's own steps, as its dataflow builder orders them --
qonnx cleanup, ConvertQONNXtoFINN, tidy-up, streamlining (Streamline, LowerConvsToMatMul, NHWC
max pools, absorbed transposes), then the to_hw inference (Thresholding, MVAU,
ConvolutionInputGenerator, Pool, FMPadding, ...) -- and ``execute_onnx`` runs the graph after
streamlining and after the to_hw inference on the first ``--images`` test images, one at a time
(the graphs FINN builds have batch size 1; ``ChangeBatchSize`` then ``InferShapes`` fails on
them), each compared with the integer engine exactly. Writes ``DIR/result_finn_streamlined.json``
and ``DIR/result_finn_hw.json``, every 10 images: a rerun continues, and a larger ``--images``
extends a finished run.

    python benchmarks/interop/finn_roundtrip.py --images 100 runs/interop/small_cnn_llsq_w4a4
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from importlib.metadata import version
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import result_path, save  # this environment has no hwquant

CHUNK = 10
"""Images between two saves of a result."""


def tidy(model):
    from qonnx.transformation.fold_constants import FoldConstants
    from qonnx.transformation.general import (
        GiveReadableTensorNames,
        GiveUniqueNodeNames,
        RemoveStaticGraphInputs,
    )
    from qonnx.transformation.infer_datatypes import InferDataTypes
    from qonnx.transformation.infer_shapes import InferShapes

    for step in (
        InferShapes(),
        FoldConstants(),
        GiveUniqueNodeNames(),
        GiveReadableTensorNames(),
        InferDataTypes(),
        RemoveStaticGraphInputs(),
    ):
        model = model.transform(step)
    return model


def streamline(model):
    import finn.transformation.streamline.absorb as absorb
    from finn.transformation.streamline import Streamline
    from finn.transformation.streamline.reorder import MakeMaxPoolNHWC
    from qonnx.transformation.general import RemoveUnusedTensors
    from qonnx.transformation.infer_data_layouts import InferDataLayouts
    from qonnx.transformation.lower_convs_to_matmul import LowerConvsToMatMul

    model = model.transform(absorb.AbsorbScalarBiasIntoMultiThreshold())
    model = model.transform(Streamline())
    model = model.transform(LowerConvsToMatMul())
    model = model.transform(MakeMaxPoolNHWC())
    model = model.transform(absorb.AbsorbTransposeIntoMultiThreshold())
    model = model.transform(MakeMaxPoolNHWC())
    model = model.transform(absorb.AbsorbConsecutiveTransposes())
    model = model.transform(Streamline())
    model = model.transform(InferDataLayouts())
    return model.transform(RemoveUnusedTensors())


def to_hw(model):
    import finn.transformation.fpgadataflow.convert_to_hw as hw
    from finn.transformation.fpgadataflow.convert_to_hw.conv_inp_gen import InferConvInpGen
    from finn.transformation.fpgadataflow.convert_to_hw.elementwise_binary_operation import (
        InferElementwiseBinaryOperation,
    )
    from finn.transformation.fpgadataflow.convert_to_hw.fm_padding import InferFMPadding
    from finn.transformation.fpgadataflow.convert_to_hw.pool import InferPool
    from finn.transformation.fpgadataflow.convert_to_hw.quantized_matrix_vector_activation import (
        InferQuantizedMatrixVectorActivation,
    )
    from finn.transformation.fpgadataflow.convert_to_hw.thresholding import (
        InferThresholdingLayer,
    )

    del hw
    for step in (
        InferThresholdingLayer(),
        InferQuantizedMatrixVectorActivation(),
        InferThresholdingLayer(),
        InferFMPadding(),
        InferPool(),
        InferConvInpGen(),
        InferElementwiseBinaryOperation(),
    ):
        model = model.transform(step)
    return tidy(model)


def compare(model, stage: str, model_dir: Path, images: int, versions: dict, **extra) -> None:
    """Run ``model`` with ``execute_onnx`` one image at a time (its graphs have batch size 1)
    on the first ``images`` test images, comparing each with the engine's output codes; the
    result is saved every :data:`CHUNK` images, and a rerun continues where it stopped."""
    from finn.core.onnx_exec import execute_onnx

    consumer = f"finn_{stage}"
    path = result_path(model_dir, consumer)
    result = json.loads(path.read_text()) if path.exists() else {"images": 0, "mismatches": 0}
    if result["images"] >= images:
        return
    x = np.load(model_dir / "inputs.npy")
    expected = np.load(model_dir / "expected.npy")
    name_in, name_out = model.graph.input[0].name, model.graph.output[0].name
    while result["images"] < min(images, len(x)):
        start = time.perf_counter()
        first = result["images"]
        last = min(first + CHUNK, images, len(x))
        for i in range(first, last):
            y = execute_onnx(model, {name_in: x[i : i + 1]})[name_out]
            result["mismatches"] += int(not np.array_equal(y.reshape(-1), expected[i]))
        seconds = result.get("seconds", 0.0) + time.perf_counter() - start
        result |= {
            "consumer": consumer,
            "images": last,
            "of_test_images": len(x),
            "seconds": round(seconds, 1),
            "versions": versions,
            **extra,
        }
        save(model_dir, consumer, result)


def round_trip(model_dir: Path, images: int) -> None:
    from finn.transformation.qonnx.convert_qonnx_to_finn import ConvertQONNXtoFINN
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.change_batchsize import ChangeBatchSize
    from qonnx.util.cleanup import cleanup_model

    streamlined_file, hw_file = model_dir / "finn_streamlined.onnx", model_dir / "finn_hw.onnx"
    if not hw_file.exists():
        model = ModelWrapper(str(model_dir / "finn.onnx")).transform(ChangeBatchSize(1))
        model = tidy(cleanup_model(model).transform(ConvertQONNXtoFINN()))
        streamline(model).save(str(streamlined_file))
        to_hw(ModelWrapper(str(streamlined_file))).save(str(hw_file))
    versions = {p: version(p) for p in ("finn-plus", "qonnx", "onnx", "onnxruntime")}
    streamlined, hw = ModelWrapper(str(streamlined_file)), ModelWrapper(str(hw_file))
    nodes = {
        "streamlined": dict(Counter(n.op_type for n in streamlined.graph.node)),
        "hw": dict(Counter(n.op_type for n in hw.graph.node)),
    }
    for stage, model in (("streamlined", streamlined), ("hw", hw)):
        compare(model, stage, model_dir, images, versions, nodes=nodes[stage])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dirs", nargs="+", type=Path)
    parser.add_argument("--images", type=int, default=100, help="test images per graph")
    args = parser.parse_args()
    for model_dir in args.dirs:
        round_trip(model_dir, args.images)
