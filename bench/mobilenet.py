"""A MobileNetV2-sized int8 model through the whole pipeline: fold, Vela, build, QEMU.

    .venv/bin/python bench/mobilenet.py [--small] [--no-qemu] [--fold-only]

The model is `tests/mobilenet_model.py`'s MobileNetV2 (alpha 0.35, 96x96x3, 10 classes: 53
weight tensors, ~0.39 M weights, every layer clustered to 16 values then batch-norm folded and
quantized per channel). `--small` uses the tests' variant (48x48, 256 head channels). Prints
markdown tables:

1. `fold_model` stage by stage (read, fold, serialize, the TFLM agreement check) and the
   `edgepack fold` command; the baselines measured in the same run are 32 TFLM inferences of
   the model (what the agreement check runs twice) and `fold_model` in one process
   (`workers=1`); by default a model this size folds its tensors in a pool of forked processes
   on every core, the TFLM pass of the model as given running in the pool meanwhile. Wall and
   CPU time (this process and its children): CPU time is robust to a busy machine. Target:
   fold_model under 5 s wall on 2 cores.
2. Per-layer K and weight SQNR, by layer kind, for `--clusters auto` and `--clusters 16`.
3. Weight bytes: dense int8, codebooks + indices at their bit width, as the firmware stores
   them, and Vela's encoding.
4. Vela's encoded weight bytes and estimated cycles (NPU, and total: Vela's estimate including
   memory transfers, which `edgepack build` prints), model as given vs folded, on corstone-300
   (ethos-u55-128) and corstone-320 (ethos-u85-256).
5. `edgepack build --board corstone-300` wall time against `vela` alone (both as commands).
6. QEMU mps3-an547 (Cortex-M55, CPU path): instructions per inference of the whole model with
   the runtime's palette kernels (the clustered model, `--clusters 16`) against its dense int8
   kernels (the same network with never-clustered weights, which `--clusters auto` keeps dense),
   per operator type; both runs bit-exact against TFLM.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgepack import vela  # noqa: E402
from edgepack.boards import load_board  # noqa: E402
from edgepack.fold import fold_model, measure_agreement  # noqa: E402
from edgepack.tflite import read_model, serialize_model  # noqa: E402
from tests.mobilenet_model import SMALL, mobilenet_v2  # noqa: E402

BIN = Path(sys.executable).parent
SHORT = {"CONV_2D": "conv 3x3 (stem)", "DEPTHWISE_CONV_2D": "depthwise 3x3",
         "FULLY_CONNECTED": "fully connected"}


def _cpu() -> float:
    """CPU seconds of this process and its finished children (the agreement check forks)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def timed(fn, *args, **kw):
    """(result, wall s, CPU s)."""
    t, c = time.perf_counter(), _cpu()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t, _cpu() - c


def command(cmd: list[str]) -> tuple[subprocess.CompletedProcess, float]:
    t = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(cmd)}\n{done.stderr[-2000:]}")
    return done, time.perf_counter() - t


def kind(ft) -> str:
    if ft.op_type == "CONV_2D":
        return "conv 1x1" if ft.shape[1] == 1 else "conv 3x3 (stem)"
    return SHORT.get(ft.op_type, ft.op_type)


def model_table(net, path: Path) -> None:
    m = read_model(path)
    ops = defaultdict(int)
    for op in m.operators:
        ops[op.opcode] += 1
    print("### The model\n")
    print("| input | operators | weight tensors | weights | model file |")
    print("| --- | --- | --- | --- | --- |")
    print(f"| {'x'.join(map(str, net.input_shape[1:]))} int8 | {len(m.operators)} ("
          + ", ".join(f"{n} {k}" for k, n in sorted(ops.items())) + f") | {len(net.layers)} | "
          f"{net.weight_count:,} | {path.stat().st_size:,} B |\n")


