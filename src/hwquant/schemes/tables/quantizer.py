"""A codebook quantizer for QAT (Covell et al. 2019; methods.md §3.1 "Training", §7.3 items 1-2).

Forward in training: ``q(x) = c[nearest_index(x)]`` with the straight-through gradient of the
clipped identity (1 inside ``[c_0, c_{k-1}]``, 0 outside), so only the forward changes; the
levels are not learned but re-estimated every ``reestimate_every`` steps by a codebook family
(:mod:`hwquant.schemes.tables.codebooks`) from running statistics: for weights the current weights,
for activations a ring buffer of recent samples (``SAMPLES_PER_STEP`` elements drawn uniformly at
random from each training batch). Staged enabling: before ``start_step`` the quantizer passes
its input through (it still collects statistics). From ``freeze_step`` on the levels stay fixed,
so that the last steps fine-tune the network to the tables it will be deployed with.
"""

from __future__ import annotations

import torch

from hwquant.core.errors import HwquantError
from hwquant.qat.host_mirror import HostMirrored
from hwquant.schemes.tables.codebooks import estimate, nearest_index, pixel_levels

RING_SAMPLES = 16384
SAMPLES_PER_STEP = 4096


class CodebookQuantizer(HostMirrored):
    """Nearest-level quantizer onto a re-estimated codebook of ``entries`` levels."""

    def __init__(
        self,
        family: str,
        entries: int,
        unsigned: bool,
        *,
        reestimate_every: int,
        start_step: int,
        track_samples: bool,
        freeze_step: int | None = None,
    ) -> None:
        super().__init__()
        self.family = family
        self.entries = entries
        self.unsigned = unsigned
        self.reestimate_every = reestimate_every
        self.start_step = start_step
        self.track_samples = track_samples
        self.freeze_step = freeze_step
        self.register_buffer("levels", torch.zeros(entries, dtype=torch.float64))
        self.register_buffer("step", torch.zeros((), dtype=torch.int64))
        self.register_buffer("ring", torch.zeros(RING_SAMPLES if track_samples else 0))
        self.register_buffer("filled", torch.zeros((), dtype=torch.int64))

    @property
    def estimated(self) -> bool:
        """True once the levels have been estimated (after the first training forward)."""
        return self.host("step") > 0

    @property
    def frozen(self) -> bool:
        """True from ``freeze_step`` on: the levels are no longer re-estimated."""
        return self.freeze_step is not None and self.host("step") >= self.freeze_step

    def codebook(self) -> torch.Tensor:
        """The levels (float64, strictly increasing); refuses an unestimated quantizer."""
        if not self.estimated:
            raise HwquantError(
                "a codebook was used before it was estimated. Fix: run at least one training "
                "step (model.train(); model(batch)) before evaluating or lowering."
            )
        return self.levels

    def index(self, x: torch.Tensor) -> torch.Tensor:
        """Index of the nearest level of each element (int64)."""
        return nearest_index(x.double(), self.codebook())

    @torch.no_grad()
    def _observe(self, x: torch.Tensor) -> torch.Tensor:
        """Record samples of ``x``; return the samples the levels are estimated from."""
        flat = x.detach().flatten().float()
        if not self.track_samples:
            return flat
        picked = flat
        if flat.numel() > SAMPLES_PER_STEP:
            # uniform random positions: a fixed stride over a (N, C, H, W) tensor would alias
            # with H·W and pick one pixel position of every image (a biased codebook)
            picked = flat[torch.randint(flat.numel(), (SAMPLES_PER_STEP,), device=flat.device)]
        filled = self.host("filled")
        start = filled % RING_SAMPLES
        end = min(start + picked.numel(), RING_SAMPLES)
        self.ring[start:end] = picked[: end - start]
        self.set_host("filled", filled + end - start)
        return self.ring[: min(filled + end - start, RING_SAMPLES)]

    @torch.no_grad()
    def _reestimate(self, samples: torch.Tensor) -> None:
        if self.family == "pixels":
            self.levels.copy_(pixel_levels(samples, self.entries))
        else:
            self.levels.copy_(estimate(self.family, samples, self.entries, self.unsigned))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            samples = self._observe(x)
            step = self.host("step")
            if step == 0 or (step % self.reestimate_every == 0 and not self.frozen):
                self._reestimate(samples)
            self.advance("step")
            if step < self.start_step:
                return x
        levels = self.codebook().to(x.dtype)
        q = levels[nearest_index(x, levels)]
        clipped = x.clamp(float(levels[0]), float(levels[-1]))
        return q + (clipped - clipped.detach())  # value exactly q, gradient of clipped
