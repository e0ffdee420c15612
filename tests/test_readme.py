"""The README's Python snippet runs as written and its verify() proves something."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_python_snippet_runs_and_verifies_without_warnings(tmp_path, monkeypatch, capsys):
    text = README.read_text()
    snippet = re.search(r"## Python\n\n```python\n(.*?)```", text, re.S).group(1)
    monkeypatch.chdir(tmp_path)  # it saves small_cnn_w4a4.npz
    exec(compile(snippet, str(README), "exec"), {})
    printed = capsys.readouterr().out
    assert printed.startswith("bit-exact") and "proves little" not in printed
    assert (tmp_path / "small_cnn_w4a4.npz").exists()
