"""Spec: the runtime's Ethos-U driver (firmware/src/ep_ethosu.c) follows the documented sequence
and refuses, with a status naming the cause, everything it must not run: no NPU (ID 0), a payload
compiled for another configuration or a newer architecture, misaligned regions, NPU error bits,
a stream that never ends (bounded wait).

The register block here is host memory that the test pre-sets (ID, CONFIG, PROT, STATUS) and
reads back (what the driver wrote). The full path with a co-simulated NPU runs in
tests/test_cosim.py.
"""
import ctypes as C

import numpy as np
import pytest

from tests.npu_support import compile_vela
from tests.runtime_harness import build_library

ROOT_FIXTURE = "tests/fixtures/digits_a_baseline_int8.tflite"

OK, ERR_ARG, NO_NPU, RESET_TIMEOUT, PROT_MISMATCH, BAD_PAYLOAD, CONFIG_MISMATCH, ARCH_MISMATCH, BAD_REGION, \
    TIMEOUT, BUS_ERROR, PARSE_ERROR, WATCHDOG, ECC_ERROR, NO_STREAM_END = 0, *range(-16, -30, -1)

ID, STATUS, CMD, RESET, QBASE, QCONFIG, QSIZE, PROT, CONFIG, REGIONCFG = (
    0x000, 0x004, 0x008, 0x00C, 0x010, 0x01C, 0x020, 0x024, 0x028, 0x03C)
ID_U55 = 0x10060000  # arch 1.0.6 (Vela's ARCH_VER), the architecture Vela 5.2 compiles for


class Config(C.Structure):
    _fields_ = [("secure", C.c_uint32), ("privileged", C.c_uint32), ("qconfig", C.c_uint32),
                ("regioncfg", C.c_uint32), ("axi_limit", C.c_uint32 * 4), ("reset_polls", C.c_uint32),
                ("run_polls", C.c_uint32)]


class Npu(C.Structure):
    _fields_ = [("base", C.c_size_t), ("config", Config), ("id", C.c_uint32), ("hw_config", C.c_uint32),
                ("last_status", C.c_uint32)]


@pytest.fixture(scope="module")
def lib():
    lib = C.CDLL(str(build_library()))
    lib.ep_ethosu_default_config.restype = Config
    lib.ep_ethosu_status_text.restype = C.c_char_p
    return lib


@pytest.fixture(scope="module")
def payload():
    """Vela's driver payload for digits on ethos-u55-128 (16-byte aligned copy)."""
    from ai_edge_litert import schema_py_generated as tfl
    m = tfl.ModelT.InitFromPackedBuf(compile_vela(ROOT_FIXTURE, "ethos-u55-128").read_bytes(), 0)
    op = next(o for o in m.subgraphs[0].operators if m.operatorCodes[o.opcodeIndex].customCode == b"ethos-u")
    data = bytes(np.asarray(m.buffers[m.subgraphs[0].tensors[op.inputs[0]].buffer].data, dtype=np.uint8))
    buf = np.zeros(len(data) + 16, dtype=np.uint8)
    off = (-buf.ctypes.data) % 16
    buf[off:off + len(data)] = np.frombuffer(data, np.uint8)
    return buf, off, len(data)


