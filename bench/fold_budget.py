"""Issue 12 figures: per model, Vela-encoded weight bytes (ethos-u55-128), packed CPU bytes and
top-1 agreement with the model as given, for auto, --clusters 16 and --budget 99%, against the
code before issue 12 (a checkout of 4bcdd9b given with --before DIR).

    .venv/bin/python bench/fold_budget.py [--before /tmp/before] [MODEL ...]

Models: every fixture, the MobileNetV2 test model, and the generated unclustered models
(all-zero channels, pruned, depthwise ranges spread 100x). Agreement: the digits models on 64
of their test images (as --calibration, before and after), the others on the default 32 random
int8 inputs. Vela: the folded model's encoded weights (summary CSV). The new code folds for
corstone-300 (ethos-u55-128); the old code had no target. Packed CPU bytes: edgepack's packed form (report.packed_weight_bytes).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile

import numpy as np
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MEASURE = r'''
import json, sys
from edgepack import vela
from edgepack.boards import load_board
from edgepack.fold import fold_model
from edgepack.report import packed_weight_bytes
from edgepack.tflite import read_model, serialize_model
import numpy as np
path, mode, new, cal = sys.argv[1], sys.argv[2], sys.argv[3] == "1", sys.argv[4]
board = load_board("corstone-300")
m = read_model(path)
kw = {"budget": "99%"} if mode == "budget" else {"clusters": mode}
if cal != "-":
    kw["calibration"] = np.load(cal)
if new:
    kw["board"] = board
elif mode == "budget":
    print(json.dumps(None)); sys.exit()
r = fold_model(m, **kw)
packed = 0
for ft in r.tensors:
    n = 1
    for d in ft.shape: n *= d
    packed += packed_weight_bytes(ft.op_type, ft.shape, ft.codebook.size, ft.index_bits) \
        if ft.folded else n
v = vela.compile_for_board(serialize_model(r.model), board, verbose_performance=False)
print(json.dumps({"vela": v.encoded_weight_bytes, "packed": packed,
                  "backed_off": len(r.gate.backed_off) if getattr(r, "gate", None) else None,
                  "top1": r.agreement.top1_agreement, "mad": r.agreement.mean_abs_diff}))
'''


def measure(code_root: Path, model: Path, mode: str, new: bool, calibration: str = "-"):
    out = subprocess.run([sys.executable, "-c", MEASURE, str(model), mode, "1" if new else "0",
                          calibration],
                         capture_output=True, text=True, cwd=code_root,
                         env={"PYTHONPATH": str(code_root), "PATH": "/usr/bin:/bin"})
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def models(tmp: Path) -> list[Path]:
    from tests.mobilenet_model import mobilenet_v2
    from tests.unclustered_models import unclustered_mobilenet
    from edgepack.tflite import write_model

    out = sorted((ROOT / "tests" / "fixtures").glob("*.tflite"))
    p = tmp / "mobilenet_v2.tflite"
    p.write_bytes(mobilenet_v2().tflite)
    out.append(p)
    for name, kw in (("zero_channels", dict(zero_channels=0.1)),
                     ("pruned", dict(zero_channels=0.1, prune=0.5)),
                     ("depthwise_spread_100x", dict(depthwise_spread=100))):
        p = tmp / f"unclustered_{name}.tflite"
        write_model(unclustered_mobilenet(**kw), p)
        out.append(p)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", type=Path, help="a checkout of the code before issue 12")
    ap.add_argument("--modes", default="auto,16,budget", help="comma-separated: auto, 16, budget")
    ap.add_argument("models", nargs="*", type=Path)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="edgepack-bench-"))
    paths = args.models or models(tmp)
    # the digits models are checked on their own test images (64), the others on the default
    # 32 random int8 inputs
    digits_x = tmp / "digits_x.npy"
    np.save(digits_x, np.load(ROOT / "tests" / "fixtures" / "digits_test.npz")["x"][:64])
    print("| model | mode | Vela B before | Vela B | packed B before | packed B | top-1 before | top-1 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for path in paths:
        for mode in args.modes.split(","):
            cal = str(digits_x) if path.stem.startswith("digits") else "-"
            new = measure(ROOT, path, mode, True, cal)
            old = measure(args.before, path, mode, False, cal) if args.before else None
            old = old or {}

            def f(d, k, pct=False):
                v = d.get(k)
                return "-" if v is None else (f"{100 * v:.1f} %" if pct else f"{v:,}")
            print(f"| {path.stem} | {mode} | {f(old, 'vela')} | {f(new, 'vela')} | "
                  f"{f(old, 'packed')} | {f(new, 'packed')} | {f(old, 'top1', True)} | "
                  f"{f(new, 'top1', True)} |" + (f" {new['error']}" if "error" in new else ""),
                  flush=True)


if __name__ == "__main__":
    main()
