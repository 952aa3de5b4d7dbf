"""`edgepack fold` on the command line: the report, JSON for tools, and bad input refused with
one line and nothing written."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgepack.cli import main
from edgepack.tflite import read_model
from tests.conftest import edit_model, fixture_path

B = str(fixture_path("digits_b_cluster16_int8.tflite"))


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_fold_writes_a_model_and_reports_each_tensor(tmp_path, capsys):
    out = tmp_path / "folded.tflite"
    code, text, _ = run(capsys, "fold", B, "-o", str(out), "--clusters", "16")
    text = " ".join(text.split())  # rich wraps lines at the console width
    assert code == 0 and out.exists()
    assert "top-1 agreement" in text and f"wrote {out}" in text
    assert len(read_model(out).weight_tensors()) == 4


def test_fold_json(tmp_path, capsys):
    out = tmp_path / "folded.tflite"
    code, text, _ = run(capsys, "fold", B, "-o", str(out), "--json")
    info = json.loads(text)
    assert code == 0 and info["output"] == str(out) and info["clusters"] == "auto"
    assert [w["clusters"] for w in info["weights"]] == [16, 16, 16, 16]
    w = info["weights"][0]
    assert w["index_bits"] == 4 and len(w["codebook"]) == 16 and w["sqnr_db"] >= 40
    assert info["min_sqnr_db"] >= 40 and info["folded_tensors"] == 4
    assert info["agreement"]["samples"] == 32 and 0 <= info["agreement"]["top1_agreement"] <= 1


def test_fold_is_deterministic(tmp_path, capsys):
    a, b = tmp_path / "a.tflite", tmp_path / "b.tflite"
    run(capsys, "fold", B, "-o", str(a), "--clusters", "8")
    run(capsys, "fold", B, "-o", str(b), "--clusters", "8")
    assert a.read_bytes() == b.read_bytes()


def test_calibration_file(tmp_path, capsys):
    x = np.load(fixture_path("digits_test.npz"))["x"][:20]
    np.save(tmp_path / "x.npy", x)
    code, text, _ = run(capsys, "fold", B, "-o", str(tmp_path / "f.tflite"),
                        "--calibration", str(tmp_path / "x.npy"), "--json")
    assert code == 0 and json.loads(text)["agreement"]["samples"] == 20


def refused(capsys, tmp_path, argv, code, *words):
    out = tmp_path / "out.tflite"
    got, text, err = run(capsys, "fold", *argv, "-o", str(out))
    assert got == code
    assert err.count("\n") == 1 and err.startswith("edgepack: error: ")
    for w in words:
        assert w in err
    assert not out.exists() and list(tmp_path.iterdir()) == [p for p in tmp_path.iterdir()
                                                             if p.suffix == ".npy"]


@pytest.mark.parametrize("k", ["0", "257", "-3", "lots"])
def test_clusters_outside_range(tmp_path, capsys, k):
    refused(capsys, tmp_path, [B, "--clusters", k], 2, "--clusters", "1..256", k)


def test_calibration_shape_and_dtype(tmp_path, capsys):
    np.save(tmp_path / "small.npy", np.zeros((3, 8, 8, 1), np.float32))
    refused(capsys, tmp_path, [B, "--calibration", str(tmp_path / "small.npy")], 2,
            "[3, 8, 8, 1]", "[1, 16, 16, 1]", "serving_default_input:0")
    np.save(tmp_path / "u8.npy", np.zeros((3, 16, 16, 1), np.uint8))
    refused(capsys, tmp_path, [B, "--calibration", str(tmp_path / "u8.npy")], 2,
            "uint8", "int8")
    refused(capsys, tmp_path, [B, "--calibration", str(tmp_path / "missing.npy")], 2,
            "missing.npy", "no such")
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    refused(capsys, tmp_path, [B, "--calibration", str(tmp_path / "junk.npy")], 2, "junk.npy")
    (tmp_path / "junk.npy").unlink()


def test_model_without_int8_weights(tmp_path, capsys):
    from ai_edge_litert import schema_py_generated as tfl

    def to_uint8(m):
        for op in m.subgraphs[0].operators:
            t = m.subgraphs[0].tensors[op.inputs[1]] if len(op.inputs) > 1 else None
            if t is not None and t.type == tfl.TensorType.INT8:
                t.type = tfl.TensorType.UINT8

    bad = tmp_path / "u8w.tflite"
    bad.write_bytes(edit_model("digits_b_cluster16_int8.tflite", to_uint8))
    out = tmp_path / "out.tflite"
    code, _, err = run(capsys, "fold", str(bad), "-o", str(out))
    assert code == 1 and "u8w.tflite: no int8 weight tensors" in err and not out.exists()


def test_missing_model_and_bad_output(tmp_path, capsys):
    refused(capsys, tmp_path, [str(tmp_path / "nope.tflite")], 2, "nope.tflite", "no such file")
    code, _, err = run(capsys, "fold", B, "-o", str(tmp_path / "no" / "dir" / "x.tflite"))
    assert code == 2 and "output directory does not exist" in err
    code, _, err = run(capsys, "fold", B, "-o", str(tmp_path))
    assert code == 2 and "is a directory" in err


def test_max_error_and_clusters_are_alternatives(tmp_path, capsys):
    refused(capsys, tmp_path, [B, "--clusters", "8", "--max-error", "40"], 2, "alternatives")
    refused(capsys, tmp_path, [B, "--max-error", "-1"], 2, "--max-error")


def test_help_teaches(capsys):
    with pytest.raises(SystemExit):
        main(["fold", "--help"])
    text = capsys.readouterr().out
    for words in ("--clusters", "--max-error", "--calibration", "float32", "examples"):
        assert words in text
