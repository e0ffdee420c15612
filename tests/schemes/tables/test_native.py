"""The native table kernel: multiply-free and float-free source, exact equality with the PyTorch
kernels, the build cache and the fallback."""

from __future__ import annotations

import os
import re
import shutil
import threading

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import hwquant
from hwquant.core.errors import ConfigError, ToolError
from hwquant.models import build
from hwquant.qat.recipe import Recipe, TableOptions
from hwquant.schemes.tables import engine, lower_tables, native, run_tables
from hwquant.schemes.tables.audit import NATIVE_OPS, MultiplyFreeAudit
from hwquant.schemes.tables.fold import ACC_LIMIT, SENTINEL
from hwquant.schemes.tables.layers import TableAdd, TableUnit
from hwquant.schemes.tables.model import UnitNode

# Every name that may stand before a `*` that is not a multiplication (a pointer declarator,
# a cast or a dereference after a qualifier).
C_TYPE_WORDS = {"const", "restrict", "void", "char", "int", "int32_t", "int64_t", "geometry",
                "lanes16"}  # fmt: skip
FLOAT_WORDS = {"float", "double", "_Float16", "_Float32", "_Float64", "__fp16", "__bf16"}

NEEDS_COMPILER = pytest.mark.skipif(
    shutil.which(os.environ.get("CC", "gcc")) is None,
    reason="no C compiler: apt-get install gcc (the native table kernel is built with it)",
)


def c_code() -> str:
    """The kernel's C source without its comments."""
    source = native.SOURCE.read_text()
    source = re.sub(r"/\*.*?\*/", " ", source, flags=re.S)
    return re.sub(r"//[^\n]*", " ", source)


def binary_stars(code: str) -> list[str]:
    """Every `*` whose left neighbour is an operand (a name other than a type word, a number,
    `)` or `]`): a multiplication or `*=`."""
    found = []
    for match in re.finditer(r"\*", code):
        before = code[: match.start()].rstrip()
        word = re.search(r"(\w+)$", before)
        operand = before.endswith((")", "]")) or (word and word.group(1) not in C_TYPE_WORDS)
        if operand:
            found.append(code[max(0, match.start() - 30) : match.end() + 10])
    return found


def test_native_source_has_no_float_and_no_multiply_divide_or_shift():
    code = c_code()
    assert "hwquant_table_unit" in code and "hwquant_lookup_add" in code
    assert FLOAT_WORDS.isdisjoint(re.findall(r"\w+", code)) and "math.h" not in code
    assert binary_stars(code) == []
    for operator in ("/", "%", "<<", ">>"):
        assert operator not in code, operator


def test_the_source_check_catches_multiplies():
    assert binary_stars("int64_t *p = a * b;") == ["int64_t *p = a * b;"]
    assert binary_stars("x[i] *= 2; y = (a + 1) * c;") != []
    assert binary_stars("const int32_t *const *addr; v = *p; f((const lanes16 *)q);") == []


def random_unit(data, op: str) -> tuple[UnitNode, torch.Tensor]:
    """A unit with random |A|, |W|, shape, stride, padding and thresholds (some descending
    channels, some sentinels), and an input batch."""
    acts, weights = data.draw(st.integers(2, 9)), data.draw(st.integers(2, 6))
    outputs = data.draw(st.sampled_from([1, 3, 16, 17, 32, 48]))
    channels = data.draw(st.integers(1, 4))
    levels = data.draw(st.integers(0, 4))  # 0: the last layer (acc + bias)
    gen = torch.Generator().manual_seed(data.draw(st.integers(0, 2**16)))
    if op == "conv":
        kernel, stride, padding = (data.draw(st.sampled_from(v)) for v in ([1, 3], [1, 2], [0, 1]))
        size = data.draw(st.integers(kernel, 7))
        shape = (outputs, channels, kernel, kernel)
        x = torch.randint(0, acts, (2, channels, size, size), generator=gen)
    else:
        stride, padding = 1, 0
        shape = (outputs, channels)
        x = torch.randint(0, acts, (3, channels), generator=gen)
    tau = torch.randint(-1500, 1500, (outputs, levels), generator=gen).sort(1).values
    sentinel = torch.rand(outputs, levels, generator=gen) < 0.1
    tau = torch.where(sentinel, SENTINEL, tau)
    node = UnitNode(
        "unit",
        ["x"],
        op,
        torch.randint(0, weights, shape, generator=gen).numpy(),
        torch.randint(-300, 300, (acts, weights), generator=gen).numpy(),
        tau.numpy(),
        (torch.rand(outputs, generator=gen) < 0.5).numpy(),
        torch.randint(-99, 99, (outputs,), generator=gen).numpy(),
        np.zeros(acts),
        np.zeros(weights),
        np.zeros(levels + 1 if levels else 0),
        stride=stride,
        padding=padding,
    )
    return node, x


