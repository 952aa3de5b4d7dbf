"""External tools edgepack runs (CMake, Ninja, gcc, the Arm toolchain, QEMU, Corstone FVPs):
finding them, and naming the Debian package that installs each when one is missing.

May import: errors.
"""

from __future__ import annotations

import shutil

from .errors import BuildError

# What installs each tool on Debian/Ubuntu.
APT_PACKAGES = {
    "cmake": "cmake", "ninja": "ninja-build", "arm-none-eabi-gcc": "gcc-arm-none-eabi libnewlib-arm-none-eabi",
    "arm-none-eabi-objcopy": "binutils-arm-none-eabi", "arm-none-eabi-nm": "binutils-arm-none-eabi",
    "qemu-system-arm": "qemu-system-arm",
    "gcc": "gcc",
}


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pkg = APT_PACKAGES.get(name, name)
        raise BuildError(f"{name} not found on PATH: install it with `sudo apt-get install {pkg}` "
                         "(or run `bash .ci/setup`)")
    return path


def tail_error(text: str) -> str:
    """The line of a tool's output that names its error (else the last line), shortened."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in lines:
        if "error" in ln.lower() or "overflowed" in ln or "will not fit" in ln:
            return ln[:300]
    return lines[-1][:300] if lines else "no output"


def fvp_path(fvp: str | None) -> str | None:
    """Where the Corstone FVP binary `fvp` is on PATH, or None (they are a separate download
    from Arm)."""
    return shutil.which(fvp) if fvp else None
