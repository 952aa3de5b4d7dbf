"""Fuzz edgepack's commands with mutated models and count the outcomes (issue 16).

Each mutant (tests/mutants.py: bit flips, truncations, 32-bit overwrites, and edits through
the schema: shapes, types, scales, zero points, quantized dimensions, operator inputs and
outputs, opcodes, subgraph inputs and outputs, options, operator order, buffer indices) runs
through `edgepack inspect`, `fold` and `build --board host --clusters 4` in a forked child
with a 2 GiB address-space limit and a timeout. Outcomes: result, one-line error, usage error
(exit 2, one line) -- the good ones -- and multi-line error, result with stderr, traceback,
signal, hang, memory blow-up, half-written output, bad exit code.

    .venv/bin/python bench/fuzz.py                        # 10,000 mutants per command
    .venv/bin/python bench/fuzz.py --count 500 --commands build --workers 2
    .venv/bin/python bench/fuzz.py --keep /tmp/bad         # write the bad mutants there
    .venv/bin/python bench/fuzz.py --commands build --minutes 60   # as many as fit in an hour
    .venv/bin/python bench/fuzz.py --commands fold --start 8728 --count 1772  # go on from 8,728

Mutant n is the same for the same --seed on any machine, whichever worker makes it.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.mutants import OUTCOMES, mutant, preload, run_command, seeds  # noqa: E402

GOOD = {"result", "one-line error", "usage error"}


def worker(command: str, seed: int, numbers: range, timeout: float, keep: Path | None,
           results: Path, deadline: float) -> None:
    base = seeds()
    with tempfile.TemporaryDirectory(prefix="edgepack-fuzz-") as tmp:
        workdir = Path(tmp) / "run"
        workdir.mkdir()
        with results.open("w") as f:
            for n in numbers:
                if time.monotonic() > deadline:
                    break
                label, data = mutant(seed, n, base)
                o = run_command(command, data, workdir, timeout=timeout)
                row = {"n": n, "label": label, "kind": o.kind, "exit": o.exit_code,
                       "seconds": round(o.seconds, 3)}
                if o.kind not in GOOD:
                    row["stderr"] = o.stderr[-2000:]
                    if keep is not None:
                        (keep / f"{command}-{n}.tflite").write_bytes(data)
                f.write(json.dumps(row) + "\n")
                f.flush()


def run(command: str, args) -> list[dict]:
    """Fork `args.workers` workers over the mutants start..start+count-1 (interleaved); their
    rows."""
    out = Path(tempfile.mkdtemp(prefix=f"fuzz-{command}-"))
    pids = []
    for w in range(args.workers):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                numbers = range(args.start + w, args.start + args.count, args.workers)
                worker(command, args.seed, numbers, args.timeout, args.keep,
                       out / f"{w}.jsonl", args.deadline)
            except BaseException:  # noqa: BLE001
                import traceback

                traceback.print_exc()
                code = 1
            os._exit(code)
        pids.append(pid)
    for pid in pids:
        os.waitpid(pid, 0)
    rows = [json.loads(line) for w in range(args.workers)
            for line in (out / f"{w}.jsonl").read_text().splitlines()]
    return sorted(rows, key=lambda r: r["n"])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--count", type=int, default=10_000, help="mutants per command")
    p.add_argument("--commands", default="inspect,fold,build")
    p.add_argument("--start", type=int, default=0, help="number of the first mutant (a run "
                   "can go on where an earlier one stopped)")
    p.add_argument("--seed", type=int, default=16)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--timeout", type=float, default=60.0, help="seconds before a run is a hang")
    p.add_argument("--keep", type=Path, help="directory for the mutants with a bad outcome")
    p.add_argument("--json", type=Path, help="write every row here")
    p.add_argument("--minutes", type=float, help="stop starting mutants after this long (the "
                   "counts say how many ran)")
    args = p.parse_args()
    args.deadline = time.monotonic() + 60 * args.minutes if args.minutes else float("inf")
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    preload()
    every = {}
    print(f"seed {args.seed}, mutants {args.start}..{args.start + args.count - 1} per command, "
          f"{args.workers} workers, timeout {args.timeout:g} s, address space 2 GiB per run")
    for command in args.commands.split(","):
        t0 = time.monotonic()
        rows = run(command, args)
        wall = time.monotonic() - t0
        every[command] = rows
        counts = collections.Counter(r["kind"] for r in rows)
        bad = sum(v for k, v in counts.items() if k not in GOOD)
        print(f"\n{command}: {len(rows)} mutants in {wall:.0f} s "
              f"({len(rows) / wall:.1f} per s with {args.workers} workers, "
              f"{sum(r['seconds'] for r in rows) / max(len(rows), 1):.3f} s per run); bad: {bad}")
        for kind in OUTCOMES:
            print(f"  {kind:<22} {counts.get(kind, 0):>7,}")
        for r in [r for r in rows if r["kind"] not in GOOD][:12]:
            last = (r.get("stderr") or "").strip().splitlines()[-1:] or [""]
            print(f"    {r['label']}: {r['kind']} (exit {r['exit']}): {last[0][:160]}")
    if args.json:
        args.json.write_text(json.dumps(every, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
