"""How close the fitted unit costs are to Yosys (issue 6): per unit kind and resource, the worst
relative error of the fitted formula over the sweep's synthesized points, from the shipped sweep
``src/hwquant/hw/data/synth_costs.json`` (regenerate it with ``make synth-costs``). With
``--resynthesize N`` it also re-synthesizes the first N points of every kind and checks that
Yosys gives the cached counts. Run from the repository root:
``python -m benchmarks.synth_costs_fit``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks.common import command_line, write_result
from hwquant.hw.synthesized import RESOURCES, SynthesizedCosts, packaged_path
from hwquant.rtl.sweep import SLACK_CELLS, SWEEP, TOLERANCE, build


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sweep", type=Path, default=packaged_path())
    parser.add_argument("--resynthesize", type=int, default=0, metavar="N")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    doc = json.loads(args.sweep.read_text())
    costs = SynthesizedCosts.from_doc(doc, args.sweep.name)
    per_kind: dict[str, dict] = {}
    for point in doc["points"]:
        est = costs.cost(point["kind"], **point["params"])
        row = per_kind.setdefault(point["kind"], {"points": 0} | {r: [] for r in RESOURCES})
        row["points"] += 1
        for res in RESOURCES:
            yosys = point["resources"][res]
            row[res].append((abs(est[res] - yosys) / max(yosys, 1), est[res], yosys))
    kinds = {}
    for kind, row in per_kind.items():
        kinds[kind] = {"points": row["points"]}
        for res in RESOURCES:
            worst = max(row[res])
            within = all(abs(e - y) <= max(TOLERANCE * y, SLACK_CELLS) for _, e, y in row[res])
            kinds[kind][res] = {
                "max_rel_err": worst[0],
                "at_estimate": worst[1],
                "at_yosys": worst[2],
                "within_target": within,
            }
        print(
            f"{kind:18s} {row['points']:3d} points  "
            + "  ".join(f"{r} {kinds[kind][r]['max_rel_err']:6.1%}" for r in RESOURCES)
        )
    resynth = []
    if args.resynthesize:
        from hwquant.rtl.synth import synthesize

        for kind in SWEEP:
            for point in [p for p in doc["points"] if p["kind"] == kind.kind][: args.resynthesize]:
                unit, _ = build(kind, point["params"], point["seed"])
                same = synthesize(unit).to_dict() == point["resources"]
                resynth.append({"top": point["top"], "equals_cache": same})
    lut_ff_dsp = ("luts", "ffs", "dsps")
    summary = {
        "units_swept": len(doc["points"]),
        "unit_kinds": len(kinds),
        "max_rel_err_luts_ffs_dsps": max(
            kinds[k][r]["max_rel_err"] for k in kinds for r in lut_ff_dsp
        ),
        "max_rel_err_carry4": max(kinds[k]["carry4"]["max_rel_err"] for k in kinds),
        "luts_ffs_dsps_within_target": all(
            kinds[k][r]["within_target"] for k in kinds for r in lut_ff_dsp
        ),
        "carry4_within_target": all(kinds[k]["carry4"]["within_target"] for k in kinds),
        "resynthesized_equal_cache": all(r["equals_cache"] for r in resynth) if resynth else None,
    }
    print(json.dumps(summary))
    write_result(
        "synth_costs_fit",
        command=command_line(),
        seed=0,
        config={
            "sweep_file": str(args.sweep),
            "yosys_version": doc["yosys_version"],
            "family": doc["family"],
            "yosys_script": doc["yosys_script"],
            "sweep_date_utc": doc["date_utc"],
            "sweep_git_commit": doc["git_commit"],
            "tolerance": {"relative": TOLERANCE, "slack_cells": SLACK_CELLS},
        },
        results={"summary": summary, "per_kind": kinds, "resynthesized": resynth},
        path=args.out,
    )


if __name__ == "__main__":
    main()
