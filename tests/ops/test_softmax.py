"""A final softmax (hwquant/ops/softmax.py): the QAT model keeps it in float, the IntModel ends in
a SoftmaxNode that passes the logits, and both say so (the node, verify's notes); a softmax
anywhere else is refused, naming it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import hwquant
from hwquant.core.errors import UnsupportedLayerError
from hwquant.ops.softmax import SoftmaxNode
from hwquant.qat.recipe import Recipe
from tests.helpers import trained_qat_model

FINAL = {
    "nn.Softmax(dim=1)": (nn.Softmax(dim=1), False),
    "nn.LogSoftmax(1)": (nn.LogSoftmax(1), True),
    "F.log_softmax(x, dim=1)": (lambda x: F.log_softmax(x, dim=1), True),
    "torch.softmax(x, -1)": (lambda x: torch.softmax(x, -1), False),
    "x.softmax(1)": (lambda x: x.softmax(1), False),
}


class Classifier(nn.Module):
    def __init__(self, head) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 4 * 4, 5)
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv(x)), 2)
        return self.head(self.fc(torch.flatten(x, 1)))


RECIPES = {
    "llsq": Recipe(bn_freeze_step=1),
    "msq": Recipe(scheme="msq", bn_freeze_step=1),
    "nonuniform": Recipe(scheme="nonuniform", scale_constraint="pow2", bn_freeze_step=1),
}


@pytest.mark.parametrize(
    ("form", "scheme"),
    [(form, "llsq") for form in sorted(FINAL)]
    + [("nn.LogSoftmax(1)", "msq"), ("nn.LogSoftmax(1)", "nonuniform")],
)
def test_a_final_softmax_stays_outside_the_integer_graph(form, scheme, tmp_path):
    head, log = FINAL[form]
    torch.manual_seed(0)
    x = torch.randn(16, 1, 8, 8)
    qat = trained_qat_model(Classifier(head), RECIPES[scheme], x)
    int_model = hwquant.lower(qat, x)
    last = int_model.nodes[-1]
    assert isinstance(last, SoftmaxNode) and last.log is log and int_model.output == last.name
    assert int_model.integer_output == "fc"  # the logits, which the softmax passes on
    report = hwquant.verify(qat, int_model, x, strict=True)  # a note, not a warning
    assert report.exact and len(report.notes) == 1 and "outside the integer graph" in str(report)
    x_int = int_model.quantize_input(x)
    logits = int_model.run(x_int)
    assert torch.equal(logits, int_model.run(x_int, backend="onnxruntime"))
    loaded = hwquant.load(int_model.save(tmp_path / "softmax.npz"))
    assert isinstance(loaded.nodes[-1], SoftmaxNode) and torch.equal(loaded.run(x_int), logits)
    # the host's softmax of the dequantized logits is the QAT model's output
    host = (F.log_softmax if log else F.softmax)(int_model.dequantize(logits), dim=1)
    with torch.no_grad():
        assert torch.allclose(host.float(), qat(x), atol=1e-6)
    assert (host.argmax(1) == logits.argmax(1)).all() and logits.unique().numel() > 5


class SoftmaxInside(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.softmax(self.conv(x), dim=1).mean((2, 3)))


def test_the_accelerator_outputs_the_logits(tmp_path):
    from hwquant.rtl.network import build_design

    torch.manual_seed(0)
    x = torch.randn(16, 1, 8, 8)
    qat = trained_qat_model(Classifier(nn.Softmax(dim=1)), RECIPES["llsq"], x)
    design = build_design(hwquant.lower(qat, x), "lfe5u-85f", tmp_path / "d", input_size=8)
    assert "softmax" not in [b["op"] for b in design.record["blocks"]]


def test_a_softmax_elsewhere_is_refused_naming_it():
    with pytest.raises(UnsupportedLayerError, match="'softmax': it is not the model's output"):
        hwquant.prepare(SoftmaxInside())
    with pytest.raises(UnsupportedLayerError, match=r"normalises dim=0, not the classes"):
        hwquant.prepare(Classifier(nn.Softmax(dim=0)))
