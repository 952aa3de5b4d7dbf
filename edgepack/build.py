"""`edgepack build`: read -> check -> fold -> Vela (NPU boards) -> lower and plan -> golden
vectors -> render the firmware project.

Everything is checked before anything is written, the project is rendered into a temporary
directory next to the destination and renamed into place at the end, so an error or an
interrupt leaves no half-written project behind.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import __version__, codegen
from .ops import describe_unsupported, unsupported_operators
from .plan import DataBlob, PaletteWeights, PlanStep
from .boards import BOARDS_DIR, BoardSpec, load_board
from .errors import BuildError, UsageError
from .project import NPU_DEBUG_DB
from .isolate import load_tflm, run_isolated
from .tflite import Model, check_int8, serialize_model
from .validate import load_model

GOLDEN_COUNT = 4  # random golden inputs when the user gives none
STACK_SIZE = 0x4000
HEAP_SIZE = 0x2000
UART0_BASE = 0x49303000  # CMSDK UART0 on the SSE-300/310 MPS3 and FVP memory maps


@dataclass
class RegionSize:
    region: str
    address: int
    size: int
    needed: int  # what the build can tell before linking (the map file gives the rest)
    what: list[str]


@dataclass
class LayerInfo:
    index: int
    opcode: str
    kernel: str
    target: str  # "npu" or "cpu" on NPU boards (Vela's placement), "cpu" otherwise
    runs_on: str  # where this firmware runs it: "npu" (an NPU step) or "cpu" (edgepack's runtime)
    weights_form: str
    weight_bytes: int
    dense_weight_bytes: int
    output_offset: int
    output_bytes: int
    output_name: str = ""  # the output tensor's name (Vela keeps it for operators on the CPU)
    output_shape: list[int] = field(default_factory=list)


@dataclass
class BuildResult:
    """Every figure of one build; written as DIR/build.json for `edgepack run` and the report."""

    edgepack_version: str
    model: str
    model_sha256: str
    folded_model_sha256: str
    board: str
    board_file: str  # the board's name, or the path of a board file outside boards/
    board_description: str
    npu: str | None  # Vela accelerator config, None on CPU-only boards
    npu_path_executed: str  # where Vela's command stream has run: "nowhere" after a build
    plan_kind: str  # "mixed": NPU steps + CPU steps (the firmware drives the NPU); "cpu": all on the CPU
    golden_count: int
    golden_source: str
    arena_bytes: int
    arena_naive_bytes: int  # every tensor in its own place
    scratch_bytes: int
    model_data_bytes: int
    golden_bytes: int
    weight_bytes_dense: int  # int8 weights as given
    weight_bytes_folded: int  # codebooks + packed indices (+ dense where not folded)
    data_bytes_by_kind: dict[str, int]
    regions: list[RegionSize]
    layers: list[LayerInfo]  # the plan's steps, in order (what the firmware runs)
    operators: list[LayerInfo]  # one per folded-model operator, where this firmware runs it
    fold: list[dict]
    fold_agreement: dict | None  # given vs folded through TFLM (top1_agreement, top1_changed)
    fold_gate: dict | None  # the end-to-end budget, whether it held, what was backed off
    fold_tradeoff: list[dict]  # (bytes, agreement) points the fold tried
    npu_steps: list[dict]  # mixed plan: each NPU step's payload, regions, covered operators
    vela: dict | None  # raw vs folded (encoded weight bytes, cycles, SRAM), CPU operators
    golden_layout: list[dict] = field(default_factory=list)  # data/golden.bin: symbol, offset, size
    input_shapes: list[list[int]] = field(default_factory=list)
    output_shapes: list[list[int]] = field(default_factory=list)
    input_dtypes: list[str] = field(default_factory=list)  # "int8", or "float32" for float I/O
    output_dtypes: list[str] = field(default_factory=list)  # "int8", "int32" (ARG_MAX) or "float32"
    files: list[str] = field(default_factory=list)
    # NPU operators in a divergent class of the audit (edgepack.npu.divergence), measured on the
    # golden inputs; which golden outputs are the device's; the --tflm-semantics option's cost
    npu_semantics: dict | None = None

    def as_dict(self) -> dict:
        return asdict(self)


Progress = "callable(step: str)"


def _check_destination(out: Path, force: bool) -> None:
    if out.exists() and not force:
        raise UsageError("already exists; pass --force to replace it", str(out))
    if out.exists() and not out.is_dir():
        raise UsageError("exists and is not a directory", str(out))
    if not out.parent.exists():
        raise UsageError("parent directory does not exist", str(out))


def golden_inputs(model: Model, npy: str | None, count: int = GOLDEN_COUNT) -> tuple[list[list[np.ndarray]], str]:
    """[golden][model input] arrays (int8, or float32 for a float input): the user's .npy, else
    seeded random values (the seed is the model's hash, so the same model always gets the same
    vectors)."""
    shapes = [tuple(model.tensors[i].shape) for i in model.inputs]
    if npy is not None:
        if len(shapes) != 1:
            raise UsageError(f"--input works for single-input models; this one has {len(shapes)}", npy)
        p = Path(npy)
        if not p.is_file():
            raise UsageError("no such file", npy)
        try:
            data = np.load(p, allow_pickle=False)
        except (ValueError, OSError) as err:
            raise UsageError(f"not a .npy array: {err}", npy) from None
        t = model.tensors[model.inputs[0]]
        per = tuple(shapes[0][1:]) if len(shapes[0]) > 1 else shapes[0]
        if tuple(data.shape) == shapes[0]:
            data = data.reshape((1,) + per)
        if data.ndim < 1 or tuple(data.shape[1:]) != per or data.shape[0] < 1:
            raise UsageError(f"array of shape {list(data.shape)} does not match the model input "
                             f"{list(shapes[0])} (give [N, {', '.join(map(str, per))}])", npy)
        if t.dtype == "float32":  # float I/O: the model quantizes its input itself
            if not np.issubdtype(data.dtype, np.floating):
                raise UsageError(f"array dtype {data.dtype}: the model input '{t.name}' is float32; "
                                 "give float32 (real) values", npy)
            q = data.astype(np.float32)
        elif data.dtype == np.int8:
            q = data
        elif np.issubdtype(data.dtype, np.floating):
            scale, zp = float(t.quantization.scale[0]), int(t.quantization.zero_point[0])
            q = np.clip(np.round(data / scale) + zp, -128, 127).astype(np.int8)
        else:
            raise UsageError(f"array dtype {data.dtype}: give int8 (quantized) or float32 (real) "
                             "values", npy)
        return [[x.reshape(shapes[0])] for x in q[:16]], f"{p.name} ({min(len(q), 16)} inputs)"
    rng = np.random.default_rng(int(model.sha256[:16], 16))
    return ([[_random_input(model, i, rng) for i in model.inputs] for _ in range(count)],
            f"random int8, seeded from the model's SHA-256 ({count} inputs)")


def _random_input(model: Model, index: int, rng) -> np.ndarray:
    """A random int8 input; for a float32 input (read by QUANTIZE), the real values of random
    int8 codes of that QUANTIZE's output, with some rounding noise and out-of-range values."""
    t = model.tensors[index]
    if t.dtype != "float32":
        return rng.integers(-128, 128, size=t.shape, dtype=np.int8)
    q = next(model.tensors[op.outputs[0]] for op in model.operators if index in op.inputs)
    scale, zp = float(q.quantization.scale[0]), int(q.quantization.zero_point[0])
    codes = rng.integers(-140, 140, size=t.shape) + rng.uniform(-0.5, 0.5, size=t.shape)
    return ((codes - zp) * scale).astype(np.float32)


