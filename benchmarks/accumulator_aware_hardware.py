"""What a narrower accumulator saves: LUT / FF / CARRY4 of one MAC at P bits against 32 bits.

For the MACs of the accumulator-aware curve (``accumulator_aware_fashion_mnist.py``): W4A4
(4-bit unsigned activation times 4-bit signed weight) and W8A8 (8-bit by 8-bit), and the first
layer's signed 8-bit input, the ``fixed_mac`` unit (multiplier in LUTs, ``style="lut"``, so that
the accumulator's width shows in the fabric; ``hwquant.rtl.unit``) is emitted at every P of the
curve and synthesized with Yosys ``synth_xilinx`` (xc7, ``-nodsp``). Each row gives the counts
and their ratio to the 32-bit accumulator's.

The unit's accumulator must hold one product of the full operand ranges (16 bits for 8x8), so
the W8A8 MAC is not emitted below 16 bits: an accelerator would exploit accumulator-aware
weights there with a narrower multiplier output (the weights' budget bounds every product), which
this unit does not model; those rows name the reason.

The whole-design figure (every MAC of a network accelerator at P bits) needs the accelerator
being built on another branch; ``whole_design`` in the JSON is left ``null`` with that note.

Run from the repository root: ``python -m benchmarks.accumulator_aware_hardware``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import command_line, write_result
from hwquant.core.errors import ConfigError
from hwquant.rtl import fixed_mac
from hwquant.rtl.synth import synthesize, yosys_version

NAME = "accumulator_aware_hardware"
ACC_BITS = (32, 20, 16, 14, 12, 10)
MACS = {  # name: (act_bits, weight_bits, act_signed)
    "W4A4": (4, 4, False),
    "W8A8": (8, 8, False),
    "first_layer_8bit_signed_input_W8": (8, 8, True),
}
RESOURCES = ("luts", "ffs", "carry4", "dsps")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", type=Path, default=None, help="reuse syntheses from this directory")
    p.add_argument("--out", type=Path, default=None, help="result JSON")
    args = p.parse_args(argv)
    macs: dict[str, Any] = {}
    for name, (act_bits, weight_bits, signed) in MACS.items():
        rows = {}
        for bits in ACC_BITS:
            try:
                unit = fixed_mac(act_bits, weight_bits, bits, act_signed=signed, style="lut")
            except ConfigError as exc:  # narrower than one full-range product
                rows[bits] = {"not_emitted": str(exc)}
                continue
            res = synthesize(unit, "xc7", cache_dir=args.cache)
            rows[bits] = {"top": unit.top} | {r: getattr(res, r) for r in RESOURCES}
            print(f"[{name} P={bits}] {rows[bits]}", file=sys.stderr)
        base = rows[32]
        for row in rows.values():
            if "top" in row:
                row["vs_32_bits"] = {r: round(row[r] / base[r], 3) for r in RESOURCES if base[r]}
        macs[name] = {
            "act_bits": act_bits,
            "weight_bits": weight_bits,
            "act_signed": signed,
            "by_acc_bits": rows,
        }
    results = {
        "macs": macs,
        "whole_design": None,
        "whole_design_note": "The per-network figure (every MAC of the accelerator at its "
        "layer's P) comes from the network accelerator being built on another branch: "
        "instantiate its MAC array with acc_bits = the IntModel's WeightNode.acc_bits (set by "
        "lower for accumulator-aware layers) and synthesize it there.",
    }
    config = {
        "unit": "hwquant.rtl.fixed_mac(style='lut'): registered multiply-accumulate",
        "tool": yosys_version(),
        "flow": "synth_xilinx -family xc7 -nodsp",
        "acc_bits": list(ACC_BITS),
    }
    command = command_line([sys.argv[0], *(sys.argv[1:] if argv is None else argv)])
    write_result(NAME, command=command, seed=0, config=config, results=results, path=args.out)
    return results


if __name__ == "__main__":
    main()
