"""Golden outputs for a firmware that drives the NPU: edgepack's functional Ethos-U model runs
Vela's optimized model; operators Vela left on the CPU run in the TFLM interpreter one at a time
(the firmware's C runtime is bit-exact with TFLM for every CPU kernel)."""

from __future__ import annotations

import numpy as np

from .runner import run_vela_model


def _single_operator_model(vm_bytes: bytes, op_index: int) -> bytes:
    """A model of operator `op_index` alone: its non-constant inputs become the graph inputs."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as tfl

    m = tfl.ModelT.InitFromPackedBuf(vm_bytes, 0)
    sg = m.subgraphs[0]
    op = sg.operators[op_index]
    keep = list(dict.fromkeys(i for i in list(op.inputs) + list(op.outputs) if i >= 0))
    remap = {old: new for new, old in enumerate(keep)}
    sg.tensors = [sg.tensors[i] for i in keep]

    def constant(t) -> bool:
        data = m.buffers[t.buffer].data
        return data is not None and len(data) > 0

    op.inputs = [remap[i] if i >= 0 else -1 for i in op.inputs]
    op.outputs = [remap[i] for i in op.outputs]
    sg.inputs = [i for i in op.inputs if i >= 0 and not constant(sg.tensors[i])]
    sg.outputs = list(op.outputs)
    sg.operators = [op]
    m.subgraphs = [sg]
    m.metadata = [md for md in (m.metadata or []) if md.name and md.name.decode() == "min_runtime_version"]
    m.signatureDefs = []
    b = flatbuffers.Builder(1 << 16)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _tflm_run(model_bytes: bytes, n_outputs: int, xs: list[np.ndarray]) -> list[np.ndarray]:
    """One operator's outputs for a batch (leading dimension B), one TFLM invocation each."""
    from tflite_micro import runtime

    interp = runtime.Interpreter.from_bytes(model_bytes)
    outs: list[list[np.ndarray]] = [[] for _ in range(n_outputs)]
    for b in range(xs[0].shape[0]):
        for k, x in enumerate(xs):
            interp.set_input(np.ascontiguousarray(x[b]), k)
        interp.invoke()
        for k in range(n_outputs):
            outs[k].append(np.array(interp.get_output(k)))
    return [np.stack(o) for o in outs]


def functional_model_outputs(vela_model: bytes, inputs: list[list[np.ndarray]]) -> list[list[np.ndarray]]:
    """Outputs (per golden input, per model output) of Vela's optimized model as the NPU firmware
    computes them."""
    from ai_edge_litert import schema_py_generated as tfl

    vm_bytes = bytes(vela_model)
    vm = tfl.ModelT.InitFromPackedBuf(vm_bytes, 0)
    sg = vm.subgraphs[0]
    cache: dict[int, bytes] = {}

    def constant(i: int) -> bool:
        data = vm.buffers[sg.tensors[i].buffer].data
        return data is not None and len(data) > 0

    def cpu_op(op_index, op, ins):
        if op_index not in cache:
            cache[op_index] = _single_operator_model(vm_bytes, op_index)
        xs = [x for i, x in zip(op.inputs, ins) if i >= 0 and not constant(i)]
        return _tflm_run(cache[op_index], len(op.outputs), xs)

    batched = [np.stack([row[k] for row in inputs]) for k in range(len(inputs[0]))]
    outs = run_vela_model(vm_bytes, batched, cpu_op)
    return [[np.asarray(outs[k][g]) for k in range(len(outs))] for g in range(len(inputs))]
