"""Exact backend throughput on ResNet-20 (CIFAR shape), CPU: FP32 eval, the reference engine,
``IntModel.run(backend="onnxruntime")`` and onnxruntime on the same graph, side by side.

Issue 18 targets: the exact backend at least 0.8x FP32 eval and at least 1.0x onnxruntime on the
same graph. The backend runs the exported float32 graph with its convolutions moved onto
onnxruntime's ``QLinearConv`` (``exact_backend``); ``exact_backend_float_kernels`` is the same
without that step. Before timing, both are checked equal to the engine's integers on the whole
batch. All variants run with the same thread count and alternate in rounds; the ratios are those
of the median throughputs of this one run. ``onnxruntime_same_graph`` is a session with
onnxruntime's default options on the exported QDQ graph the backend runs (integer-code input).

A second part measures onnxruntime's integer kernels on one ResNet-20 convolution (16 -> 16
channels, 3x3, 32x32, 4-bit codes): ``Conv`` (float32, what the exact graph uses), ``QLinearConv``
(uint8 x int8 -> uint8 with a float per-channel scale; with x/y scales 1 its requantization is
``round(fl(acc·c))``, the offset-free one-step form) and ``ConvInteger`` (int32 accumulators),
and whether ``QLinearConv`` gave the float graph's codes on that batch.

Run from the repository root: ``python -m benchmarks.exact_backend_throughput``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch
from onnx import TensorProto, helper, numpy_helper

from benchmarks.common import (
    command_line,
    images_per_second,
    interleaved_median_seconds,
    print_results,
    w4a4_resnet20,
    write_result,
)
from hwquant.core.intmath import requant_params
from hwquant.export import export_qdq, runtime
from hwquant.export.requant import one_step
from hwquant.models import build

TARGET_FP32, TARGET_ORT = 0.8, 1.0


def _session(proto: onnx.ModelProto, threads: int) -> onnxruntime.InferenceSession:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    return onnxruntime.InferenceSession(
        proto.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def _model(nodes: list, inits: list, x_type: int, y_type: int, shape: list[int]) -> onnx.ModelProto:
    inputs = [helper.make_tensor_value_info("x", x_type, shape)]
    outputs = [helper.make_tensor_value_info("y", y_type, None)]
    graph = helper.make_graph(nodes, "conv", inputs, outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def integer_kernels(batch: int, rounds: int, threads: int, seed: int) -> dict[str, object]:
    """One ResNet-20 convolution as float Conv + one-step requant, QLinearConv, ConvInteger."""
    rng = np.random.default_rng(seed)
    channels, size = 16, 32
    x = rng.integers(0, 16, (batch, channels, size, size))
    w = rng.integers(-8, 8, (channels, channels, 3, 3))
    mult, shift = requant_params(rng.uniform(0.002, 0.02, channels), 16)
    step = one_step([int(np.abs(w).sum(axis=(1, 2, 3)).max() * 15)], [mult], shift, 0, 15)
    scale = step.scales[0]
    assert not step.offset.any(), "the benchmark draw needs an offset-free one-step scale"
    f32 = numpy_helper.from_array
    shape = [batch, channels, size, size]
    conv = dict(pads=[1, 1, 1, 1])
    float_graph = _model(
        [
            helper.make_node("Conv", ["x", "w"], ["acc"], **conv),
            helper.make_node("Mul", ["acc", "c"], ["u"]),
            helper.make_node("Round", ["u"], ["r"]),
            helper.make_node("Clip", ["r", "lo", "hi"], ["y"]),
        ],
        [
            f32(w.astype(np.float32), "w"),
            f32(scale.reshape(1, -1, 1, 1), "c"),
            f32(np.float32(0), "lo"),
            f32(np.float32(15), "hi"),
        ],
        TensorProto.FLOAT,
        TensorProto.FLOAT,
        shape,
    )
    qlinear = _model(
        [
            helper.make_node(
                "QLinearConv", ["x", "one", "z", "w", "c", "zw", "one", "z"], ["q"], **conv
            ),
            helper.make_node("Clip", ["q", "z", "hi"], ["y"]),
        ],
        [
            f32(w.astype(np.int8), "w"),
            f32(scale, "c"),
            f32(np.zeros(channels, np.int8), "zw"),
            f32(np.float32(1), "one"),
            f32(np.uint8(0), "z"),
            f32(np.uint8(15), "hi"),
        ],
        TensorProto.UINT8,
        TensorProto.UINT8,
        shape,
    )
    conv_integer = _model(
        [helper.make_node("ConvInteger", ["x", "w"], ["y"], **conv)],
        [f32(w.astype(np.int8), "w")],
        TensorProto.UINT8,
        TensorProto.INT32,
        shape,
    )
    xf, xu = x.astype(np.float32), x.astype(np.uint8)
    sessions = {
        "conv_float32": (_session(float_graph, threads), xf),
        "qlinearconv_uint8": (_session(qlinear, threads), xu),
        "convinteger_int32": (_session(conv_integer, threads), xu),
    }
    runs: dict[str, Callable[[], object]] = {
        name: (lambda s=s, v=v: s.run(None, {"x": v})) for name, (s, v) in sessions.items()
    }
    median = interleaved_median_seconds(runs, rounds)
    float_codes = runs["conv_float32"]()[0]
    return {
        "layer": f"{channels}->{channels} 3x3, {size}x{size}, batch {batch}, 4-bit codes",
        **{f"{name}_ms": 1000 * seconds for name, seconds in median.items()},
        "qlinearconv_speedup_over_float": median["conv_float32"] / median["qlinearconv_uint8"],
        "convinteger_speedup_over_float": median["conv_float32"] / median["convinteger_int32"],
        "qlinearconv_equals_float_graph": bool(
            np.array_equal(runs["qlinearconv_uint8"]()[0].astype(np.float32), float_codes)
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    threads = torch.get_num_threads()
    fp32 = build("resnet20").eval()
    x = torch.randn(args.batch, 3, 32, 32)
    int_model = w4a4_resnet20(x)
    x_int = int_model.quantize_input(x)
    reference = int_model.run(x_int)
    exact = torch.equal(int_model.run(x_int, backend="onnxruntime"), reference)
    if not exact:
        raise SystemExit("the onnxruntime backend differs from the engine: nothing to time")
    same_graph = _session(export_qdq(int_model, (1, 3, 32, 32), quantize_input=False), threads)
    x_codes = x_int.float().numpy()
    float_kernels = runtime.session(int_model, (3, 32, 32), threads, integer=False)
    _, qlinear_layers = runtime.integer_kernels(
        export_qdq(int_model, (1, 3, 32, 32), quantize_input=False), int_model
    )
    exact &= bool(np.array_equal(float_kernels.run(None, {"x": x_codes})[0], reference.numpy()))
    variants: dict[str, Callable[[], object]] = {
        "fp32_eval": lambda: fp32(x),
        "reference_engine": lambda: int_model.run(x_int),
        "exact_backend": lambda: int_model.run(x_int, backend="onnxruntime"),
        "exact_backend_float_kernels": lambda: float_kernels.run(None, {"x": x_codes}),
        "onnxruntime_same_graph": lambda: same_graph.run(None, {"x": x_codes}),
    }
    throughput = images_per_second(variants, args.batch, args.rounds)
    results: dict[str, object] = {
        f"{name}_images_per_s": value for name, value in throughput.items()
    }
    results |= {
        "backend_equals_engine": exact,
        "ratio_backend_over_fp32": throughput["exact_backend"] / throughput["fp32_eval"],
        "ratio_backend_over_onnxruntime": throughput["exact_backend"]
        / throughput["onnxruntime_same_graph"],
        "ratio_engine_over_fp32": throughput["reference_engine"] / throughput["fp32_eval"],
        "ratio_float_kernels_over_onnxruntime": throughput["exact_backend_float_kernels"]
        / throughput["onnxruntime_same_graph"],
        "qlinearconv_layers": qlinear_layers,
        "weight_layers": len(int_model.weight_nodes()),
        "target_ratio_fp32": TARGET_FP32,
        "target_ratio_onnxruntime": TARGET_ORT,
    }
    results["targets_met"] = (
        results["ratio_backend_over_fp32"] >= TARGET_FP32
        and results["ratio_backend_over_onnxruntime"] >= TARGET_ORT
    )
    results["integer_kernels"] = integer_kernels(args.batch, args.rounds, threads, args.seed)
    print_results(results)
    write_result(
        "exact_backend_throughput",
        command=command_line(),
        seed=args.seed,
        results=results,
        config={
            "model": "resnet20",
            "recipe": "W4A4 (first/last 8-bit)",
            "batch": args.batch,
            "rounds": args.rounds,
            "threads": threads,
            "onnxruntime": onnxruntime.__version__,
            "onnx": onnx.__version__,
        },
        path=args.out,
    )


if __name__ == "__main__":
    main()
