"""The generated project's plan, one step at a time, in its host build (`libedgepack_host_steps`).

`edgepack run --sim npu-model` runs Vela's output model as the device would: `ethos-u` operators in
the functional NPU model, every operator Vela left on the CPU in edgepack's C runtime with the
project's own lowered parameters (src/model_plan.c), never a Python re-implementation. The same
library gives every layer's output on the CPU path, which is bit-exact with TFLM, as the reference
the per-layer comparison uses to name the first layer where the NPU path differs.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgepack.errors import BuildError, ModelError

LIB_TARGET = "edgepack_host_steps"
BUILD_DIR = "build-host-steps"


@dataclass
class StepIO:
    """Where plan step k reads and writes in the arena."""

    inputs: list[tuple[int, int]]  # (arena offset, bytes) of each activation input, kernel order
    output: tuple[int, int]  # (arena offset, bytes)


def build_library(project: Path, timeout: float = 600) -> Path:
    """Configure the project's host build (its own build directory) and build only the step
    library; returns the library's path."""
    from edgepack.tools import require_tool, tail_error

    require_tool("cmake")
    require_tool("ninja")
    require_tool("gcc")
    if "host_steps.c" not in {p.name for p in (project / "src").glob("*.c")}:
        raise BuildError("src/host_steps.c is missing (a project from an older edgepack): rebuild the "
                         "project with `edgepack build ... --force`", str(project))
    build_dir = project / BUILD_DIR
    env = dict(os.environ, LC_ALL="C")
    for cmd in (["cmake", "-G", "Ninja", "-S", str(project), "-B", str(build_dir), "-DEDGEPACK_HOST=ON",
                 "-DEDGEPACK_SANITIZE=OFF"], ["ninja", "-C", str(build_dir), LIB_TARGET]):
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            raise BuildError(f"`{' '.join(cmd[:2])}` timed out after {timeout:.0f} s", str(project)) from None
        if proc.returncode != 0:
            raise BuildError(f"`{cmd[0]}` failed building the host step library: "
                             f"{tail_error(proc.stdout + proc.stderr)}", str(project))
    lib = build_dir / f"lib{LIB_TARGET}.so"
    if not lib.is_file():
        raise BuildError(f"the host build did not produce {lib.name}", str(project))
    return lib


