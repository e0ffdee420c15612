"""The table engine equals the QAT model in eval mode, exactly, and never multiplies."""

from __future__ import annotations

import pytest
import torch

from hwquant.schemes.tables import capture_indices, run_tables
from hwquant.schemes.tables.audit import MultiplyFreeAudit, forbidden


@pytest.mark.parametrize("fixture", ["small_cnn_tables", "residual_tables"])
def test_engine_equals_qat_eval_layer_by_layer(fixture, request):
    qat, table_model, x = request.getfixturevalue(fixture)
    with torch.no_grad(), capture_indices(qat) as sink:
        qat_out = qat(x)
    trace = run_tables(table_model, table_model.quantize_input(x), trace=True)
    assert sink.keys() <= trace.keys() and len(sink) >= 3
    for name, indices in sink.items():
        assert torch.equal(indices, trace[name]), name
    # the float output of the QAT model is s_T times the engine's integers
    assert torch.equal(qat_out, trace[table_model.output].double() * table_model.output_scale)


@pytest.mark.parametrize(
    ("engine", "kernel_op"), [("torch", "aten.index_select"), ("native", "hwquant.table_unit")]
)
@pytest.mark.parametrize("fixture", ["small_cnn_tables", "residual_tables"])
def test_engine_runs_no_multiply_and_no_float(fixture, engine, kernel_op, request):
    _, table_model, x = request.getfixturevalue(fixture)
    x_idx = table_model.quantize_input(x)
    object.__setattr__(table_model, "_compiled", None)  # audit the table compilation too
    with MultiplyFreeAudit() as audit:
        out = run_tables(table_model, x_idx, engine=engine)
    assert audit.violations == []
    assert kernel_op in audit.ops and "aten.arange" in audit.ops
    assert out.dtype == torch.int64


def test_residual_net_has_add_and_pool_tables(residual_tables):
    _, table_model, _ = residual_tables
    kinds = [type(n).__name__ for n in table_model.nodes]
    assert "LookupAddNode" in kinds and "PoolNode" in kinds


def test_negative_bn_scales_flip_comparisons(small_cnn_tables):
    _, table_model, _ = small_cnn_tables
    flags = table_model.units()[0].descending
    assert flags.any() and not flags.all()


def test_audit_catches_multiplies_and_floats():
    with MultiplyFreeAudit() as audit:
        torch.arange(4) * torch.arange(4)
        torch.ones(2) + 1
    assert any("aten.mul" in v for v in audit.violations)
    assert any("float32" in v for v in audit.violations)


@pytest.mark.parametrize(
    ("name", "bad"),
    [("mul", True), ("_convolution", True), ("addmm", True), ("div_", True), ("add", False),
     ("index_select", False), ("ge", False)],
)  # fmt: skip
def test_forbidden_names(name, bad):
    assert forbidden(name) is bad