def fold_tables(path: Path, tmp: Path) -> dict:
    from tflite_micro import runtime

    model, t_read, c_read = timed(read_model, path)
    fr1, t_fold1, c_fold1 = timed(fold_model, model, "auto", check_agreement=False, workers=1)
    fr, t_fold, c_fold = timed(fold_model, model, "auto", check_agreement=False)
    assert fr.model.sha256 == fr1.model.sha256, "the pool must fold exactly as one process"
    _, t_all1, c_all1 = timed(fold_model, model, "auto", workers=1)
    data, t_ser, c_ser = timed(serialize_model, fr.model)
    agreement, t_agree, c_agree = timed(measure_agreement, model, fr.model)
    _, t_all, c_all = timed(fold_model, model, "auto")

    def baseline():
        it = runtime.Interpreter.from_bytes(path.read_bytes())
        x = np.random.default_rng(0).integers(-128, 128, (32, *model.tensors[model.inputs[0]].shape[1:]),
                                              dtype=np.int8)
        for n in range(32):
            it.set_input(x[n:n + 1], 0)
            it.invoke()
    _, t_base, c_base = timed(baseline)
    _, t_cli = command([str(BIN / "edgepack"), "fold", str(path), "-o", str(tmp / "folded.tflite")])

    print("### Fold time (`--clusters auto`; target: fold_model < 5 s)\n")
    print("| step | wall | CPU |")
    print("| --- | --- | --- |")
    rows = [("baseline: 32 TFLM inferences of the model as given", t_base, c_base),
            ("baseline: fold_model in one process (`workers=1`), agreement check included",
             t_all1, c_all1),
            ("read_model", t_read, c_read),
            (f"fold {len(fr.tensors)} weight tensors, one process", t_fold1, c_fold1),
            (f"fold {len(fr.tensors)} weight tensors, pool of {os.cpu_count()} (same bytes)",
             t_fold, c_fold),
            ("serialize the folded model", t_ser, c_ser),
            ("TFLM agreement check alone (32 inputs, both models)", t_agree, c_agree),
            ("**fold_model (default: pool, agreement check overlapped)**", t_all, c_all)]
    for name, t, c in rows:
        print(f"| {name} | {t:.2f} s | {c:.2f} s |")
    print(f"| `edgepack fold` command (Python start-up, progress, writing) | {t_cli:.2f} s | - |\n")
    print(f"Agreement, folded vs given (TFLM, {agreement.source}): top-1 "
          f"{100 * agreement.top1_agreement:.1f} %, mean |diff| {agreement.mean_abs_diff:.2f}, "
          f"max {agreement.max_abs_diff} int8 steps.\n")

    fr16 = fold_model(model, 16, check_agreement=False)
    print("### Per-layer K and weight SQNR, by layer kind\n")
    print("| layers | count | auto: K min / median / max | auto: SQNR min / median | "
          "auto: per-channel gain recovered | `--clusters 16`: SQNR min / median |")
    print("| --- | --- | --- | --- | --- | --- |")
    groups = defaultdict(list)
    for a, b in zip(fr.tensors, fr16.tensors):
        groups[kind(a)].append((a, b))
    groups["**all**"] = [p for g in list(groups.values()) for p in g]
    for name, pairs in groups.items():
        ks = [a.codebook.size for a, _ in pairs if a.folded]
        sa = [a.sqnr_db for a, _ in pairs if a.folded]
        s16 = [b.sqnr_db for _, b in pairs]
        gain = sum(a.hypothesis == "per-channel gain" for a, _ in pairs)
        dense = len(pairs) - len(ks)

        def db(xs):
            finite = [x for x in xs if np.isfinite(x)]
            if not finite:
                return "lossless"
            lossless = len(xs) - len(finite)
            return (f"{min(finite):.1f} / {np.median(finite):.1f} dB"
                    + (f" ({lossless} lossless)" if lossless else ""))
        print(f"| {name} | {len(pairs)} | {min(ks)} / {int(np.median(ks))} / {max(ks)}"
              f"{f' ({dense} dense)' if dense else ''} | {db(sa)} | {gain} | {db(s16)} |")
    print()
    return {"folded": fr}