@NEEDS_COMPILER
@settings(max_examples=40, deadline=None)
@given(st.sampled_from(["conv", "linear"]), st.integers(1, 4), st.data())
def test_native_unit_equals_the_pytorch_kernel(op, group, data):
    node, x = random_unit(data, op)
    reference = engine.run_unit(engine.compile_unit(node, group, engine="torch"), x)
    unit = engine.compile_unit(node, group, engine="native")
    assert unit.kernel == "native" and unit.plan.group == group
    assert torch.equal(engine.run_unit(unit, x), reference)


def test_native_group_follows_the_measured_rule():
    assert native.choose_group(9, 144, 16) == 1  # one vector per row: g = 1
    assert native.choose_group(5, 288, 32) == 2  # 5²·32 = 800 entries
    assert native.choose_group(9, 288, 32) == 1  # 9²·32 = 2592 > GROUP_BUDGET
    assert native.choose_group(3, 576, 64) == 2  # never 3, though 3³·64 fits


@NEEDS_COMPILER
def test_native_thresholds_are_exact_at_the_32_bit_accumulator_limit():
    """acc = ±(2^31 − 1), the largest that fold.check_table admits, against thresholds at that
    value, one past it and the sentinels, on ascending and descending channels."""
    limit = ACC_LIMIT
    tau = [-SENTINEL, -limit, limit, limit + 1, SENTINEL]
    node = UnitNode(
        "edge", ["x"], "linear", np.array([[0], [1], [0], [1]]), np.array([[limit, -limit]]),
        np.array([tau] * 4), np.array([False, False, True, True]), np.zeros(4, dtype=np.int64),
        np.zeros(1), np.zeros(2), np.zeros(6),
    )  # fmt: skip
    x = torch.zeros(1, 1, dtype=torch.int64)
    reference = engine.run_unit(engine.compile_unit(node, engine="torch"), x)
    assert reference.tolist() == [[3, 2, 3, 4]]  # acc = limit, -limit, limit, -limit
    assert torch.equal(engine.run_unit(engine.compile_unit(node, engine="native"), x), reference)


@NEEDS_COMPILER
@pytest.mark.parametrize("fixture", ["small_cnn_tables", "residual_tables"])
def test_native_engine_equals_the_pytorch_engine_node_by_node(fixture, request):
    _, table_model, x = request.getfixturevalue(fixture)
    x_idx = table_model.quantize_input(x)
    reference = run_tables(table_model, x_idx, trace=True, engine="torch")
    fast = run_tables(table_model, x_idx, trace=True, engine="native")
    assert reference.keys() == fast.keys()
    for name, value in reference.items():
        assert torch.equal(fast[name], value), name


def test_out_of_range_input_indices_are_refused(small_cnn_tables):
    _, table_model, x = small_cnn_tables
    x_idx = table_model.quantize_input(x)
    with pytest.raises(ConfigError, match=r"\[0, 256\).*Fix: make them with"):
        run_tables(table_model, x_idx + 256, engine="native")


@NEEDS_COMPILER
def test_qat_eval_runs_the_native_kernels(residual_tables):
    qat, _, x = residual_tables
    with torch.no_grad():
        qat(x)
    kernels = {m.compiled().kernel for m in qat.modules() if isinstance(m, (TableUnit, TableAdd))}
    assert kernels == {"native"}


