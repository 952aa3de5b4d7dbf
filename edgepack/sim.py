"""`edgepack run`: build a generated project with CMake + Ninja and run it, always under a
timeout: on the board's Corstone FVP when its binary is on PATH, else the CPU path under QEMU,
else natively on the host. The firmware decides pass/fail itself (bit-exact comparison with
TFLM's golden outputs) and says so in one `EDGEPACK RESULT:` line; this module reads it.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .boards import BoardSpec, load_board
from .errors import BuildError, UsageError
from .project import NPU_DEBUG_DB, build_firmware, load_build_json, map_memory_usage
from .tools import fvp_path, require_tool, tail_error

SIMS = ("auto", "fvp", "qemu", "cosim", "host", "npu-model")
DEFAULT_TIMEOUT_S = 120
RESULT_RE = re.compile(r"EDGEPACK RESULT: (PASS|FAIL)(.*)")
LAYER_RE = re.compile(r"^\s*layer\s+(\d+)\s+(\d+)\s+(\S+)\s+(\d+)\s*$")
QEMU_ICOUNT_TICKS_PER_INSN = 1.024  # SysTick ticks per instruction under -icount shift=5
EXIT_MEANING = {0: "pass", 1: "output mismatch", 2: "runtime error", 3: "hard fault"}


@dataclass
class RunResult:
    sim: str  # "fvp", "qemu", "cosim", "host", "npu-model"
    where: str  # what ran, in words
    passed: bool
    exit_code: int | None
    result_line: str
    counter: str  # what the per-layer numbers count
    layers: list[dict] = field(default_factory=list)  # {"index", "opcode", "count"[, "npu_estimate_cycles"]}
    total: int = 0
    instructions: int | None = None  # QEMU -icount: instructions per inference (all layers)
    wall_s: float = 0.0
    command: list[str] = field(default_factory=list)
    output: str = ""
    failure: str = ""  # one line when not passed
    memory: list[dict] = field(default_factory=list)  # per region, from the map file
    first_difference: dict | None = None  # npu-model: the first layer that differs (npu.compare)
    npu_ran: str = ""  # where the firmware's NPU steps ran: "co-simulated (...)", "FVP", "board", ""
    npu_streams: int = 0  # cosim: command streams the firmware started
    npu_register_accesses: int = 0  # cosim: NPU register accesses emulated

    def as_dict(self) -> dict:
        d = asdict(self)
        d.pop("output")
        return d


def parse_output(text: str) -> tuple[str, list[dict], str]:
    """(result line, per-layer counts, counter name) from the firmware's output."""
    m = None
    for m in RESULT_RE.finditer(text):
        pass
    result = m.group(0).strip() if m else ""
    layers = []
    for ln in text.splitlines():
        lm = LAYER_RE.match(ln)
        if lm:
            layers.append({"index": int(lm.group(2)), "opcode": lm.group(3), "count": int(lm.group(4))})
    cm = re.search(r"per-layer (.+), summed over", text)
    return result, layers, cm.group(1) if cm else ""


def _run(sim: str, where: str, cmd: list[str], timeout: float, cwd: Path, env=None) -> RunResult:
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout, cwd=cwd, env=env)
        out = proc.stdout.decode("utf-8", "replace") + proc.stderr.decode("utf-8", "replace")
        code, timed_out = proc.returncode, False
    except subprocess.TimeoutExpired as err:
        out = (err.stdout or b"").decode("utf-8", "replace") + (err.stderr or b"").decode("utf-8", "replace")
        code, timed_out = None, True
    out = out.replace("\x04", "")
    result, layers, counter = parse_output(out)
    r = RunResult(sim=sim, where=where, passed=False, exit_code=code, result_line=result,
                  counter=counter, layers=layers, total=sum(x["count"] for x in layers),
                  wall_s=time.perf_counter() - t0, command=cmd, output=out)
    fault = next((ln.strip() for ln in out.splitlines() if ln.startswith("Hard fault")), None)
    if timed_out:
        r.failure = f"timed out after {timeout:.0f} s (a hang?){'; last output: ' + tail_error(out) if out.strip() else ''}"
    elif fault:
        r.failure = fault
    elif not result:
        r.failure = f"no EDGEPACK RESULT line (exit code {code}): {tail_error(out)}"
    elif result.startswith("EDGEPACK RESULT: FAIL"):
        r.failure = result[len("EDGEPACK RESULT: "):]
    elif code not in (0, None) and sim != "fvp":
        r.failure = f"exit code {code} ({EXIT_MEANING.get(code, 'unknown')}) after a PASS line"
    else:
        r.passed = True
    return r


