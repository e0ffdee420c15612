"""Device profiles: counts, sources, lookup and the unknown-device error."""

from __future__ import annotations

import pytest

from hwquant.core.errors import ConfigError
from hwquant.hw.devices import BRAM36_BITS, DEVICES, DSP48E1, DSP48E2, get_device


def test_required_parts_have_profiles() -> None:
    assert {"xc7z020", "xc7z045"} <= set(DEVICES)
    assert any(d.dsp is DSP48E2 for d in DEVICES.values())  # an UltraScale+ part


@pytest.mark.parametrize("device", DEVICES.values(), ids=list(DEVICES))
def test_profile_is_consistent_and_cited(device) -> None:
    assert min(device.luts, device.ffs, device.dsps, device.bram36) > 0
    assert device.clock_mhz > 0
    assert device.bram_bits == device.bram36 * device.block_bits
    if not device.name.startswith("x"):  # Lattice: one FF per LUT4, 18 Kb / 4 Kb EBR
        assert device.ffs == device.luts and device.lut_inputs == 4
        assert device.source.startswith("FPGA-DS-")
        return
    assert device.ffs == 2 * device.luts  # 7-series and UltraScale+ CLBs: 2 FFs per LUT6
    assert device.dsp is (DSP48E1 if device.name.startswith("xc7") else DSP48E2)
    assert device.source.startswith("DS190" if device.name.startswith("xc7") else "DS891")
    assert device.block_bits == 36 * 1024


def test_datasheet_counts_of_the_paper_parts() -> None:
    z020, z045 = get_device("xc7z020"), get_device("xc7z045")
    assert (z020.luts, z020.dsps, z020.bram36) == (53_200, 220, 140)
    assert (z045.luts, z045.dsps, z045.bram36) == (218_600, 900, 545)
    assert BRAM36_BITS == 36_864


def test_lookup_ignores_case_and_passes_profiles_through() -> None:
    assert get_device(" XC7Z020 ") is DEVICES["xc7z020"]
    assert get_device(DEVICES["xczu9eg"]) is DEVICES["xczu9eg"]


def test_unknown_device_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as err:
        get_device("xc7a35t")
    message = str(err.value)
    assert "xc7a35t" in message and "Fix:" in message
    assert all(name in message for name in DEVICES)
