"""hls4ml round trip (run in the hls4ml environment, not the main one): for each prepared model
directory and I/O type, ``convert_from_config(hls4ml_config.yml)``, ``compile()`` (C++ emulation
with g++) and ``predict()`` on every test image's input codes (channels last); the outputs are
compared with the integer engine's, exactly. Writes ``DIR/result_hls4ml_<io>.json``; a round
trip whose file exists is skipped.

    IO_TYPES="io_parallel io_stream" python benchmarks/interop/hls4ml_roundtrip.py DIR [...]
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import done, save  # this environment has no hwquant


def round_trip(model_dir: Path, io_type: str) -> None:
    from hls4ml.converters import convert_from_config, parse_yaml_config

    consumer = f"hls4ml_{io_type}"
    if done(model_dir, consumer):
        return  # measured before, or refused by the export
    start = time.perf_counter()
    cwd = os.getcwd()
    os.chdir(model_dir / consumer)  # the configuration names its files relative to itself
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
        compiled = time.perf_counter() - start
        x = np.load("../inputs.npy").transpose(0, 2, 3, 1)
        y = np.asarray(hls_model.predict(np.ascontiguousarray(x, np.float64)))
    finally:
        os.chdir(cwd)
    expected = np.load(model_dir / "expected.npy")
    y = y.reshape(expected.shape)
    compiler = subprocess.run(["g++", "--version"], capture_output=True, text=True, check=True)
    result = {
        "consumer": "hls4ml",
        "io_type": io_type,
        "images": len(expected),
        "mismatches": int((y != expected).any(axis=1).sum()),
        "layers": len(hls_model.get_layers()),
        "layers_at_default_precision": untyped,
        "compile_seconds": round(compiled, 1),
        "seconds": round(time.perf_counter() - start, 1),
        "versions": {p: version(p) for p in ("hls4ml", "qonnx", "onnx", "numpy")},
        "compiler": compiler.stdout.splitlines()[0],
    }
    save(model_dir, consumer, result)


if __name__ == "__main__":
    io_types = os.environ.get("IO_TYPES", "io_parallel io_stream").split()
    for arg in sys.argv[1:]:
        for io in io_types:
            round_trip(Path(arg), io)
