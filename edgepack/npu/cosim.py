"""Co-simulate the Ethos-U under QEMU: run the real firmware ELF on `mps3-an547` and play the NPU
from outside through QEMU's gdbstub.

QEMU has only an unimplemented 4 KiB device at the NPU's address (reads 0, writes dropped). An
access watchpoint over that block stops the CPU *before* each access to an NPU register; this
module decodes the Thumb load/store at PC, answers a load from a register model (or records a
store), writes the destination/base registers and steps PC past the instruction. When the
firmware writes CMD.start, the command stream at QBASE runs in edgepack's functional Ethos-U
model against the firmware's own memory (read through the stub, results written back), and
STATUS then reads irq_raised | cmd_end_reached. Before a stream runs, every base pointer is
checked against the plan in build.json and the ELF's symbols (the arena, the model data).

It proves the driver programs the registers as this register model expects and that the plan's
regions and CPU/NPU interleaving are right; not the silicon's timing, interrupts or caches.
Every wait has a deadline; a problem ends the run with one line naming the step and the cause.
"""

from __future__ import annotations

import mmap
import os
import re
import socket
import struct
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgepack.errors import ModelError
from edgepack.tools import require_tool

from .decoder import DriverPayload, decode_command_stream
from .machine import NpuMachine

WHERE = "co-simulated (edgepack's functional Ethos-U55 model under QEMU)"
NPU_BLOCK = 0x1000
# register offsets (ethos_u55_regs.py) and STATUS/CMD bits
ID, STATUS, CMD, RESET, QBASE, QSIZE, PROT, CONFIG = 0x000, 0x004, 0x008, 0x00C, 0x010, 0x020, 0x024, 0x028
IRQ_RAISED, PARSE_ERROR, CMD_END = 1 << 1, 1 << 4, 1 << 5
ARCH_ID = 0x10060000  # architecture 1.0.6: ethos_u55_regs.ARCH_VER, what Vela 5.2 compiles for


class CosimError(Exception):
    """Ends a co-simulated run; the message is the one line the user sees."""


def npu_identity(accelerator: str) -> tuple[int, int]:
    """(ID, CONFIG) register values of an NPU as Vela describes it (config_r: macs_per_cc log2,
    cmd_stream_version 0, SHRAM KiB, product 0 = U55 / 1 = U65)."""
    from ethosu.vela.architecture_features import Accelerator, ArchitectureFeatures

    cfg = ArchitectureFeatures.accelerator_configs[Accelerator(accelerator)]
    macs = cfg.macs * cfg.cores
    product = 1 if accelerator.startswith("ethos-u65") else 0
    config = (macs.bit_length() - 1) | (cfg.shram_banks * cfg.cores) << 8 | product << 28
    return ARCH_ID, config


# --- the GDB remote serial protocol (what QEMU 7.2's stub accepts) ------------------------------

