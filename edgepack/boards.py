"""Boards as data: one TOML file per board in `boards/`, loaded and validated into a `BoardSpec`.

A board file names the CPU and its compiler flags, the memory regions (address, size, and what
the firmware puts there), the NPU as Vela sees it (accelerator, system config and memory mode
from an explicit `vela.ini`) and how to simulate the board. Adding a board needs no code: drop a
file next to the others, or pass its path wherever a board name is accepted.
"""

from __future__ import annotations

import configparser
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

try:
    import tomllib
except ImportError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from .errors import UsageError
from .resources import BOARDS_DIR

DEFAULT_BOARD = "corstone-300"

# What a memory region can hold. Every board places each of SECTIONS in exactly one region;
# "npu_cache" is the SRAM an Ethos-U65/U85 uses as its private cache in Dedicated_Sram mode.
SECTIONS = ("code", "rodata", "model", "arena", "data", "stack")
HOLDS = SECTIONS + ("npu_cache",)
CORES = ("cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55", "cortex-m85", "host")
TOOLCHAINS = ("arm-none-eabi", "host")
# Vela 5.2's accelerator configurations: family and MAC count
ACCELERATOR_RE = re.compile(r"^ethos-(u55|u65|u85)-(\d+)$")
ACCELERATOR_MACS = {
    "u55": (32, 64, 128, 256), "u65": (256, 512), "u85": (128, 256, 512, 1024, 2048),
}


@dataclass
class MemoryRegion:
    name: str
    address: int
    size: int
    holds: list[str]  # a subset of HOLDS

    @property
    def end(self) -> int:
        return self.address + self.size


@dataclass
class CpuSpec:
    core: str  # one of CORES
    toolchain: str  # "arm-none-eabi" or "host"
    cflags: list[str]
    ldflags: list[str]


@dataclass
class NpuSpec:
    accelerator: str  # Vela's --accelerator-config, e.g. "ethos-u55-128"
    system_config: str
    memory_mode: str
    vela_ini: Path  # absolute path of the vela.ini that defines system_config and memory_mode
    arena_cache_size: int | None
    base_address: int  # the NPU's register block
    macs: int

    @property
    def family(self) -> str:
        """"u55", "u65" or "u85"."""
        return ACCELERATOR_RE.match(self.accelerator).group(1)


WEIGHT_STORES = ("npu-palette", "npu-lut", "packed")


@dataclass
class WeightEncoding:
    """How the board stores weights, as `edgepack fold` prices them (the `[weights]` table).

    `store`: "npu-palette" (Vela's Ethos-U55/U65 encoder: a palette of at most the last step's
    values, ranks Golomb-Rice coded, zero runs), "npu-lut" (the U85 fast decoder: a lookup table
    at the steps, else raw 8-bit) or "packed" (edgepack's CPU runtime: an int8 codebook + indices
    of the listed widths, rows aligned). The NPU encoders reorder weights into blocks and fill
    the gaps with zeros, which take a palette slot like any value."""

    store: str
    palette_steps: list[int]  # codebook sizes where the cost steps (the last: the most allowed)
    ofm_depth_multiple: int = 1  # output channels pad to this
    ifm_depth_multiple: int = 1  # depth-first traversal: input depth pads to this
    part_kernel_ifm_depth_multiple: int = 1  # part-kernel-first traversal: input depth
    kernel_elements_multiple: int = 1  # part-kernel-first and depthwise: kernel elements
    zero_run_ratio: int = 0  # zero runs pay once zeros outnumber the commonest value this much
    row_align_bytes: int = 1  # packed: each row of indices starts aligned to this
    stream_header_bytes: int = 0  # NPU: a weight stream's header (its palette and modes)
    stream_align_bytes: int = 1  # NPU: each weight stream's length is a multiple of this


@dataclass
class SimSpec:
    qemu_machine: str | None  # QEMU machine for the CPU path (QEMU models no Ethos-U)
    fvp: str | None  # Arm Corstone FVP binary name, where a user has it
    fvp_params: list[str] = field(default_factory=list)  # the FVP's -C parameters
    host: bool = False  # runs natively on the build machine


