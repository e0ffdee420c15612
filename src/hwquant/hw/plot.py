"""A picture of an estimate: cycles per layer and resource use per design (matplotlib)."""

from __future__ import annotations

from pathlib import Path

from hwquant.hw.estimate import NetworkEstimate
from hwquant.hw.folding import FoldedDesign


def plot_estimate(
    est: NetworkEstimate, path: str | Path, folded: dict[str, FoldedDesign] | None = None
) -> Path:
    """Write a PNG with cycles per layer for each design (log scale; the folded designs' when
    given) and each design's LUT/FF/DSP/BRAM use as a share of the device (100% = full)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = [w.name for w in est.layers]
    if folded:
        cycles = {d: [x.cycles for x in fd.layers] for d, fd in folded.items()}
        usage = {d: fd.usage for d, fd in folded.items()}
        kind = "folded PE x SIMD arrays"
    else:
        cycles = {d: [lc.cycles for lc in de.layers] for d, de in est.designs.items()}
        usage = {d: {k: v for k, v in de.usage.items()} for d, de in est.designs.items()}
        kind = "shared PE groups"
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(8, 0.45 * len(names)), 8))
    x = np.arange(len(names))
    width = 0.8 / max(len(cycles), 1)
    for i, (design, values) in enumerate(cycles.items()):
        top.bar(x + i * width, values, width, label=design)
    top.set_yscale("log")
    top.set_xticks(x + 0.4 - width / 2, names, rotation=60, ha="right", fontsize=7)
    top.set_ylabel("cycles per image")
    top.set_title(f"{est.device.name}: cycles per layer ({kind})")
    top.legend()
    resources = list(next(iter(usage.values())))
    rx = np.arange(len(resources))
    for i, (design, use) in enumerate(usage.items()):
        shares = [100 * use[r][0] / use[r][1] for r in resources]
        bottom.bar(rx + i * width, shares, width, label=design)
    bottom.axhline(100, color="red", linewidth=1)
    bottom.set_xticks(rx + 0.4 - width / 2, resources)
    bottom.set_ylabel("% of device")
    bottom.set_title("resource use (red line: the device)")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
