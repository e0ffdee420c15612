"""Brevitas 0.13.4 A2Q+ side by side with hwquant's accumulator-aware LLSQ on CIFAR-10 ResNet-20.

The peer of ``accumulator_aware_cifar10.py``'s W4A4 curve, on the same model and data: the
same ResNet-20 (option-B shortcuts), the same FP32 weights (issue 19's committed ``--tier``
checkpoint, its sha256 checked), the same CIFAR-10 JPEG copy with hwquant's augmentation (crop
from a copy padded with 4 black pixels, random mirror), and the tier's QAT budget and optimizer
(``epochs_qat`` epochs of batch ``batch_size``, SGD-Nesterov momentum 0.9 at ``qat_lr`` with a
cosine schedule, weight decay 5e-4, no label smoothing). The network is rebuilt from Brevitas
layers in Brevitas's own venv (``--brevitas-python``; its worker is ``brevitas_a2q_worker.py``):
every conv and the linear layer take A2Q+'s zero-centred accumulator-aware weight quantizer
(Colbert et al. 2024) with a P-bit accumulator, the inner layers at 4 bits and the stem and the
classifier at 8 (hwquant's ``first_layer_bits`` / ``last_layer_bits``), EP-init, and A2Q's norm
penalty (weight 1e-3) as in Brevitas's a2q example; the input is 8-bit signed, the activations
4-bit unsigned and the classifier's input 8-bit unsigned.

Differences that remain (Brevitas's own flow): BatchNorm stays a float layer in training mode
to the end (A2Q bounds the conv's integer sum; hwquant folds BN into the weights, freezes it at
the tier's step and bounds that sum with the folded bias included); the classifier's bias is a
float outside the bound (hwquant's is an integer inside it); the classifier has a weight scale
per output (hwquant's last layer one per tensor); weights round towards zero; the activation
quantizers are Brevitas's defaults (learned scales, trained) where hwquant's rows hold theirs;
the two operands of each residual sum stay float, the sum quantized by the block's ReLU alone
(hwquant requantizes both operands to 4-bit signed codes first: Brevitas keeps more precision
there); the data order is the worker's own; training runs in float32 (hwquant's rows under bf16
where the CPU has native kernels); and the accuracy is Brevitas's fake-quantized model's
(hwquant's is its integer engine's). The worker also reports each layer's exact worst-case
accumulator interval of its integer weights (hwquant's rule), to check the bound.

Each width is one worker process of one thread (``--jobs`` of them at a time); the result file
is rewritten after each, and a second invocation skips the widths it holds (a stored run of
other settings is refused)::

    python -m benchmarks.brevitas_a2q_cifar10 --brevitas-python .venv-brevitas/bin/python \\
        --acc-bits 14,12,16 --jobs 2
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import accumulator_aware_cifar10 as ours
from benchmarks.brevitas_a2q_fashion_mnist import brevitas_version, run_worker
from benchmarks.common import RESULTS_DIR, ResultRecorder, command_line
from hwquant.app.bench.reproduce import WEIGHT_DECAY
from hwquant.app.bench.tiers import get_tier
from hwquant.data import load_dataset

NAME = "accumulator_aware_brevitas_cifar10"
DEFAULT_OUT = RESULTS_DIR / f"{NAME}.json"
WEIGHT_BITS = 4
EDGE_BITS = 8
"""Weight bits of the stem and the classifier, and of the classifier's input (hwquant's
``first_layer_bits`` / ``last_layer_bits``)."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--brevitas-python",
        default=".venv-brevitas/bin/python",
        help="Python of Brevitas's venv (`make accumulator-aware` builds it)",
    )
    p.add_argument("--acc-bits", default="16,14,12", help="comma-separated accumulator widths")
    p.add_argument("--tier", choices=ours.TIERS, default=ours.TIERS[0], help="FP32 start, budget")
    p.add_argument("--jobs", type=int, default=1, help="workers at a time (one thread each)")
    p.add_argument("--data-root", type=Path, default=None, help="CIFAR-10 JPEG tarball or folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 512 training and 500 test images, one epoch")  # fmt: skip
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="result JSON")
    args = p.parse_args(argv)
    if args.quick and args.out == DEFAULT_OUT:
        p.error("--quick writes a smoke result: give it another --out")
    if args.jobs < 1:
        p.error(f"--jobs {args.jobs}: use an integer >= 1")
    try:
        args.acc_bits = [int(b) for b in args.acc_bits.split(",")]
    except ValueError:
        p.error(f"--acc-bits {args.acc_bits!r} is not a comma-separated list of integers")
    return args


