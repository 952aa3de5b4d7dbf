"""Where a firmware that drives the NPU runs each operator, and what it is checked against.

Vela places operators; the build then keeps on the CPU the ones the functional Ethos-U model
cannot check (features it does not model, command streams it refuses), measures the ones the
NPU computes differently from TFLM, and computes the device's golden outputs. Imports vela,
codegen and the rest of npu; build calls it.
"""

from __future__ import annotations

import numpy as np

from ..boards import BoardSpec
from ..errors import BuildError
from ..tflite import Model


def audited(board: BoardSpec) -> bool:
    """The audit (and the functional model) covers every Ethos-U55 and the single-core U65-256."""
    return board.npu is not None and (board.npu.accelerator.startswith("ethos-u55")
                                      or board.npu.accelerator == "ethos-u65-256")


def divergent_on_npu(folded: Model, compiled, board: BoardSpec) -> list:
    from .divergence import divergent_operators

    if not audited(board):
        return []
    return divergent_operators(folded, {op.index for op in compiled.operators if op.target == "npu"})


def unmodelled_on_npu(folded: Model, compiled, board: BoardSpec) -> list:
    from .divergence import unmodelled_operators

    # the functional model runs the U55/U65 command streams the firmware drives
    if board.npu.family not in ("u55", "u65"):
        return []
    return unmodelled_operators(folded, {op.index for op in compiled.operators if op.target == "npu"})


def checkable_on_npu(folded: Model, folded_bytes: bytes, compiled, board: BoardSpec, g_in, unmodelled: list,
                      model_path: str, say):
    """Vela's compilation in which the functional Ethos-U model executes every command stream on
    the golden inputs, and its outputs. A command stream it refuses (a feature it does not model,
    or an access outside the memory Vela planned: a Vela defect it reports rather than computes)
    has its operators kept on the CPU and the model compiled again; `unmodelled` gains them."""
    from ..codegen.mixed import npu_operator_covers
    from ..errors import CommandStreamRefused
    from .divergence import Unmodelled
    from .golden import functional_model_outputs

    while True:
        try:
            return compiled, functional_model_outputs(compiled.optimized_model, g_in)
        except CommandStreamRefused as e:
            kept = {u.operator for u in unmodelled}
            covers = [i for i in npu_operator_covers(folded, compiled.optimized_model, e.vela_operator)
                      if i not in kept]
            if not covers:
                raise BuildError(f"edgepack's functional Ethos-U model cannot execute Vela's command "
                                 f"stream: {e}; build with --cpu-only", model_path) from None
            why = f"the functional Ethos-U model refused the NPU command stream computing them ({e})"
            unmodelled += [Unmodelled(i, folded.operators[i].name, why) for i in covers]
            say(f"compiling with {len(covers)} more operator(s) on the CPU: the functional NPU model "
                "refused their command stream")
            compiled = compile_keeping_on_cpu(folded, folded_bytes, sorted(kept | set(covers)), board)


def compile_keeping_on_cpu(folded: Model, folded_bytes: bytes, operators: list[int], board: BoardSpec):
    """Vela's compilation with `operators` left on the CPU (edgepack.npu.semantics.keep_on_cpu)."""
    from .. import vela as vela_stage
    from .semantics import keep_on_cpu, restore_builtins

    result = vela_stage.compile_for_board(keep_on_cpu(folded_bytes, operators), board,
                                          name="folded_tflm_semantics")
    result.optimized_model = restore_builtins(result.optimized_model, folded_bytes, operators)
    for op in result.operators:
        if op.index in operators:
            op.opcode = folded.operators[op.index].opcode
    return result


