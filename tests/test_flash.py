"""`edgepack flash`: the MPS3 SD-card layout lands on the board's USB drive byte for byte."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgepack import flash
from edgepack.project import mcc_address
from edgepack.cli import main

from .conftest import fixture_path
from .firmware_support import built_project, needs


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return built_project(tmp_path_factory.mktemp("flash"),
                         fixture_path("digits_b_cluster16_int8.tflite"), "corstone-300")


@needs("arm-none-eabi-gcc", "cmake", "ninja")
def test_flash_to_a_drive_writes_the_mps3_layout_byte_for_byte(project, tmp_path, capsys):
    drive = tmp_path / "V2M-MPS3"
    drive.mkdir()
    assert main(["flash", str(project), "--to", str(drive)]) == 0
    assert "copied 3 files" in capsys.readouterr().out
    files = sorted(p.relative_to(drive).as_posix() for p in drive.rglob("*") if p.is_file())
    assert files == ["MB/HBI0309C/AN552/images.txt", "SOFTWARE/DDR.BIN", "SOFTWARE/ITCM.BIN"]
    assert (drive / "SOFTWARE/ITCM.BIN").read_bytes() == (project / "build/itcm.bin").read_bytes()
    assert (drive / "SOFTWARE/DDR.BIN").read_bytes() == (project / "build/ddr.bin").read_bytes()
    # the code image starts with the vector table: initial SP in DTCM, reset handler in ITCM
    itcm = (drive / "SOFTWARE/ITCM.BIN").read_bytes()
    sp, reset = int.from_bytes(itcm[0:4], "little"), int.from_bytes(itcm[4:8], "little")
    assert 0x30000000 <= sp <= 0x30080000 and 0x10000000 <= reset < 0x10080000 and reset & 1
    # the model image is the model data the build wrote, then the golden vectors
    model_bin = (project / "data/model.bin").read_bytes()
    assert (drive / "SOFTWARE/DDR.BIN").read_bytes()[:len(model_bin)] == model_bin
    cfg = (drive / "MB/HBI0309C/AN552/images.txt").read_bytes()
    assert cfg == (project / "flash/sdcard/MB/HBI0309C/AN552/images.txt").read_bytes()
    text = cfg.decode()
    assert "TOTALIMAGES: 2" in text
    assert "IMAGE0ADDRESS: 0x00000000" in text and "IMAGE0FILE: \\SOFTWARE\\ITCM.BIN" in text
    assert "IMAGE1ADDRESS: 0x0C000000" in text and "IMAGE1FILE: \\SOFTWARE\\DDR.BIN" in text
    assert text.endswith("\r\n")


def test_flash_without_a_drive_or_probe_says_what_it_looked_for(project, monkeypatch, capsys):
    monkeypatch.setattr(flash, "find_drive", lambda: None)
    monkeypatch.setattr(flash, "probe_available", lambda: False)
    assert main(["flash", str(project)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "V2M-MPS3" in err and "pyOCD" in err and "--to MOUNTPOINT" in err


def test_mcc_addresses_follow_the_mps3_memory_map():
    assert mcc_address(0x10000000) == 0x00000000
    assert mcc_address(0x70001000) == 0x0C001000
    assert mcc_address(0x31000000) is None