@NEEDS_COMPILER
def test_native_engine_equals_the_pytorch_engine_on_resnet20():
    torch.manual_seed(0)
    x = torch.randn(8, 3, 32, 32)
    recipe = Recipe(scheme="tables", tables=TableOptions(act_start=0))
    qat = hwquant.prepare(build("resnet20"), recipe)
    with torch.no_grad():
        qat.train()(x)
    tables = lower_tables(qat.eval())
    x_idx = tables.quantize_input(x[:3])
    reference = run_tables(tables, x_idx, engine="torch")
    assert torch.equal(run_tables(tables, x_idx, engine="native"), reference)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)  # images split over two threads: same integers
        assert torch.equal(run_tables(tables, x_idx, engine="native"), reference)
    finally:
        torch.set_num_threads(threads)


def test_audit_allows_only_the_listed_native_ops():
    assert {"hwquant.table_unit", "hwquant.lookup_add"} == NATIVE_OPS

    @torch.library.custom_op("hwquant_test::opaque", mutates_args=())
    def opaque(x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    x = torch.arange(3)
    with MultiplyFreeAudit() as audit:
        torch.ops.hwquant_test.opaque(x)
    assert audit.ops == ["hwquant_test.opaque"]
    assert any("not on the native allow-list" in v for v in audit.violations)


@pytest.fixture
def fresh_native(monkeypatch, tmp_path):
    """A native module with an empty cache under ``tmp_path`` and no library loaded yet."""
    monkeypatch.setenv("HWQUANT_CACHE", str(tmp_path))
    native.load.cache_clear()
    native.unavailable_reason.cache_clear()
    yield monkeypatch
    native.load.cache_clear()
    native.unavailable_reason.cache_clear()


def test_missing_compiler_fails_native_and_auto_falls_back(fresh_native):
    fresh_native.setenv("CC", "no-such-cc")
    with pytest.raises(ToolError, match=r"no-such-cc.*Fix: install a C compiler"):
        engine.resolve_kernel("native")
    assert engine.resolve_kernel("auto") == "torch"
    assert "no-such-cc" in native.unavailable_reason()
    with pytest.raises(ConfigError, match="auto, native, torch"):
        engine.resolve_kernel("fast")


@NEEDS_COMPILER
def test_failed_build_carries_the_compiler_error(fresh_native, tmp_path):
    broken = tmp_path / "broken.c"
    broken.write_text("int broken( {\n")
    fresh_native.setattr(native, "SOURCE", broken)
    with pytest.raises(ToolError, match=r"(?s)failed \(exit \d+\).*error.*Fix: install"):
        native.load()
    assert engine.resolve_kernel("auto") == "torch"


@NEEDS_COMPILER
def test_build_is_cached_by_source_and_safe_when_concurrent(fresh_native, tmp_path):
    path = native.library_path()
    assert path.is_relative_to(tmp_path) and not path.exists()
    errors: list[BaseException] = []

    def build_once() -> None:
        try:
            native.build(path)
        except BaseException as exc:  # reported below
            errors.append(exc)

    workers = [threading.Thread(target=build_once) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == [] and path.exists()
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporaries left
    assert native.load()._name == str(path)
    other = tmp_path / "edited.c"
    other.write_text(native.SOURCE.read_text() + "\n/* edited */\n")
    fresh_native.setattr(native, "SOURCE", other)
    assert native.library_path() != path


@NEEDS_COMPILER
def test_unwritable_cache_is_a_tool_error(fresh_native, tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    fresh_native.setenv("HWQUANT_CACHE", str(blocker))
    with pytest.raises(ToolError, match=r"Fix: set \$HWQUANT_CACHE to a writable directory"):
        native.load()
    assert engine.resolve_kernel("auto") == "torch"


@NEEDS_COMPILER
def test_native_refuses_groups_and_operands_the_kernel_cannot_address():
    node = UnitNode(
        "u", ["x"], "linear", np.array([[0], [1]]), np.array([[1, -1]]), np.array([[0]] * 2),
        np.array([False, False]), np.zeros(2, dtype=np.int64), np.zeros(1), np.zeros(2),
        np.zeros(2),
    )  # fmt: skip
    with pytest.raises(ConfigError, match=r"outside 1\.\.4"):
        engine.compile_unit(node, 5, engine="native")
    unit = engine.compile_unit(node, engine="native")
    x = torch.zeros(1, 1, dtype=torch.int32)
    with pytest.raises(ConfigError, match=r"operand 'x' is torch\.int32"):
        native.run(unit.native, x.view(1, 1, 1, 1), 1, 1, 0)