class GdbRemote:
    def __init__(self, port: int, deadline: float):
        self.deadline = deadline
        while True:
            try:
                self.sock = socket.create_connection(("127.0.0.1", port), timeout=1.0)
                # small packets both ways: without this every exchange waits ~40 ms (Nagle + delayed ACK)
                self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise CosimError("QEMU's gdbstub did not accept a connection") from None
                time.sleep(0.05)
        self.buf = b""
        # p/P work only after gdb has read the target description (QEMU 7.2)
        off = 0
        while True:
            r = self.command(f"qXfer:features:read:target.xml:{off:x},ffb")
            if not r or r[0] not in "ml":
                break
            off += len(r) - 1
            if r[0] == "l":
                break

    def _read(self) -> bytes:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        self.sock.settimeout(left)
        chunk = self.sock.recv(65536)
        if not chunk:
            raise CosimError("QEMU closed the gdbstub connection")
        return chunk

    def _packet(self) -> str:
        while True:
            start = self.buf.find(b"$")
            if start >= 0:
                end = self.buf.find(b"#", start)
                if end >= 0 and len(self.buf) >= end + 3:
                    body = self.buf[start + 1:end]
                    self.buf = self.buf[end + 3:]
                    self.sock.sendall(b"+")
                    return body.decode("latin-1")
            self.buf += self._read()

    def send(self, body: str) -> None:
        """Send a packet and wait for its acknowledgement (QEMU 7.2 has no no-ack mode)."""
        data = body.encode("latin-1")
        pkt = b"$" + data + b"#" + f"{sum(data) & 0xFF:02x}".encode()
        for _ in range(5):
            self.sock.sendall(pkt)
            while not self.buf:
                self.buf += self._read()
            ack, self.buf = self.buf[:1], self.buf[1:]
            if ack == b"+":
                return
        raise CosimError("gdbstub keeps rejecting packets")

    def command(self, body: str) -> str:
        self.send(body)
        return self._packet()

    def read_memory(self, addr: int, n: int) -> bytes:
        out = bytearray()
        while n > 0:
            k = min(n, 2048)
            r = self.command(f"m{addr:x},{k:x}")
            if r.startswith("E") or len(r) != 2 * k:
                raise CosimError(f"cannot read target memory at 0x{addr:08x} ({r[:8]})")
            out += bytes.fromhex(r)
            addr, n = addr + k, n - k
        return bytes(out)

    def write_memory(self, addr: int, data: bytes) -> None:
        for i in range(0, len(data), 1024):
            r = self.command(f"M{addr + i:x},{len(data[i:i + 1024]):x}:{data[i:i + 1024].hex()}")
            if r != "OK":
                raise CosimError(f"cannot write target memory at 0x{addr + i:08x} ({r[:8]})")

    def registers(self) -> list[int]:
        r = self.command("g")
        return [struct.unpack("<I", bytes.fromhex(r[8 * i:8 * i + 8]))[0] for i in range(16)]

    def set_register(self, n: int, value: int) -> None:
        if self.command(f"P{n:x}={struct.pack('<I', value & 0xFFFFFFFF).hex()}") != "OK":
            raise CosimError(f"gdbstub refused to set r{n}")


class TargetMemory:
    """The firmware's memory while the CPU is halted: DDR through a shared mapping of QEMU's RAM
    backend file when there is one (file offset = address - DDR base), the rest through the stub."""

    def __init__(self, gdb: GdbRemote, ddr: tuple[int, mmap.mmap] | None = None):
        self.gdb, self.ddr = gdb, ddr

    def _mapped(self, addr: int, n: int) -> int | None:
        if self.ddr is None:
            return None
        base, mm = self.ddr
        return addr - base if base <= addr and addr + n <= base + len(mm) else None

    def read(self, addr: int, n: int) -> bytes:
        off = self._mapped(addr, n)
        return self.ddr[1][off:off + n] if off is not None else self.gdb.read_memory(addr, n)

    def write(self, addr: int, data: bytes) -> None:
        off = self._mapped(addr, len(data))
        if off is not None:
            self.ddr[1][off:off + len(data)] = data
        else:
            self.gdb.write_memory(addr, data)


# --- Thumb loads and stores -----------------------------------------------------------------------

@dataclass
class Access:
    load: bool
    rt: list[int]  # one register, or two (LDRD/STRD)
    address: int
    length: int  # instruction bytes
    writeback: tuple[int, int] | None = None  # (register, new value)


def decode_access(hw: tuple[int, int], r: list[int], pc: int) -> Access:
    """The word load/store at `pc` (its two halfwords) with register values `r`."""
    h1, h2 = hw
    if h1 & 0xF000 == 0x6000:  # LDR/STR (immediate, 16-bit)
        return Access(bool(h1 & 0x0800), [h1 & 7], r[(h1 >> 3) & 7] + ((h1 >> 6) & 0x1F) * 4, 2)
    if h1 & 0xF600 == 0x5000:  # STR/LDR (register, 16-bit): 0101 L00 Rm Rn Rt
        return Access(bool(h1 & 0x0800), [h1 & 7], r[(h1 >> 3) & 7] + r[(h1 >> 6) & 7], 2)
    rn = h1 & 0xF
    base = (pc + 4) & ~3 if rn == 15 else r[rn]
    if h1 & 0xFFE0 == 0xF8C0:  # STR.W / LDR.W (immediate 12)
        return Access(bool(h1 & 0x10), [h2 >> 12], base + (h2 & 0xFFF), 4)
    if h1 & 0xFFE0 == 0xF840:  # LDR/STR imm8 (P/U/W) or register
        load, rt = bool(h1 & 0x10), h2 >> 12
        if h2 & 0x0800:
            imm, p, u, w = h2 & 0xFF, h2 & 0x400, h2 & 0x200, h2 & 0x100
            off = base + imm if u else base - imm
            addr = off if p else base
            return Access(load, [rt], addr, 4, (rn, off) if w else None)
        if h2 & 0x0FC0 == 0:
            return Access(load, [rt], base + (r[h2 & 0xF] << ((h2 >> 4) & 3)), 4)
    if h1 & 0xFE40 == 0xE840 and h1 & 0x0120:  # LDRD/STRD (immediate)
        p, u, w = h1 & 0x100, h1 & 0x80, h1 & 0x20
        imm = (h2 & 0xFF) * 4
        off = base + imm if u else base - imm
        return Access(bool(h1 & 0x10), [h2 >> 12, (h2 >> 8) & 0xF], off if p else base, 4,
                      (rn, off) if w else None)
    raise CosimError(f"firmware accessed the NPU with an instruction the co-simulation does not decode "
                     f"(0x{h1:04x} 0x{h2:04x} at pc 0x{pc:08x})")


