"""Compile a model with Vela for a board's Ethos-U, and read back what Vela decided.

Vela runs as a subprocess (`python -m ethosu.vela`) in a temporary directory with the board's
explicit configuration (accelerator, `vela.ini`, system config, memory mode, arena cache size):
never Vela's fallback defaults. We read its summary CSV, its per-layer CSV and the optimized model
into a `VelaResult`: encoded weight bytes, memory use, estimated cycles, and which operators of
the INPUT model the NPU takes and which stay on the CPU (read from the optimized model: every
operator other than the `ethos-u` custom operator runs on the CPU).
"""

from __future__ import annotations

import csv
import importlib.util
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .boards import BoardSpec
from .errors import BuildError, ModelError, UsageError
from .ops import supported_operators
from .tflite import parse_model

ETHOS_U_OP = "ethos-u"
# Operators edgepack's C runtime implements: a CPU operator outside this list fails the build.
# the operators edgepack's C runtime lowers: one list, kept where the lowering lives
RUNTIME_OPERATORS = supported_operators()
VELA_TIMEOUT_S = 600
KIB = 1024


@dataclass
class LayerPerformance:
    """One row of Vela's per-layer CSV (`--verbose-performance`)."""

    name: str  # the operator's output tensor name
    original_operator: str  # Vela's name of the input operator, e.g. "Conv2D"
    operator: str  # the operator Vela lowered it to ("NNG Operator")
    target: str  # "NPU" or "CPU"
    op_cycles: int
    npu_cycles: int
    mac_count: int
    staging_usage: int  # SRAM bytes the layer stages
    row: dict[str, str] = field(default_factory=dict, repr=False)  # every column as written


@dataclass
class PlacedOperator:
    """An operator of the input model and where Vela put it."""

    index: int  # index in the input model's subgraph 0
    opcode: str
    name: str  # its first output tensor's name
    target: str  # "npu" or "cpu"


@dataclass
class VelaResult:
    model: str  # the model as the user named it
    board: str
    accelerator: str
    system_config: str
    memory_mode: str
    output_format: str  # "tflite" or "raw"
    original_weight_bytes: int
    encoded_weight_bytes: int
    sram_used_bytes: int
    dram_used_bytes: int
    off_chip_flash_used_bytes: int
    on_chip_flash_used_bytes: int
    npu_cycles: int  # Vela's estimates, not measurements
    total_cycles: int
    inferences_per_second: float
    arena_bytes: int  # the NPU's scratch tensor (tensor arena in the arena memory area)
    cache_bytes: int  # the NPU's fast scratch (SRAM cache in Dedicated_Sram mode)
    layers: list[LayerPerformance]
    operators: list[PlacedOperator]
    optimized_model: bytes  # `<name>_vela.tflite` (empty for output_format="raw")
    raw: dict[str, np.ndarray] | None = None  # `<name>_vela.npz` for output_format="raw"
    summary: dict[str, str] = field(default_factory=dict, repr=False)  # the summary CSV row
    command: list[str] = field(default_factory=list, repr=False)
    # `--enable-debug-db` XML: which input operator each command-stream operation computes
    # (edgepack.npu.debugdb); its `source` attribute names the model, not Vela's temporary directory
    debug_db: bytes = field(default=b"", repr=False)

    @property
    def npu_operators(self) -> list[PlacedOperator]:
        return [op for op in self.operators if op.target == "npu"]

    @property
    def cpu_operators(self) -> list[PlacedOperator]:
        return [op for op in self.operators if op.target == "cpu"]

    def as_dict(self) -> dict:
        """JSON-ready figures (without the model bytes)."""
        keys = ["model", "board", "accelerator", "system_config", "memory_mode",
                "original_weight_bytes", "encoded_weight_bytes", "sram_used_bytes",
                "dram_used_bytes", "off_chip_flash_used_bytes", "on_chip_flash_used_bytes",
                "npu_cycles", "total_cycles", "inferences_per_second", "arena_bytes",
                "cache_bytes"]
        out = {k: getattr(self, k) for k in keys}
        out["optimized_model_bytes"] = len(self.optimized_model)
        out["operators"] = [vars(op).copy() for op in self.operators]
        return out