def npu_semantics_info(folded_bytes, divergent, cpu_option, on_npu, board, g_in, tflm_out, device_out,
                   tflm_semantics, say) -> dict:
    """build.json's `npu_semantics`: divergent NPU operators measured on the golden inputs, the
    device's golden outputs against TFLM's, and what --tflm-semantics costs."""
    from .. import vela as vela_stage
    from .divergence import unaudited_operators
    from .semantics import measure_divergence
    from ..tflite import parse_model

    folded = parse_model(folded_bytes)
    unaudited = unaudited_operators(folded, {op.index for op in on_npu.operators if op.target == "npu"})
    info = {"audited": not unaudited, "not_audited": [{"operator": i, "opcode": o} for i, o in unaudited],
            "tflm_semantics": bool(tflm_semantics), "divergent": [],
            "golden_outputs": "the device's = TFLM's (no divergent operator on the NPU)",
            "device_vs_tflm": {"differing": 0, "max_difference": 0}, "cpu_option": None,
            "golden_differences": []}
    if divergent:
        say("measuring on the golden inputs where the NPU differs from TFLM")
        measured = measure_divergence(folded_bytes, divergent, g_in, lambda single: vela_stage.compile_for_board(
            single, board, verbose_performance=False, name="divergent_operator").optimized_model)
        info["divergent"] = [m.as_dict() for m in measured]
        # Vela's estimates (NPU only: the CPU operators' own time is not in them; `cpu_elements` is
        # the work they move to the CPU, output elements per inference)
        info["cpu_option"] = {
            "operators": [d.operator for d in divergent],
            "npu_cycles_on_npu": on_npu.npu_cycles, "npu_cycles_on_cpu": cpu_option.npu_cycles,
            "total_cycles_on_npu": on_npu.total_cycles, "total_cycles_on_cpu": cpu_option.total_cycles,
            "cpu_elements": sum(m.elements for m in measured)}
        info["golden_outputs"] = ("TFLM's (the divergent operators run on the CPU: --tflm-semantics)"
                                  if tflm_semantics else
                                  "the device's (Vela's command stream in the functional Ethos-U model)")
    diff = [np.abs(np.asarray(d).astype(np.int32) - np.asarray(t).astype(np.int32))
            for dr, tr in zip(device_out, tflm_out) for d, t in zip(dr, tr)]
    info["device_vs_tflm"] = {"differing": int(sum((x > 0).sum() for x in diff)),
                              "max_difference": int(max(int(x.max(initial=0)) for x in diff))}
    # both golden outputs where they differ (the first 16 bytes of each), for the report
    for g, (dr, tr) in enumerate(zip(device_out, tflm_out)):
        for k, (d, t) in enumerate(zip(dr, tr)):
            d, t = np.asarray(d).reshape(-1), np.asarray(t).reshape(-1)
            where = np.flatnonzero(d != t)
            if where.size:
                info["golden_differences"].append({
                    "input": g, "output": k, "differing": int(where.size),
                    "first": [[int(i), int(d[i]), int(t[i])] for i in where[:16]]})
    return info


def cycles_by_operator(folded: Model, vela_result) -> dict[int, int]:
    """Vela's estimated cycles per folded-model operator (per-layer CSV rows by output name)."""
    by_name = {folded.tensors[o].name: op.index for op in folded.operators for o in op.outputs}
    out: dict[int, int] = {}
    for layer in vela_result.layers:
        i = by_name.get(layer.name)
        if i is not None and layer.target.upper() == "NPU":
            out[i] = out.get(i, 0) + int(layer.op_cycles)
    return out


def npu_board_golden_outputs(vela_model: bytes, inputs: list[list[np.ndarray]],
                             tflm: list[list[np.ndarray]], npu: list | None = None,
                             ) -> tuple[list[list[np.ndarray]], int]:
    """The golden outputs of a firmware that drives the NPU: what edgepack's functional Ethos-U
    model computes for Vela's optimized model (operators Vela leaves on the CPU through TFLM, one
    operator at a time, as the C runtime computes them bit-exactly). Where the NPU and TFLM
    compute differently (edgepack/npu/compare.py), the device's answer is the NPU's; where they
    agree this equals `tflm`. `npu`: the functional model's outputs when already computed.
    Returns (outputs, bytes that differ from `tflm`)."""
    from .golden import functional_model_outputs

    if npu is None:
        npu = functional_model_outputs(vela_model, inputs)
    # each output keeps TFLM's type: int8, int32 (ARG_MAX) or float32 (after DEQUANTIZE)
    outs = [[np.asarray(a).astype(np.asarray(b).dtype).reshape(np.asarray(b).shape)
             for a, b in zip(row_a, row_b)] for row_a, row_b in zip(npu, tflm)]
    differ = sum(int(np.count_nonzero(a.view(np.uint8) != np.asarray(b).view(np.uint8)))
                 for row_a, row_b in zip(outs, tflm) for a, b in zip(row_a, row_b))
    return outs, differ
