"""A generated project on disk: its build.json, the load images a board's loader takes, the
files added for flashing, building it with CMake + Ninja, and reading the linker's map file.
Used by build (writing), run, flash and report (reading).

May import: errors, tools, boards.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

from . import __version__
from .errors import BuildError, UsageError
from .tools import require_tool, tail_error


# Vela's --enable-debug-db output for npu/model_vela.tflite: which input operator each command-stream
# operation computes (edgepack.npu.compare names the differing operator with it)
NPU_DEBUG_DB = "npu/model_vela_debug.xml"


# --- build.json ------------------------------------------------------------------------------


def load_build_json(directory: str | os.PathLike) -> dict:
    p = Path(directory) / "build.json"
    if not Path(directory).is_dir():
        raise UsageError("no such directory (run `edgepack build` first)", str(directory))
    if not p.is_file():
        raise UsageError("not an edgepack project: build.json is missing", str(directory))
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (ValueError, OSError) as err:
        raise UsageError(f"build.json is unreadable: {err}", str(directory)) from None


# --- load images and flashing files ------------------------------------------------------------


# Output sections of the linker script, by what the board's regions hold.
SECTION_HOLDS = [(".text", "code"), (".rodata", "rodata"), (".ARM.extab", "rodata"),
                 (".ARM.exidx", "rodata"), (".data", "rodata"), (".edgepack_model", "model")]


def load_images(board) -> list[dict]:
    """One binary image per memory region with load data, the code region first:
    what objcopy extracts for a board's loader (the MPS3 SD card, a flash programmer)."""
    images: dict[str, dict] = {}
    for section, holds in SECTION_HOLDS:
        r = board.region_for(holds)
        img = images.setdefault(r.name, {"region": r.name, "address": r.address,
                                         "file": f"{r.name.lower()}.bin", "sections": []})
        img["sections"].append(section)
    code = board.region_for("code").name
    return sorted(images.values(), key=lambda i: (i["region"] != code, i["address"]))


MPS3_HBI = "HBI0309C"  # the MPS3 board revision folder
MPS3_HBI = "HBI0309C"  # the MPS3 board revision folder


# Boards with an MPS3 FPGA image: the application note that implements them.
MPS3_APPLICATION_NOTES = {"corstone-300": "AN552", "mps3-an547": "AN547"}


# SSE-300 on MPS3: CPU address ranges (Secure and Non-secure aliases) and where the MCC writes them.
MPS3_MCC_WINDOWS = [
    (0x10000000, 0x00080000, 0x00000000),  # ITCM, Secure alias
    (0x00000000, 0x00080000, 0x00000000),  # ITCM, Non-secure alias
    (0x70000000, 0x10000000, 0x0C000000),  # DDR, Secure alias
    (0x60000000, 0x10000000, 0x0C000000),  # DDR, Non-secure alias
]


def mcc_address(cpu_address: int) -> int | None:
    for base, size, mcc in MPS3_MCC_WINDOWS:
        if base <= cpu_address < base + size:
            return mcc + (cpu_address - base)
    return None


def images_txt(board_name: str, images: list[dict], model_sha256: str) -> str:
    """The MCC's images.txt for `images` (load regions from codegen.load_images)."""
    lines = [
        "TITLE: Versatile Express Images Configuration File",
        f"; edgepack {__version__}: generated, do not edit. model sha256 {model_sha256}",
        f"; board {board_name}: firmware images for the MPS3 MCC",
        "",
        "[IMAGES]",
        f"TOTALIMAGES: {len(images)}                     ;Number of Images (Max: 32)",
    ]
    for n, img in enumerate(images):
        mcc = mcc_address(img["address"])
        if mcc is None:
            raise BuildError(f"board {board_name}: region {img['region']} at {img['address']:#010x} "
                             "is not loadable by the MPS3 MCC")
        lines += ["", f"IMAGE{n}ADDRESS: 0x{mcc:08X}          ;{img['region']} at CPU address "
                      f"0x{img['address']:08X}",
                  f"IMAGE{n}UPDATE: AUTO                 ;Image Update:NONE/AUTO/FORCE",
                  f"IMAGE{n}FILE: \\SOFTWARE\\{img['file'].upper()}"]
    return "\r\n".join(lines) + "\r\n"  # the MCC is a DOS-era FAT parser


