"""PE x SIMD folding: one layer by hand, weight memories, the solved folding, MSQ lanes, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hwquant.cli import main
from hwquant.core.errors import ConfigError
from hwquant.core.intmath import accumulator_bits
from hwquant.hw.devices import get_device
from hwquant.hw.folding import Fold, divisors, fold_layer, fold_network, weight_memory
from hwquant.hw.mac_cost import DEFAULT_COSTS
from hwquant.hw.network import LayerWork
from tests.app.test_hw_cli import SMALL

Z020 = get_device("xc7z020")
FIRST = LayerWork("conv1", "conv2d", "first", 8, 27, 64, 8, 8, True, 8 * 27 * 8)
INNER = LayerWork("conv2", "conv2d", "inner", 16, 72, 64, 4, 4, False, 16 * 72 * 4, 12)
LAST = LayerWork("fc", "linear", "last", 10, 64, 1, 8, 4, False, 10 * 64 * 8)


def test_fixed_layer_by_hand() -> None:
    x = fold_layer(INNER, Fold(4, 8), "fixed", Z020, DEFAULT_COSTS, last=False)
    assert x.cycles == 4 * 9 * 64  # ceil(16/4) row steps x ceil(72/8) fan-in steps x 64
    acc = accumulator_bits(4, 4, 72)
    mac = DEFAULT_COSTS.dsp_mac(Z020, 4, 4, acc_bits=acc)
    req = DEFAULT_COSTS.unit("requantizer", acc_bits=acc, multiplier_bits=16, out_bits=4)
    # 32 DSP MACs, 4 requantizers, and 4 weight memories of 36 words x 32 bits in LUTRAM
    assert x.luts == 32 * mac.luts + 4 * req.luts + 4 * 32
    assert x.ffs == 32 * mac.ffs + 4 * req.ffs
    assert x.dsps == 32 + 4 * int(req.dsps)
    assert (x.bram18, x.lut_lanes) == (0, 0)


def test_weight_memories_by_hand() -> None:
    assert weight_memory(64, 32) == (0, 32)  # LUTRAM: one LUT per bit of width
    assert weight_memory(512, 36) == (1, 0)  # one RAMB18 as 512 x 36
    assert weight_memory(1024, 36) == (2, 0)
    assert weight_memory(2048, 9) == (1, 0)
    assert weight_memory(4608, 4) == (2, 0)  # 4K x 4 twice beats 2K x 9 three times


def test_msq_splits_lanes_by_its_sp2_rows() -> None:
    x = fold_layer(INNER, Fold(4, 8), "msq", Z020, DEFAULT_COSTS, last=False)
    assert x.lut_lanes == 3  # 4 lanes x 12/16 SP2 rows
    assert x.cycles == max(-(-12 // 3), -(-4 // 1)) * 9 * 64
    two = fold_layer(INNER, Fold(2, 8), "msq", Z020, DEFAULT_COSTS, last=False)
    assert two.lut_lanes == 1 and two.cycles == 12 * 9 * 64  # one lane of each kind
    with pytest.raises(ConfigError, match="PE >= 2"):
        fold_layer(INNER, Fold(1, 8), "msq", Z020, DEFAULT_COSTS, last=False)


def test_solved_folding_fits_and_beats_no_folding() -> None:
    layers = [FIRST, INNER, LAST]
    for design in ("fixed", "msq"):
        fd = fold_network(layers, "xc7z020", design)
        assert fd.fits and fd.weights_on_chip
        for x in fd.layers:
            assert x.work.rows % x.fold.pe == 0 and x.work.fan_in % x.fold.simd == 0
        least = {w.name: Fold(2 if design == "msq" and w is INNER else 1, 1) for w in layers}
        ones = fold_network(layers, "xc7z020", design, folding=least)
        assert fd.ii_cycles < ones.ii_cycles
        assert fd.ii_cycles == max(x.cycles for x in fd.layers)
        assert fd.latency_cycles == sum(x.cycles for x in fd.layers)
    forced = fold_network(layers, "xc7z020", "fixed", folding={"conv2": Fold(16, 72)})
    assert forced.layers[1].cycles == 64 and not forced.fits  # 1,152 DSP MACs
    assert any(p.startswith("DSP slices: needs") for p in forced.problems())


def test_divisors() -> None:
    assert divisors(12) == [1, 2, 3, 4, 6, 12] and divisors(1) == [1]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"device": "xc9000"}, "unknown FPGA device"),
        ({"design": "tables"}, "fixed, sp2, msq, fixed_lut"),
        ({"folding": {"conv9": Fold(1, 1)}}, "unknown layer"),
        ({"folding": {"conv2": Fold(0, 1)}}, "PE, SIMD >= 1"),
    ],
)
def test_bad_input_is_named(kwargs: dict, match: str) -> None:
    args = {"device": "xc7z020", "design": "msq"} | kwargs
    with pytest.raises(ConfigError, match=match):
        fold_network([FIRST, INNER, LAST], args.pop("device"), args.pop("design"), **args)


def test_cli_fold_json_plot_and_folding_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png = tmp_path / "est.png"
    argv = ["hw", *SMALL, "--device", "xc7z020", "--design", "msq", "--fold", "--json"]
    assert main([*argv, "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    data = json.loads(out[: out.rindex("}") + 1])
    folded = data["folded"]["msq"]
    assert folded["fits"] and folded["ii_cycles"] == max(x["cycles"] for x in folded["layers"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    name = folded["layers"][1]["name"]
    folding = tmp_path / "folding.json"
    folding.write_text(json.dumps({name: [2, 1]}))  # an MSQ layer needs a lane of each kind
    assert main(["hw", *SMALL, "--device", "xc7z020", "--folding", str(folding)]) == 0
    out = capsys.readouterr().out
    assert "Folded msq on xc7z020" in out and "Folded designs" in out
    folding.write_text("[1, 2]")
    assert main(["hw", *SMALL, "--device", "xc7z020", "--folding", str(folding)]) == 1
    assert "folding file" in capsys.readouterr().err
