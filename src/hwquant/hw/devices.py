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

from hwquant.errors import ConfigError

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
MULT18X18D = DSPSlice("MULT18X18D", 18, 18, "FPGA-TN-02205 ECP5 and ECP5-5G sysDSP Usage Guide")
SB_MAC16 = DSPSlice("SB_MAC16", 16, 16, "FPGA-TN-02007 iCE40 DSP Function Usage Guide")


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
    block_bits: int = BRAM36_BITS
    """Bits of one of the ``bram36`` block RAMs (a Lattice part counts its 18 Kb EBR or 4 Kb
    EBR blocks there, with their own size)."""
    lut_inputs: int = 6
    """Inputs of one LUT: 6 on Xilinx 7-series and UltraScale+, 4 on ECP5 and iCE40."""

    @property
    def bram_bits(self) -> int:
        """Block RAM capacity in bits."""
        return self.bram36 * self.block_bits


_DS190 = "DS190 Zynq-7000 SoC Data Sheet: Overview, Zynq-7000 SoC family table"
_DS891 = "DS891 Zynq UltraScale+ MPSoC Data Sheet: Overview, EG device feature summary"
_ECP5 = "FPGA-DS-02012 ECP5 and ECP5-5G Family Data Sheet, Table 1.1 (feature summary)"
_UP5K = "FPGA-DS-02008 iCE40 UltraPlus Family Data Sheet, Table 1.1 (feature summary)"
EBR18_BITS = 18 * 1024
"""Bits of one ECP5 sysMEM block (EBR), 18 Kb (FPGA-DS-02012)."""
EBR4_BITS = 4 * 1024
"""Bits of one iCE40 embedded block RAM, 4 Kb (FPGA-DS-02008)."""

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
        # ECP5: 84K / 24K LUT4 with one flip-flop each, 208 / 56 EBR of 18 Kb (3,744 / 1,008
        # Kb), 156 / 28 18x18 multipliers; iCE40 UP5K: 5,280 LUT4 and flip-flops, 30 EBR of
        # 4 Kb (120 Kb; its 1 Mb of single-port SPRAM is not counted), 8 SB_MAC16.
        Device(
            "lfe5u-85f", "ECP5", 83_640, 83_640, 156, 208, MULT18X18D, 100.0, _ECP5, EBR18_BITS, 4
        ),
        Device(
            "lfe5u-25f", "ECP5", 24_288, 24_288, 28, 56, MULT18X18D, 100.0, _ECP5, EBR18_BITS, 4
        ),
        Device("ice40up5k", "iCE40 UltraPlus", 5_280, 5_280, 8, 30, SB_MAC16, 40.0, _UP5K, EBR4_BITS, 4),
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
