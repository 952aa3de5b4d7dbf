"""The plan of an NPU board: Vela's optimized model (of the folded model) as one plan over one
arena. Each `ethos-u` operator becomes an NPU step (its driver payload and weights in the model
data, its base-pointer regions in the arena); every operator Vela leaves on the CPU becomes a
runtime kernel call, lowered exactly as the CPU-only plan lowers it.

Region k of an `ethos-u` operator is its input k+1 (weights, scratch, fast scratch, then its
input tensors), then its outputs, as TFLM's Ethos-U operator programs them. Tensors Vela placed
(the model's `OfflineMemoryAllocation` metadata) keep Vela's offsets at the start of the arena;
every other activation of a CPU step goes after them, then the CPU kernels' scratch. This is the
mapping `edgepack.npu.run_vela_model` executes, so the functional model and the firmware agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import BuildError
from ..plan import ALIGN, C, DataBlob, PlanStep
from ..tflite import Model
from .arena import ArenaPlan
from .lowering import lower_operators

ETHOS_U = "ethos-u"
MAX_REGIONS = 8  # EP_ETHOSU_MAX_REGIONS
MAX_NPU_INPUTS = 8  # ep_ethosu_op_params.input_bytes
_TFL_ITEMSIZE = {9: 1, 3: 1, 7: 2, 2: 4, 0: 4, 4: 8, 6: 1}


@dataclass
class NpuRegion:
    """Base-pointer region `index` of an NPU step, as the firmware programs it."""

    index: int
    what: str  # "weights", "scratch", "fast scratch", "input <name>", "output <name>", "unused"
    symbol: str = ""  # constant region: the model data symbol
    arena_offset: int = -1  # arena region: byte offset in the arena
    bytes: int = 0


@dataclass
class NpuStep(PlanStep):
    """An `ethos-u` operator: Vela's command stream and regions (kernel EP_KERNEL_ETHOSU)."""

    npu_index: int = 0  # k-th ethos-u operator
    covers: list[int] = field(default_factory=list)  # folded-model operators Vela compiled into it
    regions: list[NpuRegion] = field(default_factory=list)
    payload_symbol: str = ""
    payload_bytes: int = 0
    weights_symbol: str = ""
    estimated_cycles: int = 0  # Vela's estimate for the operators it covers

    @property
    def symbol(self) -> str:
        return f"npu{self.npu_index:02d}"


@dataclass
class MixedPlan:
    steps: list[PlanStep]
    blob: DataBlob
    arena: ArenaPlan
    vela_arena_bytes: int  # the part of the arena Vela planned
    npu_steps: int
    cpu_steps: int
    model: Model  # the folded model the steps index, with the copies Vela added (_with_vela_copies)


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def _read(vela_bytes: bytes):
    from ai_edge_litert import schema_py_generated as tfl

    return tfl.ModelT.InitFromPackedBuf(bytes(vela_bytes), 0)


def offline_offsets(vm) -> dict[int, int]:
    """Tensor -> arena offset from Vela's `OfflineMemoryAllocation` metadata (-1 entries: none)."""
    for md in vm.metadata or []:
        if md.name and md.name.decode() == "OfflineMemoryAllocation":
            words = np.frombuffer(bytes(np.asarray(vm.buffers[md.buffer].data, dtype=np.uint8)), dtype="<i4")
            n = int(words[2])
            return {t: int(o) for t, o in enumerate(words[3:3 + n]) if o >= 0}
    return {}


