"""Per-unit FPGA costs fitted to Yosys syntheses of the emitted Verilog units (issue 6).

Every unit ``hwquant.rtl`` emits (a fixed-point MAC on a DSP slice or in LUTs, the SP2
shift-add MAC, the codebook-decode MAC, the table-lookup accumulator, the threshold unit and the
requantizer) was synthesized by ``hwquant synth sweep`` (:mod:`hwquant.rtl.sweep`) over a grid of
widths with ``yosys synth_xilinx -family xc7``. For each unit and each resource (LUTs,
flip-flops, CARRY4, DSP slices) the counts were fitted by least squares to a small linear model

    count ≈ Σ_j c_j · φ_j(widths)

whose features ``φ_j`` are the sizes of the unit's datapath parts, the way the 7-series fabric
builds them (UG474): one LUT and one flip-flop per adder / register bit, ⌈(n−1)/3⌉ LUT6 per bit
of an n:1 multiplexer, a·w partial products of an a×w LUT multiplier, a table's words per output
bit, ⌈bits/4⌉ CARRY4 per carry chain, DSP48E1 tiles of 25×18. The fitted
coefficients give a cost at every width, not only at the swept points; the sweep's own points
check the fit (``max_rel_err`` per unit and resource in the cached JSON,
``src/hwquant/hw/data/synth_costs.json``). The feature functions here and the coefficients in
that file belong together: the file names its features and :class:`SynthesizedCosts` refuses a
file whose names differ.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources as importlib_resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

from hwquant.core.errors import ConfigError, FileFormatError

RESOURCES: tuple[str, ...] = ("luts", "ffs", "carry4", "dsps")
"""The counts each unit's formula predicts (:class:`hwquant.rtl.synth.Resources` fields)."""
DATA_FILE = "synth_costs.json"
"""The cached sweep, package data of ``hwquant.hw`` (``data/``)."""
DSP_A_BITS, DSP_B_BITS = 25, 18
"""Signed multiplier inputs of a DSP48E1 (UG479): a product wider than 25×18 takes more tiles."""
DSP_MIN_PRODUCT_BITS = 9
"""Yosys ``synth_xilinx`` maps a multiplier to a DSP48 only when its product has at least 9
bits (its ``DSP_Y_MINWIDTH``); smaller products become LUT logic even in a "dsp" style unit."""


ROM_MIN_ADDRESS_BITS = 7
"""A table of at least 2^7 addresses is mapped by Yosys 0.23 as a ROM (an 8-bit, 128-word table
took about 10 LUTs); a smaller one becomes multiplexer logic whose cost doubles with each
address bit (observed in the sweep: 7, 9, 29 and 73 LUTs of 8-bit entries at 3..6 bits)."""


FUSED_TABLE_ADDRESS_BITS = 4
"""A table of at most 4 address bits shares a LUT6 with the accumulator bit it feeds (4
address bits + the accumulator bit + ``clear``); a wider one needs LUTs of its own."""


MUX_INPUTS_PER_LUT6 = 4
"""A LUT6 is a 4:1 multiplexer (4 data + 2 select inputs, UG474); wider muxes are trees of them."""


def mux_lut6s(sources: int) -> int:
    """LUT6s of one output bit of a ``sources``:1 multiplexer (a tree of 4:1 muxes).

    >>> [mux_lut6s(n) for n in (1, 2, 4, 5, 7, 8)]
    [0, 1, 1, 2, 2, 3]
    """
    return math.ceil((sources - 1) / (MUX_INPUTS_PER_LUT6 - 1)) if sources > 1 else 0


def dsp_tiles(a_bits: int, b_bits: int) -> int:
    """DSP48E1 slices of one signed ``a_bits`` × ``b_bits`` product (25×18 tiles), 0 when Yosys
    keeps it in LUTs (:data:`DSP_MIN_PRODUCT_BITS`)."""
    if a_bits + b_bits < DSP_MIN_PRODUCT_BITS:
        return 0
    longer, shorter = max(a_bits, b_bits), min(a_bits, b_bits)
    return math.ceil(longer / DSP_A_BITS) * math.ceil(shorter / DSP_B_BITS)


def carry4(bits: int) -> int:
    """CARRY4 cells of one ``bits``-wide carry chain."""
    return math.ceil(bits / 4)


