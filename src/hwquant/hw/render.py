"""A :class:`~hwquant.hw.estimate.NetworkEstimate` as rich tables and fit lines."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from hwquant.hw.estimate import ArrayDesign, NetworkEstimate
from hwquant.hw.folding import FoldedDesign

WIDE = 170
"""Console width when the output is not a terminal (a file or a pipe)."""


def layer_table(est: NetworkEstimate) -> Table:
    """Per layer: the work, then (one design) its row split and cycles per group, or (several
    designs) the cycles of each design."""
    designs = list(est.designs.values())
    table = Table(title=f"Per-layer estimate on {est.device.name}", title_justify="left")
    for header in ("layer", "role", "rows", "fan-in", "positions", "MACs"):
        table.add_column(header, justify="left" if header in ("layer", "role") else "right")
    single = len(designs) == 1
    extra = ("LUT rows", "DSP rows", "LUT cycles", "DSP cycles", "cycles") if single else ()
    for header in extra or tuple(f"{d.design} cycles" for d in designs):
        table.add_column(header, justify="right")
    for index, work in enumerate(est.layers):
        cells = [work.name, work.role, str(work.rows), str(work.fan_in), str(work.positions)]
        cells.append(f"{work.macs:,}")
        if single:
            lc = designs[0].layers[index]
            numbers = (lc.lut_rows, lc.dsp_rows, lc.lut_cycles, lc.dsp_cycles, lc.cycles)
        else:
            numbers = tuple(d.layers[index].cycles for d in designs)
        table.add_row(*cells, *(f"{n:,}" for n in numbers))
    return table


def _used(design: ArrayDesign | FoldedDesign, key: str) -> str:
    used, have = design.usage[key]
    return f"{used:,} ({used / have:.0%})"


def totals_table(est: NetworkEstimate) -> Table:
    """Per design: PE groups, SP2/LUT share, resources, cycles, throughput and speed-up."""
    d0 = est.device
    table = Table(
        title=f"Designs on {d0.name} ({d0.luts:,} LUT, {d0.ffs:,} FF, {d0.dsps} DSP, "
        f"{d0.bram36} BRAM36)",
        title_justify="left",
        caption="P_dsp: DSP MACs/cycle on inner layers; P_lut: LUT PEs; r: their row share.",
        caption_justify="left",
    )
    headers = ("design", "P_dsp", "P_lut", "r", "LUT", "FF", "DSP", "BRAM36", "cycles")
    for header in (*headers, "latency ms", "images/s", "vs fixed", "fits"):
        table.add_column(header, justify="left" if header == "design" else "right")
    for name, d in est.designs.items():
        table.add_row(
            name,
            f"{d.arrays.p_dsp:,}",
            f"{d.arrays.p_lut:,}",
            f"{float(d.arrays.share):.3f}",
            _used(d, "luts"),
            _used(d, "ffs"),
            _used(d, "dsps"),
            _used(d, "bram36"),
            f"{d.cycles:,}",
            f"{d.latency_s * 1e3:.3f}",
            f"{d.images_per_s:,.1f}",
            f"{est.speedup(name):.2f}x",
            fit_cell(d),
        )
    return table


def fit_cell(d: ArrayDesign | FoldedDesign) -> str:
    """ "yes" when everything fits on chip, "NO" when the logic does not, else the DRAM
    bandwidth the weights that do not fit the block RAMs need."""
    if not d.logic_fits:
        return "NO"
    return "yes" if d.weights_on_chip else f"no: DRAM {d.dram_gbps:,.2f} GB/s"


def fit_lines(est: NetworkEstimate) -> list[str]:
    """One line per design that does not fit the device: the resources over its counts and,
    where the weights do not fit the block RAMs, the DRAM bandwidth streaming them takes."""
    return [
        f"design {name} does NOT fit {est.device.name}: " + "; ".join(d.problems())
        for name, d in est.designs.items()
        if not d.fits
    ]


def print_estimate(est: NetworkEstimate, console: Console | None = None) -> None:
    """Print the layer table, the totals table and the fit lines (wide when not a terminal)."""
    console = console or Console()
    if not console.is_terminal:
        console.width = max(console.width, WIDE)
    console.print(layer_table(est))
    console.print(totals_table(est))
    for line in fit_lines(est):
        console.print(line, style="bold red", highlight=False)


def folded_table(fd: FoldedDesign) -> Table:
    """Per layer of a folded design: PE, SIMD, LUT lanes, resources and cycles."""
    table = Table(
        title=f"Folded {fd.design} on {fd.device.name} (one PE x SIMD array per layer)",
        title_justify="left",
    )
    for header in ("layer", "PE", "SIMD", "LUT lanes", "LUT", "FF", "DSP", "RAMB18", "cycles"):
        table.add_column(header, justify="left" if header == "layer" else "right")
    for x in fd.layers:
        numbers = (x.fold.pe, x.fold.simd, x.lut_lanes, x.luts, x.ffs, x.dsps, x.bram18, x.cycles)
        table.add_row(x.work.name, *(f"{n:,}" for n in numbers))
    return table


def folded_totals_table(folded: dict[str, FoldedDesign]) -> Table:
    """Per folded design: resources, II, latency, images/s and speed-up over fixed."""
    table = Table(title="Folded designs (dataflow: II = slowest layer)", title_justify="left")
    headers = ("design", "LUT", "FF", "DSP", "RAMB18", "II cycles", "latency cycles")
    for header in (*headers, "images/s", "vs fixed", "fits"):
        table.add_column(header, justify="left" if header == "design" else "right")
    base = folded.get("fixed")
    for name, fd in folded.items():
        table.add_row(
            name,
            *(_used(fd, key) for key in ("luts", "ffs", "dsps", "bram18")),
            f"{fd.ii_cycles:,}",
            f"{fd.latency_cycles:,}",
            f"{fd.images_per_s:,.1f}",
            f"{base.ii_cycles / fd.ii_cycles:.2f}x" if base else "-",
            fit_cell(fd),
        )
    return table


def print_folded(folded: dict[str, FoldedDesign], console: Console | None = None) -> None:
    """Print each folded design's layer table, the totals and the fit lines."""
    console = console or Console()
    if not console.is_terminal:
        console.width = max(console.width, WIDE)
    for fd in folded.values():
        console.print(folded_table(fd))
    console.print(folded_totals_table(folded))
    for name, fd in folded.items():
        if not fd.fits:
            line = f"folded design {name} does NOT fit {fd.device.name}: " + "; ".join(
                fd.problems()
            )
            console.print(line, style="bold red", highlight=False)
