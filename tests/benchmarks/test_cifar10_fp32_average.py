"""The FP32 weight-averaging benchmark on the smoke tier: it averages two chained fine-tune runs
exactly, recomputes BN, writes a baseline that QAT rows can start from, reports a finished run
without computing it again, and refuses runs that cannot be averaged."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.optim.swa_utils import update_bn

from benchmarks import cifar10_fp32_average as average
from benchmarks import cifar10_fp32_finetune as finetune
from hwquant.app.bench.evaluate import fp32_accuracy
from hwquant.app.bench.reproduce import Options, build_model, load_baseline, load_tier_data
from hwquant.app.bench.tiers import get_tier
from hwquant.core.errors import ConfigError
from hwquant.core.provenance import file_sha256
from hwquant.data import BatchLoader


@pytest.fixture
def runs(monkeypatch, tmp_path):
    """Two chained fine-tune runs on the smoke tier (synthetic 16x16 images, quarter-width
    ResNet-20), the first from a freshly initialised model standing in for the committed
    checkpoint, both with Cutout 4."""
    tier = get_tier("smoke")
    options = Options(tier=tier, out=tmp_path, models=("resnet20",), rows=())
    state = build_model("resnet20", options).state_dict()
    start = {"test_acc": 0.1, "checkpoint_sha256": "0" * 64}
    monkeypatch.setattr(finetune, "get_tier", lambda name, amp=None: tier)  # begin() of both
    monkeypatch.setattr(finetune, "fp32_state", lambda name: (state, start))
    monkeypatch.setattr("torch.set_num_threads", lambda n: None)
    common = ["--epochs", "2", "--warmup-epochs", "0.5", "--cutout", "4"]
    finetune.main([*common, "--out", str(tmp_path / "a"), "--result", str(tmp_path / "a.json")])
    finetune.main([*common, "--start", str(tmp_path / "a"), "--out", str(tmp_path / "b"),
                   "--result", str(tmp_path / "b.json")])  # fmt: skip
    return tmp_path


def argv(root, *runs: str) -> list[str]:
    named = [str(root / run) for run in runs or ("a", "b")]
    return ["--runs", *named, "--out", str(root / "avg"), "--result", str(root / "avg.json")]


def test_the_average_is_the_runs_mean_with_bn_recomputed(runs, monkeypatch):
    results = average.main(argv(runs))
    ckpt = runs / "avg" / "fp32" / "resnet20.ckpt"
    state, record = load_baseline(ckpt)  # sha256 checked: reproduce can start from it
    first, _ = load_baseline(runs / "a" / "fp32" / "resnet20.ckpt")
    second, _ = load_baseline(runs / "b" / "fp32" / "resnet20.ckpt")
    model = build_model("resnet20", Options(tier=get_tier("smoke"), out=runs, models=(), rows=()))
    for name, _ in model.named_parameters():
        mean = ((first[name].double() + second[name].double()) / 2).float()
        assert torch.equal(state[name], mean), name
    bn = [n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
    assert bn and all(
        not torch.equal(state[f"{n}.running_mean"], second[f"{n}.running_mean"]) for n in bn
    )
    assert results["test_acc"] == record["test_acc"]
    assert results["checkpoint_sha256"] == file_sha256(ckpt)
    assert [r["run"].rsplit("/", 1)[-1] for r in results["runs"]] == ["a", "b"]
    document = json.loads((runs / "avg.json").read_text())
    assert document["config"]["bn_pass"]["cutout"] == 4
    epochs = record["training"]["history"]
    assert [h["run"].rsplit("/", 1)[-1] for h in epochs] == ["a", "a", "b", "b"]
    monkeypatch.setattr(average, "average", None)  # a finished run computes nothing
    again = average.main(argv(runs))
    timed = {"total_wall_seconds"}  # the invocation's own
    assert {k: v for k, v in again.items() if k not in timed} == {
        k: v for k, v in results.items() if k not in timed
    }
    assert file_sha256(ckpt) == results["checkpoint_sha256"]


def test_the_control_is_the_last_run_with_bn_recomputed(runs):
    """The control is measured: the last run's weights, BN recomputed by the same seeded pass
    (one cumulative average over every batch of the training set), then the test set."""
    results = average.main(argv(runs))
    options = Options(tier=get_tier("smoke"), out=runs, models=("resnet20",), rows=())
    data = load_tier_data(options)
    document = json.loads((runs / "avg.json").read_text())
    loader = BatchLoader(data.splits.train, mean=data.splits.mean, std=data.splits.std,
                         **document["config"]["bn_pass"])  # fmt: skip
    control = build_model("resnet20", options)
    control.load_state_dict(load_baseline(runs / "b" / "fp32" / "resnet20.ckpt")[0])
    update_bn((x for x, _ in loader.iter_from(0)), control)
    assert int(control.stem[1].num_batches_tracked) == len(loader) > 1
    expected = fp32_accuracy(control.eval(), data.test)
    assert results["last_run_bn_recomputed_test_acc"] == expected
    state = load_baseline(runs / "avg" / "fp32" / "resnet20.ckpt")[0]
    assert int(state["stem.1.num_batches_tracked"]) == len(loader)


def test_runs_that_cannot_be_averaged_are_refused(runs):
    with pytest.raises(SystemExit):
        average.parse_args(["--runs", str(runs / "a")])
    with pytest.raises(SystemExit):
        average.parse_args(["--runs", str(runs / "a"), str(runs / "a")])
    with pytest.raises(ConfigError, match=r"no settings\.json"):
        average.main(argv(runs, "a", "nowhere"))
    settings = runs / "b" / "settings.json"
    stored = json.loads(settings.read_text())
    settings.write_text(json.dumps(stored | {"cutout": 8}))
    with pytest.raises(ConfigError, match=r"different Cutout \(a: 4, b: 8\)"):
        average.main(argv(runs))
    settings.write_text(json.dumps(stored | {"tier": stored["tier"] | {"width": 1.0}}))
    with pytest.raises(ConfigError, match=r"other tier settings \(width: stored 1\.0"):
        average.main(argv(runs))
    train = stored["train"]
    settings.write_text(json.dumps(stored | {"train": train | {"schedule": "constant"}}))
    with pytest.raises(ConfigError, match=r"b ran schedule 'constant' .* not the end of a cosine"):
        average.main(argv(runs))
    settings.write_text(json.dumps(stored | {"start_checkpoint_sha256": "0" * 64}))
    with pytest.raises(ConfigError, match=r"b did not start from a's checkpoint"):
        average.main(argv(runs))
    settings.write_text(json.dumps(stored))
    with pytest.raises(ConfigError, match=r"a did not start from b's checkpoint"):
        average.main(argv(runs, "b", "a"))  # the chain's order
    reproduce_settings = {"tier": stored["tier"], "seed": 0}
    settings.write_text(json.dumps(reproduce_settings))
    with pytest.raises(ConfigError, match=r"not the settings of a cifar10_fp32_finetune run"):
        average.main(argv(runs))
    settings.write_text(json.dumps(stored))
    ckpt = runs / "b" / "fp32" / "resnet20.ckpt"
    ckpt.write_bytes(ckpt.read_bytes() + b"\0")
    with pytest.raises(ConfigError, match=r"resnet20.ckpt has sha256 .* records"):
        average.main(argv(runs))


def test_a_finished_average_of_other_runs_is_not_overwritten(runs):
    average.main(argv(runs))
    paths = ["--out", str(runs / "c"), "--result", str(runs / "c.json")]
    finetune.main(
        [
            "--epochs",
            "1",
            "--warmup-epochs",
            "0.5",
            "--cutout",
            "4",
            "--start",
            str(runs / "b"),
            *paths,
        ]
    )
    with pytest.raises(
        ConfigError, match=r"holds an average of other settings: runs: stored .*/a'"
    ):
        average.main(argv(runs, "b", "c"))


def test_runs_and_an_average_stored_before_a_tier_field_are_read_at_its_default(runs):
    """Settings written before ``tier.qat_cutout`` existed, in the runs and in the average's
    own --out: the finished average of the same runs is reported again, not refused."""
    first = average.main(argv(runs))
    for path in (runs / "a" / "settings.json", runs / "b" / "settings.json",
                 runs / "avg" / "settings.json"):  # fmt: skip
        settings = json.loads(path.read_text())
        del settings["tier"]["qat_cutout"]
        path.write_text(json.dumps(settings))
    again = average.main(argv(runs))
    assert again | {"total_wall_seconds": 0} == first | {"total_wall_seconds": 0}


def test_a_floating_buffer_outside_bn_is_refused():
    model = nn.Sequential(nn.Linear(1, 1))
    model.register_buffer("scale", torch.ones(1))
    state = model.state_dict()
    with pytest.raises(ConfigError, match=r"buffer \.scale is not a BN statistic"):
        average.average_parameters(model, [state, state])


def test_default_paths_name_the_count_and_the_last_run():
    args = average.parse_args(
        ["--runs", "x/cifar10_fp32_finetune_cpu_long_cutout16", "y/cifar10_fp32_finetune_z"]
    )
    assert args.out.name == "cifar10_fp32_average_2_to_z"
    assert args.result.name == "cifar10_fp32_average_2_to_z.json"