SP2_SPLITS: tuple[tuple[int, int], ...] = ((1, 0), (1, 1), (2, 1), (2, 2), (3, 2), (3, 3), (4, 3))
"""The SP2 splits ``(m1, m2)`` the sweep covers: the MSQ quantizer's default splits of 2..8-bit
weights (methods.md §2.1). The shift-add datapath's cost depends on the split in steps that no
smooth function of (m1, m2) follows (Yosys maps each pair of shifters differently), so each
split gets its own line in the activation bits."""


def _split_name(m1: int, m2: int) -> str:
    return f"split{m1}{m2}"


def _multiplier(a: int, b: int, acc: int) -> dict[str, float]:
    """Features of an unsigned ``a``-bit by signed ``b``-bit multiplier feeding an ``acc``-bit
    accumulator: its DSP tiles, its partial products and width when Yosys leaves it in LUTs,
    and the accumulator the fabric keeps then. On a DSP48E1 the accumulator goes into the
    slice (its P register and ALU in MACC mode, UG479), so it costs fabric only when the
    product stays in LUTs (``fabric_*``). A LUT multiplier that feeds the accumulator's adder
    directly is merged with it by Yosys (``alumacc``) into one adder tree whose ``b`` rows of
    partial products run over the accumulator's width (``merged_rows``)."""
    tiles = dsp_tiles(a + 1, b)
    in_luts = int(tiles == 0)
    return {
        "tiles": tiles,
        "small_product": in_luts,
        "partial_products": a * b,
        "product_bits": a + b,
        "merged_rows": acc * b,
        "fabric_merged_rows": acc * b * in_luts,
        "fabric_acc": acc * in_luts,
        "fabric_acc_carry4": carry4(acc) * in_luts,
    }


def _accumulator(acc: int) -> dict[str, float]:
    """Features every accumulating unit shares: a constant, a zero (for a resource the unit
    never uses), the accumulator's bits and its carry chain."""
    return {"const": 1, "zero": 0, "acc": acc, "acc_carry4": carry4(acc)}


def _fixed_mac(p: Mapping[str, int]) -> dict[str, float]:
    a, w, acc = p["act_bits"], p["weight_bits"], p["acc_bits"]
    return _accumulator(acc) | _multiplier(a, w, acc)


def _sp2_mac(p: Mapping[str, int]) -> dict[str, float]:
    a, m1, m2, acc = p["act_bits"], p["m1"], p["m2"], p["acc_bits"]
    if (m1, m2) not in SP2_SPLITS:
        raise ConfigError(
            f"SP2 split m1={m1}, m2={m2} was not synthesized. Fix: use one of "
            f"{', '.join(map(str, SP2_SPLITS))} (2..8-bit SP2 weights), or add the split to "
            "SP2_SPLITS and rerun 'hwquant synth sweep'."
        )
    feats = _accumulator(acc)
    for split in SP2_SPLITS:
        on = int(split == (m1, m2))
        feats[_split_name(*split)] = on
        feats[f"act_{_split_name(*split)}"] = a * on
    return feats


def _codebook_mac(p: Mapping[str, int]) -> dict[str, float]:
    a, k, g, acc = p["act_bits"], p["codebook_size"], p["grid_bits"], p["acc_bits"]
    return _accumulator(acc) | {"decoder": g * mux_lut6s(k), "grid": g} | _multiplier(a, g, acc)


def address_bits(levels: int) -> int:
    """Bits of an index into ``levels`` items (at least 1), as the emitters size their ports."""
    return max(1, math.ceil(math.log2(levels)))


def _table_accumulator(p: Mapping[str, int]) -> dict[str, float]:
    x, w, e, acc = p["act_levels"], p["weight_levels"], p["entry_bits"], p["acc_bits"]
    address = address_bits(x + 1) + address_bits(w)  # {x, w}, x with its padding index
    as_rom = address >= ROM_MIN_ADDRESS_BITS
    wide = FUSED_TABLE_ADDRESS_BITS < address < ROM_MIN_ADDRESS_BITS
    return _accumulator(acc) | {
        "logic_table": 0 if as_rom else e * 2 ** (address - 3),
        "wide_logic_table": e * 2 ** (address - 3) if wide else 0,
        "rom_table": e * 2 ** (address - ROM_MIN_ADDRESS_BITS) if as_rom else 0,
    }


def _threshold_unit(p: Mapping[str, int]) -> dict[str, float]:
    acc, t = p["acc_bits"], p["thresholds"]
    return {
        "const": 1,
        "comparator_bits": t * acc,
        "comparators": t,
        "out_bits": math.ceil(math.log2(t + 1)),
        "compare_carry4": t * carry4(acc),
        "zero": 0,
    }