def tflm_outputs(model_bytes: bytes, inputs: list[list[np.ndarray]], n_outputs: int) -> list[list[np.ndarray]]:
    """The oracle: TFLM's outputs for each golden input."""
    from tflite_micro import runtime

    out = []
    for row in inputs:
        it = runtime.Interpreter.from_bytes(model_bytes)
        for k, x in enumerate(row):
            it.set_input(x, k)
        it.invoke()
        out.append([np.asarray(it.get_output(j)) for j in range(n_outputs)])  # int8, int32 or float32
    return out


def _palettes(fold_result) -> dict[int, PaletteWeights]:
    out = {}
    for ft in fold_result.tensors:
        if ft.folded and ft.codebook is not None:
            out[ft.tensor] = PaletteWeights(ft.codebook.values, ft.indices,
                                                    ft.codebook.index_bits)
    return out


def _size(n: int) -> str:
    return f"{n} bytes ({n / 1024:.1f} KiB)"


def _check_regions(board: BoardSpec, model_path: str, arena: int, model_data: int,
                   golden: int) -> list[RegionSize]:
    """Fail before writing anything when the arena or the model data cannot fit."""
    needs: dict[str, RegionSize] = {}

    def add(what: str, amount: int, label: str):
        r = board.region_for(what)
        entry = needs.setdefault(r.name, RegionSize(r.name, r.address, r.size, 0, []))
        entry.needed += amount
        entry.what.append(label)

    add("arena", arena, "tensor arena")
    add("model", model_data + golden, "model data + golden vectors")
    add("stack", STACK_SIZE, "stack")
    add("data", HEAP_SIZE, "heap")
    for r in needs.values():
        if r.needed > r.size:
            raise BuildError(f"does not fit board {board.name}: {' + '.join(r.what)} need "
                             f"{_size(r.needed)} but region {r.region} at {r.address:#010x} holds "
                             f"{_size(r.size)}", model_path)
    return [needs[k] for k in sorted(needs, key=lambda n: board.region(n).address)]