def worker_options(epochs: int, batch_size: int, lr: float, seed: int) -> list[str]:
    """The worker's options for hwquant's W4A4 ResNet-20 row at the tier's QAT budget.

    >>> worker_options(3, 256, 0.01, 0)[:4]
    ['--model', 'resnet20', '--augment', '--weight-bits']
    """
    return [
        "--model", "resnet20", "--augment", "--weight-bits", str(WEIGHT_BITS), "--act-bits",
        str(WEIGHT_BITS), "--first-last-bits", str(EDGE_BITS), "--epochs", str(epochs),
        "--batch-size", str(batch_size), "--lr", str(lr), "--momentum", "0.9",
        "--weight-decay", str(WEIGHT_DECAY), "--seed", str(seed),
    ]  # fmt: skip


def check_resume(path: Path, stored: dict[str, Any], config: dict[str, Any]) -> None:
    """Refuse to add widths to ``path`` whose stored rows were run with another configuration
    (FP32 weights, budget, data, worker options, Brevitas version).

    Raises:
        SystemExit: names every setting that differs.
    """
    keys = ("fp32_checkpoint_sha256", "worker_options", "train_examples", "test_examples",
            "brevitas", "brevitas_venv_torch")  # fmt: skip
    differ = [k for k in keys if stored.get(k) != config[k]]
    if differ:
        named = "; ".join(f"{k}: stored {stored.get(k)!r}, now {config[k]!r}" for k in differ)
        raise SystemExit(f"{path} holds rows of other settings ({named}); choose another --out")


def side_by_side(rows: dict[str, Any], ours_summary: dict[str, Any], fp32_acc: float
                 ) -> dict[str, Any]:  # fmt: skip
    """Per accumulator width run here: A2Q+'s accuracy and loss from the FP32 weights beside
    hwquant's engine accuracy at that width (``ours_summary``: the summary of
    ``accumulator_aware_cifar10``'s W4A4 curve), in points.

    >>> row = side_by_side({"W4A4_P14": {"test_acc": 0.85}}, {"engine_acc_by_acc_bits":
    ...     {"14": 0.8679}}, 0.8867)["14"]
    >>> row["a2q_plus_loss_from_fp32_points"], row["hwquant_loss_from_fp32_points"]
    (3.67, 1.88)
    """
    by_bits = {str(k): v for k, v in ours_summary.get("engine_acc_by_acc_bits", {}).items()}
    table = {}
    for name, row in sorted(rows.items()):
        if "test_acc" not in row:
            continue
        bits = name.rsplit("_P", 1)[1]
        entry = {
            "a2q_plus_acc": row["test_acc"],
            "a2q_plus_loss_from_fp32_points": round(100 * (fp32_acc - row["test_acc"]), 2),
        }
        if bits in by_bits:
            entry["hwquant_engine_acc"] = by_bits[bits]
            entry["hwquant_loss_from_fp32_points"] = round(100 * (fp32_acc - by_bits[bits]), 2)
        table[bits] = entry
    return table