def run_qemu(build_dir: Path, board: BoardSpec, timeout: float) -> RunResult:
    qemu = require_tool("qemu-system-arm")
    machine = board.sim.qemu_machine
    cmd = [qemu, "-M", machine, "-display", "none", "-serial", "stdio", "-monitor", "none",
           "-semihosting-config", "enable=on,target=native", "-icount", "shift=5",
           "-kernel", str(build_dir / "firmware.elf")]
    r = _run("qemu", f"CPU path under QEMU {machine} (QEMU models no Ethos-U NPU)", cmd, timeout,
             build_dir)
    if r.counter.startswith("SysTick") and r.total:
        r.instructions = round(r.total / QEMU_ICOUNT_TICKS_PER_INSN)
    return r


def run_qemu_cosim(build_dir: Path, board: BoardSpec, info: dict, timeout: float,
                   accelerator: str | None = None) -> RunResult:
    """The firmware ELF under QEMU with the NPU co-simulated (edgepack.npu.cosim). NPU steps'
    counts are Vela's estimates (the co-simulated NPU takes no time); CPU steps as under QEMU.
    `accelerator` plays another NPU than the board's (to check the firmware refuses it)."""
    from .npu.cosim import WHERE, run_cosim

    require_tool("qemu-system-arm")
    machine = board.sim.qemu_machine
    t0 = time.perf_counter()
    run = run_cosim(build_dir / "firmware.elf", info, accelerator or board.npu.accelerator,
                    board.npu.base_address, machine, timeout)
    out = run.output
    result, layers, counter = parse_output(out)
    estimates = {s["symbol"]: s["estimated_cycles"] for s in info.get("npu_steps", [])}
    npu_positions = [i for i, layer in enumerate(info["layers"]) if layer["kernel"] == "EP_KERNEL_ETHOSU"]
    for pos, est in zip(npu_positions, estimates.values()):
        for layer in layers:  # the firmware names a step by its operator index, not its position
            if layer["index"] == info["layers"][pos]["index"] and layer["opcode"] == "ETHOS_U":
                # QEMU's virtual clock runs on while the co-simulation holds the CPU, so the
                # firmware's count for an NPU step measures the pause: drop it. The NPU's time is
                # Vela's estimate, kept apart and labelled.
                layer["count"] = 0
                layer["npu_estimate_cycles"] = est * int(info.get("golden_count", 1))
    r = RunResult(sim="cosim", where=f"QEMU {machine}, the NPU {WHERE}", passed=False,
                  exit_code=run.exit_code, result_line=result, counter=counter + (
                      " (CPU steps; NPU steps: Vela's estimate)" if estimates else ""), layers=layers,
                  total=sum(x["count"] for x in layers), wall_s=time.perf_counter() - t0,
                  command=run.log[:1], output=out, npu_ran=WHERE, npu_streams=run.streams,
                  npu_register_accesses=run.accesses)
    if run.failure:
        r.failure = run.failure
    elif not result:
        r.failure = f"no EDGEPACK RESULT line (exit code {run.exit_code}): {tail_error(out)}"
    elif result.startswith("EDGEPACK RESULT: FAIL"):
        r.failure = result[len("EDGEPACK RESULT: "):]
    elif run.exit_code not in (0, None):
        r.failure = f"exit code {run.exit_code} ({EXIT_MEANING.get(run.exit_code, 'unknown')}) after a PASS line"
    elif run.streams == 0 and info.get("npu_steps"):
        r.failure = "the firmware never started the NPU"
    else:
        r.passed = True
    return r


