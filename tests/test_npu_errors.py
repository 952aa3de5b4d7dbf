"""Specification: a Vela output the NPU model cannot execute exactly raises ModelError with a clear
message naming the command-stream offset; it never returns an answer."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from edgepack.errors import ModelError
from edgepack.npu import decode_command_stream, parse_driver_payload, run_command_stream, run_vela_model, run_vela_raw
from tests.conftest import fixture_path
from tests.npu_support import compile_vela
from tests.test_npu_ops import _check, _npu_only

MODEL = fixture_path("digits_a_baseline_int8.tflite")


def _stream():
    npz = np.load(compile_vela(MODEL, "ethos-u55-128", "raw"), allow_pickle=True)
    return npz["cmd_data"].tobytes()


def test_unknown_command_names_its_offset():
    payload = parse_driver_payload(_stream())
    words = list(struct.unpack(f"<{len(payload.command_stream) // 4}I", payload.command_stream))
    words[3] = 0x0000_00FE  # cmd0 opcode 0x0FE does not exist (word 3 is NPU_SET_DMA0_DST_REGION)
    with pytest.raises(ModelError, match=r"offset 0x00000c: unknown cmd0 opcode 0x0fe"):
        decode_command_stream(struct.pack(f"<{len(words)}I", *words))


def test_stream_ending_inside_a_command():
    cs = parse_driver_payload(_stream()).command_stream
    with pytest.raises(ModelError, match=r"offset 0x000004: stream ends inside NPU_SET_DMA0_SRC"):
        decode_command_stream(cs[:8])


def test_stream_without_stop():
    cs = parse_driver_payload(_stream()).command_stream
    with pytest.raises(ModelError, match="without NPU_OP_STOP"):
        decode_command_stream(cs[:-4])


def test_payload_shorter_than_declared():
    data = _stream()
    with pytest.raises(ModelError, match="declares a command stream of"):
        parse_driver_payload(data[:200])


def test_not_a_driver_payload():
    with pytest.raises(ModelError, match="COP1"):
        parse_driver_payload(b"XXXX" + bytes(60))


def test_ethos_u85_is_rejected():
    vm = compile_vela(MODEL, "ethos-u85-256")
    x = np.zeros((1, 16, 16, 1), np.int8)
    with pytest.raises(ModelError, match="(?i)u85|COP1|product|unsupported"):
        run_vela_model(vm, [x])


def test_unmodelled_feature_fails_with_offset():
    """A register value the model does not implement (IFM upscaling) stops execution with a message."""
    payload = parse_driver_payload(_stream())
    cs = bytearray(payload.command_stream)
    for cmd in decode_command_stream(bytes(cs)):
        if cmd.name == "NPU_SET_IFM_UPSCALE":
            cs[cmd.offset:cmd.offset + 4] = struct.pack("<I", 0x0107 | (1 << 16))
            break
    data = _stream()
    patched = data[:payload.stream_offset] + bytes(cs) + data[payload.stream_offset + len(cs):]
    regions = {0: np.zeros((1, 1 << 16), np.uint8), 1: np.zeros((1, 1 << 16), np.uint8)}
    with pytest.raises(ModelError, match=r"offset 0x[0-9a-f]{6} \(NPU_OP_CONV\): IFM upscaling"):
        run_command_stream(patched, regions, 1)


def test_cpu_operators_need_a_runner():
    """MAXIMUM with different input/output quantization stays on the CPU."""
    from tests.opmodels import T, single_op_model
    from ai_edge_litert import schema_py_generated as tfl

    model = single_op_model(tfl.BuiltinOperator.MAXIMUM, [T([1, 4, 4, 8], s=0.05, zp=3), T([1, 4, 4, 8], s=0.05, zp=-7)],
                            [T([1, 4, 4, 8], s=0.05, zp=-2)])
    vm = compile_vela(model)
    assert not _npu_only(vm)
    with pytest.raises(ModelError, match="runs on the CPU and no cpu_op_runner"):
        run_vela_model(vm, [np.zeros((1, 4, 4, 8), np.int8)] * 2)
    _check(model, "ethos-u55-128")  # with the TFLM single-op runner it is bit-exact


def test_raw_input_shape_mismatch():
    with pytest.raises(ModelError, match="does not fit"):
        run_vela_raw(compile_vela(MODEL, "ethos-u55-128", "raw"), [np.zeros((3, 5), np.int8)])


def test_readme_lists_every_rule_with_its_evidence():
    from pathlib import Path

    from edgepack.npu import RULES

    text = (Path(__file__).parent.parent / "edgepack" / "npu" / "README.md").read_text()
    for r in RULES.values():
        assert f"**{r.name}**: {r.statement}" in text and r.evidence in text, r.name