def lower_mixed(folded: Model, vela_bytes: bytes, palettes: dict, model_path: str,
                cycles_by_op: dict[int, int] | None = None) -> MixedPlan:
    """Lower Vela's optimized model of `folded` into one plan (see the module docstring)."""
    vm = _read(vela_bytes)
    sg = vm.subgraphs[0]
    tensors = sg.tensors
    plan = offline_offsets(vm)

    def name(t: int) -> str:
        return tensors[t].name.decode() if tensors[t].name else f"t{t}"

    folded = _with_vela_copies(folded, vm, name)
    by_name = {t.name: i for i, t in enumerate(folded.tensors)}
    producer = {o: op for op in folded.operators for o in op.outputs}

    def nbytes(t: int) -> int:
        shape = [int(v) for v in (tensors[t].shape if tensors[t].shape is not None else [])]
        return int(np.prod(shape)) * _TFL_ITEMSIZE.get(tensors[t].type, 1)

    def const(t: int) -> bytes | None:
        data = vm.buffers[tensors[t].buffer].data
        return None if data is None or len(data) == 0 else bytes(np.asarray(data, dtype=np.uint8))

    def folded_tensor(t: int) -> int:
        n = name(t)
        if n not in by_name:
            raise BuildError(f"Vela's optimized model has tensor {n!r} that the folded model lacks", model_path)
        return by_name[n]

    vela_arena = _align(max([plan[t] + nbytes(t) for t in plan if const(t) is None] + [0]))
    offsets: dict[int, int] = {}  # folded tensor -> arena offset
    extra_cursor = vela_arena

    def place(t_vela: int) -> int:
        """Arena offset of a Vela-model activation (and record it for its folded tensor)."""
        nonlocal extra_cursor
        ft = folded_tensor(t_vela)
        if ft not in offsets:
            if t_vela in plan:
                offsets[ft] = plan[t_vela]
            else:
                offsets[ft] = extra_cursor
                extra_cursor += _align(max(folded.tensors[ft].nbytes, 1))
        return offsets[ft]

    # A distinct scratch_fast tensor (Dedicated_Sram: Ethos-U65) is the driver's fast memory, not
    # the arena offset the offline plan gives it (scratch's): the stream stages weights there while
    # feature maps live in scratch. One buffer of the largest size serves every NPU step. On
    # Shared_Sram the operator names scratch twice and the two alias, as Vela intends.
    fast_bytes = max([nbytes(op.inputs[3]) for op in sg.operators
                      if (vm.operatorCodes[op.opcodeIndex].customCode or b"").decode() == ETHOS_U
                      and len(op.inputs) > 3 and op.inputs[3] >= 0 and op.inputs[3] != op.inputs[2]
                      and const(op.inputs[3]) is None] + [0])
    fast_offset = extra_cursor
    extra_cursor += _align(fast_bytes)
    for t in sg.inputs:
        place(t)
    blob = DataBlob("model")
    order: list = []  # NpuStep, or the folded-model Operator of a CPU step (lowered below)
    npu_count = 0
    for vop_index, op in enumerate(sg.operators):
        code = vm.operatorCodes[op.opcodeIndex]
        if (code.customCode or b"").decode() == ETHOS_U:
            order.append(_npu_step(folded, op, vop_index, npu_count, blob, const, nbytes, name, place,
                                   folded_tensor, producer, plan, cycles_by_op or {}, model_path,
                                   fast_offset))
            npu_count += 1
            continue
        # Vela keeps a CPU operator's tensor names: the folded operator writing the same tensor
        fop = producer.get(folded_tensor(op.outputs[0])) if len(op.outputs) else None
        if fop is None:
            raise BuildError(f"operator {vop_index} of Vela's optimized model (builtin code "
                             f"{max(code.builtinCode, code.deprecatedBuiltinCode)}) matches no operator of "
                             "the folded model", model_path)
        order.append(fop)
        for t in list(op.inputs) + list(op.outputs):
            if t >= 0 and const(t) is None:
                place(t)
    # CPU steps lowered in one pass, sharing the model data (constants once)
    lowered = lower_operators(folded, palettes, [o for o in order if not isinstance(o, NpuStep)], blob)
    it = iter(lowered)
    steps = [o if isinstance(o, NpuStep) else next(it) for o in order]
    for t in sg.outputs:
        place(t)
    scratch = _align(max([s.scratch_bytes for s in lowered] + [0]))
    scratch_offset = extra_cursor
    size = _align(extra_cursor + scratch)
    arena = ArenaPlan(size=size, offsets=dict(sorted(offsets.items())), scratch_offset=scratch_offset,
                              scratch_bytes=scratch, buffers=[], naive_size=size)
    return MixedPlan(steps=steps, blob=blob, arena=arena, vela_arena_bytes=vela_arena,
                     npu_steps=npu_count, cpu_steps=len(lowered), model=folded)


def _with_vela_copies(folded: Model, vm, name) -> Model:
    """`folded` with the `<tensor>_copy` activations Vela adds: where an activation feeds both an
    NPU operator and a CPU operator, Vela may have the command stream write a copy that the CPU
    operator reads instead. The copy is a tensor of its own (its own arena place, Vela's), and the
    CPU operator reads it; the caller's model is left as it is."""
    sg = vm.subgraphs[0]
    by_name = {t.name: i for i, t in enumerate(folded.tensors)}
    copies = {}
    for t in range(len(sg.tensors)):
        n = name(t)
        if n not in by_name and n.endswith("_copy") and n[:-len("_copy")] in by_name:
            copies[n] = by_name[n[:-len("_copy")]]
    if not copies:
        return folded
    tensors = list(folded.tensors)
    for n, source in sorted(copies.items()):
        by_name[n] = len(tensors)
        tensors.append(replace(folded.tensors[source], index=len(tensors), name=n))
    producer = {o: op for op in folded.operators for o in op.outputs}
    operators = list(folded.operators)
    for op in sg.operators:
        if (vm.operatorCodes[op.opcodeIndex].customCode or b"").decode() == ETHOS_U or not len(op.outputs):
            continue
        fop = producer.get(by_name.get(name(op.outputs[0]), -1))
        if fop is None or not any(t >= 0 and name(t) in copies for t in op.inputs):
            continue
        inputs = [by_name[name(t)] if t >= 0 and name(t) in copies else f
                  for t, f in zip(op.inputs, fop.inputs)]
        operators[fop.index] = replace(fop, inputs=inputs + list(fop.inputs[len(inputs):]))
    return replace(folded, tensors=tensors, operators=operators)


