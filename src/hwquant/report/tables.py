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


def report_tables(results: dict[str, Any]) -> list[Table]:
    """Every table of the report, in order."""
    layers = [layer_table(v, results["acc16_bits"]) for v in results["variants"]]
    resources = resource_tables(results["resources"]) if "resources" in results else []
    return [
        accuracy_table(results),
        verify_table(results),
        *layers,
        *resources,
        timing_table(results),
        environment_table(results),
    ]
