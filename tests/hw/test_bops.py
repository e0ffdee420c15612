"""Cost figures: UNIQ's BOPs, weight memory and accumulator width (methods.md §6)."""

from __future__ import annotations

import math

import torch

import hwquant
from hwquant.core.intmath import accumulator_bits
from hwquant.hw.bops import bops, layer_cost, model_costs
from hwquant.ir.intmodel import CodebookEncoding, MSQEncoding
from hwquant.qat.recipe import MSQOptions
from tests.schemes.nonuniform.test_quantizer import nonuniform_recipe, prepared


def test_bops_formula():
    # m=64, n=32, 3x3, b_a=8, b_w=4: 64·288·(32 + 8 + 4 + log2 288)
    assert bops(64, 32, 9, 8, 4) == 64 * 288 * (32 + 8 + 4 + math.log2(288))
    assert bops(10, 256, 1, 8, 8) == 10 * 256 * (64 + 16 + 8)


def test_accumulator_bits_formula():
    assert accumulator_bits(4, 4, 256) == 16  # LLSQ's 16-bit claim at fan-in 256
    assert accumulator_bits(8, 8, 288) == 8 + 8 + 9


def test_costs_of_a_lowered_codebook_model():
    torch.manual_seed(0)
    x = torch.randn(4, 1, 6, 6)
    qat = prepared(nonuniform_recipe(bits=3), x).eval()
    int_model = hwquant.lower(qat, x)
    costs = model_costs(int_model, int_model.quantize_input(x))
    by_name = {c["layer"]: c for c in costs["layers"]}
    node = next(n for n in int_model.weight_nodes() if n.name == "3")
    assert isinstance(node.encoding, CodebookEncoding)
    c = by_name["3"]
    assert (c["m"], c["n"], c["kernel_area"], c["positions"]) == (6, 4, 9, 36)
    assert (c["stored_weight_bits"], c["multiplier_bits"], c["act_bits"]) == (3, 8, 4)
    assert c["weight_memory_bits"] == 6 * 4 * 9 * 3 + 8 * 8  # indices + codebook
    assert c["bops_stored"] == bops(6, 4, 9, 4, 3)
    assert c["bops_multiplier"] == bops(6, 4, 9, 4, 8)
    assert c["accumulator_bits"] == 4 + 8 + math.ceil(math.log2(36))
    fc = by_name["10"]  # plain 8-bit codes: memory N·b_w, one output position
    assert fc["weight_memory_bits"] == 5 * 216 * 8 and fc["positions"] == 1
    assert costs["weight_memory_bits"] == sum(c["weight_memory_bits"] for c in costs["layers"])
    total = sum(c["bops_stored"] * c["positions"] for c in costs["layers"])
    assert costs["bops_stored_per_image"] == total
    # without an example input each layer counts one output position
    assert layer_cost(node).positions == 1


def test_msq_layers_store_their_code_bits():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3),
        torch.nn.ReLU(),
        torch.nn.Conv2d(4, 8, 3),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(8 * 2 * 2, 3),
    )
    recipe = hwquant.Recipe(scheme="msq", weight_bits=4, act_bits=4, msq=MSQOptions(sp2_share=1.0))
    x = torch.randn(4, 1, 6, 6)
    qat = hwquant.prepare(model, recipe)
    qat.train()(x)
    int_model = hwquant.lower(qat.eval(), x)
    node = int_model.weight_nodes()[1]
    assert isinstance(node.encoding, MSQEncoding) and node.weight_bits == 5  # SP2 integer 8
    c = layer_cost(node)
    assert c.stored_weight_bits == 4 and c.multiplier_bits == 5
    assert c.weight_memory_bits == node.encoding.storage_bits()
