"""Spec: every layer of every fixture model runs bit-exactly through the runtime's kernels,
with dense weights and with palette weights (codebook = sorted unique int8 values of the
layer's weight tensor, bits = ceil(log2 K)), layer by layer against TFLM on real inputs."""
from pathlib import Path

import numpy as np
import pytest

from tests.opmodels import run_tflm
from tests.runtime_harness import Runtime
from tests.runtime_lowering import load_model, lower, qparams, single_op_from

FIXTURES = Path(__file__).parent / "fixtures"
MODELS = sorted(p.name for p in FIXTURES.glob("*.tflite"))
N_IMAGES = 16


@pytest.fixture(scope="module")
def rt():
    return Runtime()


def quantized_inputs(model, n=N_IMAGES):
    x = np.load(FIXTURES / "digits_test.npz")["x"][:n]
    t_in = model.subgraphs[0].tensors[model.subgraphs[0].inputs[0]]
    s, zp, _ = qparams(t_in)
    return np.clip(np.round(x / s[0]) + zp[0], -128, 127).astype(np.int8)


@pytest.mark.parametrize("name", MODELS)
def test_every_layer_bit_exact(rt, name):
    model = load_model(FIXTURES / name)
    sg = model.subgraphs[0]
    xs = quantized_inputs(model)
    checked = 0
    for k in range(len(sg.operators)):
        single = single_op_from(model, k)
        forms = ["dense", "palette"] if lower(model, k).weight_bytes else ["dense"]
        lowered = {f: lower(model, k, f) for f in forms}
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
    assert checked >= len(sg.operators) * N_IMAGES


@pytest.mark.parametrize("name", MODELS)
def test_palette_form_of_real_layers(name):
    """Palette form of each weighted layer: K = number of distinct int8 values, bits = ceil(log2 K)."""
    model = load_model(FIXTURES / name)
    for k in range(len(model.subgraphs[0].operators)):
        lw = lower(model, k, "palette")
        if lw.weight_bytes:
            wf = lw.keep[1]
            assert 1 <= wf.num_codes <= 256
            assert wf.bits == max(1, int(np.ceil(np.log2(wf.num_codes))))
            np.testing.assert_array_equal(np.unique(wf.dense), wf.codebook)
