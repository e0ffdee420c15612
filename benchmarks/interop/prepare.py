"""Prepare the interop round trips (main venv): per model, the hls4ml export for both I/O
types, the FINN QONNX file, the test images (normalised, and their input codes) and the
engine's output codes.

``python -m benchmarks.interop.prepare OUT NAME=MODEL.npz@DATASET...`` writes ``OUT/<name>/``
(a model whose ``info.json`` exists keeps its files; it is written last); where the hls4ml
export refuses a model, its hls4ml round trips are recorded as refused, with the reason. The drivers
(``onnx_roundtrip``, ``hls4ml_roundtrip.py``, ``finn_roundtrip.py``) run on these folders, the
last two in their own environments.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

import hwquant
from benchmarks.interop.results import result_path, save
from hwquant.core.atomic import write_atomic
from hwquant.core.errors import UnsupportedLayerError
from hwquant.data import BatchLoader, load_dataset
from hwquant.engine import run
from hwquant.export.hls4ml import IO_TYPES, MODEL_FILE, export_hls4ml
from hwquant.export.qonnx import export_qonnx


def test_images(dataset: str) -> torch.Tensor:
    """The whole normalised test set of ``dataset``, NCHW float32."""
    splits = load_dataset(dataset)
    loader = BatchLoader(
        splits.test, 500, mean=splits.mean, std=splits.std, shuffle=False, augment=False
    )
    return torch.cat([x for x, _ in loader])


def prepare(out: Path, model_path: Path, dataset: str) -> dict:
    """Write one model's round-trip inputs into ``out``; return its description."""
    model = hwquant.load(model_path)
    x = test_images(dataset)
    shape = tuple(x.shape)
    if not (out / "info.json").exists():
        codes = model.quantize_input(x)
        out.mkdir(parents=True, exist_ok=True)
        np.save(out / "images.npy", x.numpy())
        np.save(out / "inputs.npy", codes.numpy().astype(np.float32))
        np.save(out / "expected.npy", run(model, codes).output.numpy())
        proto = export_qonnx(model, shape, quantize_input=False)
        write_atomic(out / "finn.onnx", proto.SerializeToString())
        info = {
            "model": str(model_path),
            "dataset": dataset,
            "images": len(x),
            "recipe": model.recipe,
            "layers": [f"{node.op} {node.name}" for node in model.nodes],
            "input_shape": list(shape[1:]),
        }
        write_atomic(out / "info.json", json.dumps(info, indent=2, default=str).encode())
    for io_type in IO_TYPES:
        consumer = f"hls4ml_{io_type}"
        if (out / consumer / MODEL_FILE).exists() or result_path(out, consumer).exists():
            continue
        try:
            export_hls4ml(model, shape, out / consumer, io_type=io_type)
        except UnsupportedLayerError as exc:  # the export refuses: the round trip records why
            save(out, consumer, {"consumer": "hls4ml", "io_type": io_type, "refused": str(exc)})
    return json.loads((out / "info.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("models", nargs="+", metavar="NAME=MODEL.npz@DATASET")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for spec in args.models:
        name, rest = spec.split("=", 1)
        path, dataset = rest.rsplit("@", 1)
        info = prepare(args.out / name, Path(path), dataset)
        print(name, info["model"], info["images"], "images")


if __name__ == "__main__":
    main()