# --- the plan's NPU steps, as built -----------------------------------------------------------

@dataclass
class NpuStepLayout:
    index: int  # position in the plan
    name: str
    payload_address: int
    stream_offset: int
    regions: list[dict]  # build.json npu_steps[].regions with "address" resolved


@dataclass
class CosimRun:
    output: str = ""
    exit_code: int | None = None
    failure: str = ""
    streams: int = 0  # command streams executed
    accesses: int = 0  # NPU register accesses emulated
    npu_s: float = 0.0  # wall time in the functional model and memory transfers
    log: list[str] = field(default_factory=list)


def elf_symbols(elf: Path) -> dict[str, tuple[int, int]]:
    """name -> (address, size) from `arm-none-eabi-nm -S`."""
    out = subprocess.run([require_tool("arm-none-eabi-nm"), "-S", str(elf)], capture_output=True, text=True,
                         check=True).stdout
    syms = {}
    for ln in out.splitlines():
        p = ln.split()
        if len(p) == 4:
            syms[p[3]] = (int(p[0], 16), int(p[1], 16))
    return syms


def step_layouts(info: dict, symbols: dict) -> tuple[list[NpuStepLayout], int, int]:
    """NPU steps with absolute addresses; (steps, arena address, arena bytes)."""
    if "ep_arena" not in symbols:
        raise CosimError("the ELF has no ep_arena symbol: not an edgepack firmware with an NPU plan")
    arena_addr, arena_size = symbols["ep_arena"]
    npu_plan_index = [i for i, layer in enumerate(info["layers"]) if layer["kernel"] == "EP_KERNEL_ETHOSU"]
    steps = []
    for pos, s in zip(npu_plan_index, info.get("npu_steps", [])):
        if s["payload_symbol"] not in symbols:
            raise CosimError(f"the ELF lacks {s['payload_symbol']} (NPU step {s['npu_index']})")
        paddr = symbols[s["payload_symbol"]][0]
        regions = []
        for r in s["regions"]:
            r = dict(r)
            if r["symbol"]:
                r["address"] = symbols[r["symbol"]][0]
            elif r["bytes"]:
                r["address"] = arena_addr + r["arena_offset"]
            else:
                r["address"] = None
            regions.append(r)
        covers = s["covers"]
        name = (f"step {pos} (ETHOS_U, operators {covers[0]}-{covers[-1]})" if len(covers) > 1
                else f"step {pos} (ETHOS_U, operator {covers[0] if covers else '?'})")
        steps.append(NpuStepLayout(pos, name, paddr, 0, regions))
    return steps, arena_addr, arena_size