def npu_operator_covers(folded: Model, vela_bytes: bytes, vop_index: int) -> list[int]:
    """The folded-model operators that ethos-u operator `vop_index` of Vela's optimized model
    computes ([] when a tensor name does not match the folded model)."""
    vm = _read(vela_bytes)
    sg = vm.subgraphs[0]

    def name(t: int) -> str:
        return sg.tensors[t].name.decode() if sg.tensors[t].name else f"t{t}"

    folded = _with_vela_copies(folded, vm, name)
    by_name = {t.name: i for i, t in enumerate(folded.tensors)}
    producer = {o: op for op in folded.operators for o in op.outputs}
    op = sg.operators[vop_index]
    if any(t >= 0 and name(t) not in by_name for t in list(op.inputs[4:]) + list(op.outputs)):
        return []
    return _covered_operators(folded, op, lambda t: by_name[name(t)], producer)


def _covered_operators(folded: Model, op, folded_tensor, producer) -> list[int]:
    """Folded-model operators between the ethos-u operator's inputs and outputs."""
    stop = {folded_tensor(t) for t in op.inputs[4:] if t >= 0}
    seen, todo = set(), [folded_tensor(t) for t in op.outputs]
    while todo:
        t = todo.pop()
        fop = producer.get(t)
        if t in stop or fop is None or fop.index in seen:
            continue
        seen.add(fop.index)
        todo += [i for i in fop.inputs if i >= 0 and not folded.tensors[i].is_constant]
    return sorted(seen)


def _npu_step(folded, op, vop_index, k, blob, const, nbytes, name, place, folded_tensor, producer,
              plan, cycles_by_op, model_path, fast_offset: int) -> NpuStep:
    where = f"ethos-u operator {vop_index} of Vela's optimized model"
    if len(op.inputs) < 4:
        raise BuildError(f"{where}: {len(op.inputs)} inputs, expected command stream, weights, scratch, "
                         "fast scratch and input tensors", model_path)
    payload = const(op.inputs[0])
    if payload is None:
        raise BuildError(f"{where}: no command stream", model_path)
    payload_symbol = blob.add(f"ep_npu{k:02d}_payload", payload, "uint8_t", "NPU command stream")
    ifms = [t for t in op.inputs[4:] if t >= 0 and const(t) is None]
    base = list(op.inputs[1:]) + list(op.outputs)
    if len(base) > MAX_REGIONS or len(ifms) > MAX_NPU_INPUTS:
        raise BuildError(f"{where}: {len(base)} regions / {len(ifms)} inputs (the driver takes "
                         f"{MAX_REGIONS} / {MAX_NPU_INPUTS})", model_path)
    regions, weights_symbol = [], ""
    labels = ["weights", "scratch", "fast scratch"]
    for r, t in enumerate(base):
        label = labels[r] if r < 3 else ("input " if r - 3 < len(op.inputs) - 4 else "output ") + name(t)
        if t < 0:
            regions.append(NpuRegion(r, "unused"))
            continue
        data = const(t)
        if data is not None:
            sym = weights_symbol if r == 0 and weights_symbol else \
                blob.add(f"ep_npu{k:02d}_region{r}", data, "uint8_t", "NPU weights" if r == 0 else "NPU constants")
            weights_symbol = weights_symbol or sym
            regions.append(NpuRegion(r, label, symbol=sym, bytes=len(data)))
        elif r == 2 and t != op.inputs[2]:  # a distinct scratch_fast: the fast memory buffer
            regions.append(NpuRegion(r, label, arena_offset=fast_offset, bytes=nbytes(t)))
        elif t in plan:
            regions.append(NpuRegion(r, label, arena_offset=plan[t], bytes=nbytes(t)))
            if r >= 3:
                place(t)
        else:
            regions.append(NpuRegion(r, label, arena_offset=place(t), bytes=nbytes(t)))
    ins = [folded_tensor(t) for t in ifms]
    outs = [folded_tensor(t) for t in op.outputs]
    for t in ifms + list(op.outputs):
        place(t)
    covers = _covered_operators(folded, op, folded_tensor, producer)
    params = {
        "npu": C("&ep_model_npu"),
        "payload": C(payload_symbol),
        "payload_bytes": len(payload),
        "num_regions": len(regions),
        "regions": [{"address": C(r.symbol) if r.symbol else C("NULL"),
                     "arena_offset": max(r.arena_offset, 0), "bytes": r.bytes} for r in regions]
        + [{"address": C("NULL"), "arena_offset": 0, "bytes": 0}] * (MAX_REGIONS - len(regions)),
        "input_bytes": [folded.tensors[t].size for t in ins] + [0] * (MAX_NPU_INPUTS - len(ins)),
        "output_bytes": folded.tensors[outs[0]].size,
    }
    return NpuStep(index=covers[0] if covers else vop_index, opcode="ETHOS_U", kernel="EP_KERNEL_ETHOSU",
                   params_type="ep_ethosu_op_params", params=params, inputs=ins, output=outs[0],
                   weights_form="Vela-encoded", weight_bytes=regions[0].bytes if regions[0].symbol else 0,
                   npu_index=k, covers=covers, regions=regions, payload_symbol=payload_symbol,
                   payload_bytes=len(payload), weights_symbol=weights_symbol,
                   estimated_cycles=sum(cycles_by_op.get(i, 0) for i in covers))
