"""Mutated models and the outcome of one edgepack command on each: the fuzz test's and
bench/fuzz.py's shared part.

A mutant is a seed model (the fixtures and the small robust models) changed either in its bytes
(bit flips, truncations, integer overwrites) or through the schema (shapes, types, scales, zero
points, quantized dimensions, operator inputs and outputs, opcodes, subgraph inputs and outputs,
options, operator order). Each command runs in a forked child (edgepack already imported, so
a run costs what the command costs) with its own address-space limit, stdout and stderr in
files, under a timeout; the parent classifies what happened.
"""

from __future__ import annotations

import os
import resource
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import flatbuffers
import numpy as np

from edgepack.tflite import schema
from tests import robust_models
from tests.conftest import FIXTURES

MEMORY_LIMIT = 2 << 30  # a child's address space: a blow-up is a MemoryError, not a dead machine

# values that find the edges of integer and float fields
INTS = [0, 1, -1, 2, 3, 7, 255, 256, -128, 127, 128, -129, 1 << 15, 1 << 16, 1 << 24,
        2**31 - 1, -2**31, 1 << 30, 1000003]
FLOATS = [0.0, -0.0, -1.0, float("nan"), float("inf"), float("-inf"), 1e-45, 1e-30, 1e30, 3.4e38,
          1.0, 0.5, 1e-8]
DIMS = [0, 1, 2, 3, 7, 64, 1 << 16, 1 << 30, 2147483647, -1, -5]

OUTCOMES = ["result", "one-line error", "usage error", "multi-line error", "result with stderr",
            "traceback", "signal", "hang", "memory blow-up", "half-written output", "bad exit code"]


def seeds() -> dict[str, bytes]:
    """The models mutants start from."""
    out = {p.name: p.read_bytes() for p in sorted(FIXTURES.glob("*.tflite"))}
    out["add_only"] = robust_models.add_only()
    out["conv_bias_axis3"] = robust_models.conv_bias_axis3()
    out["softmax"] = robust_models.softmax_beta(1.0)
    return out


# --- mutations -----------------------------------------------------------------------------

def _pack(m) -> bytes:
    b = flatbuffers.Builder(1 << 16)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _pick(rng, seq):
    return seq[int(rng.integers(0, len(seq)))]


def _index(rng, n: int) -> int:
    """A tensor index: mostly valid, sometimes -1 or out of range."""
    r = rng.random()
    if r < 0.75 and n:
        return int(rng.integers(0, n))
    return _pick(rng, [-1, -2, n, n + 5, 2**31 - 1])


def _edit_shape(rng, m):
    t = _pick(rng, m.subgraphs[0].tensors)
    if rng.random() < 0.5 and t.shape is not None and len(t.shape):
        shape = np.array(t.shape, np.int64)
        shape[int(rng.integers(0, shape.size))] = _pick(rng, DIMS)
    else:
        shape = np.array([_pick(rng, DIMS) for _ in range(int(rng.integers(0, 6)))], np.int64)
    t.shape = shape.astype(np.int32)


def _edit_type(rng, m):
    _pick(rng, m.subgraphs[0].tensors).type = int(rng.integers(0, 20))


def _quantized_tensor(rng, m):
    ts = [t for t in m.subgraphs[0].tensors if t.quantization is not None
          and t.quantization.scale is not None]
    return _pick(rng, ts) if ts else None


def _edit_scale(rng, m):
    t = _quantized_tensor(rng, m)
    if t is not None:
        s = np.array(t.quantization.scale, np.float32)
        s[int(rng.integers(0, s.size))] = _pick(rng, FLOATS)
        t.quantization.scale = s


def _edit_zero_point(rng, m):
    t = _quantized_tensor(rng, m)
    if t is not None and t.quantization.zeroPoint is not None and len(t.quantization.zeroPoint):
        z = np.array(t.quantization.zeroPoint, np.int64)
        z[int(rng.integers(0, z.size))] = _pick(rng, INTS + [1 << 40])
        t.quantization.zeroPoint = z


def _edit_quantized_dimension(rng, m):
    t = _quantized_tensor(rng, m)
    if t is not None:
        t.quantization.quantizedDimension = _pick(rng, [0, 1, 2, 3, 4, -1, 100])


