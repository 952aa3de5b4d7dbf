"""Specification: the command-stream decoder reads exactly what Vela wrote.  For every fixture model
and every U55 MAC configuration, each command of Vela's own --verbose-register-command-stream
printout (offset, name, raw words, every field) equals the decoder's output."""

from __future__ import annotations

import re

import numpy as np
import pytest
from ethosu.vela.ethos_u55_regs import ethos_u55_regs as regs

from edgepack.npu import decode_command_stream, format_command, parse_driver_payload
from tests.conftest import INT8_MODELS, fixture_path
from tests.npu_support import U55_CONFIGS, compile_vela, vela_printout

_LINE = re.compile(r"^0x([0-9a-f]{6}): ([0-9a-f]{8}| {8}) ([0-9a-f]{4}) ([0-9a-f]{4}) - (NPU_\w+)\s+(\d+)(?:, (.*))?$")

# Values of the enum names the C++ backend prints.  Names the Python register module defines
# are taken from it; the rest (the printout's own spellings) are listed here.
_ENUMS = {f"ELEMENTWISE_MODE_{e.name}": e.value for e in regs.elementwise_mode}
_ENUMS |= {f"POOLING_MODE_{e.name}": e.value for e in regs.pooling_mode}
_ENUMS |= {f"ACTIVATION_CLIP_RANGE_{e.name}": e.value for e in regs.clip_range}
_ENUMS |= {f"ACTIVATION_FORMAT_{e.name}": e.value for e in regs.data_format}
_ENUMS |= {f"ROUND_MODE_{k}": v for k, v in {"DBL": 0, "TRUNCATE": 1, "NATURAL": 2}.items()}
_ENUMS |= {f"ACTIVATION_FUNCTION_{k}": v for k, v in {"RELU": 0, "TANH": 3, "SIGMOID": 4}.items()}
_ENUMS |= {f"ACTIVATION_FUNCTION_TABLE_{n}": 16 + n for n in range(8)}
_ENUMS |= {"ACTIVATION_TYPE_UNSIGNED": 0, "ACTIVATION_TYPE_SIGNED": 1,
           "ACTIVATION_PRECISION_B8": 0, "ACTIVATION_PRECISION_B16": 1, "ACTIVATION_PRECISION_B32": 2,
           "IFM_SCALE_MODE_OPA_OPB_16": 0, "IFM_SCALE_MODE_OPA_32": 1, "IFM_SCALE_MODE_OPB_32": 2,
           "OFM_SCALE_MODE_PER_CHANNEL": 0, "OFM_SCALE_MODE_GLOBAL": 1,
           "DMA_REGION_MODE_EXTERNAL": 0, "DMA_REGION_MODE_INTERNAL": 1,
           "DMA_STRIDE_MODE_D1": 0, "DMA_STRIDE_MODE_D2": 1, "DMA_STRIDE_MODE_D3": 2,
           "BROADCAST_MODE_DISABLE": 0, "BROADCAST_MODE_ENABLE": 1,
           "IFM2_OPERAND_ORDER_ORDER_B": 0, "IFM2_OPERAND_ORDER_ORDER_A": 1,
           "WEIGHT_ORDER_DEPTH_FIRST": 0, "WEIGHT_ORDER_PART_KERNEL_FIRST": 1,
           "KERNEL_DILATION_NONE": 0, "KERNEL_DILATION_X2": 1,
           "KERNEL_DECOMPOSITION_D8X8": 0, "KERNEL_DECOMPOSITION_D4X4": 1,
           "IFM_UPSCALE_MODE_NONE": 0, "IFM_UPSCALE_MODE_NEAREST": 1, "IFM_UPSCALE_MODE_ZEROS": 2,
           "ACC_FORMAT_I32": 0, "ACC_FORMAT_I40": 1, "ACC_FORMAT_F16": 2}

_PREC_IFM = {"activation_type": lambda f: f["precision"] & 1, "activation_precision": lambda f: f["precision"] >> 2,
             "activation_format": lambda f: f["format"]}
