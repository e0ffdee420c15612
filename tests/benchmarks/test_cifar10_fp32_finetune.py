"""The FP32 fine-tune benchmark on the smoke tier: it trains, writes a baseline that QAT rows can
start from, reports a finished run without training it again, and refuses other settings."""

from __future__ import annotations

import json

import pytest

from benchmarks import cifar10_fp32_finetune as finetune
from hwquant.app.bench.reproduce import Options, build_model
from hwquant.app.bench.tiers import get_tier
from hwquant.core.checkpoint import load_checkpoint
from hwquant.core.errors import ConfigError
from hwquant.core.provenance import file_sha256


@pytest.fixture
def smoke(monkeypatch, tmp_path):
    """The benchmark on the smoke tier (synthetic 16x16 images, quarter-width ResNet-20),
    started from a freshly initialised model standing in for the committed checkpoint."""
    tier = get_tier("smoke")
    options = Options(tier=tier, out=tmp_path, models=("resnet20",), rows=())
    state = build_model("resnet20", options).state_dict()
    start = {"test_acc": 0.1, "checkpoint_sha256": "0" * 64}
    monkeypatch.setattr(finetune, "get_tier", lambda name, amp=None: tier)
    monkeypatch.setattr(finetune, "fp32_state", lambda name: (state, start))
    monkeypatch.setattr("torch.set_num_threads", lambda n: None)
    return tmp_path


def argv(root, *more: str) -> list[str]:
    paths = ["--out", str(root / "run"), "--result", str(root / "r.json")]
    return ["--epochs", "2", "--warmup-epochs", "0.5", *paths, *more]


def test_a_run_writes_a_baseline_and_a_finished_run_is_not_trained_again(smoke, monkeypatch):
    results = finetune.main(argv(smoke, "--cutout", "4"))
    ckpt = smoke / "run" / "fp32" / "resnet20.ckpt"
    record = json.loads(ckpt.with_suffix(".json").read_text())
    assert record["checkpoint_sha256"] == file_sha256(ckpt) == results["checkpoint_sha256"]
    assert set(load_checkpoint(ckpt)) == {"state_dict"}  # the reproduce baselines' format
    assert len(results["history"]) == 2 and results["test_acc"] == record["test_acc"]
    document = json.loads((smoke / "r.json").read_text())
    assert document["config"]["cutout"] == 4 and document["config"]["train"]["epochs"] == 2
    assert document["results"]["start_test_acc"] == 0.1
    monkeypatch.setattr(finetune, "finetune", None)  # a finished run trains nothing
    again = finetune.main(argv(smoke, "--cutout", "4"))
    assert again["checkpoint_sha256"] == results["checkpoint_sha256"] == file_sha256(ckpt)
    assert again["history"] == results["history"]


def test_a_run_of_other_settings_is_refused(smoke):
    finetune.main(argv(smoke, "--cutout", "4"))
    with pytest.raises(
        ConfigError, match=r"cutout: stored 4, now 0.*train\.lr: stored 0\.05, now 0\.1"
    ):
        finetune.main(argv(smoke, "--cutout", "0", "--lr", "0.1"))


def test_a_run_from_before_a_training_field_resumes_at_its_default(smoke):
    """settings.json written before ``train.swa_epochs`` and ``tier.qat_cutout`` existed: the
    run is the same one, and a run continuing it (``--start``) starts from it."""
    finetune.main(argv(smoke, "--cutout", "4"))
    path = smoke / "run" / "settings.json"
    settings = json.loads(path.read_text())
    del settings["train"]["swa_epochs"], settings["tier"]["qat_cutout"]
    path.write_text(json.dumps(settings))
    finetune.main(argv(smoke, "--cutout", "4"))
    paths = ["--out", str(smoke / "next"), "--result", str(smoke / "next.json")]
    finetune.main(
        ["--epochs", "1", "--warmup-epochs", "0.5", "--start", str(smoke / "run"), *paths]
    )
    with pytest.raises(ConfigError, match=r"train\.swa_epochs: stored 0, now 1"):
        finetune.main(argv(smoke, "--cutout", "4", "--swa-epochs", "1"))


def test_default_paths_name_the_variant():
    args = finetune.parse_args(["--cutout", "8", "--schedule", "constant", "--swa-epochs", "4"])
    assert args.out.name == "cifar10_fp32_finetune_cpu_long_cutout8_constant_swa4"
    assert args.result.name == f"{args.out.name}.json"
    assert finetune.parse_args([]).out.name == "cifar10_fp32_finetune_cpu_long_cutout16"


def test_a_run_continues_a_finished_run_whose_checkpoint_matches_its_record(smoke):
    """--start chains schedules: the second run starts from the first one's weights (their
    accuracy is its start) and refuses them once they no longer match their sha256."""
    first = finetune.main(argv(smoke, "--cutout", "4"))
    paths = ["--out", str(smoke / "second"), "--result", str(smoke / "second.json")]
    second = finetune.main(["--epochs", "2", "--start", str(smoke / "run"), *paths])
    assert second["start_test_acc"] == first["test_acc"]
    document = json.loads((smoke / "second.json").read_text())
    assert document["config"]["start_checkpoint_sha256"] == first["checkpoint_sha256"]
    ckpt = smoke / "run" / "fp32" / "resnet20.ckpt"
    ckpt.write_bytes(ckpt.read_bytes() + b"\0")
    with pytest.raises(ConfigError, match=r"resnet20.ckpt has sha256 .* records"):
        finetune.main(["--epochs", "2", "--start", str(smoke / "run"), "--out", str(smoke / "x")])
    named = finetune.parse_args(
        ["--start", "benchmarks/results/cifar10_fp32_finetune_cpu_long_cutout16"]
    )
    assert named.out.name == "cifar10_fp32_finetune_cpu_long_cutout16_then_cutout16"


def test_swa_averages_the_last_epochs_of_a_constant_schedule(smoke):
    """--swa-epochs reaches the trainer (recorded in the settings) and the run ends on a
    baseline whose record is the averaged model's."""
    results = finetune.main(argv(smoke, "--schedule", "constant", "--swa-epochs", "2"))
    document = json.loads((smoke / "r.json").read_text())
    assert document["config"]["train"]["swa_epochs"] == 2
    assert document["config"]["train"]["schedule"] == "constant"
    assert [h["lr"] for h in results["history"]] == [0.05, 0.05]
    state = load_checkpoint(smoke / "run" / "fp32" / "resnet20.ckpt")["state_dict"]
    assert int(state["stem.1.num_batches_tracked"]) == 2  # one BN pass over the epoch's batches