def _requantizer(p: Mapping[str, int]) -> dict[str, float]:
    acc, m, out = p["acc_bits"], p["multiplier_bits"], p["out_bits"]
    return {
        "const": 1,
        "acc": acc,
        "product_bits": acc + m,
        "out": out,
        "tiles": dsp_tiles(acc, m + 1),
        "product_carry4": carry4(acc + m),
    }


_SP2_LINES = tuple(
    name for split in SP2_SPLITS for name in (_split_name(*split), f"act_{_split_name(*split)}")
)
FEATURES: dict[str, Callable[[Mapping[str, int]], dict[str, float]]] = {
    "fixed_mac_dsp": _fixed_mac,
    "fixed_mac_lut": _fixed_mac,
    "sp2_mac": _sp2_mac,
    "codebook_mac_dsp": _codebook_mac,
    "codebook_mac_lut": _codebook_mac,
    "table_accumulator": _table_accumulator,
    "threshold_unit": _threshold_unit,
    "requantizer": _requantizer,
}
"""Each unit kind's feature function: its widths (the sweep's ``params``) -> named features."""
_MAC_FFS = ("acc",)
FORMULA_FEATURES: dict[str, dict[str, tuple[str, ...]]] = {
    "fixed_mac_dsp": {
        "luts": ("const", "fabric_merged_rows", "small_product"),
        "ffs": ("fabric_acc",),
        "carry4": ("fabric_acc_carry4",),
        "dsps": ("tiles",),
    },
    "fixed_mac_lut": {
        "luts": ("const", "acc", "merged_rows", "partial_products", "product_bits"),
        "ffs": _MAC_FFS,
        "carry4": ("const", "acc_carry4", "product_bits"),
        "dsps": ("zero",),
    },
    "sp2_mac": {
        "luts": ("acc", *_SP2_LINES),
        "ffs": _MAC_FFS,
        "carry4": ("acc_carry4", *_SP2_LINES),
        "dsps": ("zero",),
    },
    "codebook_mac_dsp": {
        "luts": ("const", "grid", "decoder"),
        "ffs": ("fabric_acc",),
        "carry4": ("fabric_acc_carry4",),
        "dsps": ("tiles",),
    },
    "codebook_mac_lut": {
        "luts": ("const", "acc", "decoder", "partial_products", "product_bits"),
        "ffs": _MAC_FFS,
        "carry4": ("const", "acc_carry4", "product_bits"),
        "dsps": ("zero",),
    },
    "table_accumulator": {
        "luts": ("const", "acc", "logic_table", "wide_logic_table", "rom_table"),
        "ffs": ("acc",),
        "carry4": ("acc_carry4",),
        "dsps": ("zero",),
    },
    "threshold_unit": {
        "luts": ("const", "comparator_bits", "comparators"),
        "ffs": ("out_bits",),
        "carry4": ("compare_carry4",),
        "dsps": ("zero",),
    },
    "requantizer": {
        "luts": ("const", "acc", "out", "product_bits"),
        "ffs": ("const", "out", "acc"),
        "carry4": ("const", "product_carry4"),
        "dsps": ("tiles",),
    },
}
"""The features each fitted formula uses, per unit kind and resource: the physical parts that
make up that resource (registers for flip-flops, chains for CARRY4, 25x18 tiles for DSPs)."""
PARAMS: dict[str, tuple[str, ...]] = {
    "fixed_mac_dsp": ("act_bits", "weight_bits", "acc_bits"),
    "fixed_mac_lut": ("act_bits", "weight_bits", "acc_bits"),
    "sp2_mac": ("act_bits", "m1", "m2", "acc_bits"),
    "codebook_mac_dsp": ("act_bits", "codebook_size", "grid_bits", "acc_bits"),
    "codebook_mac_lut": ("act_bits", "codebook_size", "grid_bits", "acc_bits"),
    "table_accumulator": ("act_levels", "weight_levels", "entry_bits", "acc_bits"),
    "threshold_unit": ("acc_bits", "thresholds"),
    "requantizer": ("acc_bits", "multiplier_bits", "out_bits"),
}
"""The widths each kind's cost depends on (what :meth:`SynthesizedCosts.cost` needs)."""
UNIT_KINDS: tuple[str, ...] = tuple(FEATURES)


