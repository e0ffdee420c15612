"""FP32 against QAT training-step time, same model, batch and device, in one run.

Every variant (the FP32 model and its W4A4 QAT twin under each scheme) takes one SGD step on
the same random batch. The variants run in interleaved rounds (``steps`` steps of each, in
turn) so that a shared machine's load falls on all alike; a variant's figure is the median of
its step times and its ratio is that median over the FP32 median (the issue's target on a GPU:
at most 1.5x; the timed step is ``benchmarks.qat_step_time``'s). With ``compile=True`` each
model is first wrapped in :func:`torch.compile`; a model whose compilation or first compiled
step fails runs eagerly and the failure is recorded.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import hwquant
from hwquant.app.bench.rows import RowSpec
from hwquant.core.errors import UnsupportedLayerError

STEP_SCHEMES = (RowSpec("llsq", 4), RowSpec("nonuniform", 4), RowSpec("msq", 4))
"""The W4A4 rows timed against FP32 (tables are timed too where the model supports them)."""
TABLE_ROW = RowSpec("tables", 40)
WARMUP_STEPS = 3


def timed_step(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, amp: bool
) -> Callable[[], float]:
    """A closure that runs one SGD training step of ``model`` on ``(x, y)`` (bf16 autocast when
    ``amp``) and returns its wall time in seconds, synchronising CUDA around it."""
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    model.train()

    def step() -> float:
        sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
        sync()
        start = time.perf_counter()
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync()
        return time.perf_counter() - start

    return step


def _warm(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, amp: bool, compile_: bool
) -> tuple[Callable[[], float], str]:
    """The step function of ``model`` (compiled when asked and it works) after its warm-up
    steps, and how it runs: "eager", "compiled" or "eager (compile failed: ...)"."""
    if compile_:
        try:
            step = timed_step(torch.compile(model), x, y, amp)
            for _ in range(WARMUP_STEPS):
                step()
            return step, "compiled"
        except Exception as err:  # any compiler failure: fall back to eager, say why
            mode = f"eager (compile failed: {type(err).__name__}: {str(err)[:200]})"
    else:
        mode = "eager"
    step = timed_step(model, x, y, amp)
    for _ in range(WARMUP_STEPS):
        step()
    return step, mode


def measure_step_times(
    fp32: nn.Module,
    input_shape: tuple[int, int, int],
    *,
    batch: int,
    device: str,
    amp: bool,
    channels_last: bool,
    compile_: bool,
    rounds: int,
    steps: int,
    seed: int,
) -> dict[str, Any]:
    """Median step times (ms) of ``fp32`` and of its W4A4 QAT twins, and each QAT/FP32 ratio."""
    torch.manual_seed(seed)
    x = torch.randn(batch, *input_shape, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    memory = torch.channels_last if channels_last else torch.preserve_format
    models = {"fp32": copy.deepcopy(fp32)}
    refused = {}
    for row in (*STEP_SCHEMES, TABLE_ROW):
        try:
            models[row.kind] = hwquant.prepare(copy.deepcopy(fp32), row.recipe(10**6))
        except UnsupportedLayerError as err:
            refused[row.kind] = str(err)
    steps_fns, modes = {}, {}
    for name, model in models.items():
        model = model.to(device=device, memory_format=memory)
        steps_fns[name], modes[name] = _warm(model, x, y, amp, compile_)
    times: dict[str, list[float]] = {name: [] for name in steps_fns}
    for _ in range(rounds):
        for name, step in steps_fns.items():
            times[name].extend(step() for _ in range(steps))
    median_ms = {name: 1e3 * statistics.median(t) for name, t in times.items()}
    return {
        "what": f"median of {rounds} interleaved rounds x {steps} steps, batch {batch}, "
        f"{device}, bf16 autocast {amp}, W4A4 (tables: 40 entries), BN statistics not frozen",
        "median_step_ms": {k: round(v, 3) for k, v in median_ms.items()},
        "qat_over_fp32": {
            k: round(v / median_ms["fp32"], 3) for k, v in median_ms.items() if k != "fp32"
        },
        "mode": modes,
        "refused": refused,
        "threads": torch.get_num_threads(),
    }