@dataclass
class BoardSpec:
    name: str
    description: str
    path: Path
    cpu: CpuSpec
    memory: list[MemoryRegion]
    npu: NpuSpec | None
    sim: SimSpec
    uart_base: int | None = None  # CMSDK UART0 the firmware prints to (None: the MPS3 default)
    weights: WeightEncoding | None = None  # None: the CPU runtime's packed form (PACKED_DEFAULT)

    def region_for(self, what: str) -> MemoryRegion:
        """The memory region that holds `what` (one of HOLDS)."""
        if what not in HOLDS:
            raise ValueError(f"unknown section {what!r}; known: {', '.join(HOLDS)}")
        for region in self.memory:
            if what in region.holds:
                return region
        raise KeyError(f"board {self.name} has no region that holds {what!r}")

    @property
    def weight_encoding(self) -> WeightEncoding:
        """How this board stores weights (the CPU runtime's packed form unless its file says)."""
        return self.weights if self.weights is not None else PACKED_DEFAULT

    def region(self, name: str) -> MemoryRegion:
        for region in self.memory:
            if region.name == name:
                return region
        raise KeyError(f"board {self.name} has no region {name!r}")

    @property
    def has_npu(self) -> bool:
        return self.npu is not None


# --- validation ------------------------------------------------------------------------------

class _Fields:
    """Typed access to one TOML table; every problem names the file and the dotted field."""

    def __init__(self, path: Path, table: dict, prefix: str = ""):
        self.path, self.table, self.prefix = path, table, prefix

    def fail(self, key: str, problem: str):
        raise UsageError(f"board file: field '{self.prefix}{key}' {problem}", str(self.path))

    def get(self, key: str, kind, required: bool = True, default=None):
        if key not in self.table:
            if required:
                self.fail(key, "is missing")
            return default
        value = self.table[key]
        if kind is int:  # TOML booleans are not sizes
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif kind is list:
            ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        else:
            ok = isinstance(value, kind)
        if not ok:
            want = {int: "an integer", str: "a string", bool: "true or false",
                    list: "a list of strings", dict: "a table"}[kind]
            self.fail(key, f"must be {want}, not {type(value).__name__} {value!r}")
        return value

    def choice(self, key: str, choices, required: bool = True):
        value = self.get(key, str, required)
        if value is not None and value not in choices:
            self.fail(key, f"is {value!r}; expected one of: {', '.join(choices)}")
        return value

    def sub(self, key: str, required: bool = True) -> "_Fields | None":
        table = self.get(key, dict, required)
        return None if table is None else _Fields(self.path, table, f"{self.prefix}{key}.")


def _vela_ini_sections(path: Path) -> set[str]:
    parser = configparser.ConfigParser()
    parser.read(path)
    return set(parser.sections())


def _parse_memory(path: Path, data: dict) -> list[MemoryRegion]:
    top = _Fields(path, data)
    if "memory" not in data:
        top.fail("memory", "is missing")
    entries = data["memory"]
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        top.fail("memory", "must be one or more [[memory]] tables")
    regions = []
    for i, entry in enumerate(entries):
        f = _Fields(path, entry, f"memory[{i}].")
        name = f.get("name", str)
        address = f.get("address", int)
        size = f.get("size", int)
        holds = f.get("holds", list)
        if address < 0 or address + size > 1 << 32:
            f.fail("address", f"{address:#x} + size {size:#x} is outside the 32-bit address space")
        if size <= 0:
            f.fail("size", f"must be positive, not {size}")
        for h in holds:
            if h not in HOLDS:
                f.fail("holds", f"has {h!r}; expected some of: {', '.join(HOLDS)}")
        regions.append(MemoryRegion(name, address, size, list(holds)))
    names = [r.name for r in regions]
    for i, r in enumerate(regions):
        if names.count(r.name) > 1:
            _Fields(path, {}, f"memory[{i}].").fail("name", f"{r.name!r} is used twice")
        for j, other in enumerate(regions[:i]):
            if r.address < other.end and other.address < r.end:
                _Fields(path, {}, f"memory[{i}].").fail(
                    "address", f"region {r.name} overlaps region {other.name}")
    for section in SECTIONS:
        where = [r.name for r in regions if section in r.holds]
        if len(where) != 1:
            top.fail("memory", f"must place {section!r} in exactly one region "
                               f"(found {len(where)}: {', '.join(where) or 'none'})")
    return regions