def regs(config_word, prot=3, status=0, ident=ID_U55):
    r = np.zeros(1024, dtype=np.uint32)
    r[ID // 4], r[CONFIG // 4], r[PROT // 4], r[STATUS // 4] = ident, config_word, prot, status
    return r


def payload_config(payload) -> int:
    buf, off, _n = payload
    return int(buf[off + 8:off + 12].view("<u4")[0])  # COP1, Config tag, config word


def init(lib, r, **cfg):
    npu = Npu()
    npu.registers = r  # keep the register memory alive as long as the driver points at it
    c = lib.ep_ethosu_default_config()
    for k, v in cfg.items():
        setattr(c, k, v)
    st = lib.ep_ethosu_init(C.byref(npu), C.c_size_t(r.ctypes.data), C.byref(c))
    return npu, st


def invoke(lib, npu, payload, bases):
    buf, off, n = payload
    arr = (C.c_uint64 * max(len(bases), 1))(*bases)
    return lib.ep_ethosu_invoke(C.byref(npu), C.c_void_p(buf.ctypes.data + off), n, arr, len(bases))


def test_absent_npu_is_refused_before_any_write(lib):
    r = np.zeros(1024, dtype=np.uint32)  # plain QEMU: the NPU's address reads 0
    _npu, st = init(lib, r)
    assert st == NO_NPU
    assert not r.any()
    assert lib.ep_ethosu_status_text(st) == b"NPU absent (ID register reads 0)"


def test_init_resets_with_security_and_privilege_then_programs_the_bus(lib, payload):
    r = regs(payload_config(payload))
    npu, st = init(lib, r, regioncfg=0x55, qconfig=2)
    assert st == OK
    assert r[RESET // 4] == 3  # pending_cpl | pending_csl
    assert r[REGIONCFG // 4] == 0x55 and r[QCONFIG // 4] == 2
    assert list(r[0x40 // 4:0x50 // 4]) == [(31 << 16) | (15 << 24)] * 4
    assert npu.id == ID_U55 and npu.hw_config == payload_config(payload)


def test_reset_that_never_finishes_and_wrong_protection_are_named(lib, payload):
    _npu, st = init(lib, regs(payload_config(payload), status=1 << 3), reset_polls=50)
    assert st == RESET_TIMEOUT
    _npu, st = init(lib, regs(payload_config(payload), prot=1))
    assert st == PROT_MISMATCH


def test_payload_for_another_configuration_or_newer_architecture_is_refused(lib, payload):
    cfg = payload_config(payload)
    macs = cfg & 0xF
    for other in (cfg & ~0xF | (macs + 1), cfg ^ (1 << 28), cfg & ~0xFF00 | (48 << 8)):
        npu, st = init(lib, regs(other))
        assert st == OK
        assert invoke(lib, npu, payload, [0] * 5) == CONFIG_MISMATCH
    npu, _ = init(lib, regs(cfg, ident=0x10050000))  # arch 1.0.5 < 1.0.6
    assert invoke(lib, npu, payload, [0] * 5) == ARCH_MISMATCH
    npu, _ = init(lib, regs(cfg, ident=0x20060000))  # another major architecture
    assert invoke(lib, npu, payload, [0] * 5) == ARCH_MISMATCH


def test_invoke_programs_stream_and_base_pointers_then_waits_for_the_end(lib, payload):
    buf, off, n = payload
    r = regs(payload_config(payload), status=0b100011)  # irq_raised | cmd_end_reached | running
    npu, _ = init(lib, r)
    bases = [0x70000010, 0x31000000, 0x31000400, 0x7FFFFFF0_00000020, 0x31000800]
    assert invoke(lib, npu, payload, bases) == OK
    stream = buf.ctypes.data + off + 32  # COP1, config action (3 words), NOPs to 16 bytes, tag
    assert r[QBASE // 4] == stream & 0xFFFFFFFF and r[QBASE // 4 + 1] == stream >> 32
    assert r[QSIZE // 4] == n - 32
    got = [int(r[0x80 // 4 + 2 * i]) | int(r[0x80 // 4 + 2 * i + 1]) << 32 for i in range(5)]
    assert got == bases
    assert r[CMD // 4] == 2  # the last command clears the IRQ (after the start)


@pytest.mark.parametrize("bit,status", [(2, BUS_ERROR), (4, PARSE_ERROR), (7, WATCHDOG), (8, ECC_ERROR)])
def test_npu_error_bits_become_status_codes_and_reset_the_npu(lib, payload, bit, status):
    r = regs(payload_config(payload), status=1 << bit)
    npu, _ = init(lib, r)
    r[RESET // 4] = 0
    assert invoke(lib, npu, payload, [0] * 5) == status
    assert r[RESET // 4] == 3  # soft reset after the error
    assert npu.last_status == 1 << bit


def test_irq_without_stream_end_and_a_stream_that_never_ends(lib, payload):
    npu, _ = init(lib, regs(payload_config(payload), status=0b10))
    assert invoke(lib, npu, payload, [0] * 5) == NO_STREAM_END
    npu, _ = init(lib, regs(payload_config(payload), status=0b1), run_polls=1000)
    assert invoke(lib, npu, payload, [0] * 5) == TIMEOUT


def test_misaligned_regions_and_bad_payloads(lib, payload):
    buf, off, n = payload
    npu, _ = init(lib, regs(payload_config(payload), status=0b100010))
    assert invoke(lib, npu, payload, [0, 0x31000008]) == BAD_REGION
    assert invoke(lib, npu, payload, [0] * 9) == ERR_ARG
    assert lib.ep_ethosu_invoke(C.byref(npu), C.c_void_p(buf.ctypes.data + off), n - 4 * 10, None, 0) == BAD_PAYLOAD
    bad = buf.copy()
    bad[off] = ord("X")
    assert lib.ep_ethosu_invoke(C.byref(npu), C.c_void_p(bad.ctypes.data + off), n, None, 0) == BAD_PAYLOAD
