"""Codebook weights in the integer engine: lookup then integer MAC, bit-exact end to end."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import hwquant
from hwquant.core.intmath import int_conv2d, int_linear
from hwquant.engine import run
from hwquant.ir.encodings import find_encoding
from hwquant.ir.intmodel import CodebookEncoding, ConvNode, LinearNode
from hwquant.qat.recipe import NonUniformOptions, Recipe
from hwquant.schemes.nonuniform.engine import codebook_accumulate, lookup
from tests.helpers import RandomNet, trained_qat_model
from tests.qat.test_lower import _check_exact
from tests.schemes.nonuniform.test_quantizer import nonuniform_recipe, prepared, sgd_steps


def _encoding(seed: int, shape: tuple[int, ...], rows: int, bits: int) -> CodebookEncoding:
    g = torch.Generator().manual_seed(seed)
    k = 2**bits
    codebook = torch.stack(
        [torch.randperm(255, generator=g)[:k].sort().values - 127 for _ in range(rows)]
    )
    indices = torch.randint(0, k, shape, generator=g)
    return CodebookEncoding(indices.numpy(), codebook.numpy(), index_bits=bits, grid_bits=8)


def test_the_accumulator_is_registered():
    assert find_encoding(CodebookEncoding).accumulate is codebook_accumulate


@given(seed=st.integers(0, 2**16), per_row=st.booleans(), bits=st.integers(1, 4))
def test_lookup_equals_the_encodings_decode(seed, per_row, bits):
    enc = _encoding(seed, (5, 3, 2, 2), 5 if per_row else 1, bits)
    assert np.array_equal(lookup(enc, torch.device("cpu")).numpy(), enc.decode())


@settings(max_examples=25)
@given(
    seed=st.integers(0, 2**16),
    backend=st.sampled_from(["auto", "int64"]),
    bias=st.booleans(),
    conv=st.booleans(),
)
def test_accumulator_equals_the_plain_integer_path(seed, backend, bias, conv):
    g = torch.Generator().manual_seed(seed)
    shape = (4, 3, 3, 3) if conv else (4, 12)
    enc = _encoding(seed, shape, 1, 3)
    weight = enc.decode()
    b = torch.randint(-1000, 1000, (4,), generator=g) if bias else None
    common = dict(
        name="layer",
        inputs=["x"],
        weight=weight,
        bias=None if b is None else b.numpy(),
        acc_scale=np.ones(4),
        weight_bits=8,
        in_bits=4,
        in_signed=False,
        encoding=enc,
    )
    x = torch.randint(0, 16, (2, 3, 5, 5) if conv else (2, 12), generator=g)
    x = x if backend == "int64" else x.float()
    w = torch.from_numpy(weight)
    if conv:
        node = ConvNode(**common, padding=(1, 1))
        plain = int_conv2d(x, w, b, (1, 1), (1, 1), (1, 1), 1, 15, backend)
    else:
        node = LinearNode(**common)
        plain = int_linear(x, w, b, 15, backend)
    out = codebook_accumulate(node, x, b, backend)
    assert torch.equal(out, plain)
    assert torch.equal(out.to(torch.int64).double(), out.double())  # exact integers


def test_qat_through_the_schedule_equals_the_integer_engine(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(16, 1, 6, 6)
    qat = prepared(nonuniform_recipe(bits=3, steps_per_stage=2), x)
    sgd_steps(qat, x, 6)  # block 1 noisy, block 2 noisy, then both quantized
    qat.eval()
    int_model = hwquant.lower(qat, x)
    encoded = [n for n in int_model.weight_nodes() if n.encoding is not None]
    assert [n.name for n in encoded] == ["3", "6"]
    assert all(isinstance(n.encoding, CodebookEncoding) for n in encoded)
    assert all(n.encoding.index_bits == 3 and n.weight_bits == 8 for n in encoded)
    _check_exact(qat, x)  # verify, engine == QAT codes, int64 and 4-bit paths, dequantize
    x_int = int_model.quantize_input(x)
    out = int_model.run(x_int)
    # save / load keeps the encoding and the outputs
    loaded = hwquant.load(int_model.save(tmp_path / "nu.npz"))
    for before, after in zip(
        encoded, [n for n in loaded.weight_nodes() if n.encoding], strict=True
    ):
        assert isinstance(after.encoding, CodebookEncoding)
        assert np.array_equal(after.encoding.indices, before.encoding.indices)
        assert np.array_equal(after.encoding.codebook, before.encoding.codebook)
        assert (after.encoding.index_bits, after.encoding.grid_bits) == (3, 8)
    assert torch.equal(loaded.run(x_int), out)


conv_block = st.tuples(
    st.just("conv"),
    st.integers(2, 6),
    st.just(3),
    st.integers(1, 2),
    st.just(False),
    st.booleans(),
    st.sampled_from([None, "relu"]),
    st.booleans(),
)
block = st.one_of(conv_block, st.tuples(st.just("residual"), st.sampled_from([None, "relu"])))


@settings(max_examples=12, deadline=None)
@given(
    blocks=st.lists(block, min_size=1, max_size=3),
    bits=st.integers(1, 4),
    act_bits=st.integers(2, 8),
    cdf=st.sampled_from(["gaussian", "empirical"]),
    schedule=st.sampled_from(["gradual", "all_at_once"]),
    seed=st.integers(0, 2**16),
)
def test_random_models_are_bit_exact(blocks, bits, act_bits, cdf, schedule, seed):
    torch.manual_seed(seed)
    model = RandomNet(2, [("conv", 4, 3, 1, False, True, "relu", False), *blocks], 5, True, 6)
    recipe = Recipe(
        scheme="nonuniform",
        weight_bits=bits,
        act_bits=act_bits,
        scale_constraint="pow2",
        bn_freeze_step=1,
        nonuniform=NonUniformOptions(cdf=cdf, schedule=schedule, steps_per_stage=1),
    )
    x = torch.randn(3, 2, 6, 6)
    qat = trained_qat_model(model, recipe, x, steps=3)
    int_model = hwquant.lower(qat, x)
    report = hwquant.verify(qat, int_model, x)
    assert report.exact, str(report)
    x_int = int_model.quantize_input(x)
    assert torch.equal(run(int_model, x_int, backend="int64").output, int_model.run(x_int))