class NpuCosim:
    """The register model and the stream runner for one firmware run."""

    def __init__(self, memory: TargetMemory, accelerator: str, steps: list[NpuStepLayout],
                 arena: tuple[int, int], run: CosimRun):
        self.mem, self.steps, self.run = memory, steps, run
        self.arena_addr, self.arena_size = arena
        self.id, self.config = npu_identity(accelerator)
        self.regs: dict[int, int] = {}
        self.status = 0
        self.prot = 0
        self.constants: dict[int, np.ndarray] = {}

    def read(self, off: int) -> int:
        if off == ID:
            return self.id
        if off == CONFIG:
            return self.config
        if off == STATUS:
            return self.status
        if off == PROT:
            return self.prot
        return self.regs.get(off, 0)

    def write(self, off: int, value: int) -> None:
        if off == RESET:
            self.prot, self.status = value & 3, 0  # the reset completes at once
        elif off == CMD:
            if value & 2:
                self.status &= ~IRQ_RAISED
            if value & 1:
                self.start()
        else:
            self.regs[off] = value

    def _step_for(self, qbase: int) -> NpuStepLayout:
        for s in self.steps:
            if not s.stream_offset:
                s.stream_offset = _stream_offset(self.mem.read(s.payload_address, 64))
            if s.payload_address + s.stream_offset == qbase:
                return s
        raise CosimError(f"the firmware started a command stream at 0x{qbase:08x}, which is no NPU step's "
                         "payload in the plan")

    def start(self) -> None:
        t0 = time.perf_counter()
        qbase = self.regs.get(QBASE, 0) | self.regs.get(QBASE + 4, 0) << 32
        qsize = self.regs.get(QSIZE, 0)
        step = self._step_for(qbase)
        bases = [self.regs.get(0x80 + 8 * i, 0) | self.regs.get(0x84 + 8 * i, 0) << 32 for i in range(8)]
        arena_end = self.arena_addr + self.arena_size
        for r in step.regions:
            if r["address"] is None:
                continue
            got = bases[r["index"]]
            where = (f"arena + {r['arena_offset']}" if not r["symbol"] else r["symbol"])
            if got != r["address"]:
                raise CosimError(f"{step.name}: region {r['index']} ({r['what']}) base pointer 0x{got:08x} "
                                 f"is not the plan's 0x{r['address']:08x} ({where})")
            if got % 16:
                raise CosimError(f"{step.name}: region {r['index']} ({r['what']}) at 0x{got:08x} is not 16-byte aligned")
            if not r["symbol"] and not (self.arena_addr <= got and got + r["bytes"] <= arena_end):
                raise CosimError(f"{step.name}: region {r['index']} ({r['what']}) 0x{got:08x}+{r['bytes']} lies "
                                 f"outside the arena 0x{self.arena_addr:08x}+{self.arena_size}")
        stream = self.mem.read(qbase, qsize)
        arena = np.frombuffer(self.mem.read(self.arena_addr, self.arena_size), dtype=np.uint8).copy()[None, :]
        before = arena.copy()
        regions = {}
        for r in step.regions:
            if r["address"] is None:
                continue
            if r["symbol"]:
                if r["address"] not in self.constants:
                    self.constants[r["address"]] = np.frombuffer(
                        self.mem.read(r["address"], r["bytes"]), dtype=np.uint8)[None, :]
                regions[r["index"]] = self.constants[r["address"]]
            else:  # a view to the arena's end, as TFLM's regions see the arena
                regions[r["index"]] = arena[:, r["address"] - self.arena_addr:]
        macs = 1 << (self.config & 0xF)
        payload = DriverPayload(macs, self.config >> 28, (self.config >> 8) & 0xFF, stream, 0)
        try:
            NpuMachine(payload, regions, 1).run(decode_command_stream(stream))
            self.status = IRQ_RAISED | CMD_END
        except ModelError as err:
            self.run.log.append(f"{step.name}: the functional model stopped: {err}")
            self.status = IRQ_RAISED | PARSE_ERROR
        changed = np.flatnonzero(arena[0] != before[0])
        if changed.size:
            lo, hi = int(changed[0]), int(changed[-1]) + 1
            self.mem.write(self.arena_addr + lo, arena[0, lo:hi].tobytes())
        self.run.streams += 1
        self.run.npu_s += time.perf_counter() - t0


def _stream_offset(payload_head: bytes) -> int:
    """Byte offset of the command stream in a COP1 payload (after the config action and NOPs)."""
    words = struct.unpack(f"<{len(payload_head) // 4}I", payload_head)
    i = 1
    while i < len(words):
        kind = words[i] & 0xFF
        if kind == 0x01:
            i += 3
        elif kind == 0x02:
            return 4 * (i + 1)
        else:
            i += 1
    return -1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# QEMU mps3-an547: 2 GiB of DDR at 0x60000000 is the machine's RAM (the board's DDR at 0x70000000