# printout field -> value from the decoder's fields (named after the Python register structs)
_FIELD = {
    "NPU_SET_IFM_PRECISION": _PREC_IFM | {"scale_mode": lambda f: f["scale_mode"], "round_mode": lambda f: f["round_mode"]},
    "NPU_SET_IFM2_PRECISION": _PREC_IFM,
    "NPU_SET_OFM_PRECISION": {"activation_type": lambda f: f["precision"] & 1,
                              "activation_precision": lambda f: f["precision"] >> 1,
                              "activation_format": lambda f: f["format"], "scale_mode": lambda f: f["scaling"],
                              "round_mode": lambda f: f["rounding"]},
    "NPU_SET_ACTIVATION": {"activation_function": lambda f: f["type"],
                           "activation_clip_range": lambda f: f["act_clip_range"]},
    "NPU_SET_IFM2_BROADCAST": {"broadcast_h": lambda f: f["broadcast_height"], "broadcast_w": lambda f: f["broadcast_width"],
                               "broadcast_c": lambda f: f["broadcast_depth"], "operand_order": lambda f: f["operand_order"],
                               "broadcast_constant": lambda f: f["broadcast_scalar"]},
    "NPU_OP_POOL": {"pooling_mode": lambda f: f["mode"]},
    "NPU_OP_ELEMENTWISE": {"elementwise_mode": lambda f: f["mode"]},
    "NPU_SET_IFM_UPSCALE": {"mode": lambda f: f["mode"]},
}
for _n in ("NPU_SET_DMA0_SRC_REGION", "NPU_SET_DMA0_DST_REGION"):
    _FIELD[_n] = {"region": lambda f: f["region"], "region_mode": lambda f: f["internal"],
                  "stride_mode": lambda f: f["stride_mode"]}


def _value(text: str) -> int:
    text = text.strip()
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    if re.fullmatch(r"0x[0-9a-fA-F]+", text):
        return int(text, 16)
    assert text in _ENUMS, f"enum value {text!r} has no known encoding"
    return _ENUMS[text]


def _expected(cmd, field: str) -> int:
    table = _FIELD.get(cmd.name)
    if table is not None and field in table:
        return table[field](cmd.fields)
    if field in ("addr", "length") or (field == "scale" and cmd.is_cmd1):
        return cmd.payload
    if field in cmd.fields:
        return cmd.fields[field]
    return cmd.param  # single-valued parameters (pad, depth_m1, zero_point, k, ...)


def parse_printout(text: str) -> list[tuple]:
    out = []
    for line in text.splitlines():
        m = _LINE.match(line)
        if m:
            off, pay, param, code, name, dec, flds = m.groups()
            fields = dict(kv.split(" = ", 1) for kv in flds.split(", ")) if flds else {}
            out.append((int(off, 16), None if pay.strip() == "" else int(pay, 16), int(param, 16), int(code, 16),
                        name, int(dec), fields))
    return out


@pytest.mark.parametrize("accel", U55_CONFIGS)
@pytest.mark.parametrize("model", INT8_MODELS)
def test_decoder_matches_vela_printout(model, accel):
    printed = parse_printout(vela_printout(fixture_path(model), accel))
    npz = np.load(compile_vela(fixture_path(model), accel, "raw"), allow_pickle=True)
    payload = parse_driver_payload(npz["cmd_data"].tobytes())
    assert payload.macs == int(accel.rsplit("-", 1)[1]) and payload.product == 0
    commands = decode_command_stream(payload.command_stream)
    assert len(printed) == len(commands) > 100
    for (off, pay, param, code, name, dec, fields), cmd in zip(printed, commands):
        where = format_command(cmd)
        assert (cmd.offset, cmd.name, cmd.param, cmd.payload) == (off, name, param, pay), where
        assert cmd.opcode | (0x4000 if cmd.is_cmd1 else 0) == code and dec == param, where
        for fname, text in fields.items():
            assert _expected(cmd, fname) == _value(text), f"{where}: field {fname} printed as {text}"
