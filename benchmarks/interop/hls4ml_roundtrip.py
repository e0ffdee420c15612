"""hls4ml round trip (run in the hls4ml environment, not the main one): for each prepared model
directory and I/O type, ``convert_from_config(hls4ml_config.yml)``, ``compile()`` (C++ emulation
with g++) and ``predict()`` on every test image's input codes (channels last); the outputs are
compared with the integer engine's, exactly. Writes ``DIR/hls4ml_<io>/result.json``.

    python benchmarks/interop/hls4ml_roundtrip.py runs/interop/mnist5k_w4a4 [...]
"""

from __future__ import annotations

import json
import os
import sys
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np


def round_trip(model_dir: Path, io_type: str) -> dict:
    from hls4ml.converters import convert_from_config, parse_yaml_config

    work = model_dir / f"hls4ml_{io_type}"
    start = time.perf_counter()
    cwd = os.getcwd()
    os.chdir(work)  # the configuration names its files relative to itself
    try:
        config = parse_yaml_config("hls4ml_config.yml")
        default = config["HLSConfig"]["Model"]["Precision"]
        hls_model = convert_from_config(config)
        untyped = [
            f"{layer.name}.{key}"
            for layer in hls_model.get_layers()
            for key, var in layer.types.items()
            if str(var.precision).startswith(default.replace(">", ","))
        ]
        hls_model.compile()
        x = np.load("../inputs.npy").transpose(0, 2, 3, 1)
        y = np.asarray(hls_model.predict(np.ascontiguousarray(x, np.float64)))
    finally:
        os.chdir(cwd)
    expected = np.load(model_dir / "expected.npy")
    y = y.reshape(expected.shape)
    mismatches = int((y != expected).any(axis=1).sum())
    result = {
        "consumer": "hls4ml",
        "io_type": io_type,
        "images": len(expected),
        "mismatches": mismatches,
        "layers_at_default_precision": untyped,
        "seconds": round(time.perf_counter() - start, 1),
        "versions": {p: version(p) for p in ("hls4ml", "qonnx", "onnx", "numpy")},
        "compiler": os.popen("g++ --version").readline().strip(),
    }
    (work / "result.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    io_types = os.environ.get("IO_TYPES", "io_parallel io_stream").split()
    for arg in sys.argv[1:]:
        for io in io_types:
            round_trip(Path(arg), io)
