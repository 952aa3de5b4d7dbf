"""Issue 3's done-when figures, measured: real Vela 5.2 runs (ethos-u55-128, the corstone-300
board's configuration) and LiteRT accuracy on the digits test split."""

from __future__ import annotations

import numpy as np
import pytest

from edgepack.boards import load_board
from edgepack.fold import fold_model
from edgepack.tflite import read_model, serialize_model
from edgepack.vela import compare_raw_and_folded
from tests.conftest import fixture_path


def accuracy(model_bytes: bytes) -> float:
    """int8 test accuracy on digits_test.npz (x quantized with the input scale/zero point)."""
    from ai_edge_litert.interpreter import Interpreter

    data = np.load(fixture_path("digits_test.npz"))
    it = Interpreter(model_content=model_bytes)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    scale, zp = inp["quantization"]
    x = np.clip(np.round(data["x"] / scale) + zp, -128, 127).astype(np.int8)
    hits = 0
    for xi, yi in zip(x, data["y"]):
        it.set_tensor(inp["index"], xi[None])
        it.invoke()
        hits += int(it.get_tensor(out["index"]).argmax() == yi)
    return hits / len(data["y"])


@pytest.fixture(scope="module")
def corstone_300():
    return load_board("corstone-300")


def fold_and_measure(name: str, board):
    model = read_model(fixture_path(name))
    result = fold_model(model, 16, check_agreement=False, board=board)
    raw, folded = serialize_model(model), serialize_model(result.model)
    return model, result, compare_raw_and_folded(raw, folded, board), accuracy(folded)


def test_clustered_model_b(corstone_300):
    model, result, vela, acc = fold_and_measure("digits_b_cluster16_int8.tflite", corstone_300)
    for ft in result.tensors:
        assert np.unique(result.model.tensors[ft.tensor].data).size <= 16
        # on padded layers 0 takes one of the 16 palette slots (issue 12): 15 values + 0
        assert ft.sqnr_db >= (25 if ft.pads_zeros and 0 not in model.tensors[
            ft.tensor].data else 40), ft.name
    assert vela.raw.encoded_weight_bytes == 32288
    assert vela.folded.encoded_weight_bytes <= 19500
    assert acc >= 0.978


def test_pruned_clustered_model_c(corstone_300):
    model, result, vela, acc = fold_and_measure("digits_c_prune50_cluster16_sp_int8.tflite",
                                                corstone_300)
    for ft in result.tensors:
        before = model.tensors[ft.tensor].data
        assert np.all(result.model.tensors[ft.tensor].data[before == 0] == 0)
    assert vela.raw.encoded_weight_bytes == 21152
    assert vela.folded.encoded_weight_bytes <= 14500
    assert acc >= 0.970