def fvp_command(fvp: str, elf: Path, board: BoardSpec, timeout: float) -> list[str]:
    """The FVP command line for `board`, as Arm's evaluation kit runs it: load the ELF
    (`-a`), the board file's `-C` parameters (UART0 to stdout, unbuffered, shutdown on EOT,
    no visualisation or telnet), statistics at the end and a time limit."""
    cmd = [fvp, "-a", str(elf)]
    for p in board.sim.fvp_params:
        cmd += ["-C", p]
    return cmd + ["--stat", "--timelimit", str(max(1, int(timeout)))]


def run_fvp(build_dir: Path, board: BoardSpec, timeout: float) -> RunResult:
    fvp = fvp_path(board.sim.fvp)
    if fvp is None:
        raise BuildError(f"board {board.name}: FVP {board.sim.fvp or '(none)'} is not on PATH "
                         "(Arm's Corstone FVPs are a separate download from developer.arm.com)")
    cmd = fvp_command(fvp, build_dir / "firmware.elf", board, timeout)
    # The FVP stops itself at --timelimit; the extra margin is for its start-up. Its exit
    # status says nothing about the firmware (shutdown on EOT exits 0): the UART log decides.
    r = _run("fvp", f"{board.sim.fvp} (Arm Corstone FVP; the firmware's CPU path)", cmd,
             timeout + 30, build_dir)
    if not r.result_line and r.wall_s >= timeout and not r.failure.startswith("timed out"):
        r.failure = f"timed out after {timeout:.0f} s (the FVP's --timelimit; a hang?)"
    return r


def run_host(build_dir: Path, timeout: float, sanitize: bool) -> RunResult:
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
    what = "host build" + (" with ASan/UBSan" if sanitize else "")
    return _run("host", what, [str(build_dir / "firmware")], timeout, build_dir, env)


def fvp_installed(board: BoardSpec) -> bool:
    return fvp_path(board.sim.fvp) is not None


def choose_sims(board: BoardSpec, sim: str, plan_kind: str = "cpu") -> list[str]:
    """What `--sim` means for this board ("auto": the FVP if installed; else, for firmware that
    drives the NPU (a mixed plan), QEMU with the NPU co-simulated; else QEMU, else host; for
    --cpu-only firmware on NPU boards the functional NPU model as well)."""
    if sim not in SIMS:
        raise UsageError(f"unknown --sim {sim!r}; choose one of: {', '.join(SIMS)}")
    if sim != "auto":
        if sim == "fvp" and not fvp_installed(board):
            raise BuildError(f"board {board.name}: FVP {board.sim.fvp or '(none)'} is not on PATH "
                             "(Arm's Corstone FVPs are a separate download from developer.arm.com)")
        if sim in ("qemu", "cosim") and not board.sim.qemu_machine:
            raise UsageError(f"board {board.name} has no QEMU machine; use --sim host")
        if sim == "npu-model" and board.npu is None:
            raise UsageError(f"board {board.name} has no NPU; --sim npu-model needs one")
        if sim == "npu-model" and plan_kind == "mixed":
            raise UsageError("--sim npu-model runs a --cpu-only build's plan beside Vela's model; this "
                             "firmware drives the NPU itself: use --sim cosim (or auto)")
        if sim == "cosim" and plan_kind != "mixed":
            raise UsageError("--sim cosim needs firmware that drives the NPU (built without --cpu-only "
                             "for a board with an NPU)")
        return [sim]
    if board.sim.host:
        return ["host"]
    if fvp_installed(board):
        return ["fvp"]
    if plan_kind == "mixed":
        if board.sim.qemu_machine:
            return ["cosim"]
        raise UsageError(f"board {board.name}: this firmware drives the NPU and runs on "
                         f"{board.sim.fvp or 'its FVP'} or the board; QEMU has no machine for it. "
                         "Build with --cpu-only for a host run")
    chosen = ["qemu"] if board.sim.qemu_machine else ["host"]
    # the functional model executes every U55 configuration and the single-core U65-256
    if board.npu is not None and (board.npu.family == "u55" or board.npu.accelerator == "ethos-u65-256") \
            and _npu_model_available():
        chosen.append("npu-model")
    return chosen


