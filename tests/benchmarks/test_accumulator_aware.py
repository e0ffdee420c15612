"""The accumulator-aware benchmarks' inputs: committed FP32 starts and the curve's recipes."""

from __future__ import annotations

import dataclasses
import json

import pytest

from benchmarks import accumulator_aware_cifar10 as cifar
from benchmarks import accumulator_aware_fashion_mnist as fashion
from hwquant.app.bench.rows import late_bn_freeze_step
from hwquant.app.bench.tiers import get_tier
from hwquant.core.errors import ConfigError
from hwquant.core.provenance import file_sha256
from hwquant.qat.recipe import bn_freeze_step_for


def test_fashion_mnist_starts_from_the_committed_fp32_weights():
    """The published rows name their start by a scratch path; the committed file is the same
    weights (its sha256 is the one the docs quote), and parts from either path merge."""
    assert file_sha256(fashion.FP32_START) == fashion.FP32_START_SHA256
    args = fashion.parse_args(["--rows", "W4A4_P20"])
    assert args.init_fp32 == fashion.FP32_START and args.selected == ["W4A4_P20"]
    assert fashion.parse_args(["--train-fp32"]).init_fp32 is None
    scratch = "/tmp/a2q/fp32_small_cnn_epoch1.pt"
    assert fashion.start_name(scratch) == fashion.start_name(str(fashion.FP32_START))


def test_cifar10_rows_are_the_cpu_full_row_with_a_bound():
    """Each point is the cpu-full llsq_W4A4 recipe with only the accumulator fields added."""
    steps = 585
    base = cifar.BASE_ROW.recipe(steps)
    recipe = cifar.recipe_at(14, steps)
    assert (recipe.accumulator_bits, recipe.accumulator_digit_planes) == (14, True)
    assert (
        dataclasses.replace(recipe, accumulator_bits=None, accumulator_digit_planes=False) == base
    )
    assert (base.weight_bits, base.first_layer_bits, base.last_layer_bits) == (4, 8, 8)
    with pytest.raises(SystemExit):
        cifar.parse_args(["--acc-bits", "15"])
    with pytest.raises(SystemExit):
        cifar.parse_args(["--quick"])  # a smoke run never writes the published file
    with pytest.raises(SystemExit):
        cifar.parse_args(["--quick", "--out", str(cifar.OUTPUTS["cpu-full"])])
    assert cifar.parse_args([]).out == cifar.OUTPUTS["cpu-long"]
    assert cifar.parse_args(["--tier", "cpu-full"]).out == cifar.OUTPUTS["cpu-full"]
    eight = cifar.parse_args(["--bits", "8"]).out
    assert eight == cifar.default_output("cpu-long", 8) != cifar.OUTPUTS["cpu-long"]
    with pytest.raises(SystemExit):
        cifar.parse_args(["--quick", "--bits", "8", "--out", str(eight)])
    with pytest.raises(SystemExit):
        cifar.parse_args(["--bits", "6"])


def test_cifar10_w8a8_rows_are_the_same_recipe_at_8_bits():
    """The W8A8 curve is the LLSQ row's recipe at 8 bits (BN frozen late, as every row with
    8-bit activations); its rows are not accepted into the W4A4 curve, nor the W4A4 rows
    into it."""
    w8 = cifar.recipe_at(16, 585, bits=8)
    assert (w8.weight_bits, w8.act_bits, w8.bn_freeze_step) == (8, 8, late_bn_freeze_step(585))
    w4 = dataclasses.replace(w8, weight_bits=4, act_bits=4, bn_freeze_step=bn_freeze_step_for(585))
    assert w4 == cifar.recipe_at(16, 585)
    assert cifar.row_name(8, 10) == "W8A8_P10"
    stored = {"acc_bits": 16, "recipe": w8.to_dict()}
    cifar.check_stored_row("W8A8_P16", stored, 585, bits=8)
    with pytest.raises(SystemExit, match=r"W8A8_P16.*act_bits, bn_freeze_step, weight_bits"):
        cifar.check_stored_row("W8A8_P16", stored, 585)


def test_cifar10_summary_keeps_refused_widths_apart_from_the_curve():
    rows = {
        "W8A8_P32": {"acc_bits": 32, "engine_acc": 0.87, "exact": True, "status": "done"},
        "W4A4_P16": {"acc_bits": 16, "engine_acc": 0.86, "exact": True},  # stored before status
        "W8A8_P8": {"acc_bits": 8, "status": "refused", "error": "layer 'stem': use 9"},
    }
    out = cifar.summary(rows, 0.88)
    assert out["engine_acc_by_acc_bits"] == {32: 0.87, 16: 0.86}
    assert out["loss_from_fp32_points"] == {32: 1.0, 16: 2.0}
    assert out["loss_from_unconstrained_points"] == {32: 0.0, 16: 1.0}
    assert out["refused"] == {8: "layer 'stem': use 9"} and out["all_exact"]


