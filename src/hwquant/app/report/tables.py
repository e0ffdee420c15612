"""The report's tables as plain strings, shared by the terminal, Markdown and HTML renderers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

NONE = "—"
BITS_PER_KIB = 8 * 1024


@dataclass(frozen=True)
class Table:
    """A titled table of formatted cells."""

    title: str
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    note: str = ""


def percent(fraction: float) -> str:
    """``0.9712`` as ``97.12%``."""
    return f"{fraction:.2%}"


def optional_percent(fraction: float | None) -> str:
    """:func:`percent`, or a dash when the figure was not measured."""
    return NONE if fraction is None else percent(fraction)


def kib(bits: int) -> str:
    """A size in bits as KiB."""
    return f"{bits / BITS_PER_KIB:.1f} KiB"


def variant_label(variant: dict[str, Any]) -> str:
    """``W4A4`` for a variant with 4-bit weights and activations."""
    return f"W{variant['weight_bits']}A{variant['act_bits']}"


def summary(results: dict[str, Any]) -> str:
    """One sentence saying what ran on what, and how long it took."""
    data = results["dataset"]
    size = f"{data['image_size']}x{data['image_size']}"
    return (
        f"{results['model']} on {data['name']} ({size}, {data['train_examples']} train / "
        f"{data['test_examples']} test images), seed {results['seed']}, "
        f"{results['timings']['total']:.1f} s in all."
    )


def accuracy_table(results: dict[str, Any]) -> Table:
    """Test accuracy and size of the FP32 model and of every quantized variant."""
    fp32 = results["fp32"]
    rows = [
        (
            "FP32",
            NONE,
            optional_percent(fp32["accuracy"]),
            NONE,
            NONE,
            NONE,
            kib(fp32["size_bits"]),
            "1.0x",
        )
    ]
    for v in results["variants"]:
        acc = v["accuracy"]
        rows.append(
            (
                variant_label(v),
                f"{v['recipe']['first_layer_bits']}/{v['recipe']['last_layer_bits']}",
                NONE,
                percent(acc["fake_quant"]),
                percent(acc["integer"]),
                percent(acc["integer_acc16"]),
                kib(v["size_bits"]),
                f"{fp32['size_bits'] / v['size_bits']:.1f}x",
            )
        )
    bits = results["acc16_bits"]
    return Table(
        "Test accuracy and model size",
        (
            "Model",
            "First/last",
            "Float",
            "Fake-quant",
            "Integer",
            f"Integer {bits}-bit acc.",
            "Size",
            "Compression",
        ),
        tuple(rows),
        "Float: the FP32 model. Fake-quant: the QAT model in eval mode. Integer: argmax of the "
        "IntModel's dequantized output on the quantized test images (integer engine). "
        f"{bits}-bit acc.: the same with every accumulator cut to {bits} bits (two's-complement "
        "wrap). Size: FP32 parameters at 32 bits; IntModel weights at their widths plus biases "
        "at accumulator width.",
    )


def verify_table(results: dict[str, Any]) -> Table:
    """Bit-exactness of every IntModel against its QAT model on the test set."""
    rows = tuple(
        (
            variant_label(v),
            "yes" if v["verify"]["exact"] else "NO",
            f"{v['verify']['compared']:,}",
            f"{v['verify']['mismatches']:,}",
            "yes" if v["integer_matches_qat"] else "NO",
            v["model_file"],
        )
        for v in results["variants"]
    )
    return Table(
        "Bit-exactness (hwquant.verify on the whole test set)",
        (
            "Model",
            "Bit-exact",
            "Integers compared",
            "Mismatches",
            "Integer acc. = QAT acc.",
            "File",
        ),
        rows,
    )


def layer_table(variant: dict[str, Any], acc16_bits: int) -> Table:
    """Per weight layer: bit widths, accumulator width needed, narrow-accumulator overflows."""
    rows = tuple(
        (
            layer["name"],
            layer["op"],
            layer.get("scheme", "linear"),
            str(layer["weight_bits"]),
            str(layer["in_bits"]),
            str(layer["worst_case_bits"]),
            str(layer["bits_used"]),
            f"{layer['overflows_acc16']:,} of {layer['accumulations']:,}",
        )
        for layer in variant["layers"]
    )
    return Table(
        f"{variant_label(variant)} layers: accumulator width",
        (
            "Layer",
            "Op",
            "Scheme",
            "Weight bits",
            "Input bits",
            "Worst-case acc. bits",
            "Observed acc. bits",
            f"Overflows at {acc16_bits} bits",
        ),
        rows,
        "Worst case: the width no input in range can overflow. Observed: the width the test set "
        "needed. Overflows: accumulator values outside the narrow width, over the test set.",
    )


def tables_label(tables: dict[str, Any]) -> str:
    """``Tables 8x5`` for table units with 8 activation and 5 weight codebook entries."""
    options = tables["recipe"]["tables"]
    return f"Tables {options['act_entries']}x{options['weight_entries']}"


def table_units_table(results: dict[str, Any]) -> Table:
    """Float, fake-quant and table-engine accuracy, and engine == fake-quant on the test set."""
    tables = results["tables"]
    compared = tables["compare"]
    row = (
        tables_label(tables),
        optional_percent(results["fp32"]["accuracy"]),
        percent(compared["fake_quant_acc"]),
        percent(compared["engine_acc"]),
        f"{compared['test_images']:,}",
        f"{compared['images_with_unequal_outputs']:,}",
        "yes" if compared["exact"] else "NO",
        tables["model_file"],
    )
    return Table(
        "Table units: test accuracy and exactness (hwquant.schemes.tables)",
        (
            "Model",
            "Float",
            "Fake-quant",
            "Table engine",
            "Images",
            "Unequal outputs",
            "Exact",
            "File",
        ),
        (row,),
        "Float: the FP32 model. Fake-quant: the QAT model in eval mode. Table engine: the "
        "TableModel on the table engine (lookups, adds and compares only). Unequal outputs: "
        "test images whose output integers differ between the two.",
    )


def audit_table(tables: dict[str, Any]) -> Table:
    """Ops and violations of one batch through the table engine under the multiply-free audit."""
    audit = tables["audit"]
    violations = audit["violations"]
    row = (
        tables["engine"],
        f"{audit['images']:,}",
        f"{audit['ops']:,}",
        str(len(audit["op_counts"])),
        f"{len(violations):,}" + (f" (first: {violations[0]})" if violations else ""),
    )
    return Table(
        "Multiply-free audit (hwquant.schemes.tables.audit, one test batch)",
        ("Kernel", "Images", "Ops", "Distinct ops", "Violations"),
        (row,),
        "Every op the table engine dispatched, its table compilation included; a violation is "
        "a multiply/divide-class op, a floating-point tensor or an op outside the allow-list.",
    )


def compactness_tables(tables: dict[str, Any]) -> list[Table]:
    """Per table layer and for the network: entries, distinct entries, bits (Covell et al.)."""
    measures = tables["compactness"]
    widths = tables["compare"]["accumulators"]["layers"]
    keys = ("act_entries", "weight_entries", "entries", "distinct", "distinct_magnitudes",
            "entry_bits", "bits", "bits_sign_symmetric")  # fmt: skip
    layers = tuple(
        (
            row["layer"],
            row["kind"],
            *(f"{row[key]:,}" for key in keys),
            str(widths[row["layer"]]["worst_case_bits"]) if row["layer"] in widths else NONE,
        )
        for row in measures["layers"]
    )
    network = tuple((key, f"{value:,}") for key, value in measures.items() if key != "layers")
    return [
        Table(
            "Table compactness per layer",
            (
                "Layer",
                "Kind",
                "|A|",
                "|W|",
                "Entries |A|·|W|",
                "Distinct",
                "Distinct |T|",
                "Entry bits",
                "Bits",
                "Bits sign-symmetric",
                "Worst-case acc. bits",
            ),
            layers,
            "Product units store |A|·|W| integer entries T[i, j] = round(a_i·w_j / s_T); with "
            "sign symmetry only the distinct magnitudes |T| and a sign bit. Add tables store "
            "output indices. The same figures as `hwquant tables`.",
        ),
        Table(
            "Table compactness of the network",
            ("Measure", "Value"),
            network,
            "max_inner_entries leaves out the first unit, which reads the input pixel levels.",
        ),
    ]


def timing_table(results: dict[str, Any]) -> Table:
    """Wall time of each step of the run."""
    rows = tuple((step, f"{seconds:.1f}") for step, seconds in results["timings"].items())
    return Table("Wall time", ("Step", "Seconds"), rows)


def environment_table(results: dict[str, Any]) -> Table:
    """Versions and platform of the run."""
    rows = tuple((name, str(value)) for name, value in results["environment"].items())
    return Table("Environment", ("Component", "Version"), rows)


def resource_tables(resources: dict[str, Any]) -> list[Table]:
    """FPGA estimate per design and per layer (:mod:`hwquant.hw`), or a table holding its note."""
    if "note" in resources:
        return [Table("FPGA resource estimate", ("Note",), ((resources["note"],),))]
    keys = ("luts", "ffs", "dsps", "bram36")
    available = resources["available"]
    designs = tuple(
        (name, *(f"{d[k]:,} ({d[k] / available[k]:.0%})" for k in keys), f"{d['cycles']:,}")
        for name, d in resources["designs"].items()
    )
    names = tuple(resources["designs"])
    layers = tuple(
        (la["name"], f"{la['macs']:,}", *(f"{la['cycles'][n]:,}" for n in names))
        for la in resources["layers"]
    )
    return [
        Table(
            f"FPGA resource estimate on {resources['device']} (analytic, hwquant.hw)",
            ("Design", "LUT", "FF", "DSP", "BRAM36", "Cycles"),
            designs,
            "Used (share of the device); cycles per image. See docs/hw.md for the model.",
        ),
        Table("Resources per layer", ("Layer", "MACs", *(f"{n} cycles" for n in names)), layers),
    ]


def integer_tables(results: dict[str, Any]) -> list[Table]:
    """Accuracy, bit-exactness and per-layer tables of the IntModel variants (none without)."""
    if not results["variants"]:
        return []
    layers = [layer_table(v, results["acc16_bits"]) for v in results["variants"]]
    return [accuracy_table(results), verify_table(results), *layers]


def table_unit_tables(results: dict[str, Any]) -> list[Table]:
    """The tables of the results' ``"tables"`` section (a table-unit run; none without)."""
    if "tables" not in results:
        return []
    tables = results["tables"]
    return [table_units_table(results), audit_table(tables), *compactness_tables(tables)]


def report_tables(results: dict[str, Any]) -> list[Table]:
    """Every table of the report, in order."""
    resources = resource_tables(results["resources"]) if "resources" in results else []
    return [
        *integer_tables(results),
        *table_unit_tables(results),
        *resources,
        timing_table(results),
        environment_table(results),
    ]
