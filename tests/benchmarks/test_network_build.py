"""``benchmarks.network_build --check-rtl``: an entry is "same" only when the current
generator emits the files it measured, for its model."""

from __future__ import annotations

import benchmarks.network_build as nb

from tests.rtl.network.conftest import tiny_cnn

SPEC = nb.Spec("tiny", "digits", "llsq", "lfe5u-85f", folding={"features.1.0": (2, 4)})


def test_check_rtl_compares_the_rebuilt_design_with_the_entry(tmp_path, monkeypatch):
    monkeypatch.setattr(nb, "WORK", tmp_path)
    monkeypatch.setattr(nb, "DESIGNS", (SPEC,))
    design = nb._build(SPEC, tiny_cnn(), tmp_path / "tiny" / "design", 8)  # what a run measured
    entry = {"rtl_sha256": design.record["rtl_sha256"]}
    assert nb.check_rtl("tiny", entry) == "same"
    assert (tmp_path / "tiny" / "check" / "design.json").is_file()  # rebuilt beside it
    rom = tmp_path / "tiny" / "design" / "rtl" / "hq_classifier_weights.mem"
    rom.write_text(rom.read_text().replace("0", "1", 1))  # the measured files are not re-read
    assert nb.check_rtl("tiny", entry) == "same"
    assert nb.check_rtl("tiny", {"rtl_sha256": "0" * 64}) == "differs"
    other_model = {"rtl_sha256": "0" * 64, "model_sha256": "1" * 64}  # trained again, not equal
    assert nb.check_rtl("tiny", other_model).startswith("unknown: the model here")
    own_model = {"rtl_sha256": "0" * 64, "model_sha256": design.record["model_sha256"]}
    assert nb.check_rtl("tiny", own_model) == "differs"
    assert nb.check_rtl("tiny", {"rtl_sha256": None}).startswith("unknown")
