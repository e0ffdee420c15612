"""The markdown form of a ``hwquant bench reproduce`` result: FP32, rows and step times."""

from __future__ import annotations

from typing import Any

ROW_COLUMNS = (
    "model",
    "row",
    "fake-quant acc %",
    "engine acc %",
    "unequal images",
    "gap to FP32 (pts)",
    "acc. bits worst / observed",
    "wall s",
)


def _table(header: tuple[str, ...] | list[str], lines: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(line) + " |" for line in lines),
    ]


def _percent(value: float) -> str:
    return f"{100 * value:.2f}"


def _row_line(row: dict[str, Any]) -> list[str]:
    if row["status"] == "refused":
        return [row["model"], row["row"], f"refused: {row['reason']}", "", "", "", "", ""]
    widths = row["accumulators"]["max"]
    bits = f"{widths['worst_case_bits']} / {widths.get('observed_bits', 'n/a')}"
    return [
        row["model"],
        row["row"],
        _percent(row["fake_quant_acc"]),
        _percent(row["engine_acc"]),
        str(row["images_with_unequal_outputs"]),
        f"{row['gap_to_fp32_points']:+.2f}",
        bits,
        f"{row['wall_seconds']:.0f}",
    ]


def _fp32_origin(config: dict[str, Any]) -> str:
    """How the FP32 baselines were made: the tier's epochs, or copied (``--fp32-from``)."""
    if source := config.get("fp32_from"):
        return f"FP32 baselines copied from `{source}` (their records say how they were made)"
    return f"FP32 {config['tier']['epochs_fp32']} epochs"


def render(config: dict[str, Any], results: dict[str, Any], machine: dict[str, Any]) -> str:
    """Markdown of one run: what ran where, the FP32 baselines, the rows, the step times."""
    tier = config["tier"]
    lines = [
        f"# CIFAR-10 reproduction, tier `{tier['name']}`",
        "",
        f"- date (UTC): {machine.get('date_utc')}; CPU: {machine.get('cpu_model')}; "
        f"torch {machine.get('torch')}; device: {tier['device']}; threads {config['threads']}",
        f"- data: {config['data']}, {config['train_examples']} training / "
        f"{config['test_examples']} test images; {_fp32_origin(config)}, QAT "
        f"{tier['epochs_qat']} epoch(s) per row of {config['qat_train_batches_per_epoch']} batches "
        f"of {tier['batch_size']}, peak lr {tier['qat_lr']} (cosine)"
        + (f", Cutout {tier['qat_cutout']}" if tier.get("qat_cutout") else "")
        + (
            f", distilled from the FP32 model (λ {tier['qat_distill']}, T "
            f"{tier['qat_distill_temperature']})"
            if tier.get("qat_distill")
            else ""
        ),
        f"- complete: {results['complete']}; every row fake-quant == engine: "
        f"{results['all_exact']}",
        "",
        "## FP32 baselines",
        "",
        *_table(
            ("model", "test acc %", "parameters", "train s (sum of epochs)"),
            [
                [
                    name,
                    _percent(r["test_acc"]),
                    str(r["parameters"]),
                    f"{sum(h['seconds'] for h in r['training']['history']):.0f}",
                ]
                for name, r in results["fp32"].items()
            ],
        ),
        "",
        "## Quantized rows (each from its model's FP32 checkpoint)",
        "",
        *_table(ROW_COLUMNS, [_row_line(r) for r in results["rows"]]),
    ]
    step_time = results.get("step_time")
    if step_time:
        lines += ["", "## Training step time, QAT over FP32 (W4A4, interleaved medians)", ""]
        kinds = sorted({k for m in step_time.values() for k in m["qat_over_fp32"]})
        lines += _table(
            ["model", "FP32 ms", *kinds],
            [
                [
                    name,
                    f"{m['median_step_ms']['fp32']:.1f}",
                    *(
                        f"{m['qat_over_fp32'][k]:.2f}x" if k in m["qat_over_fp32"] else "refused"
                        for k in kinds
                    ),
                ]
                for name, m in step_time.items()
            ],
        )
        if tier.get("qat_distill"):
            note = "The steps timed are cross-entropy steps: the rows' distillation adds the "
            lines += ["", note + "teacher's forward pass to each, which is not timed here."]
    return "\n".join(lines) + "\n"
