"""``benchmarks.interop.collect``: refused and missing round trips are never counted as exact."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.interop.collect import CONSUMERS, collect, summarize
from benchmarks.interop.results import done, save


def _model(root: Path, name: str) -> Path:
    folder = root / name
    folder.mkdir()
    info = {"model": f"{name}.npz", "dataset": "d", "images": 5, "recipe": {}, "layers": []}
    (folder / "info.json").write_text(json.dumps(info))
    return folder


def test_summary_counts_measured_refused_and_missing_apart(tmp_path):
    a, b = _model(tmp_path, "a"), _model(tmp_path, "b")
    save(a, "onnxruntime", {"images": 5, "mismatches": 0})
    save(b, "onnxruntime", {"images": 5, "mismatches": 2})
    save(a, "hls4ml_io_parallel", {"refused": "layer '1' ..."})
    assert done(a, "onnxruntime") and not done(b, "finn_hw")
    models = collect(tmp_path)
    assert models["b"]["not_run"] == [c for c in CONSUMERS if c != "onnxruntime"]
    summary = summarize(models)
    assert summary["onnxruntime"] == {
        "models_measured": 2,
        "images": 10,
        "mismatches": 2,
        "models_refused": 0,
        "models_not_run": 0,
    }
    assert summary["hls4ml_io_parallel"]["models_measured"] == 0
    assert summary["hls4ml_io_parallel"]["models_refused"] == 1
    assert summary["finn_hw"]["models_not_run"] == 2
