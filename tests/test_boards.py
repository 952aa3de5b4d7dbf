"""Boards are data files: every shipped board loads, and a broken board file is one clear line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edgepack.boards import (DEFAULT_BOARD, SECTIONS, BOARDS_DIR, list_boards, load_board,
                             parse_board)
from edgepack.errors import UsageError

SHIPPED = ["corstone-300", "corstone-300-u65", "corstone-310", "corstone-320", "host",
           "mps2-an386", "mps2-an500", "mps2-an505", "mps3-an547"]
NPU_BOARDS = ["corstone-300", "corstone-300-u65", "corstone-310", "corstone-320"]


def test_the_shipped_boards_are_listed_and_the_default_is_corstone_300():
    assert [b.name for b in list_boards()] == sorted(SHIPPED)
    assert DEFAULT_BOARD == "corstone-300"
    assert load_board(DEFAULT_BOARD).npu.accelerator == "ethos-u55-128"


@pytest.mark.parametrize("name", SHIPPED)
def test_every_board_places_each_section_in_one_region(name):
    board = load_board(name)
    assert board.name == name and board.path == BOARDS_DIR / f"{name}.toml"
    for section in SECTIONS:
        region = board.region_for(section)
        assert section in region.holds and region.size > 0


@pytest.mark.parametrize("name", NPU_BOARDS)
def test_npu_boards_name_an_explicit_vela_config_that_defines_their_modes(name):
    npu = load_board(name).npu
    assert npu.vela_ini.is_absolute() and npu.vela_ini == BOARDS_DIR / "vela.ini"
    ini = npu.vela_ini.read_text()
    assert f"[System_Config.{npu.system_config}]" in ini
    assert f"[Memory_Mode.{npu.memory_mode}]" in ini
    assert npu.accelerator.endswith(f"-{npu.macs}")


def test_corstone_300_uses_the_memory_map_that_boots_under_qemu_an547():
    board = load_board("corstone-300")
    where = {s: (board.region_for(s).address, board.region_for(s).size) for s in SECTIONS}
    assert where["code"] == (0x10000000, 512 * 1024)  # ITCM, where the vector table must be
    assert where["arena"] == (0x31000000, 2 * 1024 * 1024)
    assert where["model"][0] == 0x70000000
    assert board.sim.qemu_machine == "mps3-an547"
    assert board.sim.fvp == "FVP_Corstone_SSE-300_Ethos-U55"
    assert "ethosu.num_macs=128" in board.sim.fvp_params
    assert "mps3_board.uart0.shutdown_on_eot=1" in board.sim.fvp_params
    assert board.npu.system_config == "Ethos_U55_High_End_Embedded"
    assert board.npu.memory_mode == "Shared_Sram"


def test_corstone_320_has_a_384_kib_arena_cache_and_no_qemu_machine():
    board = load_board("corstone-320")
    assert board.npu.accelerator == "ethos-u85-256"
    assert board.npu.memory_mode == "Dedicated_Sram"
    assert board.npu.arena_cache_size == 384 * 1024
    assert board.sim.qemu_machine is None
    assert "-march=armv8.1-m.main+mve.fp+fp.dp" in board.cpu.cflags  # GCC 12 lacks cortex-m85


def test_boards_without_npu():
    assert load_board("mps3-an547").npu is None
    host = load_board("host")
    assert host.npu is None and host.sim.host and host.cpu.toolchain == "host"


def test_unknown_board_lists_the_known_ones():
    with pytest.raises(UsageError) as err:
        load_board("corstone-999")
    msg = str(err.value)
    assert "unknown board 'corstone-999'" in msg and "\n" not in msg
    for name in SHIPPED:
        assert name in msg
    assert err.value.exit_code == 2


def test_a_board_can_be_given_by_path_and_needs_no_code(tmp_path):
    text = (BOARDS_DIR / "corstone-300.toml").read_text()
    text = text.replace('name = "corstone-300"', 'name = "my-board"')
    text = text.replace('vela_ini = "vela.ini"', f'vela_ini = "{BOARDS_DIR / "vela.ini"}"')
    path = tmp_path / "my-board.toml"
    path.write_text(text)
    board = load_board(str(path))
    assert board.name == "my-board" and board.path == path.resolve()
    assert load_board("my-board", directory=tmp_path).name == "my-board"


def _broken(tmp_path: Path, old: str, new: str, base: str = "corstone-300") -> Path:
    text = (BOARDS_DIR / f"{base}.toml").read_text()
    assert re.search(re.escape(old), text), old
    path = tmp_path / "broken.toml"
    path.write_text(text.replace(old, new, 1).replace('"vela.ini"', f'"{BOARDS_DIR / "vela.ini"}"'))
    return path


@pytest.mark.parametrize("old, new, field, problem", [
    ('description = "Arm Corstone-300', 'descr = "x', "description", "is missing"),
    ("size = 0x00200000", 'size = "2M"', "memory[2].size", "must be an integer"),
    ("address = 0x10000000", "address = true", "memory[0].address", "must be an integer"),
    ('core = "cortex-m55"', 'core = "cortex-m3"', "cpu.core", "expected one of"),
    ('accelerator = "ethos-u55-128"', 'accelerator = "ethos-u55-100"', "npu.accelerator",
     "expected one of"),
    ("macs = 128", "macs = 64", "npu.macs", "has 128"),
    ('system_config = "Ethos_U55_High_End_Embedded"', 'system_config = "Nope"',
     "npu.system_config", "is not defined in"),
    ('memory_mode = "Shared_Sram"', 'memory_mode = "Dedicated_Sram"', "npu.memory_mode",
     "needs an Ethos-U65 or U85"),
    ('holds = ["arena"]', 'holds = ["arena", "heap"]', "memory[2].holds", "'heap'"),
    ('holds = ["arena"]', "holds = []", "memory", "'arena' in exactly one region"),
    ("address = 0x31000000", "address = 0x30040000", "memory[2].address", "overlaps region DTCM"),
    ("[cpu]", "[cpux]", "cpu", "is missing"),
    ("fvp_params = [", "fvp_params = 3\nx = [", "sim.fvp_params", "must be a list of strings"),
])
def test_a_malformed_board_file_names_the_file_and_the_field(tmp_path, old, new, field, problem):
    path = _broken(tmp_path, old, new)
    with pytest.raises(UsageError) as err:
        parse_board(path)
    msg = str(err.value)
    assert msg.startswith(str(path.resolve())) and "\n" not in msg
    assert f"field '{field}'" in msg and problem in msg


def test_a_board_file_that_is_not_toml(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("name = \n")
    with pytest.raises(UsageError, match=r"bad\.toml: board file is not valid TOML"):
        load_board(path)


# --- `edgepack boards` -----------------------------------------------------------------------

def test_boards_command_lists_every_board_as_json(capsys):
    import json

    from edgepack.cli import main

    assert main(["boards", "--json"]) == 0
    boards = json.loads(capsys.readouterr().out)
    assert [b["name"] for b in boards] == sorted(SHIPPED)
    c300 = boards[[b["name"] for b in boards].index("corstone-300")]
    assert c300["npu"]["accelerator"] == "ethos-u55-128"
    assert c300["npu"]["base_address"] == "0x58102000"  # Secure alias, as all addresses
    assert {r["name"]: r["address"] for r in c300["memory"]}["ITCM"] == "0x10000000"
    assert c300["sim"]["qemu_machine"] == "mps3-an547"


def test_boards_command_table_and_errors(capsys, monkeypatch):
    from edgepack.cli import main

    monkeypatch.setenv("COLUMNS", "200")  # a wide terminal: no cell wraps

    assert main(["boards"]) == 0
    out = capsys.readouterr().out
    for name in SHIPPED:
        assert name in out
    assert "0x31000000" in out and "Ethos_U85_SYS_DRAM_Mid" in out
    assert main(["boards", "--board", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("edgepack: error: unknown board 'nope'") and "\n" not in err
