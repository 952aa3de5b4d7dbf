"""`edgepack flash`: put a built firmware on a board.

Arm MPS3 boards boot from the SD card their configuration MCC exposes as a USB drive: images in
`SOFTWARE/` (8.3 file names) and `MB/<board HBI>/<application note>/images.txt` naming each image
and the address the MCC writes it to. Other boards (or an MPS3 with a debug probe) are
programmed through pyOCD, an optional dependency (`pip install pyocd`).
"""

from __future__ import annotations

import glob
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .errors import BuildError, UsageError
from .project import sdcard_layout

# Where an MPS3's USB drive usually appears.
MOUNT_GLOBS = ["/media/*/V2M-MPS3", "/media/V2M-MPS3", "/run/media/*/V2M-MPS3", "/mnt/V2M-MPS3"]


@dataclass
class FlashResult:
    method: str  # "usb-drive" or "pyocd"
    target: str
    files: list[str] = field(default_factory=list)
    message: str = ""


def _built_images(project: Path, build_dir: Path, images: list[dict]) -> list[tuple[Path, str]]:
    out = []
    for img in images:
        src = build_dir / img["file"]
        if not src.is_file():
            raise BuildError(f"{src} is missing: the firmware build did not produce it", str(project))
        out.append((src, img["file"].upper()))
    return out


def flash_to_drive(project: Path, build_dir: Path, board_name: str, images: list[dict],
                   mount: Path) -> FlashResult:
    """Copy the SD-card layout onto the MPS3's mounted USB drive (or any directory)."""
    rel = sdcard_layout(board_name)
    if rel is None:
        raise UsageError(f"board {board_name} has no MPS3 SD-card layout; use --probe "
                         "(pyOCD) to program it", str(project))
    if not mount.is_dir():
        raise UsageError("is not a mounted drive or directory", str(mount))
    cfg = project / "flash" / "sdcard" / rel
    if not cfg.is_file():
        raise UsageError(f"{cfg.relative_to(project)} is missing: rebuild the project", str(project))
    written = []
    (mount / "SOFTWARE").mkdir(exist_ok=True)
    for src, name in _built_images(project, build_dir, images):
        shutil.copyfile(src, mount / "SOFTWARE" / name)
        written.append(f"SOFTWARE/{name}")
    (mount / rel).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(cfg, mount / rel)
    written.append(rel)
    return FlashResult("usb-drive", str(mount), written,
                       f"copied {len(written)} files to {mount}; reset the board (MCC: REBOOT) to load them")


def flash_with_probe(project: Path, build_dir: Path, target: str | None) -> FlashResult:
    """Program firmware.hex through pyOCD onto the first debug probe found."""
    try:
        from pyocd.core.helpers import ConnectHelper
        from pyocd.flash.file_programmer import FileProgrammer
    except ImportError:
        raise UsageError("--probe needs pyOCD, which is not installed: pip install pyocd") from None
    hex_file = build_dir / "firmware.hex"
    if not hex_file.is_file():
        raise BuildError(f"{hex_file} is missing: the firmware build did not produce it", str(project))
    options = {"target_override": target} if target else {}
    session = ConnectHelper.session_with_chosen_probe(blocking=False, options=options)
    if session is None:
        raise BuildError("pyOCD found no debug probe (is the board connected over USB?)", str(project))
    with session:
        FileProgrammer(session).program(str(hex_file))
        session.board.target.reset()
    return FlashResult("pyocd", session.probe.unique_id if session.probe else "probe",
                       ["firmware.hex"], "programmed firmware.hex and reset the target")


def find_drive() -> Path | None:
    for pattern in MOUNT_GLOBS:
        for hit in sorted(glob.glob(pattern)):
            if Path(hit).is_dir():
                return Path(hit)
    return None


def probe_available() -> bool:
    try:
        import pyocd  # noqa: F401
    except ImportError:
        return False
    return True


def flash_project(project: str, to: str | None = None, probe: bool = False,
                  target: str | None = None) -> FlashResult:
    """Build `project` if needed, then copy it onto the drive `to`, or program it through a
    probe; with neither, look for a mounted MPS3 drive, then for a probe."""
    from .boards import load_board
    from .project import build_firmware, load_build_json, load_images

    path = Path(project)
    info = load_build_json(path)
    board = load_board(info.get("board_file", info["board"]))
    if board.sim.host:
        raise UsageError(f"board {board.name} is the host: nothing to flash (use `edgepack run`)",
                         project)
    images = load_images(board)
    build_dir = path / "build"
    if not (build_dir / "firmware.elf").is_file():
        build_dir = build_firmware(path)
    if to is not None:
        return flash_to_drive(path, build_dir, board.name, images, Path(to))
    if probe:
        return flash_with_probe(path, build_dir, target)
    drive = find_drive() if sdcard_layout(board.name) else None
    if drive is not None:
        return flash_to_drive(path, build_dir, board.name, images, drive)
    if probe_available():
        return flash_with_probe(path, build_dir, target)
    looked = (f"an MPS3 USB drive at {', '.join(MOUNT_GLOBS)}; " if sdcard_layout(board.name) else "")
    raise BuildError(f"no board found: looked for {looked}a debug probe through pyOCD (not "
                     "installed: pip install pyocd). Give --to MOUNTPOINT or --probe", project)
