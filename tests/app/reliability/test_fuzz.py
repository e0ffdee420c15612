"""Bad input on purpose: the config loader, the IntModel loader and every quantizer, through the
oracles of :mod:`hwquant.app.reliability.fuzz` (a few hundred examples here; ``make reliability``
runs ten thousand per target). The ``@example`` cases are the failures the fuzzer found."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings

from hwquant.app.config import RunConfig
from hwquant.app.reliability import faults, fuzz
from hwquant.core.errors import ConfigError, FileFormatError, NonFiniteError
from hwquant.ir.intmodel import load
from hwquant.qat.llsq import LinearQuantizer

CASES = 150
BASE = fuzz.BASE_CONFIG.to_dict()


def with_field(table: str, key: str, value: object) -> dict:
    document = fuzz.BASE_CONFIG.to_dict()
    (document if table == "" else document[table])[key] = value
    return document


@settings(max_examples=CASES)
@given(fuzz.config_documents())
@example(with_field("", "out_dir", "runs/\U0001f680"))  # to_toml wrote a surrogate-pair escape
@example(with_field("", "out_dir", "runs/\x7f"))  # to_toml wrote a raw DEL
@example(with_field("train", "lr", math.inf))  # was accepted
@example(with_field("train", "seed", 2**40))  # was accepted; NumPy refused it at train time
def test_config_documents(document: dict) -> None:
    assert fuzz.check_config_document(document) in ("accepted", "rejected")


def test_non_finite_floats_and_seeds_out_of_range_are_refused() -> None:
    for table, key, value in [("train", "lr", math.inf), ("train", "momentum", math.nan)]:
        with pytest.raises(ConfigError, match=rf"{key}=.* Fix: use a finite number"):
            RunConfig.from_dict(with_field(table, key, value))
    with pytest.raises(ConfigError, match=r"seed=1099511627776 .* 0\.\.2\^32-1"):
        RunConfig.from_dict(with_field("train", "seed", 2**40))


def test_unusual_strings_round_trip_through_toml() -> None:
    config = RunConfig.from_dict(with_field("", "out_dir", 'runs/\U0001f680 \x7f "q" \\ \t'))
    assert fuzz.check_config_document(config.to_dict()) == "accepted"


@settings(max_examples=CASES)
@given(fuzz.config_texts())
def test_config_texts(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    path = tmp_path_factory.mktemp("cfg") / "run.toml"
    assert fuzz.check_config_text(text, path) in ("accepted", "rejected")


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory: pytest.TempPathFactory):
    model = faults.sample_int_model()
    path = tmp_path_factory.mktemp("model") / "model.npz"
    model.save(path)
    x_int = model.quantize_input(
        torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    )
    return model, path.read_bytes(), x_int, path.parent / "fuzzed.npz"


def test_int_model_damaged_bytes(saved_model) -> None:
    model, original, x_int, path = saved_model

    @settings(max_examples=CASES)
    @given(fuzz.damaged_bytes(original))
    def check(data: bytes) -> None:
        verdict = fuzz.check_int_model_file(path, data, model, x_int)
        assert verdict in ("rejected", "unchanged")

    check()


def test_int_model_rewritten_headers(saved_model) -> None:
    model, original, x_int, path = saved_model

    @settings(max_examples=CASES)
    @given(fuzz.rewritten_headers(original))
    def check(data: bytes) -> None:
        verdict = fuzz.check_int_model_file(path, data, model, x_int)
        assert verdict in (
            "rejected",
            "unchanged",
            "rewritten, runs",
            "rewritten, refused when run",
        )

    check()


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda h: h["nodes"][0].update(stride=["a", "b"]), "field 'stride' of 'features.0.0'"),
        (lambda h: h["nodes"][1].update(inputs=["nowhere"]), "reads unknown \\['nowhere'\\]"),
        (lambda h: h.update(output=False), "output 'False' is no node"),
        (lambda h: h.update(nodes=[[1]]), "malformed header"),
        (lambda h: h.update(sha256=[]), "malformed header"),
    ],
)
def test_int_model_header_of_wrong_type_is_named(saved_model, edit, match: str) -> None:
    _, original, _, path = saved_model
    path.write_bytes(fuzz.rewrite_header(original, edit))
    with pytest.raises(FileFormatError, match=match) as info:
        load(path)
    assert f"'{path}'" in str(info.value)


@pytest.mark.parametrize("case", fuzz.QUANTIZER_CASES, ids=lambda c: c.name)
def test_quantizers(case: fuzz.QuantizerCase) -> None:
    @settings(max_examples=CASES)
    @given(fuzz.quantizer_inputs())
    def check(value: fuzz.QuantizerInput) -> None:
        assert fuzz.check_quantizer(case, value) in ("accepted", "rejected")

    check()


def test_linear_quantizer_documented_results() -> None:
    quant = LinearQuantizer(4, True, is_activation=False).eval()
    assert quant(torch.empty(0, 3)).shape == (0, 3)  # nothing to initialise from
    assert not quant.is_initialized()
    quant(torch.tensor([1.0, -2.0]))
    assert quant.codes(torch.empty(0)).dtype == torch.int64
    huge = torch.tensor([3.4e38, -3.4e38, 1e-45, -0.0])
    assert quant.codes(huge).tolist() == [7, -8, 0, 0]  # saturate; denormals round to 0
    for bad in (math.nan, math.inf):
        with pytest.raises(NonFiniteError, match=r"quantizer input .* Fix:"):
            quant.codes(torch.tensor([0.5, bad]))
    with torch.no_grad():
        quant.scale.fill_(math.nan)
    with pytest.raises(NonFiniteError, match="quantizer scale"):
        quant.codes(torch.tensor([0.5]))
    with torch.no_grad():
        quant.scale.fill_(0.0)  # clamped to the smallest scale: everything saturates
    assert quant.codes(torch.tensor([1e-3, -1e-3, 0.0])).tolist() == [7, -8, 0]
    fresh = LinearQuantizer(4, True, is_activation=False)
    with pytest.raises(NonFiniteError, match="initialised from"):
        fresh(torch.tensor([1.0, math.inf]))


def test_linear_reference_is_the_definition() -> None:
    quant = LinearQuantizer(3, False, is_activation=True)
    x = np.array([-1.0, 0.0, 0.25, 0.75, 1.25, 99.0], dtype=np.float32)
    scale = np.array([0.5])
    assert fuzz.linear_reference(x, scale, quant).tolist() == [0, 0, 1, 2, 3, 7]


def test_damaged_npy_header_is_named(saved_model) -> None:
    """Found by the fuzzer: numpy parsed a damaged array header (before the zip CRC check) and
    raised tokenize.TokenError, which escaped ``load``."""
    _, original, _, path = saved_model
    at = original.index(b"'shape': (") + len(b"'shape': (")
    path.write_bytes(original[:at] + b"(" + original[at + 1 :])
    with pytest.raises(FileFormatError, match="is not a readable IntModel file") as info:
        load(path)
    assert f"'{path}'" in str(info.value)
