"""Collect the interop round trips' results into ``benchmarks/results/interop.json``.

``python -m benchmarks.interop.collect DIR`` reads ``DIR/<model>/info.json`` and the drivers'
``result_<consumer>.json`` files; a consumer with no result for a model is listed under
``not_run`` (never counted as exact).
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("root", type=Path, nargs="?", default=Path("runs/interop"))
    parser.add_argument("--make-command", default="make interop", help="what produced ROOT")
    args = parser.parse_args()
    models = collect(args.root)
    ran = [r for m in models.values() for r in m["consumers"].values()]
    summary = {
        consumer: {
            "models": sum(consumer in m["consumers"] for m in models.values()),
            "images": sum(
                m["consumers"][consumer]["images"]
                for m in models.values()
                if consumer in m["consumers"]
            ),
            "mismatches": sum(
                m["consumers"][consumer]["mismatches"]
                for m in models.values()
                if consumer in m["consumers"]
            ),
        }
        for consumer in CONSUMERS
    }
    results = {
        "summary": summary,
        "models": models,
        "round_trips": len(ran),
        "not_run": sum(len(m["not_run"]) for m in models.values()),
        "total_mismatches": sum(r["mismatches"] for r in ran),
        "all_run_exact": bool(ran) and all(r["mismatches"] == 0 for r in ran),
    }
    config = {"root": str(args.root), "produced_by": args.make_command}
    path = write_result("interop", command=command_line(), seed=0, config=config, results=results)
    print(json.dumps({k: v for k, v in results.items() if k != "models"}, indent=1), path)


if __name__ == "__main__":
    main()
