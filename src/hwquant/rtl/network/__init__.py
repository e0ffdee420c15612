"""A whole lowered network as one streaming accelerator in Verilog (issue 16).

:func:`build_design` turns an :class:`~hwquant.intmodel.IntModel` into a dataflow design:
an input interface, one block per layer (sliding-window unit and PE x SIMD array for
convolutions and fully connected layers, pooling, residual add), image FIFOs between them and
an output interface giving logits and argmax (:mod:`~hwquant.rtl.network.top`).
:func:`simulate_design` runs it on real images in Verilator and holds every output to the
integer engine and every cycle count to the model of :mod:`~hwquant.rtl.network.graph`.
"""

from hwquant.rtl.network.design import Design, build_design
from hwquant.rtl.network.simulate import SimReport, simulate_design

__all__ = ["Design", "SimReport", "build_design", "simulate_design"]
