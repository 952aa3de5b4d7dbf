"""Golden outputs for a firmware that drives the NPU: edgepack's functional Ethos-U model runs
Vela's optimized model; operators Vela left on the CPU run in the TFLM interpreter one at a time
(the firmware's C runtime is bit-exact with TFLM for every CPU kernel)."""

from __future__ import annotations

import numpy as np

from .runner import run_vela_model


def functional_model_outputs(vela_model: bytes, inputs: list[list[np.ndarray]]) -> list[list[np.ndarray]]:
    """Outputs (per golden input, per model output) of Vela's optimized model as the NPU firmware
    computes them."""
    from .semantics import tflm_cpu_runner

    vm_bytes = bytes(vela_model)
    cpu_op = tflm_cpu_runner(vm_bytes)
    batched = [np.stack([row[k] for row in inputs]) for k in range(len(inputs[0]))]
    outs = run_vela_model(vm_bytes, batched, cpu_op)
    return [[np.asarray(outs[k][g]) for k in range(len(outs))] for g in range(len(inputs))]
