"""The scheme registry: every scheme registered by name, unknown names refused with the list,
and ``hwquant.lower`` dispatching to a scheme's own lowering (tables)."""

from __future__ import annotations

import pytest
import torch

import hwquant
from hwquant import schemes
from hwquant.core.errors import ConfigError, FileFormatError
from hwquant.models import build
from hwquant.qat.registry import SchemeHandler, register_scheme
from hwquant.schemes.tables import TableModel, lower_tables, run_tables
from tests.helpers import lowered_small_cnn
from tests.schemes.tables.conftest import trained_tables


def test_the_four_schemes_are_registered_in_order():
    assert schemes.available() == ("llsq", "msq", "nonuniform", "tables")
    assert schemes.get("msq").options is hwquant.Recipe().msq.__class__


def test_an_unknown_scheme_names_the_registered_ones():
    with pytest.raises(ConfigError, match=r"unknown scheme 'sp2'.*llsq, msq, nonuniform, tables"):
        schemes.get("sp2")


def test_a_scheme_cannot_be_registered_twice():
    with pytest.raises(ConfigError, match="'llsq' is registered twice"):
        register_scheme(SchemeHandler("llsq"))


def test_lower_dispatches_tables_to_its_table_model():
    torch.manual_seed(0)
    x = torch.randn(4, 1, 8, 8)
    qat = trained_tables(build("small_cnn", num_classes=10, in_channels=1, input_size=8), x)
    lowered = hwquant.lower(qat, x)
    assert isinstance(lowered, TableModel)
    direct = lower_tables(qat)
    ours, theirs = (run_tables(m, m.quantize_input(x)) for m in (lowered, direct))
    assert torch.equal(ours, theirs)


def test_what_a_scheme_lowers_to_and_whether_it_takes_an_accumulator_bound():
    """The facets that replaced `scheme == "tables"` / `scheme != "llsq"` outside the registry."""
    lowered = {name: schemes.get(name).lowered for name in schemes.available()}
    assert lowered == {
        "llsq": hwquant.IntModel,
        "msq": hwquant.IntModel,
        "nonuniform": hwquant.IntModel,
        "tables": TableModel,
    }
    to_intmodel = [name for name in schemes.available() if schemes.get(name).lowers_to_intmodel]
    assert to_intmodel == ["llsq", "msq", "nonuniform"]
    aware = [name for name in schemes.available() if schemes.get(name).accumulator_aware]
    assert aware == ["llsq"]
    assert hwquant.Recipe(accumulator_bits=16).accumulator_bits == 16
    with pytest.raises(ConfigError, match=r"scheme='nonuniform' has no accumulator-aware.*'llsq'"):
        hwquant.Recipe(scheme="nonuniform", scale_constraint="pow2", accumulator_bits=16)


def test_load_lowered_reads_each_kind_by_its_file_format(tmp_path):
    """One reader for whichever lowered model a file holds: the header's format picks the
    registered class; a file of no registered format is refused by the IntModel reader."""
    int_model, x = lowered_small_cnn(batch=4)
    model = build("small_cnn", num_classes=10, in_channels=1, input_size=8)
    table_model = hwquant.lower(trained_tables(model, x), x)
    for lowered, run in ((int_model, hwquant.IntModel.run), (table_model, run_tables)):
        loaded = schemes.load_lowered(lowered.save(tmp_path / f"{type(lowered).__name__}.npz"))
        assert type(loaded) is type(lowered)
        codes = lowered.quantize_input(x)
        assert torch.equal(run(loaded, codes), run(lowered, codes))
    foreign = tmp_path / "foreign.npz"
    foreign.write_bytes(b"not an npz archive")
    with pytest.raises(FileFormatError, match="not a readable IntModel file"):
        schemes.load_lowered(foreign)
