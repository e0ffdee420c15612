"""verify(): exact reports, and a located mismatch when the IntModel is tampered with."""

from __future__ import annotations

import pytest
import torch

import hwquant
from hwquant.core.errors import VerificationError
from hwquant.models import build
from hwquant.qat.recipe import Recipe
from tests.helpers import trained_qat_model


def test_verify_locates_the_first_mismatch():
    torch.manual_seed(0)
    x = torch.randn(4, 3, 32, 32)
    qat = trained_qat_model(build("resnet20"), Recipe(bn_freeze_step=1), x)
    int_model = hwquant.lower(qat, x)
    good = hwquant.verify(qat, int_model, x)
    assert good.exact and good.compared > 0 and "bit-exact" in str(good)
    target = int_model.weight_nodes()[3]
    target.weight = target.weight.copy()
    target.weight[:] = 0
    bad = hwquant.verify(qat, int_model, x)
    assert not bad.exact and bad.first is not None
    assert bad.first.layer == target.name
    assert bad.per_layer[target.name] > 0
    earlier = [n.name for n in int_model.weight_nodes()[:3]]
    assert all(bad.per_layer[name] == 0 for name in earlier)
    assert target.name in str(bad)


# -- when an exact result proves little -------------------------------------------------------
def _digits_batch(n: int = 16) -> torch.Tensor:
    """Real 8x8 images (scikit-learn's digits), normalised as in training."""
    from hwquant.data import load_dataset

    images = load_dataset("digits").test.images[:n]
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    return (x - 0.3) / 0.4


@pytest.fixture(scope="module")
def trained_small_cnn():
    torch.manual_seed(0)
    x = _digits_batch()
    model = build("small_cnn", in_channels=1, input_size=8)
    qat = trained_qat_model(model, Recipe(bn_freeze_step=1), x)
    return qat, hwquant.lower(qat, x), x


def test_a_trained_model_on_real_data_has_no_warnings(trained_small_cnn):
    qat, int_model, x = trained_small_cnn
    report = hwquant.verify(qat, int_model, x, strict=True)
    assert report.exact and report.warnings == ()
    assert "proves little" not in str(report)


def test_an_untrained_model_is_exact_but_warned_and_strict_refuses_it():
    """The README's old snippet: prepare, eval, lower, verify with no training: every weight
    rounds to 0, so all-zero logits are 'bit-exact'."""
    torch.manual_seed(0)
    x = _digits_batch()
    qat = hwquant.prepare(build("small_cnn", in_channels=1, input_size=8), Recipe()).eval()
    int_model = hwquant.lower(qat, x)
    report = hwquant.verify(qat, int_model, x)
    assert report.exact
    initial, zero = report.warnings
    assert "initial scale" in initial and "'features.0.0.weight_quant'" in initial
    assert "every output code is 0" in zero and "'features.0.0'" in zero
    assert "proves little" in str(report)
    with pytest.raises(VerificationError, match="initial scale"):
        hwquant.verify(qat, int_model, x, strict=True)


@pytest.mark.parametrize(
    ("make_input", "expected"),
    [
        (lambda x: torch.zeros_like(x), "every output code is 0 in 'network input'"),
        (lambda x: torch.full_like(x, 0.5), "every output code is one value in 'network input="),
        (lambda x: x * 0.05, "the input's codes span only"),
    ],
    ids=["zero", "constant", "narrow"],
)
def test_inputs_that_test_little_are_warned(trained_small_cnn, make_input, expected):
    qat, int_model, x = trained_small_cnn
    report = hwquant.verify(qat, int_model, make_input(x))
    assert report.exact
    assert any(expected in w for w in report.warnings), report.warnings
    with pytest.raises(VerificationError):
        hwquant.verify(qat, int_model, make_input(x), strict=True)


def test_a_constant_layer_is_warned(trained_small_cnn):
    qat, _, x = trained_small_cnn
    saved = qat.classifier.weight.detach().clone(), qat.classifier.bias.detach().clone()
    try:
        with torch.no_grad():  # a classifier that ignores its input: every logit is its bias
            qat.classifier.weight.zero_()
            qat.classifier.bias.fill_(0.5)
        report = hwquant.verify(qat, hwquant.lower(qat, x), x)
    finally:
        with torch.no_grad():
            qat.classifier.weight.copy_(saved[0])
            qat.classifier.bias.copy_(saved[1])
    assert report.exact
    assert any("one value in" in w and "'classifier=" in w for w in report.warnings), report


def test_strict_refuses_a_mismatch(trained_small_cnn):
    qat, int_model, x = trained_small_cnn
    node = int_model.weight_nodes()[1]
    saved = node.weight
    node.weight = saved.copy()
    node.weight[:] = 0
    try:
        with pytest.raises(VerificationError, match=f"first in layer '{node.name}'"):
            hwquant.verify(qat, int_model, x, strict=True)
    finally:
        node.weight = saved


# -- a comparison of nothing is refused ---------------------------------------------------------
def test_an_empty_batch_is_refused(trained_small_cnn):
    qat, int_model, x = trained_small_cnn
    with pytest.raises(VerificationError, match=r"no sample.*Fix: verify on a batch"):
        hwquant.verify(qat, int_model, x[:0])


def test_a_model_that_emits_no_layer_output_is_refused(trained_small_cnn, monkeypatch):
    import contextlib

    from hwquant.qat import verify as verify_module

    @contextlib.contextmanager
    def captures_nothing(model, kind):
        yield {}

    monkeypatch.setattr(verify_module, "capture_outputs", captures_nothing)
    qat, int_model, x = trained_small_cnn
    with pytest.raises(VerificationError, match=r"no layer output.*0 captured"):
        hwquant.verify(qat, int_model, x)