def _parse_npu(path: Path, f: _Fields, regions: list[MemoryRegion]) -> NpuSpec:
    accelerator = f.get("accelerator", str)
    m = ACCELERATOR_RE.match(accelerator)
    if not m or int(m.group(2)) not in ACCELERATOR_MACS[m.group(1)]:
        known = [f"ethos-{fam}-{n}" for fam, ns in ACCELERATOR_MACS.items() for n in ns]
        f.fail("accelerator", f"is {accelerator!r}; expected one of: {', '.join(known)}")
    macs = f.get("macs", int)
    if macs != int(m.group(2)):
        f.fail("macs", f"is {macs} but accelerator {accelerator} has {m.group(2)}")
    ini = Path(f.get("vela_ini", str))
    ini = (path.parent / ini).resolve() if not ini.is_absolute() else ini
    if not ini.is_file():
        f.fail("vela_ini", f"names {ini}, which does not exist")
    sections = _vela_ini_sections(ini)
    system_config = f.get("system_config", str)
    if f"System_Config.{system_config}" not in sections:
        f.fail("system_config", f"{system_config!r} is not defined in {ini}")
    memory_mode = f.get("memory_mode", str)
    if f"Memory_Mode.{memory_mode}" not in sections:
        f.fail("memory_mode", f"{memory_mode!r} is not defined in {ini}")
    if memory_mode.startswith("Dedicated_Sram") and m.group(1) == "u55":
        f.fail("memory_mode", f"Dedicated_Sram needs an Ethos-U65 or U85, not {accelerator}")
    cache = f.get("arena_cache_size", int, required=False)
    if cache is not None and cache <= 0:
        f.fail("arena_cache_size", f"must be positive, not {cache}")
    if memory_mode.startswith("Dedicated_Sram") and not any("npu_cache" in r.holds for r in regions):
        _Fields(path, {}).fail("memory", f"must give one region 'npu_cache' (memory mode {memory_mode})")
    return NpuSpec(accelerator=accelerator, system_config=system_config, memory_mode=memory_mode,
                   vela_ini=ini, arena_cache_size=cache, base_address=f.get("base_address", int),
                   macs=macs)


PACKED_DEFAULT = WeightEncoding(store="packed", palette_steps=[2, 4, 8, 16, 32, 64, 128, 256],
                                row_align_bytes=4)


def _parse_weights(f: _Fields, has_npu: bool) -> WeightEncoding:
    store = f.choice("store", WEIGHT_STORES)
    if store.startswith("npu") != has_npu:
        f.fail("store", f"is {store!r} but the board {'has' if has_npu else 'has no'} NPU")
    steps = f.table.get("palette_steps")
    if (not isinstance(steps, list) or not steps or not all(
            isinstance(v, int) and not isinstance(v, bool) and 2 <= v <= 256 for v in steps)
            or steps != sorted(set(steps))):
        f.fail("palette_steps", "must be a rising list of codebook sizes in 2..256")

    def count(key: str, default: int) -> int:
        v = f.get(key, int, required=False, default=default)
        if v < (0 if key in ("zero_run_ratio", "stream_header_bytes") else 1):
            f.fail(key, f"must be positive, not {v}")
        return v

    return WeightEncoding(
        store=store, palette_steps=list(steps),
        ofm_depth_multiple=count("ofm_depth_multiple", 1),
        ifm_depth_multiple=count("ifm_depth_multiple", 1),
        part_kernel_ifm_depth_multiple=count("part_kernel_ifm_depth_multiple", 1),
        kernel_elements_multiple=count("kernel_elements_multiple", 1),
        zero_run_ratio=count("zero_run_ratio", 0),
        row_align_bytes=count("row_align_bytes", 1),
        stream_header_bytes=count("stream_header_bytes", 0),
        stream_align_bytes=count("stream_align_bytes", 1))