def _edit_operator_tensor(rng, m):
    sg = m.subgraphs[0]
    op = _pick(rng, sg.operators)
    field = "inputs" if rng.random() < 0.6 else "outputs"
    idx = np.array(getattr(op, field) if getattr(op, field) is not None else [], np.int32)
    n = len(sg.tensors)
    r = rng.random()
    if r < 0.15:
        idx = idx[:-1]  # drop one
    elif r < 0.3:
        idx = np.append(idx, _index(rng, n)).astype(np.int32)
    elif r < 0.45 and op.outputs is not None and len(op.outputs) and field == "inputs" and idx.size:
        idx[int(rng.integers(0, idx.size))] = op.outputs[0]  # the operator reads its own output
    elif idx.size:
        idx[int(rng.integers(0, idx.size))] = _index(rng, n)
    setattr(op, field, idx)


def _edit_opcode(rng, m):
    codes = m.operatorCodes
    c = _pick(rng, codes)
    code = int(rng.integers(0, 210)) if rng.random() < 0.8 else _pick(rng, [32, 1000, -1])
    c.builtinCode = code
    c.deprecatedBuiltinCode = min(max(code, 0), 127)
    if code == 32:  # CUSTOM
        c.customCode = _pick(rng, [b"MyOp", b"TFLite_Detection_PostProcess", b""])


def _edit_graph_io(rng, m):
    sg = m.subgraphs[0]
    field = "inputs" if rng.random() < 0.5 else "outputs"
    n = len(sg.tensors)
    r = rng.random()
    if r < 0.3:
        value = []
    elif r < 0.6:
        value = list(getattr(sg, field)) + [_index(rng, n)]
    else:
        value = [_index(rng, n) for _ in range(int(rng.integers(1, 3)))]
    setattr(sg, field, np.array(value, np.int32))


def _edit_options(rng, m):
    ops = [op for op in m.subgraphs[0].operators if op.builtinOptions is not None]
    if not ops:
        return
    opts = _pick(rng, ops).builtinOptions
    fields = sorted(vars(opts))
    if not fields:
        return
    name = _pick(rng, fields)
    old = getattr(opts, name)
    if isinstance(old, float):
        setattr(opts, name, _pick(rng, FLOATS))
    elif isinstance(old, bool):
        setattr(opts, name, not old)
    elif isinstance(old, int):
        setattr(opts, name, _pick(rng, [v for v in INTS if -2**31 <= v < 2**31]))


def _edit_order(rng, m):
    ops = m.subgraphs[0].operators
    if len(ops) > 1:
        i, j = rng.choice(len(ops), 2, replace=False)
        ops[i], ops[j] = ops[j], ops[i]
    elif rng.random() < 0.5:
        ops.append(ops[0])


def _edit_buffer(rng, m):
    t = _pick(rng, m.subgraphs[0].tensors)
    t.buffer = _pick(rng, [0, 1, len(m.buffers) - 1, len(m.buffers), 2**31 - 1])


SCHEMA_EDITS = {"shape": _edit_shape, "type": _edit_type, "scale": _edit_scale,
                "zero point": _edit_zero_point, "quantized dimension": _edit_quantized_dimension,
                "operator tensor": _edit_operator_tensor, "opcode": _edit_opcode,
                "graph io": _edit_graph_io, "options": _edit_options, "order": _edit_order,
                "buffer": _edit_buffer}
BYTE_EDITS = ["bitflip", "truncate", "overwrite"]
KINDS = BYTE_EDITS + list(SCHEMA_EDITS)


