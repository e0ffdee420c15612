"""Generated Verilog for each scheme's processing element, simulated bit-exactly against the
integer engine (issue 6): MACs (fixed-point, SP2 shift-add, codebook decode), the table-lookup
accumulator, the threshold unit, the requantizer and a PE x SIMD convolution array; golden
vectors from a lowered model and self-checking testbenches that replay them in iverilog."""

from hwquant.rtl.requantizer import requantizer
from hwquant.rtl.simulate import SimResult, simulate, simulator_available
from hwquant.rtl.testbench import Stimulus, mac_stimulus, stream_stimulus, write_testbench
from hwquant.rtl.threshold import threshold_unit
from hwquant.rtl.unit import Port, Product, Unit, from_words, to_words
from hwquant.schemes.llsq.rtl import encode_fixed_weights, fixed_mac, fixed_product
from hwquant.schemes.msq.rtl import encode_sp2_weights, sp2_mac, sp2_product
from hwquant.schemes.nonuniform.rtl import codebook_mac, codebook_product, encode_codebook_indices
from hwquant.schemes.tables.rtl import table_accumulator, table_product

__all__ = [
    "Port",
    "Product",
    "SimResult",
    "Stimulus",
    "Unit",
    "codebook_mac",
    "codebook_product",
    "encode_codebook_indices",
    "encode_fixed_weights",
    "encode_sp2_weights",
    "fixed_mac",
    "fixed_product",
    "from_words",
    "mac_stimulus",
    "requantizer",
    "simulate",
    "simulator_available",
    "sp2_mac",
    "sp2_product",
    "stream_stimulus",
    "table_accumulator",
    "table_product",
    "threshold_unit",
    "to_words",
    "write_testbench",
]