def test_a_stored_cifar10_row_of_another_recipe_is_refused_not_skipped():
    """The published cpu-full rows trained their activation scales; the row's recipe now holds
    them, so a resume into that file names the field instead of mixing two recipes."""
    stored = {"acc_bits": 14, "recipe": cifar.recipe_at(14, 585).to_dict()}
    cifar.check_stored_row("W4A4_P14", stored, 585)  # the same recipe: skipped
    stored["recipe"].pop("act_scales")  # a row from before the field: its default, "trained"
    with pytest.raises(SystemExit, match=r"W4A4_P14.*fields act_scales"):
        cifar.check_stored_row("W4A4_P14", stored, 585)


def test_a_result_file_of_other_tier_settings_is_refused(tmp_path, monkeypatch):
    """A float32 run (--no-amp) is not appended to a curve trained under bf16 (the published
    files resume), and a bf16 tier on a CPU without native bf16 kernels names --no-amp before
    anything is read or written."""
    bf16 = dataclasses.asdict(get_tier("cpu-long"))
    for published in (cifar.OUTPUTS["cpu-long"], cifar.default_output("cpu-long", 8)):
        stored = json.loads(published.read_text())["config"]["tier"]
        cifar.check_stored_tier(published, stored, bf16)  # as JSON: lists, not tuples
    float32 = dataclasses.asdict(get_tier("cpu-long", amp=False))
    with pytest.raises(SystemExit, match=r"a\.json .*tier\.amp: stored True, now False"):
        cifar.check_stored_tier(tmp_path / "a.json", json.loads(json.dumps(bf16)), float32)
    assert cifar.parse_args(["--no-amp"]).amp is False and cifar.parse_args([]).amp is True
    monkeypatch.setattr("hwquant.app.bench.reproduce.cpu_has_native_bf16", lambda: False)
    monkeypatch.setattr("torch.set_num_threads", lambda n: None)
    argv = ["--acc-bits", "16", "--out", str(tmp_path / "b.json"), "--work", str(tmp_path / "w")]
    with pytest.raises(ConfigError, match=r"Fix: add --no-amp"):
        cifar.main(argv)
    assert not (tmp_path / "b.json").exists() and not (tmp_path / "w").exists()


def test_a_cifar10_row_resumes_from_its_trainer_checkpoint_in_work(tmp_path, monkeypatch):
    """With --work, a second invocation finds the row's trainer checkpoint and continues it (here
    finished: nothing is trained, the row is the same); the directory of a 1-epoch row is
    refused for a 2-epoch one, naming the difference; --epochs-qat needs its own --out."""
    from hwquant.app.bench.reproduce import Options, build_model

    smoke = get_tier("smoke")
    state = build_model("resnet20", Options(smoke, tmp_path, ("resnet20",), ())).state_dict()
    start = {"test_acc": 0.1, "checkpoint_sha256": "0" * 64}
    monkeypatch.setattr(cifar, "fp32_state", lambda tier: (state, start))
    monkeypatch.setattr(
        cifar,
        "get_tier",
        lambda name, epochs_qat=None, amp=None: get_tier("smoke", None, epochs_qat, amp),
    )
    monkeypatch.setattr("torch.set_num_threads", lambda n: None)

    def run(out: str, epochs: str) -> dict:
        argv = ["--acc-bits", "32", "--epochs-qat", epochs, "--four-bit-examples", "4"]
        return cifar.main([*argv, "--work", str(tmp_path / "w"), "--out", str(tmp_path / out)])

    first = run("a.json", "1")["rows"]["W4A4_P32"]
    identity = tmp_path / "w" / "W4A4_P32" / "row.json"  # as written before tier.qat_cutout
    stored = json.loads(identity.read_text())
    del stored["tier"]["qat_cutout"]
    identity.write_text(json.dumps(stored))
    again = run("b.json", "1")["rows"]["W4A4_P32"]
    assert first["training"]["history"] == again["training"]["history"]
    assert first["engine_acc"] == again["engine_acc"] and again["exact"]
    with pytest.raises(
        ConfigError, match=r"--work: .*W4A4_P32 trains another row .*epochs_qat: stored 1, now 2"
    ):
        run("c.json", "2")
    with pytest.raises(SystemExit):
        cifar.parse_args(["--quick", "--epochs-qat", "2", "--out", str(tmp_path / "q.json")])
    with pytest.raises(SystemExit):
        cifar.parse_args(["--epochs-qat", "2"])  # would add to a published file
