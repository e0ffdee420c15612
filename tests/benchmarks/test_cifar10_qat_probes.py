"""The CIFAR-10 QAT probes' keys and variants (no data: the probes themselves are benchmarks)."""

from __future__ import annotations

import pytest

from benchmarks import cifar10_qat_probes as probes
from hwquant.core.errors import ConfigError


def test_a_probe_key_names_what_differs_from_the_tier():
    """Stored keys of default probes stay as they were; a changed trainer setting is named, so
    a probe with other settings is never skipped as already finished."""
    default = probes.ProbeTraining()
    assert probes.probe_key("llsq_W4A4", 100, 64, default, 5000) == "llsq_W4A4@100x64"
    assert probes.probe_key("llsq_W4A4", 0, 256, default, 5000) == "llsq_W4A4@ptq,5000"
    other = probes.ProbeTraining(lr=0.002, amp=False, label_smoothing=0.1, distill_weight=1.0,
                                 bn_freeze_lr_factor=0.5)  # fmt: skip
    assert (
        probes.probe_key("llsq_W4A4", 100, 64, other, 5000)
        == "llsq_W4A4@100x64,lr=0.002,amp=off,ls=0.1,kd=1,bnlr=0.5"
    )
    for option in (["--distill", "0.5"], ["--bn-freeze-lr-factor", "0.5"]):  # they train
        for mode in (["--steps", "0"], ["--amp-check"]):
            with pytest.raises(SystemExit):
                probes.main(["--variants", "llsq_W4A4", *option, *mode])
    with pytest.raises(SystemExit):  # refused before any data is read
        probes.main(["--variants", "llsq_W4A4", "--bn-freeze-lr-factor", "0"])
    for mode in (["--row-checkpoint", "x.ckpt"], ["--amp-check"]):  # no float32 training
        with pytest.raises(SystemExit):
            probes.main(["--variants", "llsq_W4A4", "--no-amp", *mode])


def test_a_variant_overrides_recipe_fields_and_refuses_unknown_ones():
    row, recipe = probes.parse_variant("llsq_W4A4,scale_init=min_error,bn_freeze_step=0", 100)
    assert (row.name, recipe.scale_init, recipe.bn_freeze_step) == ("llsq_W4A4", "min_error", 0)
    _, nested = probes.parse_variant("nonuniform_W2A8,nonuniform.stages=2", 100)
    assert nested.nonuniform.stages == 2
    with pytest.raises(ConfigError, match="no field 'scale_rule'"):
        probes.parse_variant("llsq_W4A4,scale_rule=peak", 100)
    with pytest.raises(ConfigError, match="unknown row 'llsq_W5A5'"):
        probes.parse_variant("llsq_W5A5", 100)


def test_a_stored_probe_whose_row_changed_is_not_skipped_silently():
    _, recipe = probes.parse_variant("llsq_W4A4", 100)
    record = {"recipe": recipe.to_dict()}
    probes.check_stored_recipe("llsq_W4A4@100x64", record, "llsq_W4A4", 100)  # the same: skip
    record["recipe"] = recipe.to_dict() | {"scale_init": "min_error"}
    with pytest.raises(ConfigError, match=r"'llsq_W4A4@100x64'.*fields scale_init"):
        probes.check_stored_recipe("llsq_W4A4@100x64", record, "llsq_W4A4", 100)


def test_a_stored_probe_from_before_a_recipe_field_reads_it_at_its_default():
    """Probes stored before ``act_scales`` existed trained their activation scales (the
    field's default): they match a variant that names that value, not the row's today."""
    _, recipe = probes.parse_variant("llsq_W4A4,act_scales=trained", 100)
    record = {"recipe": {k: v for k, v in recipe.to_dict().items() if k != "act_scales"}}
    probes.check_stored_recipe("k", record, "llsq_W4A4,act_scales=trained", 100)
    with pytest.raises(ConfigError, match="fields act_scales"):
        probes.check_stored_recipe("k", record, "llsq_W4A4", 100)


def test_a_ptq_probe_builds_its_variants_for_one_step():
    """``--steps 0`` (the PTQ start) builds each variant's recipe for one step, as the probe
    itself does (a recipe for 0 steps has no BN freeze step and is an error)."""
    args = probes.argparse.Namespace(steps=0, amp_check=False, row_checkpoint=None)
    assert probes.recipe_steps(args) == 1
    _, recipe = probes.parse_variant("llsq_W4A4", probes.recipe_steps(args))
    assert recipe.bn_freeze_step == 0
    with pytest.raises(ConfigError, match="qat_steps=0"):
        probes.parse_variant("llsq_W4A4", 0)
    assert probes.recipe_steps(probes.argparse.Namespace(steps=0, amp_check=True)) == 585
