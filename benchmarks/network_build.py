"""Whole-network accelerators built, simulated and implemented with open tools (issue 16).

For every design of :data:`DESIGNS`: train the model briefly on its data set (QAT with the
design's scheme), lower it (an IntModel, or a TableModel for the tables scheme), build the
streaming accelerator (``hwquant.rtl.network``; table models with
:func:`hwquant.schemes.tables.network.build_table_design`), then simulate it on the first
``--images`` test images, counting the outputs that differ from the engine, *while* it is
synthesized and placed and routed (:func:`hwquant.rtl.implement.implement`; the simulation
runs in a second thread, so the flow takes the build plus the longer of the two).
Throughput is ``Fmax / II`` (images per second at the achieved clock, one image every II
cycles). ``flow_seconds`` is the wall time from the lowered model to the simulated and placed
design (build, simulation beside synthesis + place and route), ``train_seconds`` the QAT
before it. The estimate columns are the whole-design estimate
(:mod:`hwquant.rtl.network.estimate`: every block and edge costed by its structure) beside the
synthesized counts, with the error of each; ``hw_model_estimate`` is ``hwquant hw``'s folded
model (:mod:`hwquant.hw.folding`: MAC arrays and weight memories only) at the same folding.
``comparisons`` puts MSQ beside fixed-only and SP2-only on one budget (:func:`comparisons`).
``--reestimate`` recomputes the estimates of the stored entries from their models and foldings
(no synthesis), after a change to the estimate, and adds the critical path of an entry's
stored nextpnr report where the entry has none. Every entry records ``rtl_sha256``, the
fingerprint of the design it measured (:func:`hwquant.rtl.network.design.design_sha256`:
Verilog, ROM images and model); ``--check-rtl`` builds each stored entry's design again with
the current generator (no simulation or synthesis) and lists the entries whose fingerprint
differs, the ones to place again after a change to the generator.

Place and route is slow, so the benchmark resumes: an entry already in
``benchmarks/results/network_build.json`` is kept, and the file is rewritten atomically after
every entry. ``python -m benchmarks.network_build [--only NAME ...] [--images N]``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import fcntl
import json
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from benchmarks.common import REPO_ROOT, RESULTS_DIR, ResultRecorder, command_line
from hwquant.core.errors import HwquantError
from hwquant.core.provenance import git_state

NAME = "network_build"
SEED = 0
WORK = REPO_ROOT / "runs" / "network_build"
PNR_S = 4 * 3600
"""Time limit of one simulation build, synthesis or place and route: on the shared, loaded
2-core machine an ECP5 P&R of a 6k-LUT design took over 30 minutes and a Verilator build of
the MSQ design over 10."""
DIGITS_II = 40000
"""The digits designs' throughput target: 40,000 cycles per image (2,500 images/s at 100 MHz),
which the cheapest folding meets with 32 products in the widest layer (LLSQ: PE 1 x SIMD 32)."""

ESTIMATED = ("ecp5", "ice40")
"""The families the whole-design estimate costs (:mod:`hwquant.rtl.network.estimate`)."""


@dataclass(frozen=True)
class Spec:
    """One design: a name, data set, QAT scheme (and options), implementation target, the
    folding's throughput target (``target_ii`` cycles per image; None: the fastest folding that
    fits the budget), the model's width multiplier and the top module implemented (``logits``
    or ``argmax``: :data:`hwquant.rtl.network.top.TOPS`). ``budget`` overrides fields of the
    target's :class:`~hwquant.hw.devices.Device` profile for the folding (a share of the part:
    the MSQ / fixed-only / SP2-only comparison gives all three the same DSPs and LUTs);
    ``folding`` gives layers' PE x SIMD ({name: (pe, simd)}), the table designs' folding."""

    name: str
    dataset: str
    scheme: str
    target: str
    recipe: dict[str, Any] = field(default_factory=dict)
    steps: int = 300
    target_ii: int | None = DIGITS_II
    width: float = 1.0
    top: str = "logits"
    budget: dict[str, int] = field(default_factory=dict)
    folding: dict[str, tuple[int, int]] = field(default_factory=dict)


BUDGET = {"dsps": 36, "luts": 4096}
"""The comparison's share of the LFE5U-85F: 36 MULT18X18D (what the LLSQ design at
:data:`DIGITS_II` uses) and 4,096 LUT4s for shift-add products (64 SP2 products at the
folding's planning figure :data:`hwquant.rtl.network.folding.LUTS_PER_SHIFT_ADD`)."""
POW2 = {"scale_constraint": "pow2"}
"""The non-uniform scheme's single-scale integers need power-of-two scales."""
DIGITS_TABLE_FOLDING = {"features.0.0": (1, 1), "features.1.0": (2, 16), "classifier": (1, 1)}
"""The digits table design's folding: the LLSQ design's at :data:`DIGITS_II` (36,880 cycles;
table models have no interval-driven folding yet, and the automatic one fills half the LUTs)."""
MNIST_TABLE_FOLDING = {
    "features.0.0": (1, 1),
    "features.1.0": (16, 2),
    "features.3.0": (8, 2),
    "classifier": (1, 1),
}
"""The MNIST-5k table design's folding: 225,792 cycles in each convolution, half the rate of the
LLSQ design that fills the DSPs, since every table product is a ROM of its own (one DP16KD for
a 16 x 16 table, eight for the first layer's 256 x 16) and the EBR run out first."""


DESIGNS: tuple[Spec, ...] = (
    Spec("digits-llsq-ecp5", "digits", "llsq", "lfe5u-85f"),
    Spec("digits-msq-ecp5", "digits", "msq", "lfe5u-85f"),
    Spec("digits-nonuniform-ecp5", "digits", "nonuniform", "lfe5u-85f", POW2),
    Spec("digits-tables-ecp5", "digits", "tables", "lfe5u-85f", folding=DIGITS_TABLE_FOLDING),
    Spec(
        "digits-llsq-ice40",
        "digits",
        "llsq",
        "ice40up5k",
        width=0.25,
        target_ii=DIGITS_II,
        top="argmax",
    ),
    Spec(
        "digits-fixedonly-ecp5",
        "digits",
        "msq",
        "lfe5u-85f",
        {"msq": {"sp2_share": 0.0}},
        target_ii=None,
        budget=BUDGET,
    ),
    Spec(
        "digits-sp2only-ecp5",
        "digits",
        "msq",
        "lfe5u-85f",
        {"msq": {"sp2_share": 1.0}},
        target_ii=None,
        budget=BUDGET,
    ),
    Spec("digits-msq-budget-ecp5", "digits", "msq", "lfe5u-85f", target_ii=None, budget=BUDGET),
    Spec("digits-llsq-xc7", "digits", "llsq", "xc7z020"),
    Spec("mnist5k-llsq-ecp5", "mnist5k", "llsq", "lfe5u-85f", steps=200, target_ii=None),
    Spec("mnist5k-msq-ecp5", "mnist5k", "msq", "lfe5u-85f", steps=200, target_ii=None),
    Spec(
        "mnist5k-nonuniform-ecp5", "mnist5k", "nonuniform", "lfe5u-85f", POW2, 200, target_ii=None
    ),
    Spec(
        "mnist5k-tables-ecp5",
        "mnist5k",
        "tables",
        "lfe5u-85f",
        steps=200,
        target_ii=None,
        folding=MNIST_TABLE_FOLDING,
    ),
)
"""The designs: the digits model through the four schemes on ECP5-85F at one throughput
target, one on iCE40 UP5K (the small CNN at a quarter width, whose weights and feature maps
fit the UP5K's 120 Kbit of EBR; the argmax-only top, whose ports fit the SG48 package),
MSQ beside fixed-only (msq with every row fixed-point) and SP2-only (every inner row SP2) on
one :data:`BUDGET`, the digits LLSQ design synthesized for Xilinx 7-series (Yosys counts only:
no open place and route for it; no whole-design estimate, which costs the LUT4 families), and
the MNIST-5k demo model (W4A4) through the four schemes."""


def _recipe(spec: Spec):
    from hwquant.qat.recipe import MSQOptions, Recipe

    if spec.scheme == "tables":
        from benchmarks.network_sim import recipe

        return recipe("tables", spec.steps)
    options = dict(spec.recipe)
    if "msq" in options:
        options["msq"] = MSQOptions(**options["msq"])
    return Recipe(
        scheme=spec.scheme, weight_bits=4, act_bits=4, bn_freeze_step=spec.steps // 2, **options
    )


def _images(split, mean, std) -> torch.Tensor:
    x = torch.from_numpy(split.images).float().permute(0, 3, 1, 2) / 255.0
    return (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)


def train_and_lower(spec: Spec):
    """A small CNN trained ``spec.steps`` QAT steps (Adam, batch 64) and lowered; its test codes
    and test accuracy of the integer engine."""
    import hwquant
    from hwquant.data import load_dataset
    from hwquant.models import build

    data = load_dataset(spec.dataset, progress=False)
    x_train, y_train = _images(data.train, data.mean, data.std), torch.from_numpy(data.train.labels)
    torch.manual_seed(SEED)
    model = build(
        "small_cnn", in_channels=x_train.shape[1], input_size=x_train.shape[2], width=spec.width
    )
    qat = hwquant.prepare(model, _recipe(spec)).train()
    opt = torch.optim.Adam(qat.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(SEED)
    for _ in range(spec.steps):
        idx = torch.randint(0, len(x_train), (64,), generator=g)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(qat(x_train[idx]), y_train[idx]).backward()
        opt.step()
    qat.eval()
    return engine_codes(spec, hwquant.lower(qat, x_train[:64]))


def engine_codes(spec: Spec, lowered):
    """The model with its test-image codes and the engine's test accuracy (the integer
    engine; the table engine for a TableModel, wrapped as
    :class:`~hwquant.schemes.tables.network.TableCodeModel`, the simulator's model)."""
    from hwquant.data import load_dataset
    from hwquant.engine import run
    from hwquant.schemes.tables import TableModel
    from hwquant.schemes.tables.network import TableCodeModel

    data = load_dataset(spec.dataset, progress=False)
    model = TableCodeModel(lowered) if isinstance(lowered, TableModel) else lowered
    codes = model.quantize_input(_images(data.test, data.mean, data.std))
    logits = model.run(codes) if isinstance(lowered, TableModel) else run(model, codes).output
    accuracy = float((logits.argmax(1) == torch.from_numpy(data.test.labels)).float().mean())
    return model, codes, accuracy


def _build(spec: Spec, model, out, input_size: int, folding=None):
    """The design of ``model`` (an IntModel, or a TableModel / its TableCodeModel) for the
    spec's target and budget, built into ``out``."""
    import dataclasses

    from hwquant.hw.devices import get_device
    from hwquant.hw.folding import Fold
    from hwquant.rtl.network import build_design
    from hwquant.schemes.tables.network import TableCodeModel, build_table_design

    device = dataclasses.replace(get_device(spec.target), **spec.budget)
    given = folding or {k: Fold(*v) for k, v in spec.folding.items()}
    if spec.scheme == "tables":
        tables = model.model if isinstance(model, TableCodeModel) else model
        return build_table_design(
            tables, device, out, folding=given, input_size=input_size, overwrite=True
        )
    return build_design(
        model,
        device,
        out,
        folding=given or None,
        input_size=input_size,
        target_ii=None if folding else spec.target_ii,
        overwrite=True,
    )


def _hw_model(record: dict, model, device: str) -> dict[str, Any]:
    """``hwquant hw``'s folded cost model (:mod:`hwquant.hw.folding`: MAC arrays and weight
    memories only, 7-series unit costs) at the design's folding; the error where it cannot
    cost the model."""
    from hwquant.hw.folding import Fold, fold_network
    from hwquant.hw.network import layer_work

    if record["scheme"] == "tables":
        return {"error": "hwquant hw has no folded model of table units"}
    folding = {b["name"]: Fold(int(b["pe"]), int(b["simd"])) for b in record["blocks"] if "pe" in b}
    try:
        works = layer_work(model, tuple(record["input"]["shape"]))
        fd = fold_network(
            works,
            device,
            "msq" if record["scheme"] == "msq" else "fixed",
            folding={k: v for k, v in folding.items() if k in {w.name for w in works}},
        )
    except HwquantError as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {
        "luts": fd.usage["luts"][0],
        "dsps": fd.usage["dsps"][0],
        "brams": fd.usage["bram18"][0],
        "ii_cycles": fd.ii_cycles,
        "images_per_s": fd.images_per_s,
        "clock_mhz": fd.clock_mhz,
    }


def _estimate(record: dict, family: str, synthesized: dict[str, int]) -> dict[str, Any]:
    """The whole-design estimate (:mod:`hwquant.rtl.network.estimate`) beside the synthesized
    counts: totals, per-part costs and the relative error of each total."""
    from hwquant.rtl.network.estimate import estimate_design

    est = estimate_design(record, family).to_dict()
    errors = {
        key: round(100 * (est[key] - synthesized[key]) / synthesized[key], 1)
        if synthesized[key]
        else None
        for key in ("luts", "ffs", "dsps", "brams")
    }
    return {
        "estimate_luts": est["luts"],
        "estimate_ffs": est["ffs"],
        "estimate_dsps": est["dsps"],
        "estimate_brams": est["brams"],
        "estimate_error_pct": errors,
        "estimate_parts": est["parts"],
    }


def run_design(
    spec: Spec,
    images: int,
    place: bool = True,
    freq_mhz: float | None = None,
    seeds: tuple[int, ...] = (1,),
) -> dict[str, Any]:
    """Train, build, simulate and implement one design (without place and route when
    ``place`` is false: synthesis counts only, no Fmax); the benchmark entry. ``freq_mhz`` is
    nextpnr's timing constraint (None: the target's default), recorded as ``constraint_mhz``:
    a tighter constraint makes timing-driven placement work harder, it does not change the
    design or how Fmax is measured. With several placer ``seeds`` the design is placed once per
    seed and the entry keeps the seed with the highest Fmax; every trial's Fmax is recorded in
    ``seed_trials`` and ``flow_seconds`` counts the first seed's flow only."""
    from hwquant.rtl.implement import get_target, implement
    from hwquant.rtl.network import simulate_design

    entry: dict[str, Any] = {
        "scheme": spec.scheme,
        "device": spec.target,
        "model": f"small_cnn width {spec.width:g} {spec.dataset} W4A4 ({spec.steps} QAT steps)",
        "recipe": spec.recipe,
        "target_ii": spec.target_ii,
        "budget": spec.budget or None,
        "top": spec.top,
        "git": git_state(REPO_ROOT),  # the generator this entry was built with
    }
    start = time.perf_counter()
    model, codes, accuracy = train_and_lower(spec)
    entry["engine_test_accuracy"] = accuracy
    entry["train_seconds"] = round(time.perf_counter() - start, 1)
    start = time.perf_counter()  # the flow: lowered model -> simulated and placed design
    out = WORK / spec.name
    design = _build(spec, model, out / "design", int(codes.shape[-1]))
    entry["build_seconds"] = round(time.perf_counter() - start, 1)
    entry["rtl_sha256"] = design.record["rtl_sha256"]
    entry["model_sha256"] = design.record["model_sha256"]
    rtl = out / "design" / "rtl"
    files = [rtl / f for f in design.record["rtl_files"] if f.endswith(".v")]
    data = [p for p in rtl.iterdir() if not p.name.endswith(".v")]
    top = design.record["tops"][spec.top]

    def simulate():
        began = time.perf_counter()
        report = simulate_design(out / "design", codes[:images], model=model, timeout=PNR_S)
        return report, time.perf_counter() - began

    # the simulation (Verilator) runs beside synthesis and place and route (one thread each)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        simulation = pool.submit(simulate)
        trials = []
        with _lock("tools"):
            for seed in seeds:
                trials.append(
                    implement(
                        files,
                        top,
                        spec.target,
                        out / ("impl" if seed == seeds[0] else f"impl-seed{seed}"),
                        data_files=data,
                        place=place,
                        timeout_s=PNR_S,
                        freq_mhz=freq_mhz,
                        seed=seed,
                    )
                )
                if seed == seeds[0]:
                    first_flow = time.perf_counter() - start
        report, sim_seconds = simulation.result()
    impl = max(trials, key=lambda t: t.fmax_mhz or 0.0)
    entry["seed_trials"] = {str(t.seed): t.fmax_mhz for t in trials} if len(trials) > 1 else None
    entry.update(
        images=report.images,
        mismatches=len(report.mismatches),
        first_mismatch=str(report.mismatches[0]) if report.mismatches else None,
        cycles_per_image=design.record["ii_cycles"],
        latency_cycles=design.record["latency_cycles"],
        measured_latency_cycles=report.latency_cycles,
        measured_intervals=sorted(set(report.intervals)),
        simulator=report.simulator,
        simulate_seconds=round(sim_seconds, 1),
    )
    used = impl.placed or impl.synthesized
    fmax = impl.fmax_mhz
    entry.update(
        fmax_mhz=fmax,
        constraint_mhz=impl.constraint_mhz,
        critical_path=impl.critical_path,
        images_per_s=fmax * 1e6 / entry["cycles_per_image"] if fmax else None,
        luts=impl.synthesized.luts,
        ffs=impl.synthesized.ffs,
        dsps=impl.synthesized.dsps,
        brams=impl.synthesized.brams,
        placed=None
        if impl.placed is None
        else {"luts": used.luts, "ffs": used.ffs, "dsps": used.dsps, "brams": used.brams},
        tool_versions=impl.tool_versions,
        tool_commands=list(impl.commands),
        tool_seconds=impl.seconds,
        part=impl.part,
        acc_bits={b["name"]: b.get("acc_bits") for b in design.record["blocks"] if "acc_bits" in b},
        folding={b["name"]: [b["pe"], b["simd"]] for b in design.record["blocks"] if "pe" in b},
        products={b["name"]: b["products"] for b in design.record["blocks"] if "products" in b},
    )
    family = get_target(spec.target).family
    counts = {k: getattr(impl.synthesized, k) for k in ("luts", "ffs", "dsps", "brams")}
    if family in ESTIMATED:
        entry.update(_estimate(design.record, family, counts))
    entry["hw_model_estimate"] = _hw_model(design.record, model, spec.target)
    entry["flow_seconds"] = round(max(first_flow, entry["build_seconds"] + sim_seconds), 1)
    return entry


def collect_design(spec: Spec, images: int) -> dict[str, Any]:
    """The entry of a run whose tools outlived the benchmark (a place and route finished by
    hand with the command the flow records, or not finished: then ``placed`` and the Fmax are
    None): the design, its model and the implementation files are read from ``WORK/name``,
    and the design is simulated again on the test images."""
    from hwquant.rtl.implement import (
        NEXTPNR_ECP5,
        NEXTPNR_ICE40,
        YOSYS,
        critical_path,
        get_target,
        parse_report,
        parse_stat,
        tool_version,
    )
    from hwquant.rtl.network import simulate_design

    out = WORK / spec.name
    target = get_target(spec.target)
    model, codes, accuracy = engine_codes(spec, _load(spec, out / "design" / "model.npz"))
    record = json.loads((out / "design" / "design.json").read_text())
    report = simulate_design(out / "design", codes[:images], model=model, timeout=PNR_S)
    synthesized = parse_stat((out / "impl" / "stat.json").read_text(), target.family)
    report_file = out / "impl" / "report.json"
    text = report_file.read_text() if report_file.is_file() else None  # None: P&R unfinished
    used = parse_report(text).utilisation(target.family, synthesized) if text else None
    fmax = parse_report(text).fmax_mhz if text else None
    pnr = NEXTPNR_ECP5 if target.family == "ecp5" else NEXTPNR_ICE40
    entry: dict[str, Any] = {
        "scheme": spec.scheme,
        "device": spec.target,
        "model": f"small_cnn width {spec.width:g} {spec.dataset} W4A4 ({spec.steps} QAT steps)",
        "recipe": spec.recipe,
        "target_ii": spec.target_ii,
        "top": spec.top,
        "git": git_state(REPO_ROOT),
        "rtl_sha256": record.get("rtl_sha256"),
        "model_sha256": record.get("model_sha256"),
        "collected": "entry assembled from WORK/name by collect_design after the benchmark's "
        "own run stopped (tool time limit); "
        + ("place and route finished by hand" if text else "place and route not finished"),
        "engine_test_accuracy": accuracy,
        "images": report.images,
        "mismatches": len(report.mismatches),
        "first_mismatch": str(report.mismatches[0]) if report.mismatches else None,
        "cycles_per_image": record["ii_cycles"],
        "latency_cycles": record["latency_cycles"],
        "measured_latency_cycles": report.latency_cycles,
        "measured_intervals": sorted(set(report.intervals)),
        "simulator": report.simulator,
        "fmax_mhz": fmax,
        "critical_path": critical_path(text) if text else None,
        "images_per_s": fmax * 1e6 / record["ii_cycles"] if fmax else None,
        "luts": synthesized.luts,
        "ffs": synthesized.ffs,
        "dsps": synthesized.dsps,
        "brams": synthesized.brams,
        "placed": None
        if used is None
        else {"luts": used.luts, "ffs": used.ffs, "dsps": used.dsps, "brams": used.brams},
        "tool_versions": {"yosys": tool_version(YOSYS), "nextpnr": tool_version(pnr)},
        "part": target.part,
        "acc_bits": {b["name"]: b["acc_bits"] for b in record["blocks"] if "acc_bits" in b},
        "folding": {b["name"]: [b["pe"], b["simd"]] for b in record["blocks"] if "pe" in b},
    }
    entry.update(reestimate(spec.name, entry))
    return entry


def _load(spec: Spec, path):
    """A design's stored model: a TableModel for the tables scheme, else an IntModel."""
    from hwquant.ir.intmodel import load
    from hwquant.schemes.tables import load_tables

    return load_tables(path) if spec.scheme == "tables" else load(path)


def reestimate(name: str, entry: dict[str, Any]) -> dict[str, Any]:
    """The estimate fields of a stored entry from the design.json it synthesized; a
    design.json older than the fields the estimate reads is rebuilt from the entry's model and
    folding (the current generator, into ``WORK/name/estimate``); when that build's
    ``rtl_sha256`` differs from the entry's, the stored estimate is kept and a note says why."""
    from hwquant.hw.folding import Fold
    from hwquant.rtl.implement import critical_path, get_target

    spec = next(s for s in DESIGNS if s.name == name)
    work = WORK / name
    model = _load(spec, work / "design" / "model.npz")
    record = json.loads((work / "design" / "design.json").read_text())
    counts = {k: entry[k] for k in ("luts", "ffs", "dsps", "brams")}
    family = get_target(entry["device"]).family
    if family not in ESTIMATED:
        return {"hw_model_estimate": _hw_model(record, model, entry["device"])}
    try:
        fields = _estimate(record, family, counts)
    except KeyError:  # written before the estimate's fields existed
        folding = {k: Fold(*v) for k, v in entry["folding"].items()}
        size = int(record["input"]["shape"][-1])
        record = _build(spec, model, work / "estimate", size, folding).record
        if entry.get("rtl_sha256") not in (None, record["rtl_sha256"]):
            return {  # the estimate would describe another circuit than the one measured
                "estimate_note": "not re-estimated: the current generator builds another "
                "design for this model and folding (rtl_sha256 differs)"
            }
        fields = _estimate(record, family, counts)
        fields["estimate_from"] = "design rebuilt by the current generator (old design.json)"
        if entry.get("rtl_sha256"):
            fields["estimate_from"] += ", the same Verilog and ROM images (rtl_sha256 equal)"
    fields["hw_model_estimate"] = _hw_model(record, model, entry["device"])
    report = work / "impl" / "report.json"
    if report.is_file():
        fields["critical_path"] = critical_path(report.read_text())
    return fields


def check_rtl(name: str, entry: dict[str, Any]) -> str:
    """Whether stored entry ``name`` describes the current generator's design: the design is
    built again (no simulation, no synthesis) into ``WORK/name/check`` from the model in
    ``WORK/name/design`` (trained again when absent), and its ``rtl_sha256`` compared with the
    entry's. Returns ``"same"``, ``"differs"`` or why it cannot tell (no digest recorded, or a
    model other than the entry's: its ``model_sha256`` differs)."""
    if entry.get("rtl_sha256") is None:
        return "unknown: the entry records no rtl_sha256 (built before it was recorded)"
    spec = next(s for s in DESIGNS if s.name == name)
    work = WORK / name
    model_file = work / "design" / "model.npz"
    if model_file.is_file():
        model = _load(spec, model_file)
        size = int(json.loads((work / "design" / "design.json").read_text())["input"]["shape"][-1])
    else:
        model, codes, _ = train_and_lower(spec)
        size = int(codes.shape[-1])
    record = _build(spec, model, work / "check", size).record
    if record["rtl_sha256"] == entry["rtl_sha256"]:
        return "same"
    if entry.get("model_sha256") not in (None, record["model_sha256"]):
        return (
            f"unknown: the model here is not the entry's (model_sha256 differs); put the model "
            f"the entry measured at {model_file} and check again"
        )
    return "differs"


COLUMNS = {
    "scheme": "scheme",
    "images": "images",
    "mismatches": "mismatches",
    "cycles_per_image": "cycles/image",
    "fmax_mhz": "Fmax MHz",
    "images_per_s": "images/s",
    "luts": "LUT4",
    "ffs": "FF",
    "dsps": "MULT18",
    "brams": "EBR",
    "estimate_error_pct": "estimate error % LUT / FF / DSP / EBR",
    "flow_seconds": "flow s",
}
"""The table's columns: entry key -> heading."""
DOCS_MARKERS = ("<!-- network_build: begin -->", "<!-- network_build: end -->")
"""docs/accelerator.md's generated part lies between these lines (``--docs`` rewrites it)."""


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "–"
    if key == "estimate_error_pct":
        return " / ".join(
            "–" if value.get(k) is None else f"{value[k]:+.1f}"
            for k in ("luts", "ffs", "dsps", "brams")
        )
    if key == "fmax_mhz":
        return f"{value:.2f}"
    return f"{value:,.0f}" if isinstance(value, int | float) else str(value)


def markdown_table(designs: dict[str, Any]) -> str:
    """The result entries as a Markdown table (the docs quote it); failed entries say why."""
    lines = [
        "| design | " + " | ".join(COLUMNS.values()) + " |",
        "|---" * (len(COLUMNS) + 1) + "|",
    ]
    for name, entry in sorted(designs.items()):
        if "error" in entry:
            lines.append(f"| `{name}` | failed: {entry['error'][:160]} |")
            continue
        cells = [_cell(key, entry.get(key)) for key in COLUMNS]
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_docs(results: dict[str, Any], page) -> None:
    """Rewrite the part of ``page`` between :data:`DOCS_MARKERS` with the results table and
    the comparison (atomically)."""
    from hwquant.core.atomic import write_atomic

    text = page.read_text()
    begin, end = DOCS_MARKERS
    if begin not in text or end not in text:
        raise SystemExit(f"{page} has no '{begin}' ... '{end}' lines to rewrite.")
    head, rest = text.split(begin, 1)
    tail = rest.split(end, 1)[1]
    comparison = results.get("comparisons") or comparisons(results["designs"])
    body = f"\n{markdown_table(results['designs'])}\n\n{comparison_table(comparison)}\n"
    write_atomic(page, (head + begin + body + end + tail).encode())


COMPARED = {
    "msq": "digits-msq-budget-ecp5",
    "fixed-only": "digits-fixedonly-ecp5",
    "sp2-only": "digits-sp2only-ecp5",
}
"""The designs of the MSQ comparison (one :data:`BUDGET` of the LFE5U-85F each)."""


def comparisons(designs: dict[str, Any]) -> dict[str, Any]:
    """MSQ against fixed-only and SP2-only on one budget: each placed design's images/s
    (``Fmax / II``) and its speed-up over fixed-only, beside ``hwquant hw``'s prediction for
    the MSQ model (:func:`hwquant.hw.estimate.estimate` on the whole LFE5U-85F:
    ``speedup_over_fixed`` of its "msq" and "sp2" designs) and the folded model's speed-up at
    the placed foldings (``hw_model_estimate``). Designs not yet measured are None."""
    from hwquant.hw.estimate import estimate
    from hwquant.ir.intmodel import load

    rows: dict[str, Any] = {}
    for label, name in COMPARED.items():
        entry = designs.get(name, {})
        rows[label] = {
            "design": name,
            "images_per_s": entry.get("images_per_s"),
            "fmax_mhz": entry.get("fmax_mhz"),
            "cycles_per_image": entry.get("cycles_per_image"),
            "luts": entry.get("luts"),
            "dsps": entry.get("dsps"),
            "products": entry.get("products"),
            "hw_model_images_per_s": (entry.get("hw_model_estimate") or {}).get("images_per_s"),
        }
    base = rows["fixed-only"]
    pairs = {"speedup": "images_per_s", "hw_model_speedup": "hw_model_images_per_s"}
    for row in rows.values():
        for key, ref in pairs.items():
            row[key] = row[ref] / base[ref] if row[ref] and base[ref] else None
    predicted = None
    model_file = WORK / COMPARED["msq"] / "design" / "model.npz"
    if model_file.is_file():
        record = json.loads((model_file.parent / "design.json").read_text())
        est = estimate(load(model_file), "lfe5u-85f", tuple(record["input"]["shape"]))
        predicted = {"msq": est.speedup("msq"), "sp2-only": est.speedup("sp2")}
    return {"budget": BUDGET, "designs": rows, "hwquant_hw_speedup_over_fixed": predicted}


def comparison_table(result: dict[str, Any]) -> str:
    """:func:`comparisons` as a Markdown table (the docs quote it)."""
    lines = [
        "| design | Fmax MHz | cycles/image | images/s | speed-up over fixed-only | "
        "folded model's speed-up | LUT4 | MULT18 |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def cell(value, fmt):
        return "–" if value is None else format(value, fmt)

    for label, row in result["designs"].items():
        lines.append(
            f"| {label} (`{row['design']}`) | {cell(row['fmax_mhz'], '.2f')} | "
            f"{cell(row['cycles_per_image'], ',')} | {cell(row['images_per_s'], ',.0f')} | "
            f"{cell(row['speedup'], '.2f')} | {cell(row['hw_model_speedup'], '.2f')} | "
            f"{cell(row['luts'], ',')} | {cell(row['dsps'], ',')} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="design names to run (default: all)")
    parser.add_argument("--images", type=int, default=100, help="test images simulated (100)")
    parser.add_argument(
        "--seeds",
        default="1",
        help="nextpnr placer seeds, comma-separated (default 1); the entry keeps the fastest",
    )
    parser.add_argument(
        "--freq",
        type=float,
        default=None,
        help="nextpnr's clock constraint in MHz (default: the target's); recorded per entry",
    )
    parser.add_argument("--table", action="store_true", help="print the results as Markdown")
    parser.add_argument(
        "--docs", action="store_true", help="rewrite docs/accelerator.md's results table"
    )
    parser.add_argument(
        "--rerun", action="store_true", help="replace the --only entries even when complete"
    )
    parser.add_argument(
        "--router2",
        metavar="NAME",
        help="place and route a stored entry again with nextpnr's router2 (router_trial)",
    )
    parser.add_argument(
        "--reestimate", action="store_true", help="recompute the stored entries' estimates"
    )
    parser.add_argument(
        "--check-rtl",
        action="store_true",
        help="build the stored (--only) entries' designs again, no synthesis, and list those "
        "whose rtl_sha256 differs from the current generator's (exit 1 if any)",
    )
    parser.add_argument(
        "--collect",
        action="store_true",
        help="assemble the --only entries from their work directories (collect_design)",
    )
    parser.add_argument(
        "--no-place",
        action="store_true",
        help="synthesis only (entries record placed: null and no Fmax); a later run without "
        "it replaces them",
    )
    args = parser.parse_args(argv)
    _refuse_unused(parser, args)
    unknown = sorted(set(args.only or ()) - {s.name for s in DESIGNS})
    if unknown:
        parser.error(
            f"--only names no design: {', '.join(unknown)}. The designs: "
            + ", ".join(s.name for s in DESIGNS)
        )
    torch.set_num_threads(1)
    path = RESULTS_DIR / f"{NAME}.json"
    if args.docs:
        write_docs(json.loads(path.read_text())["results"], REPO_ROOT / "docs" / "accelerator.md")
        return 0
    if args.table:
        results = json.loads(path.read_text())["results"]
        print(markdown_table(results["designs"]))
        print()
        print(comparison_table(results.get("comparisons") or comparisons(results["designs"])))
        return 0
    done = _stored(path)
    if args.check_rtl:
        names = args.only or [n for n in done if n in {s.name for s in DESIGNS}]
        verdicts = {
            n: "unknown: no stored entry"
            if n not in done
            else "unknown: the stored entry is an error"
            if "error" in done[n]
            else check_rtl(n, done[n])
            for n in names
        }
        for name, verdict in verdicts.items():
            print(f"{name}: {verdict}")
        stale = [n for n, v in verdicts.items() if v != "same"]
        print("entries to re-place: " + (", ".join(stale) if stale else "none"))
        return 1 if stale else 0
    recorder = ResultRecorder(NAME, command_line(), SEED, path=path)
    if args.router2:
        trial = router_trial(args.router2, done[args.router2])
        with _lock("results"):
            results = json.loads(path.read_text())["results"]
            results.setdefault("router_trials", {})[args.router2] = trial
            recorder.save(json.loads(path.read_text())["config"], results)
        return 0
    if args.reestimate:
        names = {s.name for s in DESIGNS} & set(args.only or done)
        fresh = {n: reestimate(n, e) for n, e in done.items() if "error" not in e and n in names}
        with _lock("results"):  # other runs may have saved entries meanwhile: keep them
            done = _stored(path)
            for name, fields in fresh.items():
                done[name].pop("estimate_note", None)  # the new fields say where they come from
                done[name].update(fields)
            _save(recorder, json.loads(path.read_text())["config"], path, done)
        return 0
    config = {"designs": [s.__dict__ for s in DESIGNS], "images": args.images}
    for spec in DESIGNS:
        if args.only and spec.name not in args.only:
            continue
        if (
            not args.rerun
            and spec.name in done
            and "error" not in done[spec.name]
            and (args.no_place or done[spec.name].get("placed") is not None)
        ):
            print(f"{spec.name}: kept")
            continue
        print(f"{spec.name}: running", flush=True)
        try:
            if args.collect:
                done[spec.name] = collect_design(spec, args.images)
            else:
                done[spec.name] = run_design(
                    spec,
                    args.images,
                    place=not args.no_place,
                    freq_mhz=args.freq,
                    seeds=tuple(int(x) for x in args.seeds.split(",")),
                )
        except Exception as exc:  # one failed design is recorded, the others still run
            done[spec.name] = {
                "scheme": spec.scheme,
                "device": spec.target,
                "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc()[-2000:],
            }
        print(json.dumps({k: v for k, v in done[spec.name].items() if k != "traceback"})[:600])
        with _lock("results"):  # other runs may have saved entries meanwhile: keep them
            done = {**_stored(path), spec.name: done[spec.name]}
            _save(recorder, config, path, done)
    return 0


def router_trial(name: str, entry: dict[str, Any]) -> dict[str, Any]:
    """Place and route entry ``name``'s stored netlist again with nextpnr's ``router2`` (the
    entry's recorded command, same seed and timing-driven placement, another report and
    log): its wall seconds and Fmax beside the entry's own (``router1``, the default)."""
    import shlex
    import subprocess

    from hwquant.rtl.implement import critical_path, parse_report

    argv = shlex.split(entry["tool_commands"][1])
    argv = [
        {"report.json": "report_router2.json", "pnr.log": "pnr_router2.log"}.get(a, a) for a in argv
    ]
    argv += ["--router", "router2"]
    impl = WORK / name / "impl"
    began = time.perf_counter()
    subprocess.run(argv, cwd=impl, check=True, capture_output=True, timeout=PNR_S)
    seconds = time.perf_counter() - began
    text = (impl / "report_router2.json").read_text()
    return {
        "command": shlex.join(argv),
        "router2": {
            "pnr_seconds": round(seconds, 1),
            "fmax_mhz": parse_report(text).fmax_mhz,
            "critical_path": critical_path(text),
        },
        "router1": {"pnr_seconds": entry["tool_seconds"]["pnr"], "fmax_mhz": entry["fmax_mhz"]},
    }


_BUILD_FLAGS = {"seeds": "1", "freq": None, "no_place": False, "rerun": False}
"""Options that only a build (train, simulate, synthesize, place) uses, with their defaults."""
_MODES = ("docs", "table", "router2", "reestimate", "collect", "check_rtl")
"""Modes that build nothing; ``collect`` assembles entries from their work directories,
``check_rtl`` builds designs without simulating or implementing them."""


def _refuse_unused(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse a build option given with a mode that would ignore it (never drop an option)."""
    modes = [m for m in _MODES if getattr(args, m)]
    if len(modes) > 1:
        first, second = (m.replace("_", "-") for m in modes[:2])
        parser.error(f"--{first} and --{second} are separate modes: run them one at a time")
    if not modes:
        return
    unused = [f for f, default in _BUILD_FLAGS.items() if getattr(args, f) != default]
    if modes[0] == "collect" and "rerun" in unused:  # collect replaces stored entries too
        unused.remove("rerun")
    if modes[0] != "collect" and args.images != 100:
        unused.append("images")
    if unused:
        flag, mode = unused[0].replace("_", "-"), modes[0].replace("_", "-")
        parser.error(f"--{flag} has no effect with --{mode}: drop it, or run a build")


def _save(recorder, config: dict, path, designs: dict[str, Any]) -> None:
    """Save ``designs`` and their comparison, keeping the other sections of the stored
    results (``router_trials``)."""
    stored = json.loads(path.read_text())["results"] if path.is_file() else {}
    results = {**stored, "designs": designs, "comparisons": comparisons(designs)}
    recorder.save(config, results)


def _stored(path) -> dict[str, Any]:
    """The entries stored in the result file (none when it does not exist)."""
    if not path.is_file():
        return {}
    return json.loads(path.read_text())["results"].get("designs", {})


@contextlib.contextmanager
def _lock(name: str):
    """An exclusive lock shared by every run of this benchmark on the machine: ``tools`` lets
    one synthesis / place and route run at a time (the slow, memory-hungry steps), while other
    runs train and simulate; ``results`` serialises the updates of the result file."""
    WORK.mkdir(parents=True, exist_ok=True)
    with open(WORK / f".{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


if __name__ == "__main__":
    np.set_printoptions(linewidth=120)
    raise SystemExit(main())
