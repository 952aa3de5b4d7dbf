"""`edgepack build` wall time against `vela` alone on the same model, measured in the same run.

    .venv/bin/python bench/build_time.py [--board corstone-300] [--repeat 3] [MODEL ...]

Both are run as the user runs them, as commands (Python start-up included), `--repeat` times
each, and the median is reported. `edgepack build` runs Vela twice (the model as given, for the
before/after comparison, and the folded model), so about 2x Vela is its floor on NPU boards. The
second table splits one in-process build into its stages (`build(..., timings=...)`).
Fold time against weight count is `bench/fold_time.py` (helper "fold"); `bench/run_all.sh` runs it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgepack import vela  # noqa: E402
from edgepack.boards import load_board  # noqa: E402
from edgepack.build import build  # noqa: E402
from edgepack.tflite import read_model  # noqa: E402

FIXTURES = sorted((ROOT / "tests" / "fixtures").glob("*.tflite"))
BIN = Path(sys.executable).parent


def _timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="*", type=Path, default=FIXTURES)
    ap.add_argument("--board", default="corstone-300")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    board = load_board(args.board)
    if board.npu is None:
        ap.error(f"board {board.name} has no NPU: nothing to compare with Vela")
    edgepack = str(BIN / "edgepack")
    tmp = Path(tempfile.mkdtemp(prefix="ep-bench-"))
    rows, stages = [], []
    try:
        for path in args.models:
            v_times, e_times = [], []
            for i in range(args.repeat):
                vdir = tmp / f"vela{i}"
                v_times.append(_timed([sys.executable, "-m", "ethosu.vela", str(path),
                                       *vela.vela_arguments(board, vdir, verbose_performance=False)]))
                e_times.append(_timed([edgepack, "build", str(path), "--board", board.name,
                                       "-o", str(tmp / "fw"), "--force"]))
            v, e = statistics.median(v_times), statistics.median(e_times)
            n = sum(int(t.data.size) for _, t in read_model(path).weight_tensors())
            rows.append((path.stem, n, v, e))
            timings: dict = {}
            build(str(path), board.name, tmp / "fw-stages", force=True, timings=timings)
            stages.append((path.stem, timings))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"### Build time ({board.name}, {board.npu.accelerator}; median of {args.repeat}, "
          f"{os.cpu_count()} cores)\n")
    print("| model | weights | `vela` alone (baseline) | `edgepack build` | ratio |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, n, v, e in rows:
        print(f"| {name} | {n:,} | {v:.2f} s | {e:.2f} s | {e / v:.2f}x |")
    keys = ["fold_s", "vela_s", "golden_s", "render_s", "total_s"]
    print("\n### `edgepack build` stages (one in-process run; Vela = both compilations)\n")
    print("| model | " + " | ".join(k[:-2] for k in keys) + " |")
    print("| --- |" + " ---: |" * len(keys))
    for name, t in stages:
        print(f"| {name} | " + " | ".join(f"{t.get(k, float('nan')):.2f} s" for k in keys) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
