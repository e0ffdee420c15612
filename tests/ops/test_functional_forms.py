"""Functional and tensor-method forms of the supported ops (issue 17): ``F.max_pool2d``,
``F.avg_pool2d``, ``x.mean((2, 3))``, ``F.dropout``, ``nn.Dropout2d``, ``squeeze``/``unsqueeze``.
Each goes through QAT, lowering, the integer engine and the exported graph, exactly."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import hwquant
from hwquant.core.errors import UnsupportedLayerError
from hwquant.qat.nn.base import capture_codes
from hwquant.qat.recipe import Recipe, TableOptions
from tests.helpers import trained_qat_model

Body = Callable[[nn.Module, torch.Tensor], torch.Tensor]


class Net(nn.Module):
    """conv -> ReLU -> ``body`` -> fc; ``body`` maps ``[N, 4, 8, 8]`` to ``[N, features]``."""

    def __init__(self, body: Body, features: int) -> None:
        super().__init__()
        self.body = body
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.drop2d = nn.Dropout2d(0.5)
        self.fc = nn.Linear(features, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(self, F.relu(self.conv(x))))


FORMS: dict[str, tuple[Body, int, str]] = {
    "F.max_pool2d": (lambda m, y: torch.flatten(F.max_pool2d(y, 2), 1), 64, "maxpool"),
    "F.max_pool2d(3, 2, 1)": (
        lambda m, y: torch.flatten(F.max_pool2d(y, 3, stride=2, padding=1), 1),
        64,
        "maxpool",
    ),
    "F.avg_pool2d": (lambda m, y: torch.flatten(F.avg_pool2d(y, 4), 1), 16, "avgpool"),
    "mean((2, 3))": (lambda m, y: y.mean((2, 3)), 4, "avgpool"),
    "mean(keepdim)": (lambda m, y: y.mean(dim=(-2, -1), keepdim=True).flatten(1), 4, "avgpool"),
    "F.dropout": (
        lambda m, y: F.dropout(y, 0.5, training=m.training).mean((2, 3)),
        4,
        "avgpool",
    ),
    "Dropout2d": (lambda m, y: m.drop2d(y).mean((2, 3)), 4, "avgpool"),
    "squeeze": (
        lambda m, y: F.adaptive_avg_pool2d(y, 1).squeeze(-1).squeeze(-1),
        4,
        "reshape",
    ),
    "unsqueeze+view": (lambda m, y: y.mean((2, 3)).unsqueeze(1).view(-1, 4), 4, "reshape"),
}


def lowered(form: str) -> tuple[nn.Module, hwquant.IntModel, torch.Tensor]:
    body, features, _ = FORMS[form]
    torch.manual_seed(0)
    x = torch.randn(16, 1, 8, 8)
    qat = trained_qat_model(Net(body, features), Recipe(bn_freeze_step=1), x)
    return qat, hwquant.lower(qat, x), x


@pytest.mark.parametrize("form", list(FORMS))
def test_functional_form_is_lowered_and_exact(form):
    qat, int_model, x = lowered(form)
    assert FORMS[form][2] in [node.op for node in int_model.nodes]
    x_int = int_model.quantize_input(x)
    with capture_codes(qat) as codes:
        qat(x)
    out = int_model.run(x_int)
    assert torch.equal(out, codes[int_model.output])
    assert hwquant.verify(qat, int_model, x).exact
    assert torch.equal(int_model.run(x_int, backend="onnxruntime"), out)


def test_functional_dropout_follows_the_train_and_eval_mode():
    qat, _, x = lowered("F.dropout")
    qat.eval()
    assert torch.equal(qat(x), qat(x))  # eval: no dropout, although traced in train mode
    qat.train()
    torch.manual_seed(1)
    first = qat(x)
    assert not torch.equal(first, qat(x))  # train: dropout draws new masks


@pytest.mark.parametrize(
    ("body", "needles"),
    [
        (
            lambda m, y: F.max_pool2d(y, 2, return_indices=True)[0].mean((2, 3)),
            "max_pool2d_with_indices",
        ),
        (lambda m, y: F.avg_pool2d(y, 4, stride=2).mean((2, 3)), "stride=2 different from"),
        (lambda m, y: F.avg_pool2d(y, 2, 2, 1).mean((2, 3)), "padding=1"),
        (lambda m, y: F.adaptive_avg_pool2d(y, 1).squeeze(), "has no dim"),
        (lambda m, y: y.mean((2, 3)).unsqueeze(0).view(-1, 4), "has dim=0"),
        (lambda m, y: y.mean((2, 3), dtype=torch.float64).float(), "dtype=torch.float64"),
    ],
    ids=["return_indices", "avg-stride", "avg-padding", "squeeze()", "unsqueeze(0)", "dtype"],
)
def test_forms_that_would_change_the_function_are_refused(body, needles):
    with pytest.raises(UnsupportedLayerError, match="Fix:") as info:
        hwquant.prepare(Net(body, 4), Recipe())
    assert needles in str(info.value)


TABLES = Recipe(scheme="tables", tables=TableOptions(act_start=1, reestimate_every=2))


@pytest.mark.parametrize("form", list(FORMS))
def test_tables_lower_the_forms_exactly(form):
    from hwquant.schemes.tables import capture_indices, run_tables

    body, features, _ = FORMS[form]
    torch.manual_seed(0)
    x = torch.randn(16, 1, 8, 8)
    qat = trained_qat_model(Net(body, features), TABLES, x)
    qat.eval()
    table_model = hwquant.lower(qat, x)
    with torch.no_grad(), capture_indices(qat) as sink:
        qat_out = qat(x)
    trace = run_tables(table_model, table_model.quantize_input(x), trace=True)
    for name, indices in sink.items():
        assert torch.equal(indices, trace[name]), name
    assert torch.equal(qat_out, table_model.output_values(trace[table_model.output]))
