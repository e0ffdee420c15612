"""The rows of the table: names, bit-widths per method, schedule-relative recipe steps."""

from __future__ import annotations

from hwquant.app.bench.rows import ROW_NAMES, RowSpec, all_rows, select_rows


def test_each_method_has_its_bit_widths_and_the_tables_their_sizes():
    assert len(set(ROW_NAMES)) == len(ROW_NAMES) == 14
    assert {r.size for r in all_rows() if r.kind in ("llsq", "nonuniform")} == {4, 3, 2}
    assert {r.size for r in all_rows() if r.kind.startswith("msq")} == {4, 3}
    assert [r.name for r in all_rows() if r.kind == "tables"] == ["tables_40", "tables_320"]


def test_recipe_steps_scale_with_the_qat_run():
    msq = RowSpec("msq_sp2_only", 3).recipe(200)
    assert (msq.weight_bits, msq.act_bits, msq.msq.sp2_share) == (3, 3, 1.0)
    assert (msq.msq.freeze_step, msq.msq.refresh_steps, msq.bn_freeze_step) == (100, 20, 40)
    nonuniform = RowSpec("nonuniform", 2).recipe(200)
    assert nonuniform.scale_constraint == "pow2"
    assert (nonuniform.nonuniform.stages, nonuniform.nonuniform.steps_per_stage) == (4, 40)
    tables = RowSpec("tables", 320).recipe(200).tables
    assert tables.act_entries * tables.weight_entries == tables.max_entries == 320
    assert tables.act_start == 40


def test_select_rows_takes_names_and_kinds_in_table_order():
    assert [r.name for r in select_rows(["tables_40", "llsq"])] == [
        "llsq_W4A4", "llsq_W3A3", "llsq_W2A2", "tables_40",
    ]  # fmt: skip