class HostSteps:
    """The loaded step library of one project, with the plan's layers from build.json."""

    def __init__(self, library: Path, layers: list[dict], num_inputs: int, num_outputs: int):
        lib = ctypes.CDLL(str(library))
        i32, p = ctypes.c_int32, ctypes.c_void_p
        for name, args in (("ep_host_num_ops", []), ("ep_host_arena_bytes", []),
                           ("ep_host_op_num_inputs", [i32]), ("ep_host_op_input_offset", [i32, i32]),
                           ("ep_host_op_tensor_bytes", [i32, i32]), ("ep_host_op_output_offset", [i32]),
                           ("ep_host_run_steps", [p, i32, i32, i32])):
            f = getattr(lib, name)
            f.argtypes, f.restype = args, i32
        self._lib = lib
        self.num_ops = lib.ep_host_num_ops()
        self.arena_bytes = lib.ep_host_arena_bytes()
        if self.num_ops != len(layers):
            raise ModelError(f"the host plan has {self.num_ops} steps but build.json lists {len(layers)} layers: "
                             "rebuild the project")
        self.layers = layers
        self.input_offsets = list((ctypes.c_int32 * num_inputs).in_dll(lib, "ep_input_offset"))
        self.output_offsets = list((ctypes.c_int32 * num_outputs).in_dll(lib, "ep_output_offset"))
        self.output_bytes = list((ctypes.c_int32 * num_outputs).in_dll(lib, "ep_output_bytes"))
        self.io = [self._io(k) for k in range(self.num_ops)]
        self._by_name = {}
        for k, layer in enumerate(layers):
            self._by_name.setdefault(layer.get("output_name", ""), k)

    def _io(self, k: int) -> StepIO:
        lib = self._lib
        ins = []
        for i in range(lib.ep_host_op_num_inputs(k)):
            off = lib.ep_host_op_input_offset(k, i)
            if off >= 0:  # constants (EP_CONST) live in the model data, not the arena
                ins.append((off, lib.ep_host_op_tensor_bytes(k, i)))
        return StepIO(ins, (lib.ep_host_op_output_offset(k), lib.ep_host_op_tensor_bytes(k, -1)))

    def step_of(self, output_name: str) -> int | None:
        """The plan step writing the tensor named `output_name` (None if the plan has none)."""
        return self._by_name.get(output_name)

    def run(self, arena: np.ndarray, first: int, count: int = 1) -> None:
        status = self._lib.ep_host_run_steps(arena.ctypes.data, arena.size, first, count)
        if status != 0:
            what = self.layers[first]
            raise ModelError(f"the C runtime returned status {status} on plan step {first} "
                             f"(operator {what['index']} {what['opcode']})")

    def run_step(self, k: int, inputs: list[np.ndarray]) -> np.ndarray:
        """Step k on a batch: `inputs` are (B, bytes) uint8 per activation input; returns (B, bytes)."""
        io = self.io[k]
        if len(inputs) != len(io.inputs):
            raise ModelError(f"plan step {k} reads {len(io.inputs)} activation inputs, {len(inputs)} given")
        batch = inputs[0].shape[0] if inputs else 1
        arena = np.zeros(self.arena_bytes, np.uint8)
        out = np.empty((batch, io.output[1]), np.uint8)
        for b in range(batch):
            for x, (off, n) in zip(inputs, io.inputs):
                if x.shape[1] != n:
                    raise ModelError(f"plan step {k} input holds {n} bytes, {x.shape[1]} given")
                arena[off:off + n] = x[b]
            self.run(arena, k)
            out[b] = arena[io.output[0]:io.output[0] + io.output[1]]
        return out

    def run_all(self, inputs: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """The CPU path on a batch of model inputs (B, bytes): every step's output (B, bytes) and
        the model's outputs (B, bytes)."""
        batch = inputs[0].shape[0]
        outs = [np.empty((batch, io.output[1]), np.uint8) for io in self.io]
        finals = [np.empty((batch, n), np.uint8) for n in self.output_bytes]
        arena = np.zeros(self.arena_bytes, np.uint8)
        for b in range(batch):
            for x, off in zip(inputs, self.input_offsets):
                arena[off:off + x.shape[1]] = x[b]
            for k, io in enumerate(self.io):
                self.run(arena, k)
                outs[k][b] = arena[io.output[0]:io.output[0] + io.output[1]]
            for y, off, n in zip(finals, self.output_offsets, self.output_bytes):
                y[b] = arena[off:off + n]
        return outs, finals


def bytes_rows(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x)
    return x.reshape(x.shape[0], -1).view(np.uint8) if x.dtype.itemsize == 1 else \
        x.astype(x.dtype.newbyteorder("<")).reshape(x.shape[0], -1).view(np.uint8)


def cpu_op_runner(host: HostSteps, vela_model, on_output=None):
    """A `cpu_op_runner` for `run_vela_model`: each operator Vela left on the CPU runs as the plan
    step that writes the tensor of the same name (Vela keeps the names of CPU operators' tensors),
    its activation inputs written to their planned arena offsets. `vela_model` is the parsed
    schema ModelT; `on_output(step, output_bytes)` (optional) sees each result."""
    sg = vela_model.subgraphs[0]

    def is_const(t: int) -> bool:
        d = vela_model.buffers[sg.tensors[t].buffer].data
        return d is not None and len(d) > 0

    def run(op_index, op, arrays):
        if len(op.outputs) != 1:
            raise ModelError(f"operator {op_index} of Vela's output has {len(op.outputs)} outputs; "
                             "edgepack's plan steps have one")
        name = sg.tensors[op.outputs[0]].name.decode()
        k = host.step_of(name)
        if k is None:
            raise ModelError(f"operator {op_index} of Vela's output (tensor {name!r}) runs on the CPU but "
                             "the project's plan has no step writing that tensor")
        xs = [bytes_rows(a) for t, a in zip(op.inputs, arrays) if t >= 0 and not is_const(t)]
        y = host.run_step(k, xs)
        if on_output is not None:
            on_output(k, y)
        t = sg.tensors[op.outputs[0]]
        dt = np.dtype({9: np.int8, 3: np.uint8, 7: np.int16, 2: np.int32, 0: np.float32}.get(t.type, np.int8)).newbyteorder("<")
        return [y.view(dt)]

    return run
