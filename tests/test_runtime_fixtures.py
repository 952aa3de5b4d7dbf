"""Spec: every layer of every fixture model, lowered by codegen as `edgepack build` lowers it,
runs bit-exactly through the runtime's kernels, with dense weights and with palette weights
(codebook = sorted unique int8 values of the layer's weight tensor, bits = ceil(log2 K)), layer
by layer against TFLM on real inputs."""
import ctypes
from pathlib import Path

import numpy as np
import pytest

from edgepack.packing import pack_indices
from tests.opmodels import run_tflm
from tests.runtime_harness import Runtime
from tests.runtime_lowering import load_model, lower_all, single_op_from

FIXTURES = Path(__file__).parent / "fixtures"
MODELS = sorted(p.name for p in FIXTURES.glob("*.tflite"))
N_IMAGES = 16


@pytest.fixture(scope="module")
def rt():
    return Runtime()


def quantized_inputs(model, n=N_IMAGES):
    x = np.load(FIXTURES / "digits_test.npz")["x"][:n]
    q = model.tensors[model.inputs[0]].quantization
    return np.clip(np.round(x / q.scale[0]) + q.zero_point[0], -128, 127).astype(np.int8)


@pytest.mark.parametrize("name", MODELS)
def test_every_layer_bit_exact(rt, name):
    model = load_model(FIXTURES / name)
    xs = quantized_inputs(model)
    by_form = {f: lower_all(model, f) for f in ("dense", "palette")}
    checked = 0
    for k in range(len(model.operators)):
        single = single_op_from(model, k)
        forms = ["dense", "palette"] if by_form["dense"][k].weight_bytes else ["dense"]
        lowered = {f: by_form[f][k] for f in forms}
        nxt = []
        for img in xs:
            x = img.reshape(lowered["dense"].in_shape)
            expected = run_tflm(single, [x])
            for f, lw in lowered.items():
                got = lw.run(rt, x)
                mism = int(np.sum(got.ravel() != expected.ravel()))
                assert mism == 0, f"{name} op {k} ({lw.kernel}, {f}): {mism} mismatched bytes"
                checked += 1
            nxt.append(expected)
        xs = np.stack(nxt)
    assert checked >= len(model.operators) * N_IMAGES


@pytest.mark.parametrize("name", MODELS)
def test_palette_form_of_real_layers(name):
    """Palette form of each weighted layer: K = number of distinct int8 values, bits = ceil(log2 K)."""
    model = load_model(FIXTURES / name)
    for lw in lower_all(model, "palette"):
        if lw.weight_bytes:
            wt = lw.params.weights
            dense = np.asarray(model.tensors[model.operators[lw.step.index].inputs[1]].data, np.int8)
            k = len(np.unique(dense))
            assert wt.form == 1 and wt.num_codes == k and lw.step.weights_form.endswith(f"K={k}")
            assert wt.bits == max(1, int(np.ceil(np.log2(k))))
            codebook = np.ctypeslib.as_array((ctypes.c_int8 * k).from_address(wt.codebook))
            np.testing.assert_array_equal(codebook, np.unique(dense))
            rows = 1 if lw.kernel == "depthwise_conv2d" else dense.shape[0]
            assert wt.data_bytes == len(pack_indices(np.zeros((rows, dense.size // rows), np.uint8), wt.bits))
