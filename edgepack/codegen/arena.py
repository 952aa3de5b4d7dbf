"""The arena planner: every activation tensor and the kernels' scratch in one arena, placed
from the tensors' lifetimes."""

from __future__ import annotations

from dataclasses import dataclass

from ..plan import ALIGN, PlanStep
from ..tflite import Model


@dataclass
class ArenaBuffer:
    tensors: list[int]  # tensor indices sharing these bytes (an in-place chain)
    size: int
    first: int  # first step that writes (or -1: a model input)
    last: int  # last step that reads (len(steps): a model output)
    offset: int = -1


@dataclass
class ArenaPlan:
    size: int  # total arena bytes, scratch included
    offsets: dict[int, int]  # tensor index -> byte offset
    scratch_offset: int
    scratch_bytes: int
    buffers: list[ArenaBuffer]
    naive_size: int  # every tensor in its own place: what planning saved


def _align(n: int, a: int = ALIGN) -> int:
    return (n + a - 1) // a * a


def plan_arena(model: Model, steps: list[PlanStep]) -> ArenaPlan:
    """Place every activation tensor in one arena from the tensors' lifetimes: largest first,
    each into the best-fitting gap (the smallest one it fits) among the buffers already placed
    whose lifetimes overlap its own. Kernel scratch lives through every step."""
    end = len(steps)
    owner: dict[int, ArenaBuffer] = {}
    buffers: list[ArenaBuffer] = []

    def buffer_of(t: int, first: int) -> ArenaBuffer:
        if t not in owner:
            b = ArenaBuffer([t], _align(max(model.tensors[t].nbytes, 1)), first, first)
            owner[t] = b
            buffers.append(b)
        return owner[t]

    for t in model.inputs:
        buffer_of(t, -1)
    for i, step in enumerate(steps):
        for t in step.inputs:
            if t in step.constants:  # in the model data, not the arena
                continue
            buffer_of(t, -1).last = max(owner[t].last, i)
        src = owner.get(step.inputs[0]) if step.inputs else None
        # A reshape may run in place when its input dies here and is not a model output.
        if (step.in_place and src is not None and src.last == i
                and step.inputs[0] not in model.outputs and step.output not in owner
                and _align(max(model.tensors[step.output].nbytes, 1)) <= src.size):
            owner[step.output] = src
            src.tensors.append(step.output)
        else:
            for t in step.outputs:
                buffer_of(t, i)
    for t in model.outputs:
        owner[t].last = end
    scratch = _align(max([s.scratch_bytes for s in steps] + [0]))
    scratch_buf = ArenaBuffer([], scratch, -1, end) if scratch else None

    placed: list[ArenaBuffer] = []
    order = sorted(buffers + ([scratch_buf] if scratch_buf else []),
                   key=lambda b: (-b.size, b.tensors[0] if b.tensors else -1))
    for b in order:
        live = sorted((p for p in placed if p.first <= b.last and b.first <= p.last),
                      key=lambda p: p.offset)
        best, best_gap, cursor = None, None, 0
        for p in live:
            gap = p.offset - cursor
            if gap >= b.size and (best_gap is None or gap < best_gap):
                best, best_gap = cursor, gap
            cursor = max(cursor, p.offset + p.size)
        b.offset = best if best is not None else cursor
        placed.append(b)
    size = max([b.offset + b.size for b in placed] + [0])
    offsets = {t: b.offset for b in buffers for t in b.tensors}
    return ArenaPlan(size=size, offsets=dict(sorted(offsets.items())),
                     scratch_offset=scratch_buf.offset if scratch_buf else 0,
                     scratch_bytes=scratch, buffers=buffers,
                     naive_size=sum(b.size for b in buffers) + scratch)
