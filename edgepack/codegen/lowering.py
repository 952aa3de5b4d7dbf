"""Lowering a model to a plan: one kernel call per operator, through the operator registry
(`edgepack.ops`), with every parameter computed offline into one model-data blob."""

from __future__ import annotations

from ..errors import BuildError
from ..ops import OPERATORS, Lowering, unsupported_reason
from ..plan import DataBlob, PaletteWeights, PlanStep
from ..tflite import Model, Operator


def lower_model(model: Model, palettes: dict[int, PaletteWeights]) -> tuple[list[PlanStep], DataBlob]:
    """One PlanStep per operator, and the model data blob their parameters point into."""
    blob = DataBlob("model")
    lowering = Lowering(model, palettes, blob)
    steps = []
    for op in model.operators:
        reason = unsupported_reason(model, op)
        if reason is not None:
            raise BuildError(f"operator {op.index} ({op.name}): {reason}", model.path)
        steps.append(OPERATORS[op.opcode].lower(lowering, op))
    return steps, blob


def lower_operators(model: Model, palettes: dict[int, PaletteWeights], operators: list[Operator],
                    blob: DataBlob) -> list[PlanStep]:
    """One PlanStep per given operator (a subset of the model, e.g. those Vela leaves on the
    CPU), their parameters added to `blob`."""
    lowering = Lowering(model, palettes, blob)
    steps = []
    for op in operators:
        reason = unsupported_reason(model, op)
        if reason is not None:
            raise BuildError(f"operator {op.index} ({op.name}): {reason}", model.path)
        steps.append(OPERATORS[op.opcode].lower(lowering, op))
    return steps