# --- running Vela ----------------------------------------------------------------------------

def vela_available() -> bool:
    return importlib.util.find_spec("ethosu.vela") is not None


def vela_arguments(board: BoardSpec, output_dir: str | Path, verbose_performance: bool = True,
                   output_format: str = "tflite") -> list[str]:
    """Vela's command-line options for `board` (everything explicit)."""
    if board.npu is None:
        raise UsageError(f"board {board.name} has no NPU: nothing to compile with Vela",
                         str(board.path))
    if output_format not in ("tflite", "raw"):
        raise UsageError(f"output format must be tflite or raw, not {output_format!r}")
    npu = board.npu
    args = ["--accelerator-config", npu.accelerator, "--config", str(npu.vela_ini),
            "--system-config", npu.system_config, "--memory-mode", npu.memory_mode,
            "--optimise", "Performance", "--output-format", output_format,
            "--output-dir", str(output_dir)]
    if npu.arena_cache_size is not None:
        args += ["--arena-cache-size", str(npu.arena_cache_size)]
    if verbose_performance:
        args.append("--verbose-performance")
    # the debug database maps command-stream offsets to operators (per-layer comparison); it does
    # not change what Vela compiles (same output bytes with and without it)
    args.append("--enable-debug-db")
    return args


def _vela_reason(stderr: str, stdout: str) -> str:
    """Vela's own reason for failing, as one line (the last line of its traceback or message)."""
    for text in (stderr, stdout):
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        for line in reversed(lines):
            if line.startswith(("Warning", "Tensor '")) or "dynamic signature" in line:
                continue
            # "RuntimeError: Compilation failed: ..." -> "Compilation failed: ..."; keep other
            # exception names (e.g. "IndexError: map::at"), they are part of the reason
            return re.sub(r"^(Error|RuntimeError|ValueError):\s*", "", line) or line
    return "no message"


def _kib_to_bytes(value: str) -> int:
    # Vela writes memory use in KiB as an exact float (bytes / 1024)
    return int(round(float(value) * KIB))


def _int(value: str | None) -> int:
    return int(round(float(value))) if value not in (None, "") else 0


def _read_summary(path: Path) -> dict[str, str]:
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    if len(rows) != 1:
        raise BuildError(f"Vela's summary CSV has {len(rows)} rows, expected 1", str(path))
    return rows[0]


def _read_layers(path: Path) -> list[LayerPerformance]:
    layers = []
    for row in csv.DictReader(io.StringIO(path.read_text())):
        layers.append(LayerPerformance(
            name=row.get("Name", ""), original_operator=row.get("Original Operator", ""),
            operator=row.get("NNG Operator", ""), target=row.get("Target", ""),
            op_cycles=_int(row.get("Op Cycles")), npu_cycles=_int(row.get("NPU")),
            mac_count=_int(row.get("MAC Count")), staging_usage=_int(row.get("Staging Usage")),
            row=dict(row)))
    return layers


def _placements(input_bytes: bytes, optimized: bytes, model_name: str) -> tuple[list[PlacedOperator], int, int]:
    """Map the optimized model's operators back onto the input model's operators.

    Vela keeps the output tensor names of operators it leaves on the CPU, so an input operator
    whose outputs are produced by a non-`ethos-u` operator of the optimized model stays on the
    CPU; every other input operator went into an `ethos-u` command stream.
    Also returns the NPU's arena and cache sizes (its `scratch` and `scratch_fast` inputs).
    """
    source = parse_model(input_bytes, model_name)
    out = parse_model(optimized, f"{model_name} (Vela output)")
    cpu_outputs: set[str] = set()
    arena = cache = 0
    for op in out.operators:
        if op.opcode == "CUSTOM" and op.custom_code == ETHOS_U_OP:
            # inputs: command stream, read-only weights, scratch (arena), scratch_fast (cache), IFMs
            sizes = [int(np.prod(out.tensors[i].shape)) if i >= 0 else 0 for i in op.inputs[:4]]
            if len(sizes) >= 3:
                arena = max(arena, sizes[2])
            if len(sizes) >= 4:
                cache = max(cache, sizes[3])
        else:
            cpu_outputs.update(out.tensors[i].name for i in op.outputs if i >= 0)
    placed = []
    for op in source.operators:
        names = [source.tensors[i].name for i in op.outputs if i >= 0]
        on_cpu = any(n in cpu_outputs for n in names)
        placed.append(PlacedOperator(op.index, op.name, names[0] if names else "",
                                     "cpu" if on_cpu else "npu"))
    return placed, arena, cache


