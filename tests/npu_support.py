"""Test support for the functional NPU model: a small Vela invocation (cached per session), the TFLM
oracle on batches, and a CPU-operator runner built on single-operator models."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np
from ai_edge_litert import schema_py_generated as tfl

import ethosu.vela

VELA_INI = Path(ethosu.vela.__file__).resolve().parent.parent / "config_files" / "Arm" / "vela.ini"
U55_CONFIGS = ["ethos-u55-32", "ethos-u55-64", "ethos-u55-128", "ethos-u55-256"]
SYSTEM = {"ethos-u55": ("Ethos_U55_High_End_Embedded", "Shared_Sram"),
          "ethos-u65": ("Ethos_U65_High_End", "Dedicated_Sram"),
          "ethos-u85": ("Ethos_U85_SYS_DRAM_Mid", "Dedicated_Sram_384KB")}
_WORK = Path(tempfile.mkdtemp(prefix="edgepack-npu-tests-"))


def _bytes(model) -> bytes:
    return Path(model).read_bytes() if isinstance(model, (str, os.PathLike)) else bytes(model)


@lru_cache(maxsize=None)
def _compile(model_bytes: bytes, accel: str, fmt: str, verbose: bool) -> tuple[Path, str]:
    key = hashlib.sha256(model_bytes).hexdigest()[:16]
    out = _WORK / f"{key}-{accel}-{fmt}{'-v' if verbose else ''}"
    out.mkdir(parents=True, exist_ok=True)
    src = out / "m.tflite"
    src.write_bytes(model_bytes)
    system, memory = SYSTEM[accel.rsplit("-", 1)[0]]
    cmd = [sys.executable, "-m", "ethosu.vela", str(src), "--accelerator-config", accel, "--config", str(VELA_INI),
           "--system-config", system, "--memory-mode", memory, "--output-dir", str(out), "--output-format", fmt,
           "--enable-debug-db"]
    if verbose:
        cmd.append("--verbose-register-command-stream")
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        raise RuntimeError(f"vela failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    result = out / ("m_vela.npz" if fmt == "raw" else "m_vela.tflite")
    return result, p.stdout


def compile_vela(model, accel: str = "ethos-u55-128", fmt: str = "tflite") -> Path:
    """Vela output (`m_vela.tflite` or, fmt='raw', `m_vela.npz`) for a model path or bytes.
    Raw compilations also record the register printout, so one Vela run serves both uses."""
    return _compile(_bytes(model), accel, fmt, fmt == "raw")[0]


def vela_debug_db(model, accel: str = "ethos-u55-128") -> bytes:
    """Vela's --enable-debug-db XML of the tflite compilation `compile_vela` returns."""
    return (compile_vela(model, accel).parent / "m_debug.xml").read_bytes()


def vela_printout(model, accel: str) -> str:
    """Vela's --verbose-register-command-stream printout (raw output, so no CPU operators)."""
    return _compile(_bytes(model), accel, "raw", True)[1]


def tflm_batch(model, xs: list[np.ndarray]) -> list[np.ndarray]:
    """Run the TFLM interpreter on every item of the batched inputs; returns batched outputs."""
    from tflite_micro import runtime

    b = _bytes(model)
    it = runtime.Interpreter.from_bytes(b, arena_size=1 << 22)  # room for the audit's largest models
    n = xs[0].shape[0]
    outs: list[list[np.ndarray]] = []
    for k in range(n):
        for j, x in enumerate(xs):
            it.set_input(x[k], j)
        it.invoke()
        nout = len(tfl.ModelT.InitFromPackedBuf(b, 0).subgraphs[0].outputs) if k == 0 else len(outs)
        if k == 0:
            outs = [[] for _ in range(nout)]
        for j in range(nout):
            outs[j].append(it.get_output(j).copy())
    return [np.stack(o) for o in outs]


def tflm_cpu_runner(vela_tflite: Path):
    """A cpu_op_runner for run_vela_model: each CPU operator alone in the TFLM interpreter (the
    package's own, which the build's golden outputs use)."""
    from edgepack.npu.semantics import tflm_cpu_runner as runner

    return runner(Path(vela_tflite).read_bytes())


def npu_cpu_npu_model(seed: int = 1) -> bytes:
    """CONV_2D -> AVERAGE_POOL_2D 9x9 SAME -> CONV_2D: Vela 5.2 places the pooling on the CPU (its
    U55 constraints allow SAME-padded average pools up to 8x8), so Vela's output alternates
    NPU -> CPU -> NPU. Every operator is one edgepack's runtime runs."""
    from tests.opmodels import Op, T, graph_model

    rng = np.random.default_rng(seed)
    c = 8

    def conv(relu: bool):
        o = tfl.Conv2DOptionsT()
        o.padding, o.strideH, o.strideW, o.dilationHFactor, o.dilationWFactor = tfl.Padding.SAME, 1, 1, 1, 1
        o.fusedActivationFunction = tfl.ActivationFunctionType.RELU if relu else tfl.ActivationFunctionType.NONE
        return o

    pool = tfl.Pool2DOptionsT()
    pool.padding, pool.strideH, pool.strideW, pool.filterHeight, pool.filterWidth = tfl.Padding.SAME, 1, 1, 9, 9
    w1_scales = [0.01 + 0.001 * i for i in range(c)]
    tensors = {
        "input": T([1, 12, 12, 4], s=0.05, zp=-3),
        "conv1/w": T([c, 3, 3, 4], s=w1_scales, data=rng.integers(-127, 128, (c, 3, 3, 4))),
        "conv1/b": T([c], np.int32, s=[0.05 * s for s in w1_scales], data=rng.integers(-500, 500, c)),
        "conv1": T([1, 12, 12, c], s=0.04, zp=-128),
        "pool": T([1, 12, 12, c], s=0.04, zp=-128),
        "conv2/w": T([c, 3, 3, c], s=[0.01] * c, data=rng.integers(-127, 128, (c, 3, 3, c))),
        "conv2/b": T([c], np.int32, s=[0.0004] * c, data=rng.integers(-500, 500, c)),
        "output": T([1, 12, 12, c], s=0.08, zp=5),
    }
    ops = [Op(tfl.BuiltinOperator.CONV_2D, ["input", "conv1/w", "conv1/b"], ["conv1"], "Conv2DOptions", conv(True), 3),
           Op(tfl.BuiltinOperator.AVERAGE_POOL_2D, ["conv1"], ["pool"], "Pool2DOptions", pool, 2),
           Op(tfl.BuiltinOperator.CONV_2D, ["pool", "conv2/w", "conv2/b"], ["output"], "Conv2DOptions", conv(False), 3)]
    return graph_model(tensors, ops, ["input"], ["output"])
