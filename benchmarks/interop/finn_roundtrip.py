"""FINN round trip (run in the finn-plus environment, not the main one): the QONNX export with
integer-code input goes through finn-plus's own steps, as its dataflow builder orders them --
qonnx cleanup, ConvertQONNXtoFINN, tidy-up, streamlining (Streamline, LowerConvsToMatMul, NHWC
max pools, absorbed transposes), then the to_hw inference (Thresholding, MVAU,
ConvolutionInputGenerator, Pool, FMPadding, ...) -- and ``execute_onnx`` runs the graph after
streamlining and after the to_hw inference on every test image; both are compared with the
integer engine exactly. Writes ``DIR/finn_result.json``.

    python benchmarks/interop/finn_roundtrip.py runs/interop/mnist5k_w4a4 [...]
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from importlib.metadata import version
from pathlib import Path

import numpy as np


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


def mismatches(model, x: np.ndarray, expected: np.ndarray) -> int:
    from finn.core.onnx_exec import execute_onnx

    name_in, name_out = model.graph.input[0].name, model.graph.output[0].name
    bad = 0
    for i in range(len(x)):
        y = execute_onnx(model, {name_in: x[i : i + 1]})[name_out]
        bad += int(not np.array_equal(y.reshape(-1), expected[i].astype(np.float32)))
    return bad


def round_trip(model_dir: Path) -> dict:
    from finn.transformation.qonnx.convert_qonnx_to_finn import ConvertQONNXtoFINN
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.change_batchsize import ChangeBatchSize
    from qonnx.util.cleanup import cleanup_model

    start = time.perf_counter()
    model = ModelWrapper(str(model_dir / "finn.onnx")).transform(ChangeBatchSize(1))
    model = tidy(cleanup_model(model).transform(ConvertQONNXtoFINN()))
    streamlined = streamline(model)
    streamlined.save(str(model_dir / "finn_streamlined.onnx"))
    hw = to_hw(streamlined)
    hw.save(str(model_dir / "finn_hw.onnx"))
    x = np.load(model_dir / "inputs.npy")
    expected = np.load(model_dir / "expected.npy")
    result = {
        "consumer": "finn",
        "images": len(x),
        "mismatches_streamlined": mismatches(streamlined, x, expected),
        "mismatches": mismatches(hw, x, expected),
        "hw_nodes": dict(Counter(n.op_type for n in hw.graph.node)),
        "seconds": round(time.perf_counter() - start, 1),
        "versions": {p: version(p) for p in ("finn-plus", "qonnx", "onnx", "onnxruntime")},
    }
    (model_dir / "finn_result.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        round_trip(Path(arg))
