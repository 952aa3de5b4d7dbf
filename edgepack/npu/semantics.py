"""What the device computes where it differs from TFLM, measured at build time.

- `measure_divergence`: for each NPU operator in a divergent class of the audit (divergence.py),
  its own difference on the golden inputs: its TFLM input (an extra output of the TFLM run), the
  operator alone compiled by Vela for the board and run in the functional model, against TFLM.
- `keep_on_cpu`: compile with chosen operators left on the CPU (TFLM semantics). Vela has no
  option to exclude an operator, so the model given to Vela carries them as a CUSTOM operator
  (which Vela never places on the NPU) with the same tensors; the builtin operator is put back in
  Vela's output, which is then exactly what Vela emits for an operator it leaves on the CPU.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import flatbuffers
import numpy as np

from edgepack.errors import ModelError

from .divergence import Divergence
from .runner import read_tflite, run_vela_model

CPU_PLACEHOLDER = "edgepack_keep_on_cpu"  # custom code Vela leaves on the CPU
_TFL_DTYPES = {9: np.int8, 3: np.uint8, 7: np.int16, 2: np.int32}


@dataclass
class MeasuredDivergence:
    operator: int
    opcode: str
    name: str
    condition: str
    why: str
    audit_max_difference: int  # the audit's bound (steps)
    golden_inputs: int
    differing: int  # bytes of the operator's output that differ, over the golden inputs
    max_difference: int  # largest |NPU - TFLM| there, in output steps
    elements: int  # output elements per inference

    def as_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        return (f"operator {self.operator} {self.opcode} ({self.name!r}) runs on the NPU, which computes it "
                f"differently from TFLM ({self.condition}): on the {self.golden_inputs} golden inputs "
                f"{self.differing} of {self.elements * self.golden_inputs} output bytes differ, by up to "
                f"{self.max_difference} steps")


def _pack(m) -> bytes:
    b = flatbuffers.Builder(1 << 16)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _is_const(m, t: int) -> bool:
    d = m.buffers[m.subgraphs[0].tensors[t].buffer].data
    return d is not None and len(d) > 0


def _tflm_run(model_bytes: bytes, rows: list[list[np.ndarray]]) -> list[list[np.ndarray]]:
    from tflite_micro import runtime

    n_out = len(read_tflite(model_bytes).subgraphs[0].outputs)
    out = []
    # one interpreter for every row: the operators run here keep no state between invocations
    it = runtime.Interpreter.from_bytes(model_bytes, arena_size=1 << 24)
    for row in rows:
        for k, x in enumerate(row):
            it.set_input(np.ascontiguousarray(x), k)
        it.invoke()
        out.append([np.array(it.get_output(j)) for j in range(n_out)])
    return out


def _with_outputs(model_bytes: bytes, tensors: list[int]) -> bytes:
    """The model with `tensors` appended to subgraph 0's outputs (TFLM then keeps and returns them)."""
    m = read_tflite(model_bytes)
    sg = m.subgraphs[0]
    sg.outputs = list(sg.outputs) + [t for t in tensors]
    m.signatureDefs = []
    return _pack(m)


def single_operator(model_bytes: bytes, op_index: int) -> bytes:
    """A model of operator `op_index` alone (its non-constant inputs become the graph's inputs)."""
    m = read_tflite(model_bytes)
    sg = m.subgraphs[0]
    op = sg.operators[op_index]
    keep = [i for i in list(op.inputs) + list(op.outputs) if i >= 0]
    remap = {old: new for new, old in enumerate(dict.fromkeys(keep))}
    sg.tensors = [sg.tensors[i] for i in remap]
    op.inputs = [remap[i] if i >= 0 else -1 for i in op.inputs]
    op.outputs = [remap[i] for i in op.outputs]
    sg.operators = [op]
    sg.inputs = [i for i in op.inputs if i >= 0 and not _is_const(m, i)]
    sg.outputs = list(op.outputs)
    m.subgraphs = [sg]
    m.metadata = [md for md in (m.metadata or []) if md.name and md.name.decode() == "min_runtime_version"]
    m.signatureDefs = []
    return _pack(m)


