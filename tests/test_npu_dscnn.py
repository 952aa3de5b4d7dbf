"""Specification: a DS-CNN keyword-spotting model (first layer a 10x4 CONV_2D, stride 2, on a
49x10x1 input) runs bit-exactly in the functional model on Ethos-U65-256 as on every U55.

It used not to on the U65 (issue 15: operator 0 differed, outputs saturated). The cause was the
model, not the NPU: Vela compiles Dedicated_Sram systems to stage weights and scales in
`scratch_fast` (base pointer 2), which its offline plan places at the same arena offset as
`scratch`, because the Ethos-U driver points base pointer 2 at its own fast memory (the SRAM
cache) at invoke time. The runner aliased the two, so each weight DMA overwrote the feature map
just written."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgepack.build import build
from edgepack.npu import run_vela_model
from edgepack.npu.decoder import decode_command_stream, parse_driver_payload
from edgepack.npu.runner import read_tflite
from edgepack.sim import run_project

from .dscnn_model import ds_cnn
from .firmware_support import needs
from .npu_support import U55_CONFIGS, compile_vela, tflm_batch


@pytest.fixture(scope="module")
def model() -> bytes:
    return ds_cnn()


@pytest.mark.parametrize("accel", U55_CONFIGS + ["ethos-u65-256"])
def test_ds_cnn_is_bit_exact_with_tflm_on_64_random_inputs(model, accel):
    x = np.random.default_rng(11).integers(-128, 128, (64, 1, 49, 10, 1), dtype=np.int8)
    want = tflm_batch(model, [x])[0]
    got = run_vela_model(compile_vela(model, accel), [x])[0]
    assert len(np.unique(want)) > 4  # the model carries information (no saturated layer)
    np.testing.assert_array_equal(got, want)


def test_u65_stages_weights_in_scratch_fast_which_the_plan_puts_at_scratchs_offset(model):
    """Why the runner gives base pointer 2 memory of its own: on U65 (Dedicated_Sram) the
    command stream DMAs weights into region 2 while feature maps live in region 1 at the same
    planned offset; on U55 (Shared_Sram) region 2 is never used."""
    m = read_tflite(compile_vela(model, "ethos-u65-256").read_bytes())
    sg = m.subgraphs[0]
    (op,) = sg.operators
    names = [sg.tensors[i].name.decode() for i in op.inputs[:4]]
    assert names == ["ethos_u_command_stream", "read_only", "scratch", "scratch_fast"]
    md = next(md for md in m.metadata if md.name == b"OfflineMemoryAllocation")
    offsets = np.frombuffer(bytes(np.asarray(m.buffers[md.buffer].data, np.uint8)), "<i4")[3:]
    assert offsets[op.inputs[2]] == offsets[op.inputs[3]] == 0
    cms = bytes(np.asarray(m.buffers[sg.tensors[op.inputs[0]].buffer].data, np.uint8))
    commands = decode_command_stream(parse_driver_payload(cms).command_stream)
    weight_regions = {c.param for c in commands if c.name == "NPU_SET_WEIGHT_REGION"}
    assert weight_regions == {2}
    u55 = read_tflite(compile_vela(model, "ethos-u55-128").read_bytes())
    cms = bytes(np.asarray(u55.buffers[u55.subgraphs[0].tensors[0].buffer].data, np.uint8))
    regions = {c.param for c in decode_command_stream(parse_driver_payload(cms).command_stream)
               if c.name.endswith("_REGION") and "DMA" not in c.name}
    assert 2 not in regions


def test_ds_cnn_project_for_corstone_300_u65_passes_in_the_functional_model(model, tmp_path):
    src = tmp_path / "ds_cnn.tflite"
    src.write_bytes(model)
    build(str(src), "corstone-300-u65", tmp_path / "fw", cpu_only=True)
    info = json.loads((tmp_path / "fw" / "build.json").read_text())
    assert info["npu"] == "ethos-u65-256" and info["vela"]["cpu_operators"] == []
    (r,) = run_project(tmp_path / "fw", sim="npu-model")
    assert r.passed, r.failure
    assert r.result_line.endswith(", 0 mismatched bytes")


@needs("arm-none-eabi-gcc", "qemu-system-arm", "cmake", "ninja")
def test_ds_cnn_firmware_for_corstone_300_u65_gives_the_npu_its_own_fast_memory(model, tmp_path):
    """The firmware's plan points base pointer 2 (scratch_fast) at a buffer of its own, not at
    scratch's offset: co-simulated under QEMU the device's outputs match byte for byte."""
    src = tmp_path / "ds_cnn.tflite"
    src.write_bytes(model)
    build(str(src), "corstone-300-u65", tmp_path / "fw")
    info = json.loads((tmp_path / "fw" / "build.json").read_text())
    (step,) = info["npu_steps"]
    fast = next(r for r in step["regions"] if r["index"] == 2)
    scratch = next(r for r in step["regions"] if r["index"] == 1)
    assert fast["arena_offset"] >= scratch["arena_offset"] + scratch["bytes"] or \
        fast["arena_offset"] + fast["bytes"] <= scratch["arena_offset"]
    (r,) = run_project(tmp_path / "fw", sim="auto")
    assert r.passed, r.failure