def compile_for_board(model: str | os.PathLike | bytes, board: BoardSpec, workdir=None,
                      verbose_performance: bool = True, output_format: str = "tflite",
                      name: str | None = None) -> VelaResult:
    """Compile `model` (a path or the model's bytes) with Vela for `board`'s NPU.

    `workdir`: keep Vela's output files there (default: a temporary directory, removed).
    `name`: the network name Vela uses for its output files (default: the file's stem, or
    "model" for bytes); it does not change the compiled result.
    """
    if isinstance(model, (bytes, bytearray)):
        data, shown = bytes(model), name or "<model bytes>"
        stem = name or "model"
    else:
        path = Path(model)
        if not path.exists():
            raise UsageError("no such file", str(path))
        if path.is_dir():
            raise UsageError("is a directory, not a .tflite model", str(path))
        data, shown, stem = path.read_bytes(), str(path), name or path.stem
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", stem) or "model"
    if not vela_available():
        raise BuildError("Vela is not installed: pip install ethos-u-vela")
    parse_model(data, shown)  # a model we cannot read is a ModelError, before Vela sees it

    tmp = tempfile.mkdtemp(prefix="edgepack-vela-")
    try:
        src = Path(tmp) / f"{stem}.tflite"
        src.write_bytes(data)
        out_dir = Path(tmp) / "out"
        args = vela_arguments(board, out_dir, verbose_performance, output_format)
        command = [sys.executable, "-m", "ethosu.vela", str(src)] + args
        try:
            proc = subprocess.run(command, capture_output=True, text=True, cwd=tmp,
                                  timeout=VELA_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise BuildError(f"Vela did not finish within {VELA_TIMEOUT_S} s for board "
                             f"{board.name}", shown) from None
        if proc.returncode != 0:
            if "No module named" in proc.stderr and "ethosu" in proc.stderr:
                raise BuildError("Vela is not installed: pip install ethos-u-vela")
            raise ModelError(f"Vela rejected the model for board {board.name} "
                             f"({board.npu.accelerator}): {_vela_reason(proc.stderr, proc.stdout)}",
                             shown)
        summary_path = out_dir / f"{stem}_summary_{board.npu.system_config}.csv"
        if not summary_path.is_file():
            raise BuildError(f"Vela wrote no summary CSV for board {board.name}: "
                             f"{_vela_reason(proc.stderr, proc.stdout)}", shown)
        summary = _read_summary(summary_path)
        layers_path = out_dir / f"{stem}_per-layer.csv"
        layers = _read_layers(layers_path) if verbose_performance and layers_path.is_file() else []
        optimized, raw = b"", None
        debug_path = out_dir / f"{stem}_debug.xml"
        debug_db = b""
        if debug_path.is_file():
            debug_db = re.sub(rb'<debug source="[^"]*">', f'<debug source="{stem}">'.encode(),
                              debug_path.read_bytes(), count=1)
        if output_format == "tflite":
            optimized = (out_dir / f"{stem}_vela.tflite").read_bytes()
            operators, arena, cache = _placements(data, optimized, shown)
        else:
            # Vela stores some entries as object arrays: this is its own output, just written here
            with np.load(out_dir / f"{stem}_vela.npz", allow_pickle=True) as npz:
                raw = {k: npz[k].copy() for k in sorted(npz.files)}
            source = parse_model(data, shown)  # raw output only exists when all of it is NPU
            operators = [PlacedOperator(op.index, op.name,
                                        source.tensors[op.outputs[0]].name if op.outputs else "",
                                        "npu") for op in source.operators]
            arena = int(raw["scratch_shape"].prod()) if "scratch_shape" in raw else 0
            cache = int(raw["scratch_fast_shape"].prod()) if "scratch_fast_shape" in raw else 0
        if workdir is not None:
            dest = Path(workdir)
            dest.mkdir(parents=True, exist_ok=True)
            for f in sorted(out_dir.iterdir()):
                shutil.copy2(f, dest / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    return VelaResult(
        model=shown, board=board.name, accelerator=board.npu.accelerator,
        system_config=board.npu.system_config, memory_mode=board.npu.memory_mode,
        output_format=output_format,
        original_weight_bytes=_int(summary["total_original_weights"]),
        encoded_weight_bytes=_int(summary["total_npu_encoded_weights"]),
        sram_used_bytes=_kib_to_bytes(summary["sram_memory_used"]),
        dram_used_bytes=_kib_to_bytes(summary.get("dram_memory_used", "0")),
        off_chip_flash_used_bytes=_kib_to_bytes(summary.get("off_chip_flash_memory_used", "0")),
        on_chip_flash_used_bytes=_kib_to_bytes(summary.get("on_chip_flash_memory_used", "0")),
        npu_cycles=_int(summary["cycles_npu"]), total_cycles=_int(summary["cycles_total"]),
        inferences_per_second=float(summary["inferences_per_second"]),
        arena_bytes=arena, cache_bytes=cache, layers=layers, operators=operators,
        optimized_model=optimized, raw=raw, summary=summary, command=command, debug_db=debug_db)


def compile_raw(model, board: BoardSpec, workdir=None, verbose_performance: bool = True,
                name: str | None = None) -> VelaResult:
    """Vela's raw output (command stream, weights and register layout as numpy arrays in
    `result.raw`); Vela refuses it for a model with any CPU operator."""
    return compile_for_board(model, board, workdir=workdir,
                             verbose_performance=verbose_performance, output_format="raw",
                             name=name)


# --- budgets ---------------------------------------------------------------------------------

def _size(n: int) -> str:
    if n >= KIB * KIB:
        return f"{n / (KIB * KIB):.2f} MiB ({n} bytes)"
    if n >= KIB:
        return f"{n / KIB:.1f} KiB ({n} bytes)"
    return f"{n} bytes"


@dataclass
class RegionUse:
    region: str
    address: int
    size: int
    needed: int
    what: list[str]  # e.g. ["NPU arena (Vela SRAM use)", "model"]

    @property
    def fits(self) -> bool:
        return self.needed <= self.size


def memory_use(result: VelaResult, board: BoardSpec) -> list[RegionUse]:
    """What the compiled model needs in each of the board's memory regions.

    Shared_Sram: the NPU arena is Vela's SRAM use, in the region that holds the arena; the
    optimized model (weights, command stream, CPU operators' constants) is in the model region.
    Dedicated_Sram: Vela's SRAM use is the NPU's cache (the `npu_cache` region), its arena is in
    the arena region (off-chip), and the model as before.
    """
    needs: dict[str, tuple[int, list[str]]] = {}

    def add(what: str, amount: int, label: str):
        region = board.region_for(what)
        n, labels = needs.get(region.name, (0, []))
        needs[region.name] = (n + amount, labels + [label])

    model_bytes = max(len(result.optimized_model), result.off_chip_flash_used_bytes)
    if any("npu_cache" in r.holds for r in board.memory) and board.npu is not None \
            and board.npu.memory_mode.startswith("Dedicated_Sram"):
        add("npu_cache", result.sram_used_bytes, f"NPU cache (Vela SRAM use {_size(result.sram_used_bytes)})")
        add("arena", result.arena_bytes, f"NPU arena {_size(result.arena_bytes)}")
    else:
        add("arena", result.sram_used_bytes, f"NPU arena (Vela SRAM use {_size(result.sram_used_bytes)})")
    add("model", model_bytes, f"model {_size(model_bytes)}")
    return [RegionUse(name, board.region(name).address, board.region(name).size, n, labels)
            for name, (n, labels) in needs.items()]


def check_budget(result: VelaResult, board: BoardSpec, model_path=None) -> list[RegionUse]:
    """Raise `BuildError` (one line) if the compiled model does not fit `board`'s memory."""
    uses = memory_use(result, board)
    over = [u for u in uses if not u.fits]
    if over:
        detail = "; ".join(
            f"{' + '.join(u.what)} needs {_size(u.needed)} but region {u.region} at "
            f"{u.address:#010x} has {_size(u.size)}" for u in over)
        raise BuildError(f"does not fit board {board.name}: {detail}",
                         str(model_path) if model_path is not None else result.model)
    return uses


# --- the CPU side ----------------------------------------------------------------------------

def cpu_operators(result: VelaResult) -> list[tuple[int, str]]:
    """(index, opcode) of the input model's operators that Vela left for the CPU."""
    return [(op.index, op.opcode) for op in result.cpu_operators]


def uncovered_cpu_operators(result: VelaResult) -> list[tuple[int, str]]:
    return [(i, op) for i, op in cpu_operators(result) if op not in RUNTIME_OPERATORS]


def check_cpu_operators(result: VelaResult, model_path=None) -> list[tuple[int, str]]:
    """The CPU operators, or `BuildError` naming those the C runtime does not implement."""
    missing = uncovered_cpu_operators(result)
    if missing:
        names = ", ".join(f"#{i} {op}" for i, op in missing)
        raise BuildError(
            f"Vela leaves operators on the CPU that edgepack's C runtime does not implement "
            f"({result.board}): {names}",
            str(model_path) if model_path is not None else result.model)
    return cpu_operators(result)


# --- what folding buys -----------------------------------------------------------------------

@dataclass
class FoldComparison:
    board: str
    raw: VelaResult
    folded: VelaResult

    @property
    def encoded_weight_delta(self) -> int:
        return self.folded.encoded_weight_bytes - self.raw.encoded_weight_bytes

    @property
    def npu_cycle_delta(self) -> int:
        return self.folded.npu_cycles - self.raw.npu_cycles

    @property
    def total_cycle_delta(self) -> int:
        return self.folded.total_cycles - self.raw.total_cycles

    @staticmethod
    def _pct(new: int, old: int) -> float:
        return 100.0 * (new - old) / old if old else 0.0

    @property
    def encoded_weight_change_pct(self) -> float:
        return self._pct(self.folded.encoded_weight_bytes, self.raw.encoded_weight_bytes)

    @property
    def total_cycle_change_pct(self) -> float:
        return self._pct(self.folded.total_cycles, self.raw.total_cycles)

    def as_dict(self) -> dict:
        return {
            "board": self.board,
            "raw": {"encoded_weight_bytes": self.raw.encoded_weight_bytes,
                    "npu_cycles": self.raw.npu_cycles, "total_cycles": self.raw.total_cycles,
                    "sram_used_bytes": self.raw.sram_used_bytes},
            "folded": {"encoded_weight_bytes": self.folded.encoded_weight_bytes,
                       "npu_cycles": self.folded.npu_cycles,
                       "total_cycles": self.folded.total_cycles,
                       "sram_used_bytes": self.folded.sram_used_bytes},
            "encoded_weight_delta": self.encoded_weight_delta,
            "encoded_weight_change_pct": round(self.encoded_weight_change_pct, 2),
            "npu_cycle_delta": self.npu_cycle_delta,
            "total_cycle_delta": self.total_cycle_delta,
            "total_cycle_change_pct": round(self.total_cycle_change_pct, 2),
        }


def compare_raw_and_folded(raw_model, folded_model, board: BoardSpec,
                           verbose_performance: bool = False) -> FoldComparison:
    """Compile the model as given and its folded form for `board`: what folding bought in
    encoded weight bytes and estimated cycles. Both run under the same network name so that
    nothing but the weights differs."""
    raw = compile_for_board(raw_model, board, verbose_performance=verbose_performance,
                            name="network")
    folded = compile_for_board(folded_model, board, verbose_performance=verbose_performance,
                               name="network")
    raw.model = str(raw_model) if not isinstance(raw_model, (bytes, bytearray)) else "<raw model>"
    folded.model = (str(folded_model) if not isinstance(folded_model, (bytes, bytearray))
                    else "<folded model>")
    return FoldComparison(board.name, raw, folded)
