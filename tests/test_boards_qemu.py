"""A board's memory map boots: for every board with a QEMU machine, link a probe at the board's
regions (vector table at the start of the code region, stack at the top of the stack region, a
marker in the model region) and run it under QEMU. The probe reads the last word of every
region, writes and reads back both ends of the arena, and exits 0 only if all of that worked;
a region QEMU does not have faults and the run fails."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from edgepack.boards import list_boards, load_board

QEMU_BOARDS = [b for b in list_boards() if b.sim.qemu_machine]
TOOLS = shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")
pytestmark = pytest.mark.skipif(not TOOLS, reason="needs arm-none-eabi-gcc and qemu-system-arm")

PROBE_C = r"""
#include <stdint.h>
extern uint32_t _estack;
extern uint32_t __arena_start[];
extern const uint32_t model_marker[4];
static int semihost(int op, const void *arg) {
  register int r0 __asm__("r0") = op; register const void *r1 __asm__("r1") = arg;
  __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory"); return r0;
}
static void finish(int code) {
  uint32_t block[2] = {0x20026u, (uint32_t)code};  /* ADP_Stopped_ApplicationExit */
  semihost(0x20, block);                            /* SYS_EXIT_EXTENDED */
  for (;;) {}
}
void fault_handler(void) { semihost(0x04, "fault\n"); finish(3); }
__attribute__((section(".model"), used))
const uint32_t model_marker[4] = {0xED6EBAC0u, 1u, 2u, 0x0DDBA11u};
struct region { uint32_t address, size; int writable; };
static const struct region regions[] = { REGIONS };
void reset_handler(void) {
  uint32_t sp; __asm__ volatile("mov %0, sp" : "=r"(sp));
  /* the stack starts at the top of the stack region (less this function's frame) */
  if (sp > (uint32_t)&_estack || sp < (uint32_t)&_estack - 1024u) finish(4);
  if ((uint32_t)model_marker != MODEL_ADDRESS || model_marker[0] != 0xED6EBAC0u
      || model_marker[3] != 0x0DDBA11u) finish(5);
  if ((uint32_t)__arena_start < ARENA_ADDRESS || (uint32_t)__arena_start >= ARENA_END) finish(6);
  __arena_start[0] = 0x600DCAFEu; __arena_start[3] = 0xFEEDBEEFu;
  if (__arena_start[0] != 0x600DCAFEu || __arena_start[3] != 0xFEEDBEEFu) finish(6);
  uint32_t sum = 0;
  for (unsigned i = 0; i < sizeof regions / sizeof regions[0]; i++) {
    volatile uint32_t *first = (volatile uint32_t *)regions[i].address;
    volatile uint32_t *last = (volatile uint32_t *)(regions[i].address + regions[i].size - 4u);
    sum += *last;  /* faults if the region is not there */
    if (regions[i].writable) {
      *first = 0xA5A5F00Du ^ i; *last = 0x5A5A0BADu ^ i;
      if (*first != (0xA5A5F00Du ^ i) || *last != (0x5A5A0BADu ^ i)) finish(7);
    }
  }
  (void)sum;
  semihost(0x04, "probe ok\n");
  finish(0);
}
__attribute__((section(".vectors"), used)) const void *const vectors[16] = {
  &_estack, (const void *)reset_handler, (const void *)fault_handler, (const void *)fault_handler,
  (const void *)fault_handler, (const void *)fault_handler, (const void *)fault_handler,
};
"""


def linker_script(board) -> str:
    memory = "\n".join(f"  {r.name} (rwx) : ORIGIN = {r.address:#x}, LENGTH = {r.size:#x}"
                       for r in board.memory)
    at = {s: board.region_for(s).name for s in ("code", "rodata", "model", "arena", "data",
                                                 "stack")}
    stack = board.region_for("stack")
    return f"""MEMORY
{{
{memory}
}}
SECTIONS
{{
  .text : {{ KEEP(*(.vectors)) *(.text*) }} > {at['code']}
  .rodata : {{ *(.rodata*) }} > {at['rodata']}
  .model : {{ KEEP(*(.model)) }} > {at['model']}
  .bss (NOLOAD) : {{ *(.bss*) *(COMMON) }} > {at['data']}
  .arena (NOLOAD) : {{ __arena_start = .; . += 16; }} > {at['arena']}
  _estack = {stack.address + stack.size:#x};
}}
"""


@pytest.mark.parametrize("board", QEMU_BOARDS, ids=lambda b: b.name)
def test_the_board_memory_map_boots_under_qemu(tmp_path, board):
    arena, model = board.region_for("arena"), board.region_for("model")
    # probe writes only where nothing else lives: the arena region, away from the stack
    rows = ", ".join(
        f"{{{r.address:#x}u, {r.size:#x}u, {int('arena' in r.holds and 'stack' not in r.holds and 'model' not in r.holds)}}}"
        for r in board.memory)
    src = (PROBE_C.replace("REGIONS", rows)
           .replace("MODEL_ADDRESS", f"{model.address:#x}u")
           .replace("ARENA_ADDRESS", f"{arena.address:#x}u")
           .replace("ARENA_END", f"{arena.address + arena.size:#x}u"))
    (tmp_path / "probe.c").write_text(src)
    (tmp_path / "probe.ld").write_text(linker_script(board))
    elf = tmp_path / "probe.elf"
    subprocess.run(["arm-none-eabi-gcc", *board.cpu.cflags, "-O1", "-nostdlib", "-ffreestanding",
                    "-T", "probe.ld", "probe.c", "-o", str(elf)],
                   cwd=tmp_path, check=True, capture_output=True, text=True)
    run = subprocess.run(
        ["qemu-system-arm", "-M", board.sim.qemu_machine, "-nographic",
         "-semihosting-config", "enable=on,target=native", "-kernel", str(elf)],
        capture_output=True, text=True, timeout=60)
    # QEMU writes the semihosting console (SYS_WRITE0) to stderr
    log = (run.stdout + run.stderr).strip()
    assert (run.returncode, log) == (0, "probe ok")


def test_the_probe_fails_for_a_region_qemu_does_not_have(tmp_path):
    """The check can fail: 4 KiB past the end of the an547's internal SRAM faults."""
    board = load_board("mps3-an547")
    board.region_for("arena").size += 4096
    with pytest.raises(AssertionError, match="fault"):
        test_the_board_memory_map_boots_under_qemu(tmp_path, board)
