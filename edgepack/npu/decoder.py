"""Decoder of Vela's raw output: the driver payload (COP1 header) and the register command stream.

Every command and its fields come from the register definitions Vela ships
(`ethosu.vela.ethos_u55_regs.ethos_u55_regs`): the `cmd0` / `cmd1` opcode enums and, for each
command `NPU_X`, the ctypes structure `npu_x_t` whose `_fields_` give the bit layout.  Where
those structures only say `param` although the command has sub-fields (NPU_SET_KERNEL_STRIDE),
the sub-field layout is in `rules.PARAM_SUBFIELDS` with its source.

Word format (both backends: `register_command_stream_generator.py` CmdMode; C++ interface
`control` field): bits 0-9 opcode, bits 14-15 control (0 = cmd0: no payload, 1 = cmd1: one
32-bit payload word follows), bits 16-31 the 16-bit parameter.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from ethosu.vela.ethos_u55_regs import ethos_u55_regs as regs

from edgepack.errors import ModelError

from . import rules

_CMD0 = {e.value: e.name for e in regs.cmd0}
_CMD1 = {e.value: e.name for e in regs.cmd1}
_HEADER_FIELDS = {"cmd_code", "must_be_zero0", "must_be_zero", "payload_size"}


def _layout(name: str) -> list[tuple[str, int, int]]:
    """(field, lsb within the 16-bit param, width) of a command's parameter, from the regs module."""
    if name in rules.PARAM_SUBFIELDS:
        return rules.PARAM_SUBFIELDS[name]
    struct_t = getattr(regs, name.lower() + "_t")
    out, bit = [], 0
    for fname, _ctype, width in struct_t._fields_:
        if bit >= 16 and fname not in _HEADER_FIELDS and fname != "data" and not fname.startswith("reserved"):
            out.append((fname, bit - 16, width))
        bit += width
    return out


_LAYOUTS = {name: _layout(name) for name in list(_CMD0.values()) + list(_CMD1.values())}


@dataclass
class Command:
    """One decoded command. `offset` is the byte offset in the command stream."""

    offset: int
    name: str
    opcode: int
    param: int
    payload: int | None = None  # the 32-bit data word of a cmd1 command
    fields: dict[str, int] = field(default_factory=dict)

    @property
    def is_cmd1(self) -> bool:
        return self.payload is not None

    @property
    def is_operation(self) -> bool:
        return self.name.startswith("NPU_OP_")


@dataclass
class DriverPayload:
    """The COP1 driver payload: the NPU configuration word and the command stream."""

    macs: int  # MACs per cycle (32..512)
    product: int  # 0 = Ethos-U55, 1 = Ethos-U65 (config_r.product)
    shram_kib: int
    command_stream: bytes
    stream_offset: int  # byte offset of the command stream inside the payload


def parse_driver_payload(data: bytes) -> DriverPayload:
    """Parse Vela's driver payload (`cmd_data` in raw output; the command-stream tensor in tflite output).

    Layout (`ethosu/vela/driver_actions.py` create_driver_payload): fourcc "COP1", then driver
    actions: Config (tag, config_r word, id_r word), NOPs, CmdStream (tag with the length in words),
    then the command words.  Raises ModelError for anything else (e.g. Ethos-U85 payloads).
    """
    data = bytes(data)
    if len(data) < 8 or len(data) % 4:
        raise ModelError(f"NPU command stream payload too short or unaligned ({len(data)} bytes)")
    words = struct.unpack(f"<{len(data) // 4}I", data)
    if data[:4] != b"COP1":
        raise ModelError(f"NPU driver payload starts with {data[:4]!r}, expected b'COP1' (only Ethos-U55/U65 command streams are supported)")
    i, config = 1, None
    while i < len(words):
        tag = words[i]
        kind = tag & 0xFF
        if kind == 0x01:  # Config
            if i + 2 >= len(words):
                raise ModelError(f"driver payload ends inside the Config action at byte {4 * i}")
            c = regs.config_r()
            c.word = words[i + 1]
            config = c.bits
            i += 3
        elif kind == 0x05:  # NOP
            i += 1
        elif kind == 0x02:  # CmdStream
            n = ((tag >> 8) & 0xFF) << 16 | (tag >> 16)
            start = 4 * (i + 1)
            if start + 4 * n > len(data):
                raise ModelError(f"driver payload declares a command stream of {n} words but only {(len(data) - start) // 4} follow (byte {start})")
            if config is None:
                raise ModelError("driver payload has no Config action before the command stream")
            if config.product not in (0, 1):
                kind_name = "Ethos-U85" if config.product == 2 else "unknown"
                raise ModelError(f"unsupported NPU product {config.product} ({kind_name}) in the driver payload config "
                                 f"at byte {4 * i}: only Ethos-U55 (0) and Ethos-U65 (1) command streams are modelled")
            return DriverPayload(1 << config.macs_per_cc, config.product, config.shram_size,
                                 data[start:start + 4 * n], start)
        elif kind in (0x03, 0x04):  # ReadAPB, DumpSHRAM: debug actions without data
            i += 1
        else:
            raise ModelError(f"unknown driver action 0x{kind:02x} at payload byte {4 * i}")
    raise ModelError("driver payload has no command stream")


def decode_command_stream(stream: bytes) -> list[Command]:
    """Decode every command of a register command stream. Raises ModelError naming the offset on
    an unknown opcode, a bad control field, or a stream that ends inside a command."""
    stream = bytes(stream)
    if len(stream) % 4:
        raise ModelError(f"command stream length {len(stream)} is not a multiple of 4")
    n = len(stream) // 4
    words = struct.unpack(f"<{n}I", stream)
    out: list[Command] = []
    i = 0
    while i < n:
        w = words[i]
        off = 4 * i
        code, ctrl, param = w & 0x3FF, (w >> 14) & 3, w >> 16
        if (w >> 10) & 0xF:
            raise ModelError(f"command stream offset 0x{off:06x}: reserved bits set in word 0x{w:08x}")
        if ctrl == 0:
            name = _CMD0.get(code)
            if name is None:
                raise ModelError(f"command stream offset 0x{off:06x}: unknown cmd0 opcode 0x{code:03x}")
            payload = None
            i += 1
        elif ctrl == 1:
            name = _CMD1.get(code)
            if name is None:
                raise ModelError(f"command stream offset 0x{off:06x}: unknown cmd1 opcode 0x{code:03x}")
            if i + 1 >= n:
                raise ModelError(f"command stream offset 0x{off:06x}: stream ends inside {name} (payload word missing)")
            payload = words[i + 1]
            i += 2
        else:
            raise ModelError(f"command stream offset 0x{off:06x}: unsupported control field {ctrl} in word 0x{w:08x}")
        fields = {f: (param >> lsb) & ((1 << width) - 1) for f, lsb, width in _LAYOUTS[name]}
        out.append(Command(off, name, code, param, payload, fields))
    if not out or out[-1].name != "NPU_OP_STOP":
        raise ModelError(f"command stream offset 0x{4 * n:06x}: stream ends without NPU_OP_STOP")
    return out


def format_command(cmd: Command) -> str:
    """One line like Vela's --verbose-register-command-stream printout (for messages and debugging)."""
    pay = f"{cmd.payload:08x}" if cmd.is_cmd1 else " " * 8
    code = cmd.opcode | (0x4000 if cmd.is_cmd1 else 0)
    flds = ", ".join(f"{k} = {v}" for k, v in cmd.fields.items())
    return f"0x{cmd.offset:06x}: {pay} {cmd.param:04x} {code:04x} - {cmd.name:30} {flds}"
