"""FPGA device profiles: the resources a design may use (methods.md §6).

Counts are the programmable-logic resources of each part as Xilinx lists them in its product
tables: LUTs (6-input), flip-flops, DSP slices and 36 Kb block RAMs. The Zynq-7000 figures are from
DS190, *Zynq-7000 SoC Data Sheet: Overview*, Table "Zynq-7000 SoC Family" (XC7Z020: 53,200 LUTs,
106,400 FFs, 220 DSP48E1, 140 BRAM36 = 4.9 Mb; XC7Z045: 218,600 LUTs, 437,200 FFs, 900 DSP48E1,
545 BRAM36 = 19.2 Mb); the Zynq UltraScale+ figures from DS891, *Zynq UltraScale+ MPSoC Data
Sheet: Overview*, Table "Zynq UltraScale+ MPSoC: EG Device Feature Summary" (XCZU3EG: 70,560 LUTs,
141,120 FFs, 360 DSP48E2, 216 BRAM36; XCZU9EG: 274,080 LUTs, 548,160 FFs, 2,520 DSP48E2, 912
BRAM36). The multiplier port widths are from UG479 (7 Series DSP48E1 Slice User Guide: 25x18
two's-complement multiplier, 48-bit accumulator) and UG579 (UltraScale Architecture DSP Slice
User Guide: DSP48E2, 27x18 multiplier, 48-bit accumulator).

The default clock is not a device fact but a design assumption [D]: 100 MHz on Zynq-7000 (a
common, conservative fabric clock of Zynq-7000 CNN accelerators; the same on both parts, so they
compare by resources alone) and 200 MHz on Zynq UltraScale+. Every throughput scales linearly
with it and no speed-up ratio depends on it; pass another clock to the estimate to change it.
"""

from __future__ import annotations

from dataclasses import dataclass

from hwquant.core.errors import ConfigError

BRAM36_BITS = 36 * 1024
"""Bits of one 36 Kb block RAM, data plus parity bits (UG473, 7 Series FPGAs Memory Resources:
"each 36 Kb block RAM"; the parity bits hold data at widths x9/x18/x36/x72)."""


@dataclass(frozen=True)
class DSPSlice:
    """A DSP slice type: name and the widths of its multiplier's two signed inputs."""

    name: str
    a_bits: int
    b_bits: int
    source: str


DSP48E1 = DSPSlice("DSP48E1", 25, 18, "UG479 7 Series DSP48E1 Slice User Guide")
DSP48E2 = DSPSlice("DSP48E2", 27, 18, "UG579 UltraScale Architecture DSP Slice User Guide")


@dataclass(frozen=True)
class Device:
    """An FPGA part's programmable-logic resources and a default clock.

    ``luts``: 6-input LUTs; ``ffs``: flip-flops; ``dsps``: DSP slices of type ``dsp``;
    ``bram36``: 36 Kb block RAMs; ``clock_mhz``: the default design clock [D]; ``source``: where
    the counts come from.
    """

    name: str
    family: str
    luts: int
    ffs: int
    dsps: int
    bram36: int
    dsp: DSPSlice
    clock_mhz: float
    source: str

    @property
    def bram_bits(self) -> int:
        """Block RAM capacity in bits."""
        return self.bram36 * BRAM36_BITS


_DS190 = "DS190 Zynq-7000 SoC Data Sheet: Overview, Zynq-7000 SoC family table"
_DS891 = "DS891 Zynq UltraScale+ MPSoC Data Sheet: Overview, EG device feature summary"

DEVICES: dict[str, Device] = {
    d.name: d
    for d in (
        Device(
            "xc7z020", "Zynq-7000, Artix-7 PL", 53_200, 106_400, 220, 140, DSP48E1, 100.0, _DS190
        ),
        Device(
            "xc7z045", "Zynq-7000, Kintex-7 PL", 218_600, 437_200, 900, 545, DSP48E1, 100.0, _DS190
        ),
        Device("xczu3eg", "Zynq US+ MPSoC EG", 70_560, 141_120, 360, 216, DSP48E2, 200.0, _DS891),
        Device(
            "xczu9eg", "Zynq US+ MPSoC EG", 274_080, 548_160, 2_520, 912, DSP48E2, 200.0, _DS891
        ),
    )
}
"""Known devices by lower-case part name (speed grade and package do not change the counts)."""


def get_device(name: str | Device) -> Device:
    """The profile of part ``name`` (case-insensitive, e.g. "XC7Z020"); a Device passes through.

    Raises:
        ConfigError: no profile for ``name``; the message lists the known devices.
    """
    if isinstance(name, Device):
        return name
    key = str(name).strip().lower()
    if key not in DEVICES:
        raise ConfigError(
            f"unknown FPGA device {name!r}. Fix: use one of {', '.join(DEVICES)} (or add a "
            "Device profile to hwquant.hw.devices.DEVICES)."
        )
    return DEVICES[key]
