"""Per-layer comparison of the NPU path with the CPU path: which operator differs first.

The reference is the generated project's own CPU plan (host build): every step's output for the
same inputs. Its final outputs are checked against TFLM's golden vectors first, so a layer is only
blamed against a reference that is bit-exact with TFLM. The NPU path's intermediates are the OFM
of every int8 NPU operation (the functional model's `trace`) and the output of every operator Vela
left on the CPU.

Vela's debug database (`debugdb.py`) names the input-model operator(s) each NPU operation computes,
so every OFM is compared with that operator's layer only, whatever order Vela ran them in. An
operation computing several operators (an activation fused into a convolution) writes the last
one's output. Per layer:
- an OFM of the layer's size equal to its reference verifies the layer; one that differs makes the
  layer a suspect until a later OFM of the layer's size equals the reference (an internal operation
  of the same size, as in a lowered LEAKY_RELU, is cleared that way);
- a smaller OFM equal to a block of the reference is one of Vela's stripes; one equal to no block
  makes the layer a suspect (a stripe gone wrong, or an internal operation such as the softmax's
  running max, cleared when the layer is later written whole and equal);
- an OFM larger than the layer, or of another shape, is internal and not compared.
Operators Vela runs without an operation of their own (RESHAPE, a CONCATENATION its producers write
into) are never blamed: the operation writing their bytes is. The verdict is the suspect raised
first in execution order: every operation before it matched, so its inputs were right.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from edgepack.errors import ModelError

from .debugdb import VelaDebugDb
from .host_steps import HostSteps, bytes_rows, cpu_op_runner
from .runner import read_tflite, run_vela_model


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
    fused_with: list[dict] = field(default_factory=list)  # {"operator", "opcode"}: operators Vela ran
    # in the same NPU operation (this one's output is the operation's OFM)

    def describe(self) -> str:
        fused = ""
        if self.fused_with:
            fused = " fused by Vela with " + ", ".join(f"operator {f['operator']} {f['opcode']}"
                                                       for f in self.fused_with) + ","
        return (f"first differing layer: operator {self.operator} {self.opcode} ({self.target}, output "
                f"{self.name!r}){fused} at input {self.input} index {self.index}: expected {self.expected} "
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


def _hwc(shape) -> tuple[int, int, int]:
    """A tensor shape as (H, W, C), the way the NPU sees a feature map."""
    dims = [int(d) for d in shape]
    while len(dims) > 3 and dims[0] == 1:
        dims = dims[1:]
    dims = [1] * (3 - len(dims)) + dims
    return (int(np.prod(dims[:-2])), dims[-2], dims[-1])


def _mismatch(host: HostSteps, k: int, want: np.ndarray, have: np.ndarray) -> LayerMismatch:
    """`want`, `have`: (B, n) bytes of layer k's output (have may hold the reference elsewhere)."""
    diff = want != have
    g = int(np.flatnonzero(diff.any(axis=1))[0])
    i = int(np.flatnonzero(diff[g])[0])
    layer = host.layers[k]
    return LayerMismatch(step=k, operator=int(layer["index"]), opcode=layer["opcode"],
                         name=layer.get("output_name", ""), target=layer.get("target", "npu"),
                         input=g, index=i, expected=int(want[g, i].astype(np.int8)),
                         got=int(have[g, i].astype(np.int8)), differing=int(diff.sum()))


def _offsets(full: tuple[int, int, int], part: tuple[int, int, int]):
    (fh, fw, fc), (h, w, c) = full, part
    for y in range(fh - h + 1):
        for x in range(fw - w + 1):
            for z in range(fc - c + 1):
                yield y, x, z


def _place(ref: np.ndarray, full, part, have: np.ndarray, offset) -> np.ndarray:
    """The reference with the block at `offset` replaced by `have` (B, h, w, c): an NPU stripe seen
    as the whole layer output, so that differences carry the layer's own byte indices."""
    (y, x, z), (h, w, c) = offset, part
    out = ref.reshape((ref.shape[0],) + full).copy()
    out[:, y:y + h, x:x + w, z:z + c] = have
    return out.reshape(ref.shape[0], -1)


