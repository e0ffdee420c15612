"""The forms of issue 17 in the tables scheme, each exact: concatenation, nearest upsampling
and functional max pooling on indices (the integer ops' nodes), transposed convolutions,
Conv1d, grouped and dilated convolutions with ReLU6, squeeze-excitation products, BatchNorm
after no layer, a ReLU after a pool, and networks ending in a pool, an activation or a softmax.
For each: every table layer's indices in the QAT model (eval) equal the engine's, the output
values too, with either kernel and after a save/load round trip, and nothing multiplies."""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import hwquant
from hwquant.core.errors import UnsupportedLayerError
from hwquant.schemes.tables import capture_indices, load_tables, run_tables
from hwquant.schemes.tables.audit import MultiplyFreeAudit
from hwquant.schemes.tables.model import LookupAddNode, UnitNode
from hwquant.schemes.tables.network import check_blocks
from tests.schemes.tables.conftest import trained_tables


def cbr(c_in: int, c_out: int, **conv) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, **conv), nn.BatchNorm2d(c_out), nn.ReLU()
    )


class UNet(nn.Module):
    """F.max_pool2d, nn.Upsample and torch.cat of a ReLU'd and a plain (signed) branch."""

    def __init__(self) -> None:
        super().__init__()
        self.enc1, self.enc2 = cbr(3, 4), cbr(4, 4)
        self.skip = nn.Conv2d(4, 2, 1)
        self.up = nn.Upsample(scale_factor=2)
        self.out = nn.Conv2d(6, 2, 1)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        return self.out(torch.cat([self.up(e2), self.skip(e1)], 1))


class Decoder(nn.Module):
    """Two transposed convolutions, the first with BN and ReLU, the second the output."""

    def __init__(self) -> None:
        super().__init__()
        self.down = cbr(3, 4, stride=2)
        self.up1 = nn.ConvTranspose2d(4, 4, 4, 2, 1)
        self.bn, self.up2 = nn.BatchNorm2d(4), nn.ConvTranspose2d(4, 2, 3, 1, 1)

    def forward(self, x):
        return self.up2(F.relu(self.bn(self.up1(self.down(x)))))


class Signal(nn.Module):
    """Conv1d (+BatchNorm1d, ReLU), MaxPool1d, padding="same", a mean over time."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Sequential(
            nn.Conv1d(2, 4, 5, 2, 2), nn.BatchNorm1d(4), nn.ReLU(), nn.MaxPool1d(2)
        )
        self.c2 = nn.Conv1d(4, 4, 3, padding="same")
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(F.relu(self.c2(self.c1(x))).mean(-1))


class Mobile(nn.Module):
    """ReLU6, a depthwise and a dilated convolution, an add without ReLU, Hardswish."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU6())
        self.dw = nn.Sequential(
            nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.BatchNorm2d(8), nn.ReLU6()
        )
        self.pw = nn.Sequential(nn.Conv2d(8, 8, 1, groups=2), nn.BatchNorm2d(8))
        self.dilated = nn.Conv2d(8, 4, 3, padding=2, dilation=2)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        x = self.stem(x)
        x = F.hardswish(x + self.pw(self.dw(x)))
        return self.fc(F.relu6(self.dilated(x)).mean((2, 3)))


class SqueezeExcite(nn.Module):
    """``x * sigmoid(fc(gap(x)))`` with the gate broadcast over the feature map."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = cbr(3, 4)
        self.fc1, self.fc2, self.head = nn.Linear(4, 2), nn.Linear(2, 4), nn.Linear(4, 3)

    def forward(self, x):
        x = self.stem(x)
        gate = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3))))))
        return self.head((x * gate.view(-1, 4, 1, 1)).mean((2, 3)))


class PreActivation(nn.Module):
    """BatchNorm after no layer (BN -> ReLU -> conv) and a ReLU after a max pool (ceil_mode)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv0, self.bn = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.conv1, self.fc = nn.Conv2d(4, 4, 3, padding=1), nn.Linear(64, 3)

    def forward(self, x):
        x = self.conv1(F.relu(self.bn(self.conv0(x))))
        return self.fc(torch.flatten(F.relu(F.max_pool2d(x, 3, 2, ceil_mode=True)), 1))


def pooled_ending() -> nn.Module:
    """Network in network's ending: ReLU'd 1x1 conv, global average pool, flatten."""
    return nn.Sequential(
        cbr(3, 4), nn.Conv2d(4, 3, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
    )


def sigmoid_ending() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(192, 8), nn.ReLU(), nn.Linear(8, 1), nn.Sigmoid())


def relu_ending() -> nn.Module:
    """A last layer with an output quantizer (a ReLU'd linear): the output is its indices."""
    return nn.Sequential(nn.Flatten(), nn.Linear(192, 8), nn.ReLU(), nn.Linear(8, 3), nn.ReLU())


