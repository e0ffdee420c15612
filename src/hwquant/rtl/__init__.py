"""Generated Verilog for each scheme's processing element, simulated bit-exactly against the
integer engine (issue 6): MACs (fixed-point, SP2 shift-add, codebook decode), the table-lookup
accumulator, the threshold unit, the requantizer and a PE x SIMD convolution array; golden
vectors from a lowered model and self-checking testbenches that replay them in iverilog.

This package holds the generic units (the fixed-point MAC, requantizer, threshold unit, arrays);
each scheme's own MAC lives in ``hwquant.schemes.<name>.rtl`` and registers its emitter
(:func:`get_emitter`) and its array lanes (:mod:`hwquant.ir.encodings`) on import."""

from hwquant.rtl.fixed_mac import encode_fixed_weights, fixed_mac, fixed_product
from hwquant.rtl.requantizer import requantizer
from hwquant.rtl.simulate import SimResult, simulate, simulator_available
from hwquant.rtl.testbench import Stimulus, mac_stimulus, stream_stimulus, write_testbench
from hwquant.rtl.threshold import threshold_unit
from hwquant.rtl.unit import Port, Product, Unit, emitters, from_words, get_emitter, to_words

__all__ = [
    "Port",
    "Product",
    "SimResult",
    "Stimulus",
    "Unit",
    "emitters",
    "encode_fixed_weights",
    "fixed_mac",
    "fixed_product",
    "from_words",
    "get_emitter",
    "mac_stimulus",
    "requantizer",
    "simulate",
    "simulator_available",
    "stream_stimulus",
    "threshold_unit",
    "to_words",
    "write_testbench",
]
