"""docs/supported_ops.md is generated from the registries and is current."""

from __future__ import annotations

from hwquant.app.supported import COMMAND, PAGE, render
from hwquant.ir.ops import available_ops
from hwquant.qat.registry import available


def test_the_page_is_current():
    assert PAGE.read_text("utf-8") == render(), f"docs/supported_ops.md is stale. Fix: {COMMAND}"


def test_the_page_names_every_op_and_scheme():
    page = render()
    assert all(f"| `{op}` |" in page for op in available_ops())
    assert all(f"### `{scheme}`" in page for scheme in available())
