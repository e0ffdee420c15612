"""hwquant: from a float PyTorch network to a bit-exact, integer-only accelerator model.

The pipeline (see ``docs/`` and DESIGN): ``prepare`` makes the QAT model, any training loop
trains it, ``lower`` turns it into an :class:`IntModel`, whose integer engine reproduces the
QAT model's eval outputs bit for bit (``verify`` checks it).
"""

from hwquant import engine, export  # noqa: F401  (register IntModel.run's backends)
from hwquant.core.errors import HwquantError
from hwquant.ir.intmodel import IntModel, load
from hwquant.ops import available_ops as _register_ops  # noqa: F401  (fills the op registry)
from hwquant.qat.lower import lower
from hwquant.qat.prepare import freeze_bn, prepare
from hwquant.qat.recipe import Recipe
from hwquant.qat.verify import VerifyReport, verify
from hwquant.schemes import available as _register_schemes  # noqa: F401  (fills the registries)

__version__ = "0.1.0"

__all__ = [
    "HwquantError",
    "IntModel",
    "Recipe",
    "VerifyReport",
    "__version__",
    "freeze_bn",
    "load",
    "lower",
    "prepare",
    "verify",
]