def tflm_cpu_runner(vela_bytes: bytes):
    """A `cpu_op_runner` for `run_vela_model` that runs each CPU operator alone in TFLM (the oracle
    edgepack's C runtime is bit-exact with)."""
    m = read_tflite(vela_bytes)
    singles: dict[int, bytes] = {}

    def run(op_index, op, arrays):
        if op_index not in singles:
            singles[op_index] = single_operator(vela_bytes, op_index)
        xs = [a for t, a in zip(op.inputs, arrays) if t >= 0 and not _is_const(m, t)]
        outs = _tflm_run(singles[op_index], [[x[b] for x in xs] for b in range(xs[0].shape[0])])
        return [np.stack([row[j] for row in outs]) for j in range(len(op.outputs))]

    return run


def measure_divergence(model_bytes: bytes, divergent: list[Divergence], golden_inputs: list[list[np.ndarray]],
                       compile_operator) -> list[MeasuredDivergence]:
    """Each divergent operator's own difference on the golden inputs. `compile_operator(bytes)`
    returns Vela's tflite output for a single-operator model (the board's configuration)."""
    if not divergent:
        return []
    m = read_tflite(model_bytes)
    sg = m.subgraphs[0]
    wanted = [t for d in divergent for t in sg.operators[d.operator].inputs if t >= 0 and not _is_const(m, t)]
    n_out = len(sg.outputs)
    rows = _tflm_run(_with_outputs(model_bytes, wanted), golden_inputs)
    values = {t: np.stack([row[n_out + j] for row in rows]) for j, t in enumerate(wanted)}
    found = []
    for d in divergent:
        op = sg.operators[d.operator]
        xs = [values[t] for t in op.inputs if t >= 0 and not _is_const(m, t)]
        single = single_operator(model_bytes, d.operator)
        want = np.stack([r[0] for r in _tflm_run(single, [[x[b] for x in xs] for b in range(len(golden_inputs))])])
        vela = compile_operator(single)
        try:
            got = run_vela_model(vela, xs, tflm_cpu_runner(vela))[0]
        except ModelError as err:
            raise ModelError(f"operator {d.operator} {d.opcode}: the functional model cannot run it alone ({err})") from None
        diff = np.abs(got.astype(np.int32) - want.astype(np.int32))
        found.append(MeasuredDivergence(d.operator, d.opcode, d.name, d.condition, d.why, d.max_difference,
                                        len(golden_inputs), int((diff > 0).sum()), int(diff.max(initial=0)),
                                        int(np.prod(want.shape[1:]))))
    return found


def keep_on_cpu(model_bytes: bytes, operators: list[int]) -> bytes:
    """The model with `operators` as CUSTOM CPU_PLACEHOLDER operators (same tensors), for Vela."""
    from ai_edge_litert import schema_py_generated as tfl

    m = read_tflite(model_bytes)
    code = tfl.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = tfl.BuiltinOperator.CUSTOM
    code.customCode = CPU_PLACEHOLDER.encode()
    code.version = 1
    m.operatorCodes = list(m.operatorCodes) + [code]
    placeholder = len(m.operatorCodes) - 1
    for k in operators:
        op = m.subgraphs[0].operators[k]
        op.opcodeIndex = placeholder
        op.builtinOptionsType, op.builtinOptions = 0, None
    return _pack(m)


def restore_builtins(vela_bytes: bytes, model_bytes: bytes, operators: list[int]) -> bytes:
    """Vela's output of `keep_on_cpu(model, operators)` with each placeholder turned back into the
    model's own operator (opcode and options), found by its output tensor's name."""
    src = read_tflite(model_bytes)
    sg_src = src.subgraphs[0]
    by_output = {sg_src.tensors[sg_src.operators[k].outputs[0]].name: sg_src.operators[k] for k in operators}
    m = read_tflite(vela_bytes)
    sg = m.subgraphs[0]
    codes = list(m.operatorCodes)
    restored = 0
    for op in sg.operators or []:
        code = codes[op.opcodeIndex]
        if (code.customCode or b"") != CPU_PLACEHOLDER.encode():
            continue
        orig = by_output.get(sg.tensors[op.outputs[0]].name)
        if orig is None:
            raise ModelError("Vela's output holds a CPU placeholder edgepack did not put there")
        codes.append(src.operatorCodes[orig.opcodeIndex])
        op.opcodeIndex = len(codes) - 1
        op.builtinOptionsType, op.builtinOptions = orig.builtinOptionsType, orig.builtinOptions
        restored += 1
    if restored != len(operators):
        raise ModelError(f"Vela's output holds {restored} of the {len(operators)} operators kept on the CPU")
    m.operatorCodes = codes
    return _pack(m)
