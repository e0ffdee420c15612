"""Conformance: every registered scheme (and each form a scheme's options change the
integer model of) through the whole pipeline, with exact equality.

prepare (with its fidelity check) -> real training steps on real images (scikit-learn's 8x8
digits) -> lower -> verify(strict=True) -> save/load (and verify the loaded model) -> export
(QONNX and ONNX-QDQ run against the engine, or the refusal asserted) -> golden vectors (and one
layer's RTL replay where iverilog is installed). A scheme registered without a recipe here fails.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import hwquant
import hwquant.schemes
from hwquant.core.errors import UnsupportedLayerError
from hwquant.core.intmath import requantize
from hwquant.data import load_dataset
from hwquant.engine import run
from hwquant.export import export_qdq, export_qonnx
from hwquant.models import build
from hwquant.qat.recipe import NonUniformOptions, Recipe, TableOptions
from hwquant.rtl.golden import export_golden, layer_goldens
from hwquant.rtl.simulate import run_directory, simulator_available
from hwquant.schemes.tables import TableModel, run_tables

# a 6-bit classifier keeps its accumulator within float32's exact range (2^24), so the ONNX
# graphs of the trained model exist (at 8 bits the export refuses it, naming the layer)
RECIPES = {
    "llsq": Recipe(bn_freeze_step=3, last_layer_bits=6),
    "msq": Recipe(scheme="msq", bn_freeze_step=3, last_layer_bits=6),
    "nonuniform": Recipe(
        scheme="nonuniform", scale_constraint="pow2", bn_freeze_step=3, last_layer_bits=6
    ),
    "nonuniform_bn_gain_per_channel": Recipe(  # free activation scales: it multiplies anyway
        scheme="nonuniform",
        bn_freeze_step=3,
        last_layer_bits=6,
        nonuniform=NonUniformOptions(bn_gain="per_channel"),
    ),
    "tables": Recipe(scheme="tables", tables=TableOptions(act_start=1, reestimate_every=2)),
}
STEPS, BATCH = 4, 64


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Training images and labels, and a test batch: pixels / 255, centred and scaled."""
    splits = load_dataset("digits")

    def images(split, n: int) -> torch.Tensor:
        x = torch.from_numpy(split.images[:n]).permute(0, 3, 1, 2).float() / 255
        return (x - 0.3) / 0.4

    labels = torch.from_numpy(splits.train.labels[: STEPS * BATCH])
    return images(splits.train, STEPS * BATCH), labels, images(splits.test, 32)


def _trained(recipe: Recipe, digits) -> torch.nn.Module:
    x, y, _ = digits
    torch.manual_seed(0)
    qat = hwquant.prepare(build("small_cnn", in_channels=1, input_size=8), recipe)
    qat.train()
    opt = torch.optim.SGD(qat.parameters(), lr=0.05, momentum=0.9)
    for step in range(STEPS):
        batch = slice(step * BATCH, (step + 1) * BATCH)
        opt.zero_grad()
        F.cross_entropy(qat(x[batch]), y[batch]).backward()
        opt.step()
    return qat.eval()


def _outputs(model, x: torch.Tensor) -> torch.Tensor:
    """The integer outputs of a lowered model's engine (integer or table) on float batch x."""
    engine = run_tables if isinstance(model, TableModel) else run
    out = engine(model, model.quantize_input(x))
    return out if isinstance(out, torch.Tensor) else out.output


def _check_export(model, x: torch.Tensor) -> None:
    """QONNX (qonnx's executor) and QDQ (onnxruntime) equal the engine, or a TableModel is
    refused by both with the error naming it."""
    shape = tuple(x.shape)
    if isinstance(model, TableModel):
        for export in (export_qonnx, export_qdq):
            with pytest.raises(UnsupportedLayerError, match="TableModel"):
                export(model, shape)
        return
    pytest.importorskip("onnxruntime")
    pytest.importorskip("qonnx")
    from hwquant.export import run_onnxruntime, run_qonnx

    want = run(model, model.quantize_input(x)).output.numpy()
    assert np.array_equal(run_qonnx(export_qonnx(model, shape), x.numpy()), want)
    assert np.array_equal(run_onnxruntime(export_qdq(model, shape), x.numpy()), want)


def _check_goldens(model, x: torch.Tensor, tmp_path) -> None:
    """Golden vectors are the engine's numbers; one inner layer replays in Verilog."""
    if isinstance(model, TableModel):
        return  # the table scheme has no golden-vector export
    codes = model.quantize_input(x[:2])
    for golden in layer_goldens(model, codes):
        node = golden.node
        dot = np.einsum("npk,ck->npc", golden.patches, golden.weight)
        assert np.array_equal(golden.dot, dot)
        assert np.array_equal(golden.acc, dot + (0 if node.bias is None else node.bias))
        if node.mult is None:  # the last layer returns its accumulator
            assert np.array_equal(golden.output, golden.acc)
            continue
        mult, shift = torch.from_numpy(node.mult), torch.from_numpy(node.shift)
        out = requantize(torch.from_numpy(golden.acc), mult, shift, node.lo, node.hi)
        assert np.array_equal(golden.output, out.numpy())
    if not simulator_available():
        return  # make test installs iverilog; here only the vectors are checked
    inner = model.weight_nodes()[1].name
    benches = export_golden(model, codes[:1], tmp_path / "golden", pixels=2)
    bench = next(b for b in benches if b.name.startswith(f"{inner}."))
    last = run_directory(bench, "tb").strip().splitlines()[-1].split()
    assert last[0] == "DONE" and last[1] == "0" and int(last[2]) > 0


@pytest.mark.parametrize("scheme", hwquant.schemes.available())
def test_every_scheme_has_a_conformance_recipe(scheme):
    assert scheme in {recipe.scheme for recipe in RECIPES.values()}, (
        f"scheme {scheme!r} has no conformance recipe: add one to RECIPES"
    )


@pytest.mark.parametrize("case", sorted(RECIPES))
def test_scheme_conforms(case, digits, tmp_path):
    recipe = RECIPES[case]
    _, _, x = digits
    qat = _trained(recipe, digits)
    lowered = hwquant.lower(qat, x)
    assert type(lowered) is hwquant.schemes.get(recipe.scheme).lowered  # what it declares
    report = hwquant.verify(qat, lowered, x, strict=True)  # exact, and no warning
    assert report.exact and report.compared > 0

    loaded = hwquant.schemes.load_lowered(lowered.save(tmp_path / f"{case}.npz"))
    assert type(loaded) is type(lowered)
    assert hwquant.verify(qat, loaded, x, strict=True).compared == report.compared
    assert torch.equal(_outputs(loaded, x), _outputs(lowered, x))

    _check_export(loaded, x)
    _check_goldens(loaded, x, tmp_path)
