"""benchmarks/common.py: the default result path, the result recorder, timing and printing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import common
from hwquant.core.errors import ConfigError


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


def test_images_per_second_is_the_batch_over_each_median(monkeypatch: pytest.MonkeyPatch):
    medians = {"a": 0.5, "b": 2.0}
    monkeypatch.setattr(common, "interleaved_median_seconds", lambda variants, rounds: medians)
    assert common.images_per_second({"a": print, "b": print}, 8, 3) == {"a": 16.0, "b": 4.0}


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


def test_a_resumed_recorder_reads_the_stored_entries_and_stamps_its_own(tmp_path: Path):
    machine = {"git": {"commit": "abc"}, "date_utc": "2026-12-06T11:00:00Z"}
    recorder = common.ResultRecorder("demo", "c", 0, tmp_path / "demo.json", machine=machine)
    assert recorder.file == tmp_path / "demo.json" and recorder.stored("designs") == {}
    recorder.save({}, {"designs": {"a": {"run": recorder.run_stamp()}}})
    assert recorder.stored("designs") == {
        "a": {"run": {"commit": "abc", "date_utc": machine["date_utc"]}}
    }
    assert recorder.stored("other") == {}
    assert common.ResultRecorder("x", "c", 0).file == common.RESULTS_DIR / "x.json"


def test_train_and_lower_returns_the_lowered_model_of_the_trained_qat_model():
    import torch

    import hwquant
    from hwquant.data import load_dataset
    from hwquant.models import build

    splits = load_dataset("digits", progress=False)
    torch.manual_seed(0)
    qat = hwquant.prepare(
        build("small_cnn", in_channels=1, input_size=8, width=0.25), hwquant.Recipe()
    )
    before = [p.detach().clone() for p in qat.parameters()]
    lowered = common.train_and_lower(qat, splits, steps=2, batch=16)
    assert isinstance(lowered, hwquant.IntModel) and not qat.training
    assert any(not torch.equal(a, b) for a, b in zip(before, qat.parameters(), strict=True))
    x, y = common.first_test_images(splits, 5)
    assert x.shape == (5, 1, 8, 8) and torch.equal(y, torch.from_numpy(splits.test.labels[:5]))
    assert hwquant.verify(qat, lowered, x).exact


def test_a_result_file_held_by_another_process_is_refused_naming_it(tmp_path: Path):
    """Two processes on one result file would each rewrite it from what they read first; the
    second is refused while the first holds it, and the file is free again afterwards."""
    path = tmp_path / "probes.json"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD.format(root=str(common.REPO_ROOT), path=str(path))],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        second = common.ResultRecorder("probes", "cmd", 0, path, machine={})
        with (
            pytest.raises(ConfigError, match=r"another process is writing .*probes\.json.*Fix"),
            second.exclusive(),
        ):
            pass
    finally:
        holder.terminate()
        holder.wait()
    with common.ResultRecorder("probes", "cmd", 0, path, machine={}).exclusive():
        pass  # free again once its holder has ended


HOLD = """
import sys, time
sys.path.insert(0, {root!r})
from benchmarks.common import ResultRecorder
with ResultRecorder("probes", "cmd", 0, {path!r}, machine={{}}).exclusive():
    print("held", flush=True)
    time.sleep(60)
"""
