"""Brevitas 0.13.4 A2Q+ side by side with hwquant's accumulator-aware LLSQ on Fashion-MNIST.

The same ``small_cnn``, the same FP32 weights (``--init-fp32``: the state_dict that
``accumulator_aware_fashion_mnist.py --save-fp32`` wrote), the same normalised data, the same
QAT budget (``--qat-train-examples`` images, ``--epochs``) and optimizer settings (SGD-Nesterov
lr 0.0025, cosine, weight decay 5e-4, batch 128) as that benchmark's W4A4 rows. The network is
rebuilt from Brevitas layers in Brevitas's own venv (``--brevitas-python``; its worker is
``brevitas_a2q_worker.py``): every conv and the linear layer take A2Q+'s zero-centred
accumulator-aware weight quantizer (Colbert et al. 2024) at 4 bits with a P-bit accumulator,
EP-init, and A2Q's norm penalty (weight 1e-3) as in Brevitas's a2q example; the input is 8-bit
signed, the activations 4-bit unsigned.

Differences that remain (Brevitas's own flow): BatchNorm stays a float layer after each conv
(A2Q bounds the conv's integer sum; hwquant folds BN into the weights and bounds that sum with
the bias), weights round towards zero, and the accuracy is Brevitas's fake-quantized model's
(hwquant's is its integer engine's). The worker also reports each layer's exact worst-case
accumulator interval of its integer weights (hwquant's rule), to check the bound.

    python -m benchmarks.brevitas_a2q_fashion_mnist --init-fp32 FP32.pt
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import fashion_mnist_llsq as llsq_bench
from benchmarks.common import ResultRecorder, command_line
from hwquant.data import BatchLoader, load_dataset

NAME = "accumulator_aware_brevitas_fashion_mnist"
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / f"{NAME}.json"
WORKER = Path(__file__).resolve().parent / "brevitas_a2q_worker.py"
DEFAULT_PYTHON = ".venv-brevitas/bin/python"  # `make accumulator-aware` builds it


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--init-fp32", type=Path, required=True, help="FP32 small_cnn state_dict")
    p.add_argument("--brevitas-python", default=DEFAULT_PYTHON, help="Python of Brevitas's venv")
    p.add_argument("--acc-bits", default="16,14,12", help="comma-separated accumulator widths")
    p.add_argument("--qat-train-examples", type=int, default=None, help="first N train images")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="1000 train / 1000 test images")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="result JSON")
    return p.parse_args(argv)


def normalised(loader: BatchLoader) -> tuple[np.ndarray, np.ndarray]:
    """Every image of ``loader`` (in order, normalised as hwquant's benchmarks feed them)."""
    xs, ys = zip(*loader.iter_from(0), strict=True)
    return torch.cat(xs).numpy(), torch.cat(ys).numpy()


def brevitas_version(python: str) -> str:
    """Brevitas's and torch's versions in its venv."""
    code = "import brevitas, torch; print(brevitas.__version__, torch.__version__)"
    return subprocess.run([python, "-c", code], check=True, capture_output=True, text=True).stdout


def run_worker(python: str, data: Path, acc_bits: int, options: Sequence[str]) -> dict[str, Any]:
    """One A2Q+ run of :data:`WORKER` in Brevitas's venv (``python``) on the driver's ``data``
    directory at a ``acc_bits``-bit accumulator, with the worker ``options``: its JSON line,
    or ``{"error": ...}`` with the tail of its stderr when it fails."""
    worker = [python, str(WORKER), "--data", str(data), "--acc-bits", str(acc_bits), *options]
    print(f"[A2Q+ P={acc_bits}] {' '.join(worker)}", file=sys.stderr)
    done = subprocess.run(worker, capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": done.stderr[-2000:]}
    try:
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return {"error": f"no JSON line in the worker's output: {done.stdout[-500:]!r}"}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(1)
    command = command_line([sys.argv[0], *(sys.argv[1:] if argv is None else argv)])
    recorder = ResultRecorder(NAME, command, args.seed, args.out)
    splits = load_dataset("fashion-mnist")
    train_n = 1000 if args.quick else args.qat_train_examples or len(splits.train)
    test_n = 1000 if args.quick else len(splits.test)
    norm = {"mean": splits.mean, "std": splits.std, "shuffle": False, "augment": False}
    versions = brevitas_version(args.brevitas_python).split()
    config = {
        "dataset": "fashion-mnist",
        "model": "small_cnn, every weight layer A2Q+ W4A4, input 8-bit signed",
        "train_examples": train_n,
        "test_examples": test_n,
        "epochs": args.epochs,
        "init_fp32": str(args.init_fp32),
        "brevitas": versions[0],
        "brevitas_venv_torch": versions[1],
        "weight_quant": "Int8AccumulatorAwareZeroCenterWeightQuant (A2Q+), bit_width 4",
        "recipe": "EP-init; SGD-Nesterov lr 0.0025 cosine, weight decay 5e-4, batch 128; "
        "A2Q norm penalty 1e-3",
        "notes": [__doc__.split("\n\n")[2].replace("\n", " ")],
    }
    results: dict[str, Any] = {"complete": False, "rows": {}}
    with tempfile.TemporaryDirectory(prefix="hwquant-brevitas-") as tmp:
        data = Path(tmp)
        train = BatchLoader(llsq_bench._head(splits.train, train_n), 1000, **norm)
        test = BatchLoader(llsq_bench._head(splits.test, test_n), 1000, **norm)
        for name, loader in (("train", train), ("test", test)):
            x, y = normalised(loader)
            np.save(data / f"x_{name}.npy", x)
            np.save(data / f"y_{name}.npy", y.astype(np.int64))
        torch.save(torch.load(args.init_fp32, weights_only=True), data / "fp32.pt")
        for bits in (int(b) for b in args.acc_bits.split(",")):
            options = ["--epochs", str(args.epochs), "--seed", str(args.seed)]
            results["rows"][f"W4A4_P{bits}"] = run_worker(args.brevitas_python, data, bits, options)
            print(f"[A2Q+ P={bits}] {results['rows'][f'W4A4_P{bits}']}", file=sys.stderr)
            recorder.save(config, results)
    results["complete"] = True
    recorder.save(config, results)
    return results


if __name__ == "__main__":
    main()
