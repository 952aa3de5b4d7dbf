"""Per-layer comparison of the NPU path with the CPU path: which layer differs first.

The reference is the generated project's own CPU plan (host build), every step's output for the
same inputs; its final outputs are checked against TFLM's golden vectors first, so a layer is only
blamed against a reference that is bit-exact with TFLM. The NPU path's intermediates are the OFM
of every NPU operation (the functional model's `trace`) and the output of every operator Vela left
on the CPU. Each int8 OFM is matched, in execution order, to the next layer Vela placed on the NPU
whose output has as many bytes: equal to that layer's (or a later same-sized layer's) reference,
the layer is confirmed; equal to none, that layer is the first that differs. OFMs with no
same-sized layer ahead (internal operations such as the softmax's int32 steps) are not compared.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .host_steps import HostSteps, _bytes_rows, cpu_op_runner
from .runner import _read_tflite, run_vela_model


@dataclass
class LayerMismatch:
    step: int  # plan step (= layer) index
    operator: int  # the operator's index in the model
    opcode: str
    name: str  # its output tensor
    target: str  # where Vela placed it: "npu" or "cpu"
    input: int  # which input of the batch (golden vector)
    index: int  # byte index in the layer's output (NHWC order)
    expected: int  # the CPU path's value (bit-exact with TFLM)
    got: int  # the NPU path's value
    differing: int  # bytes of this layer's output that differ, over the batch

    def describe(self) -> str:
        return (f"first differing layer: operator {self.operator} {self.opcode} ({self.target}, output "
                f"{self.name!r}) at input {self.input} index {self.index}: expected {self.expected} "
                f"got {self.got} ({self.differing} bytes of the layer differ)")

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class LayerComparison:
    reference_matches_golden: bool  # the CPU path's outputs equal TFLM's golden outputs
    reference_note: str  # where they differ, when they do
    mismatch: LayerMismatch | None  # None: every compared layer equals the CPU path

    def describe(self) -> str:
        if not self.reference_matches_golden:
            return f"the CPU path (host build) also differs from the golden outputs: {self.reference_note}"
        if self.mismatch is None:
            return "every layer compared equals the CPU path's"
        return self.mismatch.describe()


def _mismatch(host: HostSteps, k: int, want: np.ndarray, have: np.ndarray) -> LayerMismatch:
    diff = want != have
    g = int(np.flatnonzero(diff.any(axis=1))[0])
    i = int(np.flatnonzero(diff[g])[0])
    layer = host.layers[k]
    return LayerMismatch(step=k, operator=int(layer["index"]), opcode=layer["opcode"],
                         name=layer.get("output_name", ""), target=layer.get("target", "npu"),
                         input=g, index=i, expected=int(want[g, i].astype(np.int8)),
                         got=int(have[g, i].astype(np.int8)), differing=int(diff.sum()))


def compare_layers(vela_tflite, inputs: list[np.ndarray], golden: list[np.ndarray],
                   host: HostSteps) -> LayerComparison:
    """Run Vela's output on `inputs` (per model input, leading batch B) and name the first layer
    whose output differs from the CPU path. `golden`: TFLM's outputs (per model output, (B, ...))."""
    rows = [_bytes_rows(np.asarray(x).reshape(np.asarray(x).shape[0], -1)) for x in inputs]
    ref, finals = host.run_all(rows)
    for j, (have, want) in enumerate(zip(finals, golden)):
        want = _bytes_rows(np.asarray(want).reshape(have.shape[0], -1))
        if not np.array_equal(have, want):
            diff = have != want
            g = int(np.flatnonzero(diff.any(axis=1))[0])
            i = int(np.flatnonzero(diff[g])[0])
            return LayerComparison(False, f"output {j} of input {g} index {i}: golden {int(want[g, i].astype(np.int8))}, "
                                          f"CPU path {int(have[g, i].astype(np.int8))} (are the golden vectors intact?)",
                                   None)

    observed: list[tuple[str, int, np.ndarray]] = []

    def trace(machine, command, ofm):
        size, signed = machine.ofm_type()
        if size == 1 and signed:
            observed.append(("npu", -1, _bytes_rows(np.asarray(ofm).astype(np.int8).reshape(ofm.shape[0], -1))))

    model = _read_tflite(vela_tflite)
    runner = cpu_op_runner(host, model, on_output=lambda k, y: observed.append(("cpu", k, y)))
    run_vela_model(vela_tflite, inputs, runner, trace=trace)

    npu_steps = [k for k, layer in enumerate(host.layers) if layer.get("target", "npu") == "npu"]
    pos = 0
    for where, k, have in observed:
        if where == "cpu":
            if not np.array_equal(ref[k], have):
                return LayerComparison(True, "", _mismatch(host, k, ref[k], have))
            pos = max(pos, k)
            continue
        candidates = [s for s in npu_steps if s >= pos and host.io[s].output[1] == have.shape[1]]
        if not candidates:
            continue
        equal = next((s for s in candidates if np.array_equal(ref[s], have)), None)
        if equal is None:
            return LayerComparison(True, "", _mismatch(host, candidates[0], ref[candidates[0]], have))
        pos = equal
    return LayerComparison(True, "", None)
