"""Codebook quantizer: staged enabling, straight-through gradient, re-estimation."""

from __future__ import annotations

import pytest
import torch

from hwquant.core.errors import HwquantError
from hwquant.schemes.tables.quantizer import CodebookQuantizer


def _quant(start: int = 0, every: int = 2) -> CodebookQuantizer:
    return CodebookQuantizer(
        "fixed-uniform", 3, False, reestimate_every=every, start_step=start, track_samples=True
    )


def test_unestimated_codebook_is_refused():
    with pytest.raises(HwquantError, match="Fix: run at least one training step"):
        _quant().eval()(torch.zeros(2))


def test_passes_through_until_its_start_step():
    q = _quant(start=1).train()
    x = torch.tensor([0.3, -1.0, 0.9])
    assert torch.equal(q(x), x)  # step 0: statistics only
    assert q(x).tolist() == [0.0, -1.0, 1.0]  # levels -1, 0, 1


def test_straight_through_gradient_is_clipped_to_the_range():
    q = _quant().train()
    q(torch.tensor([-1.0, 1.0]))  # levels -1, 0, 1
    x = torch.tensor([-2.0, 0.4, 3.0], requires_grad=True)
    q(x).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 0.0]


def test_levels_are_reestimated_every_n_steps():
    q = _quant(every=2).train()
    q(torch.tensor([-1.0, 1.0]))
    q(torch.tensor([-8.0, 8.0]))  # step 1: kept
    assert q.levels.tolist() == [-1.0, 0.0, 1.0]
    q(torch.tensor([0.0]))  # step 2: the ring holds every sample so far
    assert q.levels.tolist() == [-8.0, 0.0, 8.0]


def test_levels_stay_fixed_from_the_freeze_step():
    q = CodebookQuantizer(
        "fixed-uniform", 3, False, reestimate_every=1, start_step=0, track_samples=True,
        freeze_step=2,
    ).train()  # fmt: skip
    q(torch.tensor([-1.0, 1.0]))
    assert not q.frozen
    q(torch.tensor([-2.0, 2.0]))  # step 1: re-estimated
    assert q.levels.tolist() == [-2.0, 0.0, 2.0] and q.frozen
    q(torch.tensor([-8.0, 8.0]))  # step 2: frozen
    assert q.levels.tolist() == [-2.0, 0.0, 2.0]


def test_activation_samples_cover_every_position():
    # (N, C, H, W) with N·C = 4096: a fixed stride numel // 4096 = H·W would see one position
    torch.manual_seed(0)
    q = CodebookQuantizer(
        "empirical", 4, False, reestimate_every=1, start_step=0, track_samples=True
    ).train()
    x = torch.arange(16.0).view(1, 1, 4, 4).expand(128, 32, 4, 4)
    q(x)
    seen = q.ring[: int(q.filled)]
    assert int(q.filled) == 4096 and set(seen.tolist()) == set(range(16))