def build(model_path: str, board_name: str, out: str | os.PathLike, clusters="auto",
          max_error_db: float | None = None, input_npy: str | None = None, force: bool = False,
          cpu_only: bool = False, progress=None, timings: dict | None = None, budget=None,
          calibration_npy: str | None = None, labels_npy: str | None = None,
          tflm_semantics: bool = False) -> BuildResult:
    """Build the firmware project for `model_path` on `board_name` into `out`.

    `tflm_semantics`: operators the NPU computes differently from TFLM (the audit's divergent
    classes) stay on the CPU, so the whole model keeps TFLM's results."""
    from . import fold as fold_stage

    timings = {} if timings is None else timings
    say = progress or (lambda step: None)
    out = Path(out)
    _check_destination(out, force)
    board = load_board(board_name)
    t0 = time.perf_counter()
    model = load_model(model_path, board)
    check_int8(model)
    # The CPU plan runs the whole model (QEMU has no NPU): refuse what the runtime lacks now,
    # every operator at once (one line).
    refused = unsupported_operators(model)
    if refused:
        raise BuildError(describe_unsupported(refused), model.path)

    calibration = fold_stage.load_calibration(calibration_npy) if calibration_npy else None
    labels = (fold_stage.load_labels(labels_npy, calibration, model, calibration_npy)
              if labels_npy else None)
    say("folding weights into layer-shared codebooks")
    fr = fold_stage.fold_model(model, clusters=clusters, max_error_db=max_error_db,
                               calibration=calibration, board=board, budget=budget,
                               labels=labels)
    folded = fr.model
    folded_bytes = serialize_model(folded)
    timings["fold_s"] = time.perf_counter() - t0

    vela_info = None
    placement: dict[int, str] = {}
    npu_golden = g_in = None
    if board.npu is not None:
        from . import vela as vela_stage
        from .npu.placement import (checkable_on_npu, compile_keeping_on_cpu, divergent_on_npu,
                                    unmodelled_on_npu)

        say(f"compiling with Vela for {board.npu.accelerator} (model as given, and folded)")
        t1 = time.perf_counter()
        cmp = vela_stage.compare_raw_and_folded(model_path, folded_bytes, board,
                                                verbose_performance=not cpu_only)
        # Operators whose NPU lowering the functional model cannot execute run on the CPU, so the
        # golden outputs and the co-simulation check everything the firmware computes.
        unmodelled = [] if cpu_only else unmodelled_on_npu(folded, cmp.folded, board)
        if unmodelled:
            say(f"compiling with the {len(unmodelled)} operator(s) the functional NPU model cannot "
                "check on the CPU")
            cmp.folded = compile_keeping_on_cpu(folded, folded_bytes, [u.operator for u in unmodelled], board)
        if not cpu_only and board.npu.family in ("u55", "u65"):
            g_in, g_source = golden_inputs(model, input_npy)
            load_tflm()
            cmp.folded, npu_golden = checkable_on_npu(folded, folded_bytes, cmp.folded, board, g_in,
                                                       unmodelled, model_path, say)
        # a --cpu-only firmware drives no NPU: nothing it computes differs from TFLM
        divergent = [] if cpu_only else divergent_on_npu(folded, cmp.folded, board)
        cpu_option, on_npu = None, cmp.folded
        if divergent:
            say(f"compiling with the {len(divergent)} operator(s) the NPU computes differently on the CPU")
            cpu_option = compile_keeping_on_cpu(folded, folded_bytes, [d.operator for d in divergent]
                                      + [u.operator for u in unmodelled], board)
            if tflm_semantics:
                cmp.folded, npu_golden = cpu_option, None
        timings["vela_s"] = time.perf_counter() - t1
        vela_stage.check_cpu_operators(cmp.folded, model_path)
        vela_stage.check_budget(cmp.folded, board, model_path)
        placement = {op.index: op.target for op in cmp.folded.operators}
        vela_info = cmp.as_dict()
        vela_info["accelerator"] = board.npu.accelerator
        vela_info["cpu_operators"] = [{"index": i, "opcode": o}
                                      for i, o in vela_stage.cpu_operators(cmp.folded)]
        vela_info["npu_operators"] = [{"index": op.index, "opcode": op.opcode}
                                      for op in cmp.folded.operators if op.target == "npu"]
        vela_info["kept_on_cpu_unmodelled"] = [{"index": u.operator, "opcode": u.opcode, "why": u.why}
                                               for u in unmodelled]
        vela_optimized = cmp.folded.optimized_model
        vela_debug_db = cmp.folded.debug_db
    else:
        vela_optimized = vela_debug_db = None

    mixed = None
    # the runtime's driver speaks the Ethos-U55/U65 interface; U85 boards keep the CPU plan
    if vela_optimized is not None and not cpu_only and board.npu.family in ("u55", "u65"):
        from .codegen.mixed import lower_mixed
        from .npu.placement import cycles_by_operator

        say("planning NPU steps (Vela's command streams) and CPU steps over one arena")
        mixed = lower_mixed(folded, vela_optimized, _palettes(fr), model_path,
                            cycles_by_operator(folded, cmp.folded))
        steps, blob, arena = mixed.steps, mixed.blob, mixed.arena
    else:
        say("planning the runtime kernel calls and the arena")
        steps, blob = codegen.lower_model(folded, _palettes(fr))
        arena = codegen.plan_arena(folded, steps)

    say("computing golden outputs with TFLM")
    t2 = time.perf_counter()
    if g_in is None:
        g_in, g_source = golden_inputs(model, input_npy)
    load_tflm()
    g_out = run_isolated(tflm_outputs, folded_bytes, g_in, len(folded.outputs),
                         stage="computing golden outputs", model=model.path)
    tflm_out = g_out
    if mixed is not None:
        from .npu.placement import npu_board_golden_outputs

        g_out, differ = npu_board_golden_outputs(vela_optimized, g_in, g_out, npu_golden)
        if differ:
            g_source += (f"; expected outputs from edgepack's functional Ethos-U model, which differs "
                         f"from TFLM in {differ} bytes")
    npu_semantics = None
    from .npu.placement import audited, npu_semantics_info

    if mixed is not None and audited(board):
        npu_semantics = npu_semantics_info(folded_bytes, divergent, cpu_option, on_npu, board, g_in,
                                       tflm_out, g_out, tflm_semantics, say)
    timings["golden_s"] = time.perf_counter() - t2
    golden = DataBlob("golden")
    in_syms, out_syms = [], []
    keep_tflm = any(not np.array_equal(a, b) for ra, rb in zip(g_out, tflm_out) for a, b in zip(ra, rb))
    for g, (row_in, row_out) in enumerate(zip(g_in, g_out)):
        in_syms.append([golden.add(f"ep_golden_in{g}_{k}", x, "int8_t", "golden input")
                        for k, x in enumerate(row_in)])
        out_syms.append([golden.add(f"ep_golden_out{g}_{k}", y, "int8_t", "golden output")
                         for k, y in enumerate(row_out)])
        if keep_tflm:  # the device's outputs differ from TFLM's: keep TFLM's for the CPU reference
            for k, y in enumerate(tflm_out[g]):
                golden.add(f"ep_golden_tflm_out{g}_{k}", y, "int8_t", "TFLM's output")
    model_data, golden_data = blob.to_bytes(), golden.to_bytes()
    regions = _check_regions(board, model_path, arena.size, len(model_data), len(golden_data))

    layers = [codegen_layer(s, mixed.model if mixed else folded, arena, placement) for s in steps]
    if mixed is not None:
        # per folded-model operator (the report's rows): lowered as the CPU path would lower it,
        # placed where this firmware runs it; operators inside an NPU step have no arena offset
        cpu_view, _ = codegen.lower_model(folded, _palettes(fr))
        operators = [codegen_layer(s, folded, arena, placement) for s in cpu_view]
    else:
        cpu_view, operators = steps, layers
    npu_steps = [npu_step_info(s) for s in steps if s.kernel == "EP_KERNEL_ETHOSU"]
    result = BuildResult(
        edgepack_version=__version__, model=str(model_path), model_sha256=model.sha256,
        folded_model_sha256=_sha256(folded_bytes), board=board.name,
        board_file=board.name if board.path.parent == BOARDS_DIR else str(board.path),
        board_description=board.description,
        npu=board.npu.accelerator if board.npu else None,
        npu_path_executed=("nowhere yet: `edgepack run` runs the firmware with the NPU "
                           "co-simulated under QEMU (or on an FVP)") if mixed is not None else
                          ("not in this firmware (--cpu-only): `edgepack run --sim npu-model` executes "
                           "Vela's command stream in edgepack's functional Ethos-U model") if board.npu else
                          "not applicable: the board has no NPU",
        plan_kind="mixed" if mixed is not None else "cpu",
        golden_count=len(g_in), golden_source=g_source, arena_bytes=arena.size,
        arena_naive_bytes=arena.naive_size, scratch_bytes=arena.scratch_bytes,
        model_data_bytes=len(model_data), golden_bytes=len(golden_data),
        # the model's weights as int8 and in palette form (Vela's encoding: `vela`)
        weight_bytes_dense=sum(s.dense_weight_bytes for s in cpu_view),
        weight_bytes_folded=sum(s.weight_bytes for s in cpu_view),
        data_bytes_by_kind=blob.bytes_by_kind(), regions=regions, layers=layers, operators=operators,
        fold=[_fold_entry(ft) for ft in fr.tensors],
        fold_agreement=({**asdict(fr.agreement), "top1_changed": fr.agreement.top1_changed}
                        if fr.agreement is not None else None),
        fold_gate=asdict(fr.gate) if fr.gate is not None else None,
        fold_tradeoff=[asdict(p) for p in fr.tradeoff],
        vela=vela_info,
        golden_layout=[{"symbol": a.symbol, "offset": a.offset, "size": a.size} for a in golden.arrays],
        input_shapes=[list(folded.tensors[i].shape) for i in folded.inputs],
        output_shapes=[list(folded.tensors[i].shape) for i in folded.outputs],
        npu_steps=npu_steps, npu_semantics=npu_semantics,
        input_dtypes=[folded.tensors[i].dtype for i in folded.inputs],
        output_dtypes=[folded.tensors[i].dtype for i in folded.outputs])

    say(f"writing the project into {out}")
    t3 = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        result.files = codegen.write_project(
            tmp, model=model, board=board, steps=steps, arena=arena, blob=blob, golden=golden,
            model_data=model_data, golden_data=golden_data, golden_input_symbols=in_syms,
            golden_output_symbols=out_syms, result=result, vela_model=vela_optimized,
            placement=placement, stack_size=STACK_SIZE, heap_size=HEAP_SIZE,
            uart_base=board.uart_base if board.uart_base is not None else UART0_BASE)
        if vela_debug_db:  # which operator each NPU operation computes (edgepack.npu.compare)
            (tmp / NPU_DEBUG_DB).write_bytes(vela_debug_db)
            result.files = sorted(result.files + [NPU_DEBUG_DB])
        (tmp / "build.json").write_text(json.dumps(result.as_dict(), indent=2, default=_json_default)
                                        + "\n", encoding="utf-8")
        from .report import write_report  # report.json + report.html (issue 8)

        write_report(result, tmp, model=model, fold=fr)
        os.chmod(tmp, 0o755)
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    timings["render_s"] = time.perf_counter() - t3
    timings["total_s"] = time.perf_counter() - t0
    return result