def write_data(directory: Path, args: argparse.Namespace, state: dict[str, torch.Tensor]
               ) -> tuple[int, int]:  # fmt: skip
    """The worker's inputs in ``directory``: uint8 NHWC train and test pixels, labels, the
    normalisation and the FP32 state_dict; returns the train and test sizes."""
    splits = load_dataset("cifar10-folder", args.data_root, progress=False)
    train, test = splits.train, splits.test
    if args.quick:
        rng = np.random.default_rng(args.seed)
        pick = np.sort(rng.permutation(len(train.labels))[:512])
        train = dataclasses.replace(train, images=train.images[pick], labels=train.labels[pick])
        test = dataclasses.replace(test, images=test.images[:500], labels=test.labels[:500])
    for name, split in (("train", train), ("test", test)):
        np.save(directory / f"u8_{name}.npy", np.ascontiguousarray(split.images, dtype=np.uint8))
        np.save(directory / f"y_{name}.npy", np.asarray(split.labels, dtype=np.int64))
    norm = {"mean": [float(m) for m in splits.mean], "std": [float(s) for s in splits.std]}
    (directory / "norm.json").write_text(json.dumps(norm))
    torch.save({k: v.float() if v.is_floating_point() else v for k, v in state.items()},
               directory / "fp32.pt")  # fmt: skip
    return len(train.labels), len(test.labels)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(1)
    command = command_line([sys.argv[0], *(sys.argv[1:] if argv is None else argv)])
    recorder = ResultRecorder(NAME, command, args.seed, args.out)
    tier = get_tier(args.tier)
    epochs = 1 if args.quick else tier.epochs_qat
    state, fp32_record = ours.fp32_state(args.tier)
    try:
        versions = brevitas_version(args.brevitas_python).split()
    except (OSError, subprocess.CalledProcessError) as err:
        raise SystemExit(
            f"--brevitas-python {args.brevitas_python}: no Python with Brevitas there ({err}). "
            "Fix: build its venv (`make accumulator-aware` makes .venv-brevitas) or point "
            "--brevitas-python at one."
        ) from None
    options = worker_options(epochs, tier.batch_size, tier.qat_lr, args.seed)
    curve = ours.default_output(args.tier, WEIGHT_BITS)
    ours_summary = json.loads(curve.read_text())["results"]["summary"] if curve.exists() else {}
    with recorder.exclusive(), tempfile.TemporaryDirectory(prefix="hwquant-brevitas-") as tmp:
        data = Path(tmp)
        train_n, test_n = write_data(data, args, state)
        config = {
            "dataset": "cifar10 (the shared JPEG-quality-75 copy)",
            "model": "resnet20 (option-B shortcuts); A2Q+ W4A4, stem and classifier 8-bit "
            "weights, input 8-bit signed, classifier input 8-bit unsigned",
            "tier": args.tier,
            "fp32_checkpoint_sha256": fp32_record["checkpoint_sha256"],
            "fp32_test_acc": fp32_record["test_acc"],
            "train_examples": train_n,
            "test_examples": test_n,
            "worker_options": options,
            "brevitas": versions[0],
            "brevitas_venv_torch": versions[1],
            "weight_quant": "Int8AccumulatorAwareZeroCenterWeightQuant (A2Q+)",
            "hwquant_curve": str(curve.relative_to(RESULTS_DIR.parent.parent)),
            "notes": [" ".join(__doc__.split("\n\n")[2].split())],
        }
        rows: dict[str, Any] = {}
        commands: list[str] = []
        if args.out.exists():
            stored = json.loads(args.out.read_text())
            check_resume(args.out, stored["config"], config)
            rows = {k: v for k, v in stored["results"]["rows"].items() if "test_acc" in v}
            commands = stored["config"].get("commands", [stored["command"]])
        config["commands"] = [*commands, command]  # every invocation that added to the file
        results: dict[str, Any] = {"complete": False, "rows": rows}

        def save() -> None:
            results["side_by_side"] = side_by_side(rows, ours_summary, fp32_record["test_acc"])
            recorder.save(config, results)

        pending = [b for b in args.acc_bits if f"W4A4_P{b}" not in rows]
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            runs = {b: pool.submit(run_worker, args.brevitas_python, data, b, options)
                    for b in pending}  # fmt: skip
            for bits, run in runs.items():
                rows[f"W4A4_P{bits}"] = run.result()
                print(f"[A2Q+ P={bits}] {rows[f'W4A4_P{bits}']}", file=sys.stderr)
                save()
        results["complete"] = all("test_acc" in rows.get(f"W4A4_P{b}", {}) for b in args.acc_bits)
        save()
    return results


if __name__ == "__main__":
    main()