def compare_layers(vela_tflite, inputs: list[np.ndarray], golden: list[np.ndarray],
                   host: HostSteps, debug_db: VelaDebugDb) -> LayerComparison:
    """Run Vela's output on `inputs` (per model input, leading batch B) and name the first layer
    whose output differs from the CPU path. `golden`: TFLM's outputs (per model output, (B, ...));
    `debug_db`: Vela's debug database of the same compilation."""
    rows = [bytes_rows(np.asarray(x).reshape(np.asarray(x).shape[0], -1)) for x in inputs]
    ref, finals = host.run_all(rows)
    for j, (have, want) in enumerate(zip(finals, golden)):
        want = bytes_rows(np.asarray(want).reshape(have.shape[0], -1))
        if not np.array_equal(have, want):
            diff = have != want
            g = int(np.flatnonzero(diff.any(axis=1))[0])
            i = int(np.flatnonzero(diff[g])[0])
            return LayerComparison(False, f"output {j} of input {g} index {i}: golden {int(want[g, i].astype(np.int8))}, "
                                          f"CPU path {int(have[g, i].astype(np.int8))} (are the golden vectors intact?)",
                                   None)

    step_of = {int(layer["index"]): k for k, layer in enumerate(host.layers)}
    shapes = [_hwc(layer.get("output_shape") or [host.io[k].output[1]]) for k, layer in enumerate(host.layers)]
    suspects: dict[int, tuple[int, LayerMismatch]] = {}  # step -> (when raised, first mismatch)
    failed_cpu: list[tuple[int, LayerMismatch]] = []
    clock = [0]

    def fused_names(operators, k):
        return [{"operator": o, "opcode": host.layers[step_of[o]]["opcode"]}
                for o in operators if o in step_of and step_of[o] != k]

    def suspect(k: int, mismatch: LayerMismatch):
        suspects.setdefault(k, (clock[0], mismatch))

    def on_npu(machine, command, ofm):
        clock[0] += 1
        size, signed = machine.ofm_type()
        if size != 1 or not signed:
            return  # int16/int32 OFMs are internal to an operator (softmax, MEAN)
        operation = debug_db.operation(machine.stream, command.offset)
        if operation is None:
            raise ModelError(f"Vela's debug database has no operation at offset 0x{command.offset:06x} of "
                             f"command stream {machine.stream}: it belongs to another compilation")
        runs = [o for o in operation.operators if o in step_of]
        if not runs:
            return
        k = step_of[runs[-1]]  # a fused operation writes the last operator's output
        have = np.asarray(ofm).astype(np.uint8)
        b, part, full = have.shape[0], tuple(have.shape[1:]), shapes[k]
        fused = fused_names(operation.operators, k)
        if int(np.prod(part)) == int(np.prod(full)):
            if np.array_equal(ref[k], have.reshape(b, -1)):
                suspects.pop(k, None)
            else:
                m = _mismatch(host, k, ref[k], have.reshape(b, -1))
                m.fused_with = fused
                suspect(k, m)
            return
        if not all(p <= f for p, f in zip(part, full)):
            return  # larger than the layer: internal
        r = ref[k].reshape((b,) + full)
        if any(np.array_equal(r[:, y:y + part[0], x:x + part[1], z:z + part[2]], have)
               for y, x, z in _offsets(full, part)):
            return  # an equal stripe
        # the stripe's place in the layer: where it differs least
        best = min(_offsets(full, part),
                   key=lambda o: int((r[:, o[0]:o[0] + part[0], o[1]:o[1] + part[1], o[2]:o[2] + part[2]] != have).sum()))
        m = _mismatch(host, k, ref[k], _place(ref[k], full, part, have, best))
        m.fused_with = fused
        suspect(k, m)

    def on_cpu(k, y):
        clock[0] += 1
        if not np.array_equal(ref[k], y):
            failed_cpu.append((clock[0], _mismatch(host, k, ref[k], y)))

    model = read_tflite(vela_tflite)
    runner = cpu_op_runner(host, model, on_output=on_cpu)
    run_vela_model(vela_tflite, inputs, runner, trace=on_npu)
    raised = sorted(list(suspects.values()) + failed_cpu, key=lambda t: t[0])
    return LayerComparison(True, "", raised[0][1] if raised else None)
