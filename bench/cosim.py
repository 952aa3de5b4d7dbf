"""Wall time of a run with the NPU co-simulated under QEMU against the CPU-only QEMU run of the
same model (the same golden inputs, both bit-exact), for the digits models and MobileNetV2.

    .venv/bin/python bench/cosim.py [--small] [--board corstone-300]

Builds each model twice for the board (the default build: NPU steps driven by the firmware;
`--cpu-only`: every operator in edgepack's runtime), builds both firmwares, then times
`edgepack.sim` runs only (build excluded): co-simulated (`run_qemu_cosim`: QEMU + gdbstub +
edgepack's functional Ethos-U model) and plain QEMU (`run_qemu`). Both under `-icount shift=5`.
Prints one markdown table. QEMU wall time says nothing about the chip's speed: it measures what
a test run of this kind costs here.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgepack.boards import load_board  # noqa: E402
from edgepack.build import build  # noqa: E402
from edgepack.project import build_firmware  # noqa: E402
from edgepack.sim import run_qemu, run_qemu_cosim  # noqa: E402
from tests.mobilenet_model import mobilenet_v2, small_mobilenet  # noqa: E402

DIGITS = ["digits_a_baseline_int8", "digits_b_cluster16_int8", "digits_b_cluster16_int8_pertensor",
          "digits_c_prune50_cluster16_sp_int8"]


def best_of(n: int, fn):
    best, result = None, None
    for _ in range(n):
        t = time.perf_counter()
        result = fn()
        dt = time.perf_counter() - t
        best = dt if best is None else min(best, dt)
    return result, best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", action="store_true", help="the tests' MobileNetV2 (48x48) instead of 96x96")
    ap.add_argument("--board", default="corstone-300")
    ap.add_argument("--repeat", type=int, default=3, help="runs per firmware; the best is reported")
    args = ap.parse_args()
    board = load_board(args.board)
    tmp = Path(tempfile.mkdtemp(prefix="bench-cosim-"))
    models = [(name, ROOT / "tests" / "fixtures" / f"{name}.tflite") for name in DIGITS]
    net = small_mobilenet() if args.small else mobilenet_v2()
    mpath = tmp / ("mobilenet_v2_small.tflite" if args.small else "mobilenet_v2_0.35_96.tflite")
    mpath.write_bytes(net.tflite)
    models.append((mpath.stem, mpath))

    print(f"### Co-simulated NPU vs CPU-only under QEMU ({board.name}, {board.npu.accelerator}; "
          f"best of {args.repeat}, build excluded)\n")
    print("| model | golden inputs | NPU steps / CPU steps | NPU register accesses | co-simulated run | "
          "CPU-only QEMU run | ratio |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: |")
    for name, path in models:
        mixed, cpu = tmp / f"{name}_mixed", tmp / f"{name}_cpu"
        build(str(path), board.name, mixed)
        build(str(path), board.name, cpu, cpu_only=True)
        info = json.loads((mixed / "build.json").read_text())
        bm, bc = build_firmware(mixed), build_firmware(cpu)
        rm, tm = best_of(args.repeat, lambda bm=bm, info=info: run_qemu_cosim(bm, board, info, 600))
        rc, tc = best_of(args.repeat, lambda bc=bc: run_qemu(bc, board, 600))
        assert rm.passed, rm.failure
        assert rc.passed, rc.failure
        n_npu = len(info["npu_steps"])
        print(f"| {name} | {info['golden_count']} | {n_npu} / {len(info['layers']) - n_npu} | "
              f"{rm.npu_register_accesses} | {tm:.2f} s | {tc:.2f} s | {tm / tc:.2f}x |")


if __name__ == "__main__":
    main()
