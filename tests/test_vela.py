"""Vela for a board: edgepack reports what Vela itself writes, places operators by input index,
refuses models that do not fit, and passes Vela's own reason on when it rejects a model."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgepack.boards import BOARDS_DIR, load_board
from edgepack.errors import BuildError, ModelError, UsageError
from edgepack.tflite import parse_model, schema
from edgepack.vela import (RUNTIME_OPERATORS, check_budget, check_cpu_operators,
                           compare_raw_and_folded, compile_for_board, compile_raw, cpu_operators,
                           memory_use)

from .conftest import INT8_MODELS, edit_model, fixture_path

NPU_BOARDS = ["corstone-300", "corstone-300-u65", "corstone-310", "corstone-320"]
VELA = Path(sys.executable).parent / "vela"


def direct_vela_run(model: Path, board_name: str, out: Path) -> tuple[dict, bytes]:
    """Run the `vela` CLI ourselves with the board's options; its summary row and output model."""
    board = load_board(board_name)
    npu = board.npu
    cmd = [str(VELA), str(model), "--accelerator-config", npu.accelerator,
           "--config", str(npu.vela_ini), "--system-config", npu.system_config,
           "--memory-mode", npu.memory_mode, "--output-dir", str(out)]
    if npu.arena_cache_size:
        cmd += ["--arena-cache-size", str(npu.arena_cache_size)]
    subprocess.run(cmd, check=True, capture_output=True)
    with open(out / f"{model.stem}_summary_{npu.system_config}.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    return row, (out / f"{model.stem}_vela.tflite").read_bytes()


@pytest.mark.parametrize("board_name", NPU_BOARDS)
@pytest.mark.parametrize("model_name", INT8_MODELS)
def test_reported_figures_equal_a_direct_vela_run(tmp_path, model_name, board_name):
    model = fixture_path(model_name)
    result = compile_for_board(model, load_board(board_name))
    row, optimized = direct_vela_run(model, board_name, tmp_path)

    assert result.encoded_weight_bytes == int(row["total_npu_encoded_weights"])
    assert result.original_weight_bytes == int(row["total_original_weights"])
    assert result.sram_used_bytes == float(row["sram_memory_used"]) * 1024  # CSV is in KiB
    assert result.npu_cycles == int(row["cycles_npu"])
    assert result.total_cycles == int(row["cycles_total"])
    assert result.inferences_per_second == pytest.approx(float(row["inferences_per_second"]))
    # the same options give the same compiled model, byte for byte
    assert result.optimized_model == optimized
    # the digits models run entirely on every NPU, and each layer has a per-layer row
    assert cpu_operators(result) == []
    assert [op.index for op in result.npu_operators] == list(range(8))
    assert {layer.target for layer in result.layers} == {"NPU"}
    assert sum(layer.npu_cycles for layer in result.layers) > 0
    check_budget(result, load_board(board_name), model)  # fits: no error


def test_the_board_config_is_explicit_in_the_vela_command():
    board = load_board("corstone-320")
    result = compile_for_board(fixture_path("digits_b_cluster16_int8.tflite"), board,
                               verbose_performance=False)
    cmd = result.command
    for flag, value in [("--accelerator-config", "ethos-u85-256"),
                        ("--config", str(BOARDS_DIR / "vela.ini")),
                        ("--system-config", "Ethos_U85_SYS_DRAM_Mid"),
                        ("--memory-mode", "Dedicated_Sram"), ("--arena-cache-size", "393216")]:
        assert cmd[cmd.index(flag) + 1] == value
    assert result.layers == []  # no --verbose-performance, no per-layer rows


def test_compiling_is_deterministic_and_keeps_outputs_in_workdir(tmp_path):
    board = load_board("corstone-300")
    model = fixture_path("digits_c_prune50_cluster16_sp_int8.tflite")
    a = compile_for_board(model, board, workdir=tmp_path / "keep")
    b = compile_for_board(model.read_bytes(), board, name=model.stem)
    assert a.optimized_model == b.optimized_model and a.summary == b.summary
    assert a.debug_db == b.debug_db and a.debug_db.startswith(b"<?xml")  # no temporary paths in it
    kept = sorted(p.name for p in (tmp_path / "keep").iterdir())
    stem = model.stem
    assert kept == [f"{stem}_debug.xml", f"{stem}_per-layer.csv",
                    f"{stem}_summary_Ethos_U55_High_End_Embedded.csv", f"{stem}_vela.tflite"]
    assert (tmp_path / "keep" / f"{stem}_vela.tflite").read_bytes() == a.optimized_model


def _replace_softmax_with(opname: str):
    """digits_b with its final SOFTMAX turned into `opname` (same input and output tensors)."""
    def edit(m):
        code = schema.OperatorCodeT()
        code.builtinCode = getattr(schema.BuiltinOperator, opname)
        code.deprecatedBuiltinCode = min(code.builtinCode, 127)
        code.version = 1
        m.operatorCodes.append(code)
        op = m.subgraphs[0].operators[7]
        op.opcodeIndex = len(m.operatorCodes) - 1
        op.builtinOptionsType, op.builtinOptions = 0, None
    return edit_model("digits_b_cluster16_int8.tflite", edit)


def test_operators_vela_leaves_on_the_cpu_are_named_by_input_index(tmp_path):
    model = tmp_path / "l2norm.tflite"
    model.write_bytes(_replace_softmax_with("L2_NORMALIZATION"))
    result = compile_for_board(model, load_board("corstone-300"))
    assert cpu_operators(result) == [(7, "L2_NORMALIZATION")]
    assert [op.index for op in result.npu_operators] == list(range(7))
    assert result.cpu_operators[0].name == "StatefulPartitionedCall:0"
    # the optimized model really has one ethos-u operator followed by the CPU operator
    out = parse_model(result.optimized_model)
    assert [op.name for op in out.operators] == ["ethos-u", "L2_NORMALIZATION"]
    # ... which edgepack's C runtime does not implement: the build must stop, naming it
    assert "L2_NORMALIZATION" not in RUNTIME_OPERATORS
    with pytest.raises(BuildError) as err:
        check_cpu_operators(result, model)
    msg = str(err.value)
    assert msg.startswith(str(model)) and "#7 L2_NORMALIZATION" in msg and "\n" not in msg


def test_a_model_entirely_on_the_npu_passes_the_cpu_check():
    result = compile_for_board(fixture_path("digits_b_cluster16_int8.tflite"),
                               load_board("corstone-310"))
    assert check_cpu_operators(result) == []


def test_raw_output_has_the_command_stream_and_refuses_cpu_operators(tmp_path):
    board = load_board("corstone-300")
    result = compile_raw(fixture_path("digits_b_cluster16_int8.tflite"), board)
    assert result.optimized_model == b"" and result.raw["cmd_data"].item().startswith(b"COP1")
    assert result.arena_bytes == result.sram_used_bytes == int(result.raw["scratch_size"])
    model = tmp_path / "l2norm.tflite"
    model.write_bytes(_replace_softmax_with("L2_NORMALIZATION"))
    with pytest.raises(ModelError) as err:
        compile_raw(model, board)
    msg = str(err.value)
    assert msg.startswith(f"{model}: Vela rejected the model for board corstone-300")
    assert "RawWriter expects a graph without passthrough/CPU operations" in msg
    assert "\n" not in msg


def test_a_model_vela_crashes_on_is_one_line_with_vela_s_reason(tmp_path):
    def sign_bit_activation(m):  # an activation code Vela has no lowering for
        m.subgraphs[0].operators[6].builtinOptions.fusedActivationFunction = \
            schema.ActivationFunctionType.SIGN_BIT
    model = tmp_path / "bad_act.tflite"
    model.write_bytes(edit_model("digits_b_cluster16_int8.tflite", sign_bit_activation))
    with pytest.raises(ModelError) as err:
        compile_for_board(model, load_board("corstone-300"))
    msg = str(err.value)
    assert msg.startswith(f"{model}: Vela rejected the model") and "\n" not in msg
    assert "Traceback" not in msg and msg.rstrip().endswith("map::at")


def test_unreadable_model_and_board_without_npu(tmp_path):
    with pytest.raises(UsageError, match="no such file"):
        compile_for_board(tmp_path / "missing.tflite", load_board("corstone-300"))
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a model at all" * 4)
    with pytest.raises(ModelError, match="junk.tflite"):
        compile_for_board(junk, load_board("corstone-300"))
    with pytest.raises(UsageError, match="board mps3-an547 has no NPU"):
        compile_for_board(fixture_path("digits_b_cluster16_int8.tflite"), load_board("mps3-an547"))


def test_vela_not_installed_says_how_to_install_it(tmp_path):
    # an `ethosu` package without `vela` in front of the real one: Vela is not importable
    (tmp_path / "ethosu").mkdir()
    (tmp_path / "ethosu" / "__init__.py").write_text("")
    code = ("from edgepack.boards import load_board\n"
            "from edgepack.vela import compile_for_board\n"
            "from edgepack.errors import EdgepackError\n"
            "try:\n"
            f"    compile_for_board({str(fixture_path('digits_b_cluster16_int8.tflite'))!r},"
            " load_board('corstone-300'))\n"
            "except EdgepackError as e:\n"
            "    print(e)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(Path.cwd())]))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=Path(__file__).parent.parent)
    assert out.stdout.strip() == "Vela is not installed: pip install ethos-u-vela"


# --- budgets ---------------------------------------------------------------------------------

def _board_with(tmp_path: Path, base: str, old: str, new: str):
    text = (BOARDS_DIR / f"{base}.toml").read_text()
    assert old in text
    text = text.replace(old, new, 1).replace('"vela.ini"', f'"{BOARDS_DIR / "vela.ini"}"')
    path = tmp_path / f"tiny-{base}.toml"
    path.write_text(text)
    return load_board(path)


def test_a_model_whose_arena_does_not_fit_the_sram_stops_the_build(tmp_path):
    # corstone-300 with 4 KiB of SRAM for the arena: digits_b needs 5 KiB there
    board = _board_with(tmp_path, "corstone-300", "size = 0x00200000", "size = 0x00001000")
    model = fixture_path("digits_b_cluster16_int8.tflite")
    result = compile_for_board(model, board)
    assert result.sram_used_bytes == 5120
    with pytest.raises(BuildError) as err:
        check_budget(result, board, model)
    msg = str(err.value)
    assert msg == (f"{model}: does not fit board corstone-300: NPU arena (Vela SRAM use "
                   f"5.0 KiB (5120 bytes)) needs 5.0 KiB (5120 bytes) but region SRAM at "
                   f"0x31000000 has 4.0 KiB (4096 bytes)")
    assert err.value.exit_code == 1


def test_a_model_too_big_for_the_model_region_stops_the_build(tmp_path):
    board = _board_with(tmp_path, "corstone-320", "size = 0x10000000", "size = 0x00008000")
    model = fixture_path("digits_a_baseline_int8.tflite")
    result = compile_for_board(model, board, verbose_performance=False)
    with pytest.raises(BuildError) as err:
        check_budget(result, board, model)
    msg = str(err.value)
    assert "does not fit board corstone-320" in msg and "region DDR at 0x70000000" in msg
    assert f"model {len(result.optimized_model) / 1024:.1f} KiB" in msg
    assert "has 32.0 KiB (32768 bytes)" in msg


def test_dedicated_sram_boards_budget_cache_arena_and_model_separately():
    board = load_board("corstone-320")
    result = compile_for_board(fixture_path("digits_b_cluster16_int8.tflite"), board,
                               verbose_performance=False)
    uses = {u.region: u for u in memory_use(result, board)}
    assert uses["SRAM"].needed == result.sram_used_bytes == result.cache_bytes
    # Vela's DRAM use is the weights plus the arena it places there
    assert uses["DDR"].needed == len(result.optimized_model) + result.arena_bytes
    assert result.dram_used_bytes <= uses["DDR"].needed
    assert all(u.fits for u in uses.values())


# --- what folding buys -----------------------------------------------------------------------

@pytest.mark.parametrize("board_name", ["corstone-300", "corstone-320"])
def test_compare_per_channel_with_the_per_tensor_form_of_the_same_clustering(board_name):
    board = load_board(board_name)
    per_channel = fixture_path("digits_b_cluster16_int8.tflite")
    per_tensor = fixture_path("digits_b_cluster16_int8_pertensor.tflite")
    c = compare_raw_and_folded(per_channel, per_tensor, board)
    assert c.raw.encoded_weight_bytes == compile_for_board(per_channel, board).encoded_weight_bytes
    # a layer-shared codebook encodes at least a quarter smaller and runs faster
    assert c.encoded_weight_delta < -0.25 * c.raw.encoded_weight_bytes
    assert c.total_cycle_delta < 0
    d = c.as_dict()
    assert d["encoded_weight_delta"] == c.folded.encoded_weight_bytes - c.raw.encoded_weight_bytes
    assert d["raw"]["total_cycles"] == c.raw.total_cycles


def test_compare_with_edgepack_fold():
    fold = pytest.importorskip("edgepack.fold")
    from edgepack.tflite import read_model, serialize_model

    path = fixture_path("digits_c_prune50_cluster16_sp_int8.tflite")
    folded = serialize_model(fold.fold_model(read_model(path), check_agreement=False).model)
    c = compare_raw_and_folded(path, folded, load_board("corstone-300"))
    assert c.folded.encoded_weight_bytes < c.raw.encoded_weight_bytes
    assert c.folded.original_weight_bytes == c.raw.original_weight_bytes
