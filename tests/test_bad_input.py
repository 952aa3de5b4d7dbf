"""Bad input to `edgepack inspect`: one line naming the file and the problem, exit 2 or 1."""

import os
import subprocess
import sys

import numpy as np
import pytest

from edgepack.cli import main
from tests.conftest import edit_model, fixture_path, retype_activations

DIGITS = "digits_b_cluster16_int8.tflite"


def run_inspect(path, capsys):
    code = main(["inspect", str(path)])
    err = capsys.readouterr().err
    return code, err


def assert_one_line_error(code, err, expected_code, path, *words):
    assert code == expected_code
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("edgepack: error: ") and str(path) in lines[0]
    assert "Traceback" not in err
    for w in words:
        assert w in lines[0]


def write(tmp_path, name, data: bytes):
    p = tmp_path / name
    p.write_bytes(data)
    return p


def test_missing_path_is_a_usage_error(tmp_path, capsys):
    p = tmp_path / "nope.tflite"
    assert_one_line_error(*run_inspect(p, capsys), 2, p, "no such file")


def test_directory_is_a_usage_error(tmp_path, capsys):
    assert_one_line_error(*run_inspect(tmp_path, capsys), 2, tmp_path, "directory")


def test_empty_file(tmp_path, capsys):
    p = write(tmp_path, "empty.tflite", b"")
    assert_one_line_error(*run_inspect(p, capsys), 1, p, "empty")


def test_random_bytes(tmp_path, capsys):
    p = write(tmp_path, "noise.tflite", np.random.default_rng(1).bytes(4096))
    assert_one_line_error(*run_inspect(p, capsys), 1, p, "not a TFLite model")


def test_wrong_file_identifier(tmp_path, capsys):
    data = bytearray(fixture_path(DIGITS).read_bytes())
    data[4:8] = b"TFL2"
    p = write(tmp_path, "old.tflite", bytes(data))
    assert_one_line_error(*run_inspect(p, capsys), 1, p, "TFL2")


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.999])
def test_truncated_model(tmp_path, capsys, keep):
    data = fixture_path(DIGITS).read_bytes()
    p = write(tmp_path, "cut.tflite", data[: int(len(data) * keep)])
    assert_one_line_error(*run_inspect(p, capsys), 1, p)


def test_float_model(tmp_path, capsys):
    p = write(tmp_path, "float.tflite", edit_model(DIGITS, lambda m: retype_activations(m, 0)))
    assert_one_line_error(*run_inspect(p, capsys), 1, p, "float32", "int8")


def test_int16_activation_model(tmp_path, capsys):
    p = write(tmp_path, "a16.tflite", edit_model(DIGITS, lambda m: retype_activations(m, 7)))
    assert_one_line_error(*run_inspect(p, capsys), 1, p, "int16")


def test_buffer_offset_outside_the_file(tmp_path, capsys):
    def edit(m):
        w = m.subgraphs[0].tensors[m.subgraphs[0].operators[0].inputs[1]]
        m.buffers[w.buffer].data = None
        m.buffers[w.buffer].offset = 10_000_000
        m.buffers[w.buffer].size = 144

    p = write(tmp_path, "offset.tflite", edit_model(DIGITS, edit))
    assert_one_line_error(*run_inspect(p, capsys), 1, p, "outside the file")


def test_tensor_shape_larger_than_its_buffer(tmp_path, capsys):
    def edit(m):
        w = m.subgraphs[0].tensors[m.subgraphs[0].operators[0].inputs[1]]
        w.shape = np.array([1 << 20, 3, 3, 1], np.int32)

    p = write(tmp_path, "shape.tflite", edit_model(DIGITS, edit))
    assert_one_line_error(*run_inspect(p, capsys), 1, p, "needs", "bytes")


def test_console_script_prints_no_traceback(tmp_path):
    p = write(tmp_path, "noise.tflite", b"\x00" * 64)
    env = dict(os.environ)
    r = subprocess.run([sys.executable, "-m", "edgepack", "inspect", str(p)],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "edgepack build" in capsys.readouterr().out
