"""FP32-vs-QAT step times: every scheme timed, and a failing torch.compile falls back to eager."""

from __future__ import annotations

import torch

from hwquant.app.bench.steptime import measure_step_times
from hwquant.models import build


def _measure(compile_: bool) -> dict:
    model = build("small_cnn", in_channels=1, input_size=8)
    return measure_step_times(
        model, (1, 8, 8), batch=4, device="cpu", amp=False, channels_last=False,
        compile_=compile_, rounds=1, steps=1, seed=0,
    )  # fmt: skip


def test_every_scheme_is_timed_against_fp32():
    result = _measure(False)
    assert set(result["median_step_ms"]) == {"fp32", "llsq", "nonuniform", "msq", "tables"}
    half = 5e-4  # the medians and the ratios are rounded to 3 decimals
    fp32 = result["median_step_ms"]["fp32"]
    for kind, ratio in result["qat_over_fp32"].items():
        qat = result["median_step_ms"][kind]  # the ratio of the unrounded medians, rounded:
        low, high = (qat - half) / (fp32 + half), (qat + half) / (fp32 - half)
        assert low - half <= ratio <= high + half
    assert set(result["mode"].values()) == {"eager"}


def test_a_failing_compile_falls_back_to_eager_and_says_why(monkeypatch):
    def broken(model: torch.nn.Module) -> torch.nn.Module:
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch, "compile", broken)
    result = _measure(True)
    assert all(
        "compile failed: RuntimeError: no compiler here" in m for m in result["mode"].values()
    )
    assert all(v > 0 for v in result["median_step_ms"].values())