def sdcard_layout(board_name: str) -> str | None:
    """Path of images.txt on the drive, or None when the board has no MPS3 image."""
    an = MPS3_APPLICATION_NOTES.get(board_name)
    return f"MB/{MPS3_HBI}/{an}/images.txt" if an else None


def board_files(board, images: list[dict], model) -> list[tuple[str, str]]:
    """Files `edgepack build` adds to the project for flashing (relative path, text)."""
    rel = sdcard_layout(board.name)
    if rel is None or not images:
        return []
    return [(f"flash/sdcard/{rel}", images_txt(board.name, images, model.sha256))]


# --- building it -------------------------------------------------------------------------------


def build_firmware(project: Path, host: bool = False, sanitize: bool = False,
                   timeout: float = 600) -> Path:
    """Configure and build `project`; returns the build directory."""
    require_tool("cmake")
    require_tool("ninja")
    if host:
        require_tool("gcc")
        build_dir = project / ("build-host-asan" if sanitize else "build-host")
        flags = ["-DEDGEPACK_HOST=ON", f"-DEDGEPACK_SANITIZE={'ON' if sanitize else 'OFF'}"]
    else:
        require_tool("arm-none-eabi-gcc")
        require_tool("arm-none-eabi-objcopy")
        build_dir = project / "build"
        flags = []
    env = dict(os.environ, LC_ALL="C")
    steps = [["cmake", "-G", "Ninja", "-S", str(project), "-B", str(build_dir), *flags],
             ["ninja", "-C", str(build_dir)]]
    for cmd in steps:
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            raise BuildError(f"`{' '.join(cmd[:2])}` timed out after {timeout:.0f} s", str(project)) from None
        if proc.returncode != 0:
            raise BuildError(f"`{cmd[0]}` failed: {tail_error(proc.stdout + proc.stderr)}", str(project))
    return build_dir


# --- memory use from the linker's map file ------------------------------------------------------


_SECTION_RE = re.compile(r"^(\.[\w.]+)\s*(?:\n\s+)?\s*(0x[0-9a-fA-F]+)\s+(0x[0-9a-fA-F]+)(?:\s+load address\s+(0x[0-9a-fA-F]+))?",
                         re.MULTILINE)
_REGION_RE = re.compile(r"^(\w+)\s+(0x[0-9a-fA-F]+)\s+(0x[0-9a-fA-F]+)", re.MULTILINE)


def map_memory_usage(map_path: str | os.PathLike) -> list[dict]:
    """Bytes each memory region holds, from a GNU ld map file: every allocated output section
    at its run address, plus the load image of initialised data (.data) where it is stored."""
    text = Path(map_path).read_text(encoding="utf-8", errors="replace")
    config = text.split("Memory Configuration", 1)[1].split("Linker script and memory map", 1)
    regions = []
    for m in _REGION_RE.finditer(config[0]):
        if m.group(1) != "Name":
            regions.append({"region": m.group(1), "address": int(m.group(2), 16),
                            "size": int(m.group(3), 16), "used": 0, "sections": {}})

    def region_of(addr: int):
        return next((r for r in regions if r["address"] <= addr < r["address"] + r["size"]), None)

    for m in _SECTION_RE.finditer(config[1]):
        name, addr, size = m.group(1), int(m.group(2), 16), int(m.group(3), 16)
        if size == 0 or name.startswith((".debug", ".comment", ".ARM.attributes")):
            continue
        r = region_of(addr)
        if r is not None:
            r["used"] += size
            r["sections"][name] = r["sections"].get(name, 0) + size
        if m.group(4):
            load = int(m.group(4), 16)
            lr = region_of(load)
            if lr is not None and lr is not r and name == ".data":
                lr["used"] += size
                lr["sections"][name + " (load image)"] = size
    return regions
