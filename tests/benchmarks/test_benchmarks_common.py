"""benchmarks/common.py: the default result path, the result recorder, timing and printing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import common


def test_result_recorder_rewrites_the_file_with_the_wall_time(tmp_path: Path):
    path = tmp_path / "demo.json"
    recorder = common.ResultRecorder("demo", "python demo.py", 7, path, machine={"m": 1})
    config, results = {"epochs": 1}, {"rows": {}}
    recorder.save(config, results)
    results["rows"]["a"] = 0.5
    recorder.save(config, results)
    document = json.loads(path.read_text(encoding="utf-8"))
    assert document["benchmark"] == "demo" and document["seed"] == 7
    assert document["machine"] == {"m": 1}
    assert document["results"]["rows"] == {"a": 0.5}
    assert document["results"]["total_wall_seconds"] >= 0.0


def test_interleaved_median_seconds_runs_every_variant_each_round():
    calls: list[str] = []
    variants = {name: (lambda name=name: calls.append(name)) for name in ("a", "b")}
    median = common.interleaved_median_seconds(variants, rounds=3)
    assert set(median) == {"a", "b"}
    assert all(seconds >= 0.0 for seconds in median.values())
    assert calls == ["a", "b"] * 4  # one warm-up, then three interleaved rounds


def test_print_results_formats_floats(capsys: pytest.CaptureFixture[str]):
    common.print_results({"ratio": 0.12345, "met": True, "n": 3})
    assert capsys.readouterr().out == "ratio: 0.123\nmet: True\nn: 3\n"


def test_write_result_defaults_to_the_results_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path)
    written = common.write_result("demo", command="c", seed=0, config={}, results={}, machine={})
    assert written == tmp_path / "demo.json"
    assert json.loads(written.read_text(encoding="utf-8"))["benchmark"] == "demo"