def _npu_model_available() -> bool:
    try:
        from .npu import run_vela_model  # noqa: F401
    except ImportError:
        return False
    return True


def run_project(project: str | os.PathLike, sim: str = "auto", timeout: float = DEFAULT_TIMEOUT_S,
                sanitize: bool = False, progress=None) -> list[RunResult]:
    """Build and run the project in `project` on each simulator `sim` selects."""
    say = progress or (lambda step: None)
    info = load_build_json(project)
    project = Path(project).resolve()
    board = load_board(info.get("board_file", info["board"]))
    results = []
    for s in choose_sims(board, sim, info.get("plan_kind", "cpu")):
        if s == "npu-model":
            say("running Vela's command stream in the functional Ethos-U model")
            r = run_npu_model(project, info, board, timeout)
            if sim == "auto" and not fvp_installed(board):
                r.where += f" (--sim auto: no FVP, {board.sim.fvp or 'none for this board'} is not on PATH)"
            results.append(r)
            continue
        host = s == "host"
        say(f"building the firmware ({'host' if host else 'arm-none-eabi'}) with CMake + Ninja")
        build_dir = build_firmware(project, host=host, sanitize=sanitize and host)
        say(f"running on {s}")
        if s == "qemu":
            r = run_qemu(build_dir, board, timeout)
        elif s == "cosim":
            say("running under QEMU with the Ethos-U co-simulated")
            r = run_qemu_cosim(build_dir, board, info, timeout)
        elif s == "fvp":
            r = run_fvp(build_dir, board, timeout)
        else:
            r = run_host(build_dir, timeout, sanitize)
        if (build_dir / "firmware.map").is_file():
            r.memory = map_memory_usage(build_dir / "firmware.map")
        results.append(r)
    return results





# --- Vela's command stream in the functional Ethos-U model -------------------------------------

def golden_vectors(project: Path, info: dict, tflm: bool = False) -> tuple[list[list[np.ndarray]], list[list[np.ndarray]]]:
    """The golden inputs and outputs stored in data/golden.bin, by golden input. The outputs are
    what the device computes (on an NPU board with an operator the NPU computes differently from
    TFLM, TFLM's are kept beside them: `tflm=True` reads those, when present)."""
    data = (project / "data" / "golden.bin").read_bytes()
    arrays = {a["symbol"]: np.frombuffer(data, np.uint8, a["size"], a["offset"]) for a in info["golden_layout"]}

    def typed(symbol: str, shape, dtype: str) -> np.ndarray:
        return arrays[symbol].view(np.dtype(dtype).newbyteorder("<")).reshape(shape)

    in_types = info.get("input_dtypes") or ["int8"] * len(info["input_shapes"])
    out_types = info.get("output_dtypes") or ["int8"] * len(info["output_shapes"])
    ins = [[typed(f"ep_golden_in{g}_{k}", s, t) for k, (s, t) in enumerate(zip(info["input_shapes"], in_types))]
           for g in range(info["golden_count"])]
    prefix = "ep_golden_tflm_out" if tflm and "ep_golden_tflm_out0_0" in arrays else "ep_golden_out"
    outs = [[typed(f"{prefix}{g}_{k}", s, t) for k, (s, t) in enumerate(zip(info["output_shapes"], out_types))]
            for g in range(info["golden_count"])]
    return ins, outs


def _host_steps(project: Path, info: dict):
    from .npu.host_steps import HostSteps, build_library

    return HostSteps(build_library(project), info["layers"], len(info["input_shapes"]),
                     len(info["output_shapes"]))