def features(kind: str, params: Mapping[str, int]) -> dict[str, float]:
    """The named features of unit ``kind`` at ``params``.

    Raises:
        ConfigError: unknown kind or a missing width.
    """
    if kind not in FEATURES:
        raise ConfigError(f"unit kind {kind!r} is unknown. Fix: use one of {', '.join(FEATURES)}.")
    missing = [name for name in PARAMS[kind] if name not in params]
    if missing:
        raise ConfigError(
            f"unit {kind} needs width(s) {', '.join(missing)}. Fix: give {', '.join(PARAMS[kind])}."
        )
    return FEATURES[kind](params)


@dataclass(frozen=True)
class Formula:
    """A fitted linear cost formula ``count = round(Σ coef[f] · features[f])``, clamped at 0."""

    coef: Mapping[str, float]

    def __post_init__(self) -> None:
        object.__setattr__(self, "coef", MappingProxyType(dict(self.coef)))

    def __call__(self, feats: Mapping[str, float]) -> int:
        value = sum(c * feats[name] for name, c in self.coef.items())
        return max(0, math.floor(value + 0.5))


@dataclass(frozen=True)
class SynthesizedCosts:
    """Fitted cost formulas per unit kind and resource, from a synthesis sweep file.

    ``formulas[kind][resource]`` is a :class:`Formula`; ``source`` names the sweep (Yosys
    version, family, date); ``max_rel_err[kind][resource]`` is the fit's worst relative error
    on the sweep's own points.
    """

    formulas: Mapping[str, Mapping[str, Formula]]
    source: str
    max_rel_err: Mapping[str, Mapping[str, float]]

    def cost(self, kind: str, **params: int) -> dict[str, int]:
        """Predicted ``{resource: count}`` of unit ``kind`` at ``params`` (:data:`PARAMS`).

        Raises:
            ConfigError: unknown kind or missing widths, or no formula for ``kind`` in the file.
        """
        feats = features(kind, params)
        if kind not in self.formulas:
            raise ConfigError(
                f"the synthesized costs ({self.source}) have no formula for {kind}. Fix: "
                "regenerate them with 'hwquant synth sweep'."
            )
        return {res: formula(feats) for res, formula in self.formulas[kind].items()}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any], name: str) -> SynthesizedCosts:
        """Read the ``fits`` section of a sweep document (:mod:`hwquant.rtl.sweep`).

        Raises:
            FileFormatError: the document is malformed or its feature names do not match
            :data:`FEATURES` (a file from another version of this module).
        """
        try:
            formulas, errors = {}, {}
            for kind, per_res in doc["fits"].items():
                formulas[kind], errors[kind] = {}, {}
                for res, fit in per_res.items():
                    if set(fit["coef"]) != set(FORMULA_FEATURES[kind][res]):
                        raise ValueError(f"{kind}.{res} features {sorted(fit['coef'])} differ")
                    formulas[kind][res] = Formula({k: float(v) for k, v in fit["coef"].items()})
                    errors[kind][res] = float(fit["max_rel_err"])
            source = (
                f"yosys {doc['yosys_version']} synth_xilinx -family {doc['family']} sweep "
                f"({doc['date_utc'][:10]}, {name})"
            )
            return cls(formulas, source, errors)
        except (KeyError, TypeError, ValueError, ConfigError) as exc:
            raise FileFormatError(
                f"synthesized cost file {name!r} is not usable ({exc}). Fix: regenerate it with "
                "'hwquant synth sweep --out FILE'."
            ) from exc

    @classmethod
    def from_json(cls, path: str | Path) -> SynthesizedCosts:
        """Read a sweep file written by ``hwquant synth sweep``."""
        path = Path(path)
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise FileFormatError(
                f"synthesized cost file '{path}' cannot be read ({exc}). Fix: regenerate it "
                "with 'hwquant synth sweep --out FILE'."
            ) from exc
        return cls.from_doc(doc, path.name)


def packaged_path() -> Path:
    """Path of the cached sweep shipped with hwquant (``hwquant/hw/data/synth_costs.json``)."""
    return Path(str(importlib_resources.files("hwquant.hw").joinpath("data", DATA_FILE)))


def load_packaged() -> SynthesizedCosts | None:
    """The shipped sweep's formulas, or None when the package has no sweep file."""
    path = packaged_path()
    return SynthesizedCosts.from_json(path) if path.is_file() else None
