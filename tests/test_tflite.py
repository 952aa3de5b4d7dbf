"""Reading and writing TFLite models through the official schema."""

import numpy as np
import pytest

from edgepack.tflite import parse_model, read_model, serialize_model
from tests.conftest import INT8_MODELS, fixture_path

try:
    from ai_edge_litert.interpreter import Interpreter
except ImportError:  # pragma: no cover
    from tflite_runtime.interpreter import Interpreter


def litert_outputs(model_bytes: bytes, x: np.ndarray) -> np.ndarray:
    it = Interpreter(model_content=model_bytes)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"])


def test_graph_model_of_the_digits_network(digits_b):
    m = read_model(digits_b)
    assert [op.opcode for op in m.operators] == [
        "CONV_2D", "MAX_POOL_2D", "CONV_2D", "MAX_POOL_2D", "RESHAPE",
        "FULLY_CONNECTED", "FULLY_CONNECTED", "SOFTMAX"]
    conv = m.operators[0]
    assert conv.fused_activation == "RELU"
    assert conv.options["padding"] in ("SAME", "VALID")
    w = m.tensors[conv.inputs[1]]
    assert w.dtype == "int8" and w.shape == (16, 3, 3, 1) and w.data.shape == w.shape
    assert w.quantization.per_channel and w.quantization.scale.size == 16
    assert m.tensors[conv.inputs[2]].dtype == "int32"
    assert m.tensors[m.inputs[0]].shape == (1, 16, 16, 1)
    assert len(m.sha256) == 64


@pytest.mark.parametrize("name", INT8_MODELS)
def test_unchanged_model_round_trips_to_identical_outputs(name, rng):
    original = fixture_path(name).read_bytes()
    written = serialize_model(parse_model(original))
    x = rng.integers(-128, 128, (1, 16, 16, 1), dtype=np.int8)
    for _ in range(5):
        x = rng.integers(-128, 128, (1, 16, 16, 1), dtype=np.int8)
        assert np.array_equal(litert_outputs(original, x), litert_outputs(written, x))
    # writing is deterministic and a fixed point
    assert serialize_model(parse_model(written)) == written


def test_changed_weights_and_scales_are_written_back(digits_b, rng):
    m = read_model(digits_b)
    fc = m.tensors[m.operators[6].inputs[1]]
    fc.data = np.clip(fc.data.astype(np.int16) // 2, -127, 127).astype(np.int8)
    fc.quantization.scale = (fc.quantization.scale * 2).astype(np.float32)
    again = parse_model(serialize_model(m))
    fc2 = again.tensors[fc.index]
    assert np.array_equal(fc2.data, fc.data)
    assert np.array_equal(fc2.quantization.scale, fc.quantization.scale)
    # and LiteRT sees the change: outputs move
    x = rng.integers(-128, 128, (1, 16, 16, 1), dtype=np.int8)
    changed = serialize_model(m)
    assert changed != digits_b.read_bytes()
    litert_outputs(changed, x)  # loads and runs


def test_weight_buffers_are_16_byte_aligned(digits_b):
    m = read_model(digits_b)
    data = serialize_model(m)
    fb_model = parse_model(data)
    for op, t in fb_model.weight_tensors():
        raw = t.data.tobytes()
        assert data.find(raw) % 16 == 0