def run_npu_model(project: Path, info: dict, board: BoardSpec, timeout: float) -> RunResult:
    """Run npu/model_vela.tflite on the golden inputs as the device would: `ethos-u` operators in
    edgepack's functional Ethos-U model, operators Vela left on the CPU in the project's own plan
    and C runtime (host build). On a mismatch, name the first layer that differs."""
    from .errors import ModelError
    from .npu import run_vela_model
    from .npu.compare import compare_layers
    from .npu.debugdb import read_debug_db
    from .npu.host_steps import cpu_op_runner
    from .npu.runner import read_tflite

    vela_path = project / "npu" / "model_vela.tflite"
    if not vela_path.is_file():
        raise UsageError("npu/model_vela.tflite is missing: rebuild the project", str(project))
    vela_bytes = vela_path.read_bytes()
    where = f"NPU path: Vela's command stream for {board.npu.accelerator} in edgepack's functional Ethos-U model"
    t0 = time.perf_counter()
    r = RunResult(sim="npu-model", where=where, passed=False, exit_code=None, result_line="",
                  counter="", command=["edgepack.npu.run_vela_model", str(vela_path)])
    ins, outs = golden_vectors(project, info)
    batched = [np.stack([row[k] for row in ins]) for k in range(len(info["input_shapes"]))]
    host = None
    try:
        vela_model = read_tflite(vela_bytes)
        codes = vela_model.operatorCodes
        n_cpu = sum(1 for op in vela_model.subgraphs[0].operators or []
                    if not (codes[op.opcodeIndex].customCode or b"").decode() == "ethos-u")
        runner = None
        if n_cpu:
            host = _host_steps(project, info)
            runner = cpu_op_runner(host, vela_model)
            r.where += (f", {n_cpu} operator{'s' if n_cpu > 1 else ''} Vela left on the CPU in the "
                        "project's C runtime (host build)")
        got = run_vela_model(vela_bytes, batched, runner)
    except ModelError as err:
        r.failure = f"the functional model could not run it: {err}"
        r.wall_s = time.perf_counter() - t0
        return r
    bad, first = 0, None
    for g, row in enumerate(outs):
        for k, want in enumerate(row):
            have = np.asarray(got[k][g]).astype(want.dtype).reshape(-1)  # int8, int32 or float32
            diff = np.flatnonzero(have.view(np.uint8) != want.reshape(-1).view(np.uint8)) // want.itemsize
            diff = np.unique(diff)
            bad += diff.size
            if diff.size and first is None:
                i = int(diff[0])
                first = f"first at input {g} output {k} index {i}: expected {want.reshape(-1)[i]} got {have[i]}"
    n = len(outs)
    passed = sum(1 for g in range(n) if all(np.array_equal(np.asarray(got[k][g]).astype(outs[g][k].dtype).reshape(-1),
                                                             outs[g][k].reshape(-1)) for k in range(len(outs[g]))))
    if bad == 0:
        r.result_line = f"EDGEPACK RESULT: PASS {n}/{n} inputs, 0 mismatched bytes"
        r.passed = True
    else:
        r.result_line = f"EDGEPACK RESULT: FAIL {passed}/{n} inputs, {bad} mismatched bytes; {first}"
        try:
            db_path = project / NPU_DEBUG_DB
            if not db_path.is_file():
                raise ModelError(f"{NPU_DEBUG_DB} is missing (a project from an older edgepack): rebuild the project")
            debug_db = read_debug_db(db_path.read_bytes(), NPU_DEBUG_DB)
            host = host or _host_steps(project, info)
            # the CPU path is checked against TFLM's outputs (the device's may differ by design)
            tflm_outs = golden_vectors(project, info, tflm=True)[1]
            golden = [np.stack([row[k] for row in tflm_outs]) for k in range(len(info["output_shapes"]))]
            cmp = compare_layers(vela_bytes, batched, golden, host, debug_db)
            r.first_difference = cmp.mismatch.as_dict() if cmp.mismatch else None
            r.failure = r.result_line[len("EDGEPACK RESULT: "):] + "; " + cmp.describe()
        except (ModelError, BuildError) as err:
            r.failure = r.result_line[len("EDGEPACK RESULT: "):] + f"; no per-layer comparison: {err}"
    r.wall_s = time.perf_counter() - t0
    return r
