"""The report's figures, drawn with matplotlib's object API on the Agg canvas (no pyplot state).

* accuracy vs bits: grouped bars per model (float, fake-quant, integer, integer with a narrow
  accumulator), with chance level;
* accumulator bits (when the results hold IntModel variants): worst-case and observed
  accumulator width per layer, with the narrow width;
* resources per layer (when the results hold an FPGA estimate): MACs and cycles per design;
* weight histograms, one figure per quantized model: the folded float weights over their
  per-channel scale, ``w / α``, with the integer quantization levels as vertical lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from hwquant.app.report.tables import tables_label, variant_label

PLOT_DIR = "plots"
DPI = 110
BAR_WIDTH = 0.2
HISTOGRAM_PANEL_WIDTH = 3.6
DENSE_LEVELS, DENSE_ALPHA = 16, 0.2
"""Level lines of grids with more than ``DENSE_LEVELS`` levels are drawn faint."""


@dataclass(frozen=True)
class Plot:
    """A written figure: its title and its path relative to the report."""

    title: str
    path: str


def write_plots(results: dict[str, Any], out_dir: Path) -> list[Plot]:
    """Draw every figure of ``results`` into ``out_dir/plots``; return them in report order."""
    figures = [("accuracy", "Test accuracy vs bits", accuracy_figure(results))]
    if results["variants"]:
        accumulators = accumulator_figure(results)
        figures.append(("accumulator_bits", "Accumulator width per layer", accumulators))
    resources = results.get("resources", {})
    if "layers" in resources:
        figures.append(("resources", "Resources per layer", resources_figure(resources)))
    for variant in results["variants"]:
        label = variant_label(variant)
        title = f"{label}: folded weights over their scale (w/α) and the integer levels"
        figures.append((f"weights_{variant['name']}", title, weight_histogram_figure(variant)))
    (out_dir / PLOT_DIR).mkdir(parents=True, exist_ok=True)
    plots = []
    for name, title, figure in figures:
        path = f"{PLOT_DIR}/{name}.png"
        FigureCanvasAgg(figure).print_png(out_dir / path)
        plots.append(Plot(title, path))
    return plots


def accuracy_figure(results: dict[str, Any]) -> Figure:
    """Bars per model: FP32 in float; each variant fake-quant, integer and narrow integer; table
    units (a ``"tables"`` section) fake-quant and table engine."""
    narrow = f"integer, {results['acc16_bits']}-bit acc."
    fp32 = results["fp32"]["accuracy"]
    groups = [("FP32", {"float": fp32})] if fp32 is not None else []
    for v in results["variants"]:
        acc = v["accuracy"]
        values = {
            "fake-quant (QAT eval)": acc["fake_quant"],
            "integer engine": acc["integer"],
            narrow: acc["integer_acc16"],
        }
        groups.append((variant_label(v), values))
    if "tables" in results:
        compared = results["tables"]["compare"]
        values = {
            "fake-quant (QAT eval)": compared["fake_quant_acc"],
            "table engine": compared["engine_acc"],
        }
        groups.append((tables_label(results["tables"]), values))
    colors: dict[str, str] = {}
    figure = Figure(figsize=(7, 4), dpi=DPI, layout="constrained")
    ax = figure.add_subplot()
    for position, (_, values) in enumerate(groups):
        offsets = (np.arange(len(values)) - (len(values) - 1) / 2) * BAR_WIDTH
        for offset, (name, value) in zip(offsets, values.items(), strict=True):
            first = name not in colors
            colors.setdefault(name, f"C{len(colors)}")
            bars = ax.bar(
                position + offset,
                value,
                BAR_WIDTH,
                color=colors[name],
                label=name if first else "_",
            )
            ax.bar_label(bars, fmt="{:.1%}", fontsize=7, rotation=90, padding=2)
    ax.axhline(1 / results["dataset"]["num_classes"], color="grey", linestyle=":", label="chance")
    ax.set_xticks(range(len(groups)), [label for label, _ in groups])
    ax.set_ylim(0, 1.2)
    ax.set_ylabel("test accuracy")
    figure.legend(fontsize=7, loc="outside lower center", ncols=3)
    return figure


def accumulator_figure(results: dict[str, Any]) -> Figure:
    """Per model, per layer: worst-case vs observed accumulator bits, and the narrow width."""
    variants = results["variants"]
    figure = Figure(figsize=(4 * len(variants), 3.5), dpi=DPI, layout="constrained")
    axes = figure.subplots(1, len(variants), squeeze=False, sharey=True)[0]
    for ax, variant in zip(axes, variants, strict=True):
        layers = variant["layers"]
        x = np.arange(len(layers))
        ax.bar(
            x - BAR_WIDTH,
            [la["worst_case_bits"] for la in layers],
            2 * BAR_WIDTH,
            label="worst case",
        )
        ax.bar(x + BAR_WIDTH, [la["bits_used"] for la in layers], 2 * BAR_WIDTH, label="observed")
        ax.axhline(results["acc16_bits"], color="red", linestyle="--", label="narrow accumulator")
        ax.set_xticks(x, [la["name"] for la in layers], rotation=30, ha="right", fontsize=7)
        ax.set_title(variant_label(variant))
    axes[0].set_ylabel("signed accumulator bits")
    axes[0].legend(fontsize=7)
    return figure


def resources_figure(resources: dict[str, Any]) -> Figure:
    """Per layer: MACs and the cycles of each FPGA design (log scale)."""
    layers = resources["layers"]
    names = list(resources["designs"])
    figure = Figure(figsize=(7, 3.5), dpi=DPI, layout="constrained")
    ax = figure.add_subplot()
    x = np.arange(len(layers))
    width = 0.8 / (len(names) + 1)
    ax.bar(x - 0.4 + width / 2, [la["macs"] for la in layers], width, label="MACs")
    for i, name in enumerate(names, start=1):
        cycles = [la["cycles"][name] for la in layers]
        ax.bar(x - 0.4 + width * (i + 0.5), cycles, width, label=f"{name} cycles")
    ax.set_yscale("log")
    ax.set_xticks(x, [la["name"] for la in layers], rotation=30, ha="right", fontsize=7)
    ax.set_title(f"Resources per layer on {resources['device']}")
    ax.legend(fontsize=7)
    return figure


def weight_histogram_figure(variant: dict[str, Any]) -> Figure:
    """One panel per layer: histogram of ``w / α`` with a line at every integer level."""
    histograms = variant["histograms"]
    width = HISTOGRAM_PANEL_WIDTH * len(histograms)
    figure = Figure(figsize=(width, 3), dpi=DPI, layout="constrained")
    axes = figure.subplots(1, len(histograms), squeeze=False)[0]
    for ax, histogram in zip(axes, histograms, strict=True):
        _draw_histogram(ax, histogram)
    figure.suptitle(variant_label(variant))
    return figure


def _draw_histogram(ax: Axes, histogram: dict[str, Any]) -> None:
    edges = np.asarray(histogram["edges"])
    ax.stairs(histogram["counts"], edges, fill=True, alpha=0.7)
    levels = histogram.get("levels", np.arange(histogram["qmin"], histogram["qmax"] + 1))
    alpha = 1.0 if len(levels) <= DENSE_LEVELS else DENSE_ALPHA
    ax.vlines(
        levels,
        0,
        1,
        transform=ax.get_xaxis_transform(),
        colors="red",
        linewidth=0.6,
        alpha=alpha,
        zorder=0,
        label="integer levels",
    )
    ax.set_title(f"{histogram['layer']} ({histogram['bits']}-bit)", fontsize=8)
    ax.set_xlabel("w / α", fontsize=8)
    ax.tick_params(labelsize=7)
