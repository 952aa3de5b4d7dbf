"""The registry of operators edgepack's C runtime runs: per operator, the support check that
says in one line why an instance cannot run, and its lowering to one kernel call (a PlanStep
with offline-computed parameters in the model data).

Consulted by Vela placement checks (compile), `inspect`, `build` and the code generator.
Adding an operator: a `register(...)` line beside its check and lowering in the family module
(`weighted`, `pool`, `elementwise`, `activation`, `shape`, `layout`), its kernel file in `firmware/`, and
its test.
May import: errors, tflite, quant, packing, plan, resources. Never a pipeline stage.
"""

from . import activation, elementwise, layout, pool, shape, weighted  # noqa: F401  (they register)
from .base import (OPERATORS, REFUSED, Lowering, OperatorSpec, describe_unsupported,
                   supported_operators, unsupported_operators, unsupported_reason)

__all__ = ["OPERATORS", "REFUSED", "Lowering", "OperatorSpec", "describe_unsupported",
           "supported_operators", "unsupported_operators", "unsupported_reason"]