def _replace_dir(new: Path, dest: Path) -> None:
    """Rename `new` to `dest`; an existing `dest` (--force) is moved aside first and removed
    only once the new project is in place."""
    old = None
    if dest.exists():
        old = dest.with_name(f".{dest.name}.{os.getpid()}.old")
        os.rename(dest, old)
    os.rename(new, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def _fold_entry(ft) -> dict:
    return {"tensor": ft.tensor, "name": ft.name, "operator": ft.operator, "op_type": ft.op_type,
            "shape": list(ft.shape), "folded": bool(ft.folded), "reason": ft.reason,
            "codebook_size": ft.codebook.size if ft.codebook is not None else None,
            "index_bits": ft.codebook.index_bits if ft.codebook is not None else None,
            "sqnr_db": None if not np.isfinite(ft.sqnr_db) else round(float(ft.sqnr_db), 3),
            "hypothesis": ft.hypothesis, "dense_bytes": ft.dense_bytes,
            "target_bytes": ft.target_bytes}


def npu_step_info(step) -> dict:
    return {"npu_index": step.npu_index, "symbol": step.symbol, "covers": step.covers,
            "payload_symbol": step.payload_symbol, "payload_bytes": step.payload_bytes,
            "estimated_cycles": step.estimated_cycles,
            "regions": [asdict(r) for r in step.regions]}


def codegen_layer(step: PlanStep, model: Model, arena: codegen.ArenaPlan,
                  placement: dict[int, str]) -> LayerInfo:
    return LayerInfo(index=step.index, opcode=step.opcode, kernel=step.kernel,
                     target="npu" if step.kernel == "EP_KERNEL_ETHOSU" else placement.get(step.index, "cpu"),
                     runs_on="npu" if step.kernel == "EP_KERNEL_ETHOSU" else "cpu", weights_form=step.weights_form,
                     weight_bytes=step.weight_bytes, dense_weight_bytes=step.dense_weight_bytes,
                     output_offset=arena.offsets.get(step.output, -1),
                     output_bytes=model.tensors[step.output].nbytes,
                     output_name=model.tensors[step.output].name,
                     output_shape=[int(d) for d in model.tensors[step.output].shape])


def summary(result: BuildResult, out: str, timings: dict | None = None) -> dict:
    """The `--json` summary: build.json's figures plus where the project went and how long."""
    d = result.as_dict()
    d["output_dir"] = str(out)
    if timings:
        d["timings_s"] = {k: round(v, 3) for k, v in timings.items()}
    return d