# lies inside it), so a shared memory-backend-file exposes it to this process.
SHARED_RAM = {"mps3-an547": (0x60000000, 2 << 30)}


def run_cosim(elf: Path, info: dict, accelerator: str, base: int, machine: str, timeout: float,
              extra_qemu: list[str] | None = None, shared_ram: bool = True) -> CosimRun:
    """Run `elf` (built from the project whose build.json is `info`) under QEMU `machine`, with
    an `accelerator` NPU co-simulated at register base address `base`."""
    run = CosimRun()
    deadline = time.monotonic() + timeout
    symbols = elf_symbols(elf)
    steps, arena_addr, arena_size = step_layouts(info, symbols)
    port = _free_port()
    ram_args, ram_file, ram = [], None, None
    if shared_ram and machine in SHARED_RAM:
        ram_base, ram_size = SHARED_RAM[machine]
        shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
        fd, ram_file = tempfile.mkstemp(prefix="edgepack-cosim-ddr-", dir=shm)
        os.ftruncate(fd, ram_size)  # sparse: only what the firmware touches takes memory
        ram = (ram_base, mmap.mmap(fd, ram_size))
        os.close(fd)
        ram_args = ["-object", f"memory-backend-file,id=ddr,size={ram_size},mem-path={ram_file},share=on",
                    "-machine", "memory-backend=ddr"]
    cmd = [require_tool("qemu-system-arm"), "-M", machine, *ram_args, "-display", "none", "-serial", "stdio",
           "-monitor", "none", "-semihosting-config", "enable=on,target=native", "-icount", "shift=5",
           "-gdb", f"tcp:127.0.0.1:{port}", "-S", "-kernel", str(elf), *(extra_qemu or [])]
    run.log.append(" ".join(cmd))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: chunks.extend(iter(lambda: proc.stdout.read1(4096), b"")),
                              daemon=True)
    reader.start()
    gdb = None
    try:
        gdb = GdbRemote(port, deadline)
        npu = NpuCosim(TargetMemory(gdb, ram), accelerator, steps, (arena_addr, arena_size), run)
        if gdb.command(f"Z4,{base:x},{NPU_BLOCK:x}") != "OK":
            raise CosimError("QEMU refused an access watchpoint over the NPU's registers")
        while True:
            reply = gdb.command("c")
            m = re.match(r"[WX]([0-9a-fA-F]+)", reply)
            if m:
                run.exit_code = int(m.group(1), 16)
                break
            if not reply.startswith("T"):
                raise CosimError(f"unexpected stop from QEMU: {reply[:40]}")
            r = gdb.registers()
            pc = r[15]
            h1, h2 = struct.unpack("<HH", gdb.read_memory(pc & ~1, 4))
            acc = decode_access((h1, h2), r, pc)
            for k, rt in enumerate(acc.rt):
                addr = acc.address + 4 * k
                if not base <= addr < base + NPU_BLOCK:
                    # the watchpoint can catch the other half of a pair, or a neighbour: run it here
                    if acc.load:
                        gdb.set_register(rt, struct.unpack("<I", gdb.read_memory(addr, 4))[0])
                    else:
                        gdb.write_memory(addr, struct.pack("<I", r[rt]))
                    continue
                run.accesses += 1
                if acc.load:
                    gdb.set_register(rt, npu.read(addr - base))
                else:
                    npu.write(addr - base, r[rt])
            if acc.writeback:
                gdb.set_register(*acc.writeback)
            gdb.set_register(15, pc + acc.length)
    except TimeoutError:
        run.failure = f"timed out after {timeout:.0f} s (co-simulation; {run.streams} command streams ran)"
    except CosimError as err:
        run.failure = str(err)
    except OSError as err:
        run.failure = f"gdbstub connection failed: {err}"
    finally:
        if run.failure and proc.poll() is None:
            proc.kill()  # the CPU sits halted in the stub: nothing more to wait for
        if gdb is not None:
            try:
                gdb.sock.close()
            except OSError:
                pass
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(timeout=2)
        if ram is not None:
            ram[1].close()
            os.unlink(ram_file)
    run.output = b"".join(chunks).decode("utf-8", "replace").replace("\x04", "")
    if not run.failure and run.log[1:]:
        run.failure = run.log[-1]
    return run