def softmax_ending() -> nn.Module:
    return nn.Sequential(
        nn.Flatten(), nn.Linear(192, 8), nn.ReLU(), nn.Linear(8, 3), nn.LogSoftmax(1)
    )


MODELS = {
    "unet": (UNet, (3, 8, 8)),
    "transposed": (Decoder, (3, 8, 8)),
    "conv1d": (Signal, (2, 32)),
    "mobile": (Mobile, (3, 8, 8)),
    "squeeze_excite": (SqueezeExcite, (3, 8, 8)),
    "pre_activation": (PreActivation, (3, 8, 8)),
    "pooled_ending": (pooled_ending, (3, 8, 8)),
    "sigmoid_ending": (sigmoid_ending, (3, 8, 8)),
    "softmax_ending": (softmax_ending, (3, 8, 8)),
    "relu_ending": (relu_ending, (3, 8, 8)),
}


@functools.cache
def _lowered(name: str):
    build, sample = MODELS[name]
    torch.manual_seed(0)
    x = torch.randn(6, *sample)
    qat = trained_tables(build(), x)
    return qat, hwquant.lower(qat, x), x


@pytest.mark.parametrize("name", list(MODELS))
def test_the_engine_equals_the_qat_model_exactly(name, tmp_path):
    qat, table_model, x = _lowered(name)
    with torch.no_grad(), capture_indices(qat) as sink:
        qat_out = qat(x)
    x_idx = table_model.quantize_input(x)
    trace = run_tables(table_model, x_idx, trace=True)
    assert len(sink) >= 2
    for layer, indices in sink.items():
        assert torch.equal(indices, trace[layer]), layer
    out = table_model.output_values(trace[table_model.output])
    if name == "softmax_ending":  # kept outside: the engine outputs the logits
        out = torch.log_softmax(out, 1)
    assert torch.equal(qat_out, out)
    assert hwquant.verify(qat, table_model, x).exact
    assert torch.equal(run_tables(table_model, x_idx, engine="torch"), trace[table_model.output])
    loaded = load_tables(table_model.save(tmp_path / "model.npz"))
    assert torch.equal(run_tables(loaded, x_idx), trace[table_model.output])
    assert (loaded.output_levels is None) == (table_model.output_levels is None)


@pytest.mark.parametrize("name", ["unet", "transposed", "mobile", "squeeze_excite"])
def test_the_new_forms_run_no_multiply_and_no_float(name):
    _, table_model, x = _lowered(name)
    x_idx = table_model.quantize_input(x)
    for engine in ("torch", "auto"):
        object.__setattr__(table_model, "_compiled", None)  # audit the compilation too
        with MultiplyFreeAudit() as audit:
            run_tables(table_model, x_idx, engine=engine)
        assert audit.violations == [], engine


def test_the_lowered_nodes_are_the_forms_written():
    _, unet, _ = _lowered("unet")
    assert {"maxpool", "upsample", "concat"} <= {getattr(n, "op", None) for n in unet.nodes}
    _, mobile, _ = _lowered("mobile")
    units = {n.name: n for n in mobile.nodes if isinstance(n, UnitNode)}
    assert units["dw.0"].groups == 8 and units["pw.0"].groups == 2
    assert units["dilated"].dilation == (2, 2)
    _, se, _ = _lowered("squeeze_excite")
    assert [n.combine for n in se.nodes if isinstance(n, LookupAddNode)] == ["mul"]
    _, decoder, _ = _lowered("transposed")
    assert [n.inserts_zeros for n in decoder.units()] == [False, True, True]
    _, pooled, _ = _lowered("pooled_ending")
    assert pooled.output_levels is not None


def test_the_inputs_of_a_concatenation_share_one_codebook_on_one_schedule():
    qat, _, _ = _lowered("unet")
    shared = qat.get_submodule("enc2.0").out_quant
    assert qat.get_submodule("skip").out_quant is shared
    assert qat.get_submodule("enc1.0").out_quant is not shared
    assert not shared.unsigned  # the skip branch has no ReLU
    assert (shared.start_step, shared.reestimate_every) == (2 * 1, 2 * 2)  # two calls a batch


def test_the_hardware_design_refuses_the_forms_it_has_no_block_for():
    _, mobile, _ = _lowered("mobile")
    with pytest.raises(UnsupportedLayerError, match=r"'dw.0' has groups=8.*Fix"):
        check_blocks(mobile)
    _, unet, _ = _lowered("unet")
    with pytest.raises(UnsupportedLayerError, match=r"'up' is a 'upsample' node.*Fix"):
        check_blocks(unet)
