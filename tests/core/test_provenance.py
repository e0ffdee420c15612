"""hwquant.core.provenance: the machine record and the atomic result file."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from hwquant.core import atomic, provenance

MACHINE_KEYS = {
    "platform",
    "machine",
    "cpu_model",
    "cpu_count",
    "python",
    "torch",
    "numpy",
    "git",
    "date_utc",
}


def test_machine_record_has_the_keys():
    record = provenance.machine_record(Path(__file__).parent)
    assert set(record) >= MACHINE_KEYS
    assert set(record["git"]) == {"commit", "dirty", "diff_sha256", "untracked"}
    assert re.fullmatch(r"[0-9a-f]{40}", record["git"]["commit"])  # run inside the repository
    assert isinstance(record["git"]["dirty"], bool)
    assert isinstance(record["git"]["untracked"], list)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", record["date_utc"])
    assert isinstance(record["cpu_count"], int) and record["cpu_count"] >= 1
    assert record["cpu_model"]
    hostname = os.uname().nodename
    if len(hostname) > 3:  # the platform string carries no host name
        assert hostname not in json.dumps(record)


def test_git_state_outside_a_repository(tmp_path: Path):
    assert provenance.git_state(tmp_path) == {
        "commit": None,
        "dirty": None,
        "diff_sha256": None,
        "untracked": None,
    }


def test_write_result_round_trips(tmp_path: Path):
    path = tmp_path / "out" / "demo.json"
    machine = {"platform": "test"}
    results = {"acc": 0.5, "nan": float("nan"), "rows": [1, 2.5, {"inf": float("inf")}]}
    written = provenance.write_result(
        "demo",
        command="python demo.py --seed 3",
        seed=3,
        config={"epochs": 1},
        results=results,
        machine=machine,
        path=path,
    )
    assert written == path
    document = json.loads(path.read_text(encoding="utf-8"))
    assert tuple(document) == provenance.RESULT_KEYS
    assert document["benchmark"] == "demo"
    assert document["command"] == "python demo.py --seed 3"
    assert document["seed"] == 3
    assert document["machine"] == machine
    assert document["config"] == {"epochs": 1}
    assert document["results"] == {"acc": 0.5, "nan": None, "rows": [1, 2.5, {"inf": None}]}
    assert os.listdir(path.parent) == ["demo.json"]  # no temporary file left behind


def test_write_result_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = tmp_path / "demo.json"
    provenance.write_result("demo", command="c", seed=0, config={}, results={"v": 1}, path=path)
    before = path.read_text(encoding="utf-8")

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        provenance.write_result("demo", command="c", seed=0, config={}, results={"v": 2}, path=path)
    assert path.read_text(encoding="utf-8") == before  # the old file is intact
    assert os.listdir(tmp_path) == ["demo.json"]  # and the temporary file is gone


def test_command_line_quotes_arguments():
    assert provenance.command_line(["bench.py", "--out", "a b.json"]) == (
        "python bench.py --out 'a b.json'"
    )
