"""Collect the interop round trips' results into ``benchmarks/results/interop.json``.

``python -m benchmarks.interop.collect DIR`` reads ``DIR/<model>/info.json`` and the consumer
drivers' ``result.json`` files; a round trip that left no result is recorded as not run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from benchmarks.common import command_line, write_result


def collect(root: Path) -> dict:
    models = {}
    for model_dir in sorted(p for p in root.iterdir() if (p / "info.json").exists()):
        info = json.loads((model_dir / "info.json").read_text())
        rows = {}
        for name, path in (
            ("hls4ml_io_parallel", model_dir / "hls4ml_io_parallel" / "result.json"),
            ("hls4ml_io_stream", model_dir / "hls4ml_io_stream" / "result.json"),
            ("finn", model_dir / "finn_result.json"),
        ):
            rows[name] = json.loads(path.read_text()) if path.exists() else {"ran": False}
        models[model_dir.name] = {
            "model": info["model"],
            "dataset": info["dataset"],
            "scheme": info["recipe"].get("scheme"),
            "weight_bits": info["recipe"].get("weight_bits"),
            "act_bits": info["recipe"].get("act_bits"),
            "images": info["images"],
            "consumers": rows,
        }
    return models


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/interop")
    models = collect(root)
    ran = [r for m in models.values() for r in m["consumers"].values() if r.get("ran", True)]
    results = {
        "models": models,
        "round_trips": len(ran),
        "total_mismatches": sum(r["mismatches"] for r in ran),
        "all_exact": bool(ran) and all(r["mismatches"] == 0 for r in ran),
    }
    path = write_result(
        "interop", command=command_line(), seed=0, config={"root": str(root)}, results=results
    )
    print(json.dumps({k: v for k, v in results.items() if k != "models"}), path)


if __name__ == "__main__":
    main()