def mutate(rng, data: bytes, kind: str) -> bytes:
    """One mutant of `data` (a valid model) by `kind` (one of KINDS)."""
    if kind in SCHEMA_EDITS:
        m = schema.ModelT.InitFromPackedBuf(data, 0)
        for _ in range(int(rng.integers(1, 3))):
            SCHEMA_EDITS[kind](rng, m)
        try:
            return _pack(m)
        except Exception:  # an edit the builder cannot write (an out-of-range int): a bit flip
            kind = "bitflip"
    buf = bytearray(data)
    if kind == "bitflip":
        for pos in rng.integers(0, len(buf), size=int(rng.integers(1, 9))):
            buf[pos] ^= 1 << int(rng.integers(0, 8))
    elif kind == "truncate":
        buf = buf[: int(rng.integers(0, len(buf)))]
    else:  # an aligned 32-bit overwrite: lengths, offsets, indices, dimensions
        pos = int(rng.integers(0, len(buf) // 4)) * 4
        buf[pos:pos + 4] = int(_pick(rng, INTS) & 0xFFFFFFFF).to_bytes(4, "little")
    return bytes(buf)


def mutant(seed: int, n: int, base: dict[str, bytes]) -> tuple[str, bytes]:
    """Mutant number `n` of the run seeded `seed`: (label, bytes), each its own random stream
    (any worker can make any mutant, the same every time)."""
    rng = np.random.default_rng([seed, n])
    names = sorted(base)
    name = names[n % len(names)]
    kind = KINDS[int(rng.integers(0, len(KINDS)))]
    return f"#{n} {name} {kind}", mutate(rng, base[name], kind)


# --- running a command on a mutant ---------------------------------------------------------

@dataclass
class Outcome:
    kind: str  # one of OUTCOMES
    exit_code: int | None
    seconds: float
    stderr: str


def preload() -> None:
    """Import what the commands import, once, in the process that forks the runs."""
    import edgepack.build  # noqa: F401
    import edgepack.cli  # noqa: F401
    import edgepack.cli.text  # noqa: F401
    import edgepack.fold  # noqa: F401
    import edgepack.inspect  # noqa: F401
    import edgepack.report  # noqa: F401
    import rich.console  # noqa: F401
    import rich.progress  # noqa: F401
    import rich.table  # noqa: F401
    from tflite_micro import runtime  # noqa: F401

    global _WARM
    if not _WARM:  # one build here compiles the templates once for every forked run
        _WARM = True
        import contextlib
        import io
        import tempfile

        with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
            model = Path(tmp) / "m.tflite"
            model.write_bytes(robust_models.add_only())
            edgepack.cli.main(["build", str(model), "--board", "host", "-o", str(Path(tmp) / "fw"),
                               "--json"])


_WARM = False


def command_line(command: str, model: Path, workdir: Path) -> list[str]:
    if command == "inspect":
        return ["inspect", str(model), "--json"]
    if command == "fold":
        return ["fold", str(model), "-o", str(workdir / "out.tflite"), "--json"]
    if command == "build":
        return ["build", str(model), "--board", "host", "-o", str(workdir / "fw"), "--json",
                "--clusters", "4"]
    raise ValueError(command)


def run_command(command: str, data: bytes, workdir: Path, timeout: float = 60.0,
                memory_limit: int = MEMORY_LIMIT) -> Outcome:
    """Run `edgepack COMMAND` on model bytes `data` in a forked child and classify the outcome.
    `workdir` must be an empty directory; it is emptied again afterwards."""
    preload()
    model = workdir / "m.tflite"
    model.write_bytes(data)
    out, err = workdir.parent / f".{workdir.name}.out", workdir.parent / f".{workdir.name}.err"
    argv = command_line(command, model, workdir)
    start = time.monotonic()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        _child(argv, out, err, memory_limit)
    status, hung = _wait(pid, timeout)
    seconds = time.monotonic() - start
    stderr = err.read_text(errors="replace")
    left = sorted(p.name for p in workdir.iterdir())
    for p in (out, err):
        p.unlink()
    _empty(workdir)
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
    lines = stderr.strip().splitlines()
    if hung:
        kind = "hang"
    elif "MemoryError" in stderr or "std::bad_alloc" in stderr:
        kind = "memory blow-up"
    elif os.WIFSIGNALED(status):
        kind = "signal"
    elif "Traceback" in stderr:
        kind = "traceback"
    elif code not in (0, 1, 2):
        kind = "bad exit code"
    elif code != 0 and left != ["m.tflite"]:
        kind = "half-written output"
    elif code != 0 and len(lines) != 1:
        kind = "multi-line error"
    elif code == 2:
        kind = "usage error"
    elif code == 1:
        kind = "one-line error" if lines[0].startswith(f"edgepack: error: {model}: ") \
            else "multi-line error"
    else:
        kind = "result with stderr" if stderr.strip() else "result"
    return Outcome(kind, code, seconds, stderr)


def _child(argv, out: Path, err: Path, memory_limit: int) -> None:
    code = 1
    try:
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
        fo, fe = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), \
            os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(fo, 1)
        os.dup2(fe, 2)
        sys.stdout = os.fdopen(1, "w", closefd=False)
        sys.stderr = os.fdopen(2, "w", closefd=False)
        os.setpgid(0, 0)  # the command's own children die with it on a timeout
        from edgepack.cli import main

        code = main(argv)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:  # noqa: BLE001 - what `python -m edgepack` would print
        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _wait(pid: int, timeout: float) -> tuple[int, bool]:
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status, False
        if time.monotonic() > deadline:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                os.kill(pid, signal.SIGKILL)
            return os.waitpid(pid, 0)[1], True
        time.sleep(0.005)


def _empty(d: Path) -> None:
    import shutil

    for p in d.iterdir():
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()
