#!/usr/bin/env python3
"""The MobileNetV2 test model (tests/mobilenet_model.py: alpha 0.35, 96x96x3, every layer
clustered to 16 values, palette weights) on the CPU path under QEMU mps3-an547 (Cortex-M55):
instructions per inference, per operator type, for the runtime built three ways from one
generated project each:

  Helium   -mcpu=cortex-m55 (the board as shipped: MVE paths)
  DSP      -mcpu=cortex-m55+nomve (the DSP-only paths, as on a Cortex-M4/M7/M33)
  plain C  -mcpu=cortex-m55 -DEP_PORTABLE_ONLY (no DSP, no MVE)

and, with --baseline DIR, the project built by another edgepack checkout (e.g. the main branch
before these kernels) on the shipped board. Every run is checked against TFLM by `edgepack run`.

    python bench/mobilenet_cpu.py [--baseline /path/to/edgepack-checkout]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.mobilenet_model import mobilenet_v2  # noqa: E402

CLI = ["-c", "import sys; from edgepack.cli import main; sys.exit(main())"]


def board_variant(tmp: Path, name: str, cflags: list[str]) -> Path:
    """boards/mps3-an547.toml with other compiler flags, as a board file in tmp."""
    text = (ROOT / "boards" / "mps3-an547.toml").read_text()
    text = re.sub(r'^name = "mps3-an547"', f'name = "mps3-an547-{name}"', text, count=1, flags=re.M)
    flags = ", ".join(f'"{f}"' for f in cflags)
    text = re.sub(r"^cflags = \[.*\]$", f"cflags = [{flags}]", text, count=1, flags=re.M)
    text = re.sub(r"^ldflags = \[.*\]$", f"ldflags = [{flags}]", text, count=1, flags=re.M)
    path = tmp / f"mps3-an547-{name}.toml"
    path.write_text(text)
    return path


def run(checkout: Path, model: Path, board: str, out: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(checkout))
    for args in (["build", str(model), "--board", board, "-o", str(out)],
                 ["run", str(out), "--sim", "qemu", "--json", "--timeout", "900"]):
        r = subprocess.run([sys.executable, *CLI, *args], cwd=checkout, env=env, capture_output=True, text=True)
        if r.returncode:
            raise SystemExit(f"{' '.join(args[:2])} failed ({checkout}):\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return json.loads(r.stdout)["runs"][0]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", help="another edgepack checkout to build the same model with (shipped board)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ep-mnv2-cpu-") as d:
        tmp = Path(d)
        model = tmp / "mobilenet_v2.tflite"
        model.write_bytes(mobilenet_v2().tflite)
        base = ["-mcpu=cortex-m55", "-mthumb", "-mfloat-abi=hard"]
        variants = [("Helium", ROOT, "mps3-an547"),
                    ("DSP", ROOT, str(board_variant(tmp, "dsp", ["-mcpu=cortex-m55+nomve"] + base[1:]))),
                    ("plain C", ROOT, str(board_variant(tmp, "plain", ["-DEP_PORTABLE_ONLY"] + base)))]
        if args.baseline:
            variants.append(("baseline", Path(args.baseline).resolve(), "mps3-an547"))
        runs = {}
        for name, checkout, board in variants:
            runs[name] = run(checkout, model, board, tmp / name.replace(" ", "_"))
    # counts are over every golden input ("PASS 4/4 inputs"): per inference = / inputs
    n = {k: int(re.search(r"PASS (\d+)/", r["result_line"]).group(1)) for k, r in runs.items()}
    per = {}
    for name, r in runs.items():
        counts = defaultdict(int)
        for layer in r["layers"]:
            counts[layer["opcode"]] += layer["count"]
        scale = r["instructions"] / max(1, sum(counts.values()))  # SysTick ticks -> instructions
        per[name] = {op: c * scale for op, c in counts.items()}
    names = list(runs)
    print("MobileNetV2 test model, CPU path, QEMU mps3-an547 (-icount shift=5), instructions per inference\n")
    print("| operator | " + " | ".join(names) + " |")
    print("|" + " --- |" * (len(names) + 1))
    for op in sorted(per["Helium"], key=lambda k: -per[names[-1]].get(k, 0)):
        print(f"| {op} | " + " | ".join(f"{per[k].get(op, 0) / n[k]:,.0f}" for k in names) + " |")
    print("| **whole model** | " + " | ".join(f"**{runs[k]['instructions'] / n[k]:,.0f}**" for k in names) + " |")
    for k in names:
        print(f"- {k}: {runs[k]['result_line']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
