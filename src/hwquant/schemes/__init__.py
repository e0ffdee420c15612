"""The quantization schemes, one package each: its quantizer, weight encoding, engine kernel,
cost and RTL unit. Importing a scheme's package registers its handler
(:mod:`hwquant.qat.registry`); :func:`available` lists them, :func:`get` returns one and
:func:`load_lowered` reads a saved lowered model of any of them.
"""

from hwquant.qat.registry import SchemeHandler, available, load_lowered
from hwquant.qat.registry import get_scheme as get
from hwquant.schemes import llsq, msq, nonuniform, tables  # noqa: F401  (register the schemes)

__all__ = ["SchemeHandler", "available", "get", "load_lowered"]
