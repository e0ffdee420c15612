"""Estimated FPGA throughput of CIFAR ResNet-18 for fixed-only, SP2-only and MSQ (issues 3, 6).

For XC7Z020 and XC7Z045, W4A4 and W3A3 (first and last layers 8-bit), one and two MACs per DSP
slice: the solver's PE groups and SP2 share, the cycles and images/s of every design, and the
arithmetic of the MSQ-over-fixed speed-up, with the per-unit costs fitted to Yosys syntheses of
the emitted Verilog (``hwquant.hw`` defaults; docs/rtl.md). Alongside, the same estimate with
the analytic unit costs of issue 3 (the previous figure, for comparison), and the folded
dataflow design (one PE x SIMD array per layer, solved folding) of fixed-only and MSQ.
ResNet-18 is lowered untrained (MSQ, with the solver's share as its SP2 share): the estimate needs
only shapes and widths. Run from the repository root: ``python -m benchmarks.hw_throughput``.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import command_line, write_result
from hwquant.app.zoo import lower_zoo_model
from hwquant.hw import estimate_layers, layer_work, sp2_share_for
from hwquant.hw.estimate import NetworkEstimate
from hwquant.hw.folding import fold_network
from hwquant.hw.mac_cost import ANALYTIC_COSTS, DEFAULT_COSTS
from hwquant.hw.solver import DEFAULT_LUT_FRACTION

DEVICES = ("xc7z020", "xc7z045")
BITS = (4, 3)
PACKINGS = (1, 2)
INPUT_SHAPE = (3, 32, 32)
PAPER_SPEEDUPS = (2.1, 4.1)
"""Mix and Match's MSQ-over-DSP-only speed-ups, one per device, as read in verified.md §2 (about
2x and 4x; which device has which is not confirmed there)."""


def _arithmetic(est: NetworkEstimate) -> dict[str, Any]:
    """The numbers behind the MSQ speed-up: PE groups, share, rows and where the cycles go."""
    fixed, msq = est.baseline, est.designs["msq"]
    share = float(msq.arrays.share)

    def inner_cycles(design) -> int:
        return sum(lc.cycles for lc in design.layers if lc.work.role == "inner")

    return {
        "p_dsp": msq.arrays.p_dsp,
        "p_lut": msq.arrays.p_lut,
        "luts_per_dsp_mac": msq.arrays.dsp_cost.luts if msq.arrays.dsp_cost else 0,
        "dsp_mac_fabric_luts": msq.arrays.dsp_luts,
        "luts_per_sp2_pe": msq.arrays.lut_cost.luts,
        "ffs_per_sp2_pe": msq.arrays.lut_cost.ffs,
        "sp2_pe_acc_bits": msq.arrays.acc_bits,
        "sp2_share_r": share,
        "ideal_speedup_1_over_1_minus_r": 1 / (1 - share),
        "inner_rows_sp2": sum(lc.lut_rows for lc in msq.layers if lc.work.role == "inner"),
        "inner_rows_fixed": sum(lc.dsp_rows for lc in msq.layers if lc.work.role == "inner"),
        "inner_cycles_fixed": inner_cycles(fixed),
        "inner_cycles_msq": inner_cycles(msq),
        "first_last_cycles": fixed.cycles - inner_cycles(fixed),
        "fixed_design_idle_luts": fixed.device.luts - fixed.arrays.luts,
        "speedup_msq_over_fixed": est.speedup("msq"),
        "speedup_fixed_lut_over_fixed": est.speedup("fixed_lut"),
        "msq_over_fixed_lut": est.designs["fixed_lut"].cycles / msq.cycles,
    }


def _design_totals(est: NetworkEstimate) -> dict[str, Any]:
    return {
        name: {
            "cycles": d.cycles,
            "latency_ms": d.latency_s * 1e3,
            "images_per_s": d.images_per_s,
            "speedup_over_fixed": est.speedup(name),
            "usage": {k: {"used": u, "available": h} for k, (u, h) in d.usage.items()},
            "fits": d.fits,
            "weights_on_chip": d.weights_on_chip,
            "sp2_or_lut_share": float(d.arrays.share),
            "lut_pes": d.arrays.lut_pes,
            "p_dsp_inner": d.arrays.p_dsp,
        }
        for name, d in est.designs.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows, headline = [], None
    for device, bits, packing in itertools.product(DEVICES, BITS, PACKINGS):
        share = sp2_share_for(device, bits, bits, packing=packing)
        model = lower_zoo_model("resnet18", bits, bits, sp2_share=share, seed=args.seed)
        layers = layer_work(model, INPUT_SHAPE)
        est = estimate_layers(layers, device, packing=packing)
        # the analytic figure: its own share r*, rows split by it (no encoding fixes them)
        free = [dataclasses.replace(w, sp2_rows=None) for w in layers]
        analytic = estimate_layers(free, device, packing=packing, costs=ANALYTIC_COSTS)
        row = {
            "device": device,
            "weight_bits": bits,
            "act_bits": bits,
            "dsp_packing": packing,
            "clock_mhz": est.baseline.clock_mhz,
            "arithmetic": _arithmetic(est),
            "designs": _design_totals(est),
            "analytic_for_comparison": {
                "arithmetic": _arithmetic(analytic),
                "designs": _design_totals(analytic),
            },
        }
        if packing == 1:
            folded = {d: fold_network(layers, device, d) for d in ("fixed", "msq")}
            row["folded"] = {d: fd.to_dict() for d, fd in folded.items()}
            row["folded_speedup_msq_over_fixed"] = (
                folded["fixed"].ii_cycles / folded["msq"].ii_cycles
            )
        rows.append(row)
        if (device, bits, packing) == ("xc7z020", 4, 1):
            headline = est.to_dict()
        a, b = row["arithmetic"], row["analytic_for_comparison"]["arithmetic"]
        folded_text = (
            f", folded MSQ/fixed {row['folded_speedup_msq_over_fixed']:.2f}x"
            if packing == 1
            else ""
        )
        print(
            f"{device} W{bits}A{bits} packing {packing}: P_dsp {a['p_dsp']}, P_lut {a['p_lut']} "
            f"({a['luts_per_sp2_pe']} LUT/SP2 PE), r {a['sp2_share_r']:.3f}; MSQ/fixed "
            f"{a['speedup_msq_over_fixed']:.2f}x (ideal {a['ideal_speedup_1_over_1_minus_r']:.2f}x"
            f"; analytic {b['speedup_msq_over_fixed']:.2f}x), fixed+LUT/fixed "
            f"{a['speedup_fixed_lut_over_fixed']:.2f}x{folded_text}"
        )
    write_result(
        "hw_throughput",
        command=command_line(),
        seed=args.seed,
        config={
            "model": 'build("resnet18", num_classes=10, in_channels=3, input_size=32), untrained',
            "recipe": "MSQ inner layers at W/A bits, first and last layers 8-bit",
            "devices": list(DEVICES),
            "bits": list(BITS),
            "dsp_packings": list(PACKINGS),
            "lut_fraction": DEFAULT_LUT_FRACTION,
            "cost_model": DEFAULT_COSTS.source,
            "comparison_cost_model": ANALYTIC_COSTS.source,
            "folded": "one PE x SIMD array per layer, solved folding (hwquant.hw.folding)",
            "paper_speedups_for_comparison": list(PAPER_SPEEDUPS),
        },
        results={"rows": rows, "headline_xc7z020_w4a4_packing1": headline},
        path=args.out,
    )


if __name__ == "__main__":
    main()
