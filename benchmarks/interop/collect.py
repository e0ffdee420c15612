"""Collect the interop round trips' results into ``benchmarks/results/interop.json``.

``python -m benchmarks.interop.collect DIR`` reads ``DIR/<model>/info.json`` and the drivers'
``result_<consumer>.json`` files. A round trip the export refused (``"refused"``: the reason)
and one with no result (listed under ``not_run``) are never counted as exact.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks.common import command_line, write_result

CONSUMERS = (
    "qonnx_channels_last",
    "onnxruntime",
    "onnxruntime_backend",
    "hls4ml_io_parallel",
    "hls4ml_io_stream",
    "finn_streamlined",
    "finn_hw",
)
"""Every round trip, in the order of the pipeline."""


def collect(root: Path) -> dict:
    """Per model: its description and each consumer's result."""
    models = {}
    for model_dir in sorted(p for p in root.iterdir() if (p / "info.json").exists()):
        info = json.loads((model_dir / "info.json").read_text())
        rows = {}
        for consumer in CONSUMERS:
            path = model_dir / f"result_{consumer}.json"
            if path.exists():
                rows[consumer] = json.loads(path.read_text())
        models[model_dir.name] = {
            "model": info["model"],
            "dataset": info["dataset"],
            "scheme": info["recipe"].get("scheme"),
            "weight_bits": info["recipe"].get("weight_bits"),
            "act_bits": info["recipe"].get("act_bits"),
            "layers": info["layers"],
            "test_images": info["images"],
            "consumers": rows,
            "not_run": [c for c in CONSUMERS if c not in rows],
        }
    return models


def summarize(models: dict) -> dict:
    """Per consumer: models measured (images, mismatches), refused by the export, not run."""
    summary = {}
    for consumer in CONSUMERS:
        rows = [m["consumers"][consumer] for m in models.values() if consumer in m["consumers"]]
        measured = [r for r in rows if "refused" not in r]
        summary[consumer] = {
            "models_measured": len(measured),
            "images": sum(r["images"] for r in measured),
            "mismatches": sum(r["mismatches"] for r in measured),
            "models_refused": len(rows) - len(measured),
            "models_not_run": len(models) - len(rows),
        }
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("root", type=Path, nargs="?", default=Path("runs/interop"))
    parser.add_argument("--make-command", default="make interop", help="what produced ROOT")
    args = parser.parse_args()
    models = collect(args.root)
    summary = summarize(models)
    measured = [s for s in summary.values() if s["models_measured"]]
    results = {
        "summary": summary,
        "models": models,
        "total_mismatches": sum(s["mismatches"] for s in measured),
        "all_measured_exact": bool(measured) and all(s["mismatches"] == 0 for s in measured),
    }
    config = {"root": str(args.root), "produced_by": args.make_command}
    path = write_result("interop", command=command_line(), seed=0, config=config, results=results)
    print(json.dumps({k: v for k, v in results.items() if k != "models"}, indent=1), path)


if __name__ == "__main__":
    main()
