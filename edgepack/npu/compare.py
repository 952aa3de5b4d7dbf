"""Per-layer comparison of the NPU path with the CPU path: which layer differs first.

The reference is the generated project's own CPU plan (host build): every step's output for the
same inputs. Its final outputs are checked against TFLM's golden vectors first, so a layer is only
blamed against a reference that is bit-exact with TFLM. The NPU path's intermediates are the OFM
of every int8 NPU operation (the functional model's `trace`) and the output of every operator Vela
left on the CPU. Vela's command stream does not say which layer an NPU operation computes, so
OFMs are matched in execution order against the NPU layers not yet written:
- an OFM of a layer's size equal to its reference writes that layer (and any later layer with the
  same bytes, a RESHAPE); of a layer's size but equal to none: that layer is the first that differs;
- a smaller OFM that equals a block of a layer is one of Vela's stripes of it; one that equals no
  block is a suspect of the first layer it fits (a stripe gone wrong, or an internal operation such
  as the softmax's running max, cleared when that layer is later written whole and equal);
- OFMs no layer ahead has room for (internal operations) are not compared.
The first suspect, else the first differing layer, is the verdict.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

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
                   host: HostSteps) -> LayerComparison:
    """Run Vela's output on `inputs` (per model input, leading batch B) and name the first layer
    whose output differs from the CPU path. `golden`: TFLM's outputs (per model output, (B, ...))."""
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

    observed: list[tuple[str, int, np.ndarray]] = []

    def trace(machine, command, ofm):
        size, signed = machine.ofm_type()
        if size == 1 and signed:
            observed.append(("npu", -1, np.asarray(ofm).astype(np.uint8)))  # (B, h, w, c) bytes

    model = read_tflite(vela_tflite)
    runner = cpu_op_runner(host, model, on_output=lambda k, y: observed.append(("cpu", k, y)))
    run_vela_model(vela_tflite, inputs, runner, trace=trace)

    shapes = [_hwc(layer.get("output_shape") or [host.io[k].output[1]]) for k, layer in enumerate(host.layers)]
    npu_steps = [k for k, layer in enumerate(host.layers) if layer.get("target", "npu") == "npu"]
    done: set[int] = set()  # layers an NPU operation wrote whole and equal
    # A block-sized OFM that fits no layer is only a suspect: it may be an internal operation of a
    # layer (the softmax's max) rather than a stripe; a later whole match of that layer clears it.
    suspects: dict[int, LayerMismatch] = {}

    def verdict(hard: LayerMismatch | None) -> LayerComparison:
        first = next(iter(suspects.values()), None)
        return LayerComparison(True, "", first if first is not None else hard)

    pos = 0
    for where, k, have in observed:
        if where == "cpu":
            if not np.array_equal(ref[k], have):
                return verdict(_mismatch(host, k, ref[k], have))
            pos = max(pos, k)
            continue
        b, part = have.shape[0], tuple(have.shape[1:])
        whole, stripes = [], []  # candidate layers: same size, or a block of it (Vela's stripes)
        for s in npu_steps:
            if s < pos or s in done:
                continue
            full = shapes[s]
            if int(np.prod(part)) == int(np.prod(full)):
                whole.append(s)
            elif all(p <= f for p, f in zip(part, full)):
                stripes.append(s)
        matched = None
        for s in sorted(whole + stripes):
            if s in whole and np.array_equal(ref[s], have.reshape(b, -1)):
                # every same-valued layer is written too (a RESHAPE's output is its input's bytes)
                same = [t for t in whole if t >= s and np.array_equal(ref[t], ref[s])]
                matched = max(same)
                done.update(same)
                for t in same:
                    suspects.pop(t, None)
                break
            if s in stripes:
                r = ref[s].reshape((b,) + shapes[s])
                if any(np.array_equal(r[:, y:y + part[0], x:x + part[1], z:z + part[2]], have)
                       for y, x, z in _offsets(shapes[s], part)):
                    matched = s
                    break
        if matched is not None:
            pos = matched
            continue
        if not whole and not stripes:
            continue  # an internal operation (no layer ahead has room for its output)
        if whole:
            s = min(whole)
            return verdict(_mismatch(host, s, ref[s], have.reshape(b, -1)))
        s = min(stripes)
        # the stripe's place in the layer: where it differs least
        r = ref[s].reshape((b,) + shapes[s])
        best = min(_offsets(shapes[s], part),
                   key=lambda o: int((r[:, o[0]:o[0] + part[0], o[1]:o[1] + part[1], o[2]:o[2] + part[2]] != have).sum()))
        suspects.setdefault(s, _mismatch(host, s, ref[s], _place(ref[s], shapes[s], part, have, best)))
    return verdict(None)