def vela_tables(path: Path, folded: bytes, boards=("corstone-300", "corstone-320")) -> None:
    print("### Vela: model as given vs folded (`--clusters auto`)\n")
    print("| board (accelerator) | encoded weights given | folded | change | NPU cycles given | "
          "folded | change | total cycles given | folded | change | Vela wall (2 compiles) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in boards:
        board = load_board(name)
        cmp, t, _ = timed(vela.compare_raw_and_folded, str(path), folded, board)
        r, f = cmp.raw, cmp.folded
        print(f"| {name} ({board.npu.accelerator}) | {r.encoded_weight_bytes:,} B | "
              f"{f.encoded_weight_bytes:,} B | {cmp.encoded_weight_change_pct:+.1f} % | "
              f"{r.npu_cycles:,} | {f.npu_cycles:,} | "
              f"{100.0 * (f.npu_cycles - r.npu_cycles) / r.npu_cycles:+.1f} % | "
              f"{r.total_cycles:,} | {f.total_cycles:,} | {cmp.total_cycle_change_pct:+.1f} % | "
              f"{t:.1f} s |")
    print()


def build_tables(path: Path, tmp: Path) -> None:
    board = load_board("corstone-300")
    _, t_vela = command([sys.executable, "-m", "ethosu.vela", str(path),
                         *vela.vela_arguments(board, tmp / "vela", verbose_performance=False)])
    out = tmp / "c300"
    _, t_build = command([str(BIN / "edgepack"), "build", str(path), "--board", "corstone-300",
                          "-o", str(out)])
    report = json.loads((out / "report.json").read_text())
    w = report["weights"]
    print("### Weight bytes (corstone-300 build, `--clusters auto`)\n")
    print("| dense int8 | folded (codebooks + indices) | packed as the firmware stores them | "
          "index entropy bound | Vela encoded, given | Vela encoded, folded |")
    print("| --- | --- | --- | --- | --- | --- |")
    print(f"| {w['dense_int8']:,} B | {w['folded']:,} B ({w['folded'] / w['dense_int8']:.2f}x) | "
          f"{w['packed']:,} B ({w['packed'] / w['dense_int8']:.2f}x) | {w['entropy_bound']:,} B | "
          f"{w['vela_dense']:,} B | {w['vela_folded']:,} B |\n")
    print("### `edgepack build --board corstone-300` against `vela` alone (commands, wall time)\n")
    print("| baseline: `vela` (model as given) | `edgepack build` | ratio |")
    print("| --- | --- | --- |")
    print(f"| {t_vela:.1f} s | {t_build:.1f} s | {t_build / t_vela:.2f}x |\n")
    print("`edgepack build` runs Vela twice (model as given and folded), folds, checks the folded "
          "model against the given one with TFLM, computes golden outputs and renders the "
          "project and the report.\n")


def qemu_table(palette_model: Path, dense_model: Path, tmp: Path) -> None:
    runs = {}
    for form, path, clusters in (("dense", dense_model, "auto"), ("palette", palette_model, "16")):
        out = tmp / f"an547_{form}"
        command([str(BIN / "edgepack"), "build", str(path), "--board", "mps3-an547",
                 "--clusters", clusters, "-o", str(out)])
        done, t = command([str(BIN / "edgepack"), "run", str(out), "--sim", "qemu", "--json",
                           "--timeout", "600"])
        data = json.loads(done.stdout)
        run = data["runs"][0]
        info = json.loads((out / "build.json").read_text())
        palettes = sum(1 for f in info["fold"] if f.get("folded"))
        runs[form] = (run, t, palettes, len(info["fold"]))
    print("### QEMU mps3-an547 (Cortex-M55): whole model, dense int8 vs palette kernels\n")
    print("| operator | dense instructions | palette instructions | ratio |")
    print("| --- | --- | --- | --- |")
    per = {}
    for form, (run, *_rest) in runs.items():
        counts = defaultdict(int)
        for layer in run["layers"]:
            counts[layer["opcode"]] += layer["count"]
        per[form] = counts
    # layer counts are SysTick ticks summed over the golden inputs; scale to instructions
    scale = {f: runs[f][0]["instructions"] / max(1, sum(per[f].values())) for f in runs}
    for op in sorted(per["dense"], key=lambda k: -per["dense"][k]):
        d, p = per["dense"][op] * scale["dense"], per["palette"][op] * scale["palette"]
        print(f"| {op} | {d:,.0f} | {p:,.0f} | {p / d:.2f} |")
    d, p = runs["dense"][0]["instructions"], runs["palette"][0]["instructions"]
    print(f"| **whole model** | **{d:,}** | **{p:,}** | **{p / d:.2f}** |\n")
    for form, (run, t, palettes, total) in runs.items():
        print(f"- {form}: {palettes} of {total} weight tensors in palette form; "
              f"{run['result_line']}; `edgepack run` (CMake build + QEMU) {t:.1f} s wall.")
    print()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--small", action="store_true", help="the tests' 48x48 variant")
    ap.add_argument("--no-qemu", action="store_true", help="skip the QEMU table")
    ap.add_argument("--fold-only", action="store_true", help="stop after the fold tables")
    args = ap.parse_args(argv)
    kw = SMALL if args.small else {}
    with tempfile.TemporaryDirectory(prefix="ep-mobilenet-") as d:
        tmp = Path(d)
        net = mobilenet_v2(**kw)
        path = tmp / "mobilenet_v2.tflite"
        path.write_bytes(net.tflite)
        dense_path = tmp / "mobilenet_v2_dense.tflite"
        dense_path.write_bytes(mobilenet_v2(clusters=None, **kw).tflite)
        model_table(net, path)
        res = fold_tables(path, tmp)
        if args.fold_only:
            return 0
        vela_tables(path, serialize_model(res["folded"].model))
        build_tables(path, tmp)
        if not args.no_qemu:
            qemu_table(path, dense_path, tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