def parse_board(path: Path) -> BoardSpec:
    """Read and validate one board file; any problem is a one-line `UsageError`."""
    path = Path(path).resolve()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise UsageError(f"board file is not valid TOML: {err}", str(path)) from None
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"cannot read board file: {err}", str(path)) from None
    top = _Fields(path, data)
    name = top.get("name", str, required=False, default=path.stem)
    description = top.get("description", str)
    c = top.sub("cpu")
    cpu = CpuSpec(core=c.choice("core", CORES), toolchain=c.choice("toolchain", TOOLCHAINS),
                  cflags=list(c.get("cflags", list)), ldflags=list(c.get("ldflags", list)))
    if (cpu.core == "host") != (cpu.toolchain == "host"):
        c.fail("toolchain", f"is {cpu.toolchain!r}, which does not build for core {cpu.core!r}")
    memory = _parse_memory(path, data)
    n = top.sub("npu", required=False)
    npu = _parse_npu(path, n, memory) if n is not None else None
    s = top.sub("sim")
    sim = SimSpec(qemu_machine=s.get("qemu_machine", str, required=False),
                  fvp=s.get("fvp", str, required=False),
                  fvp_params=list(s.get("fvp_params", list, required=False, default=[])),
                  host=s.get("host", bool, required=False, default=False))
    if sim.host != (cpu.toolchain == "host"):
        s.fail("host", f"is {str(sim.host).lower()} but the toolchain is {cpu.toolchain!r}")
    if npu is not None and cpu.core == "host":
        n.fail("accelerator", "a host board has no NPU")
    uart_base = top.get("uart_base", int, required=False)
    if uart_base is not None and not 0 <= uart_base < 1 << 32:
        top.fail("uart_base", f"{uart_base:#x} is outside the 32-bit address space")
    w = top.sub("weights", required=False)
    weights = _parse_weights(w, npu is not None) if w is not None else None
    return BoardSpec(name=name, description=description, path=path, cpu=cpu, memory=memory,
                     npu=npu, sim=sim, uart_base=uart_base, weights=weights)


# --- lookup ----------------------------------------------------------------------------------

def board_files(directory: Path = BOARDS_DIR) -> list[Path]:
    return sorted(Path(directory).glob("*.toml"), key=lambda p: p.stem)


def list_boards(directory: Path = BOARDS_DIR) -> list[BoardSpec]:
    """Every board in `directory`, sorted by name."""
    return sorted((parse_board(p) for p in board_files(directory)), key=lambda b: b.name)


def load_board(name_or_path: str | Path, directory: Path = BOARDS_DIR) -> BoardSpec:
    """A board by name (`boards/<name>.toml`) or by the path of a board file."""
    text = str(name_or_path)
    candidate = Path(text)
    if text.endswith(".toml") or candidate.is_file():
        if not candidate.is_file():
            raise UsageError("board file does not exist", text)
        return parse_board(candidate)
    path = Path(directory) / f"{text}.toml"
    if not path.is_file():
        known = ", ".join(p.stem for p in board_files(directory))
        raise UsageError(f"unknown board {text!r}; known boards: {known} "
                         f"(or give the path of a board .toml file)")
    return parse_board(path)


# --- presentation (`edgepack boards`) --------------------------------------------------------


def board_info(board: BoardSpec) -> dict:
    """A board as JSON-ready data (the `edgepack boards --json` entry)."""
    npu = None
    if board.npu is not None:
        npu = {"accelerator": board.npu.accelerator, "macs": board.npu.macs,
               "system_config": board.npu.system_config, "memory_mode": board.npu.memory_mode,
               "arena_cache_size": board.npu.arena_cache_size,
               "vela_ini": str(board.npu.vela_ini), "base_address": f"{board.npu.base_address:#010x}"}
    return {
        "name": board.name, "description": board.description, "path": str(board.path),
        "cpu": {"core": board.cpu.core, "toolchain": board.cpu.toolchain,
                "cflags": board.cpu.cflags, "ldflags": board.cpu.ldflags},
        "memory": [{"name": r.name, "address": f"{r.address:#010x}", "size": r.size,
                    "holds": r.holds} for r in board.memory],
        "npu": npu,
        "weights": asdict(board.weight_encoding),
        "sim": {"qemu_machine": board.sim.qemu_machine, "fvp": board.sim.fvp,
                "fvp_params": board.sim.fvp_params, "host": board.sim.host},
    }


