#!/usr/bin/env python3
"""Per-layer instructions: edgepack dense, edgepack palette (K = 16) and, when the environment
variable CMSIS_NN_DIR points at a CMSIS-NN checkout, CMSIS-NN, on the same data in one firmware
image, outputs compared byte for byte (against the host build, itself bit-exact with TFLM).

Two images run on QEMU mps3-an547 (Cortex-M55, -icount shift=5, SysTick counting): one built
with Helium (-mcpu=cortex-m55: edgepack's and CMSIS-NN's MVE paths) and one without
(-mcpu=cortex-m55+nomve: both DSP paths). A third, optional run (--board mps2-an386) measures the
DSP path on a Cortex-M4.

    CMSIS_NN_DIR=/path/to/CMSIS-NN python bench/cmsis_nn.py [--repeat 1]

CMSIS-NN is never needed to build or test edgepack; without CMSIS_NN_DIR its columns are
skipped. CMSIS-NN's FULLY_CONNECTED takes per-row kernel sums that TFLM computes once at Prepare
(arm_vector_sum_s8); that call is made outside the timed region. edgepack's FULLY_CONNECTED gets
the same sums as stored weight sums (weight_sums, what the build stores with the model), except
in the row "sums in the kernel", where the kernel sums the weights itself (weight_sums = NULL).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import runtime_kernels as RK  # noqa: E402

# (label, kind, H, W, C_in, C_out, kernel, stride, pad): the five layers of the peers note, then
# MobileNetV2's layer kinds (tests/mobilenet_model.py: 3x3 stem, depthwise 3x3 stride 1 / 2,
# pointwise expand / project, the classifier).
LAYERS = [
    ("conv 3x3, 12x12, 16->32, SAME", "conv2d", 12, 12, 16, 32, 3, 1, 1),
    ("pointwise 1x1, 24x24, 32->64", "conv2d", 24, 24, 32, 64, 1, 1, 0),
    ("depthwise 3x3, 24x24x64", "depthwise_conv2d", 24, 24, 64, 64, 3, 1, 1),
    ("FC 512->64", "fully_connected", 1, 1, 512, 64, 1, 1, 0),
    ("FC 64->10", "fully_connected", 1, 1, 64, 10, 1, 1, 0),
    ("FC 512->64, sums in the kernel", "fully_connected", 1, 1, 512, 64, 1, 1, 0),
    ("mnv2 stem conv 3x3 s2, 32x32, 3->16", "conv2d", 32, 32, 3, 16, 3, 2, 0),
    ("mnv2 dw 3x3 s2, 16x16x48", "depthwise_conv2d", 16, 16, 48, 48, 3, 2, 0),
    ("mnv2 pw expand 1x1, 8x8, 16->96", "conv2d", 8, 8, 16, 96, 1, 1, 0),
    ("mnv2 pw project 1x1, 8x8, 96->24", "conv2d", 8, 8, 96, 24, 1, 1, 0),
]


def make_layers(seed: int):
    out = []
    for i, (label, kind, h, w, cin, cout, k, s, pad) in enumerate(LAYERS):
        rng = np.random.default_rng([seed, i])
        codebook = np.sort(rng.choice(np.arange(-127, 128), size=16, replace=False)).astype(np.int8)
        zp_in, zp_out = int(rng.integers(-20, 20)), int(rng.integers(-20, 20))
        if kind == "fully_connected":
            x = rng.integers(-128, 128, size=(1, cin)).astype(np.int8)
            shape, out_shape, taps = (cout, cin), (1, cout), cin
        else:
            x = rng.integers(-128, 128, size=(1, h, w, cin)).astype(np.int8)
            oh, ow = (h + 2 * pad - k) // s + 1, (w + 2 * pad - k) // s + 1
            out_shape = (1, oh, ow, cout)
            shape = (1, k, k, cout) if kind == "depthwise_conv2d" else (cout, k, k, cin)
            taps = k * k * (1 if kind == "depthwise_conv2d" else cin)
        idx = rng.integers(0, 16, size=shape).astype(np.uint8)
        sh = -int(np.ceil(np.log2(np.sqrt(taps) * 74 * 74 / 40)))  # outputs spread over int8
        macs = int(np.prod(out_shape)) * (k * k if kind == "depthwise_conv2d" else
                                          cin if kind == "fully_connected" else k * k * cin)
        layer = RK.weighted_pair(label, kind, x, shape, codebook, idx, 4, rng, out_shape=out_shape, zp_in=zp_in,
                                 zp_out=zp_out, shift_range=(sh, sh + 1), stride=(s, s), pad=(pad, pad))
        if kind == "fully_connected" and "in the kernel" not in label:
            # the per-row weight sums the build stores with the model (CMSIS-NN gets the same
            # precomputed, from arm_vector_sum_s8 outside the timed region)
            sums = (codebook[idx].astype(np.int64)).sum(axis=1).astype(np.int32)
            layer[1].weight_sums = layer[2].weight_sums = sums
        out.append((layer, macs))
    return out


def cmsis_call(i: int, lw) -> str:
    """C statements calling CMSIS-NN on layer i's dense arrays (st = status)."""
    p = lw.params
    pre = f"L{i}d"
    act = f".activation = {{{p.act_min}, {p.act_max}}}"
    q = f"cmsis_nn_per_channel_quant_params qp = {{(int32_t *){pre}_m, (int32_t *){pre}_s}};"
    ctx = "cmsis_nn_context ctx = {cmsis_buf, sizeof cmsis_buf};"
    if lw.kernel == "fully_connected":
        return (f"{ctx} {q} cmsis_nn_fc_params fp = {{.input_offset = {p.input_offset}, .filter_offset = 0, "
                f".output_offset = {p.output_offset}, {act}}}; "
                f"cmsis_nn_dims id = {{{p.batches}, 1, 1, {p.input_depth}}}, fd = {{{p.input_depth}, 1, 1, "
                f"{p.output_depth}}}, bd = {{1, 1, 1, {p.output_depth}}}, od = {{{p.batches}, 1, 1, {p.output_depth}}};",
                f"arm_fully_connected_per_channel_s8(&ctx, &fp, &qp, &id, L{i}_in, &fd, {pre}_w, &bd, {pre}_b, &od, "
                f"out_buf)",
                f"arm_vector_sum_s8((int32_t *)cmsis_buf, {p.input_depth}, {p.output_depth}, {pre}_w, "
                f"{p.input_offset}, 0, {pre}_b);")
    dims = (f"cmsis_nn_dims id = {{{p.input.n}, {p.input.h}, {p.input.w}, {p.input.c}}}, "
            f"fd = {{{p.filter.n}, {p.filter.h}, {p.filter.w}, {p.filter.c}}}, bd = {{1, 1, 1, {p.output.c}}}, "
            f"od = {{{p.output.n}, {p.output.h}, {p.output.w}, {p.output.c}}};")
    win = (f".stride = {{{p.stride_w}, {p.stride_h}}}, .padding = {{{p.pad_left}, {p.pad_top}}}, "
           f".dilation = {{{p.dilation_w}, {p.dilation_h}}}, {act}")
    if lw.kernel == "conv2d":
        return (f"{ctx} {q} cmsis_nn_conv_params cp = {{.input_offset = {p.input_offset}, "
                f".output_offset = {p.output_offset}, {win}}}; {dims}",
                f"arm_convolve_wrapper_s8(&ctx, &cp, &qp, &id, L{i}_in, &fd, {pre}_w, &bd, {pre}_b, &od, out_buf)", "")
    return (f"{ctx} {q} cmsis_nn_dw_conv_params cp = {{.input_offset = {p.input_offset}, "
            f".output_offset = {p.output_offset}, .ch_mult = {p.depth_multiplier}, {win}}}; {dims}",
            f"arm_depthwise_conv_wrapper_s8(&ctx, &cp, &qp, &id, L{i}_in, &fd, {pre}_w, &bd, {pre}_b, &od, out_buf)",
            "")


def generate(layers, repeat: int, cmsis: bool) -> str:
    src = RK.generate([lay for lay, _ in layers], repeat)
    if not cmsis:
        return src
    src = src.replace('#include "counter.h"\n', '#include "counter.h"\n#include "arm_nnfunctions.h"\n'
                      "static int8_t cmsis_buf[65536] __attribute__((aligned(16)));\n", 1)
    calls = []
    for i, ((label, dense, pal, x, expected), _) in enumerate(layers):
        setup, call, prep = cmsis_call(i, dense)
        n = expected.size
        calls.append(
            f"    {{ {setup}\n      arm_cmsis_nn_status cs = ARM_CMSIS_NN_SUCCESS; {prep}\n"
            f"      memset(out_buf, 0, {n});\n      t0 = counter_read();\n"
            f"      for (int r = 0; r < {repeat}; ++r) cs = {call};\n      t1 = counter_read();\n"
            f"      {{ int ok = cs == ARM_CMSIS_NN_SUCCESS && memcmp(out_buf, L{i}_exp, {n}) == 0; bad += !ok;\n"
            f"        printf(\"RESULT {i} cmsis %lu %s\\n\", (unsigned long)((t1 - t0 - base) / {repeat}),"
            f" ok ? \"ok\" : \"MISMATCH\"); }} }}\n")
    return src.replace('    printf("DONE %d\\n", bad);', "".join(calls) + '    printf("DONE %d\\n", bad);')


def cmsis_library(cmsis_dir: Path, cflags: list[str]) -> Path:
    """CMSIS-NN's int8 convolution, depthwise, fully connected, transpose and support sources
    compiled once per flag set into a static library (cached in the temp directory)."""
    import hashlib
    import subprocess

    srcs = [f for d in ("ConvolutionFunctions", "FullyConnectedFunctions", "NNSupportFunctions", "TransposeFunctions")
            for f in sorted((cmsis_dir / "Source" / d).glob("*.c")) if not re.search(r"_f(16|32)", f.name)]
    key = hashlib.sha256(("\0".join(cflags) + str(cmsis_dir.resolve())).encode()).hexdigest()[:16]
    out = Path(tempfile.gettempdir()) / f"ep-cmsis-nn-{key}"
    lib = out / "libcmsisnn.a"
    if lib.exists():
        return lib
    out.mkdir(parents=True, exist_ok=True)
    objs = []
    for f in srcs:
        o = out / (f.stem + ".o")
        subprocess.run(["arm-none-eabi-gcc", *cflags, "-w", "-I", str(cmsis_dir / "Include"), "-c", str(f), "-o",
                        str(o)], check=True)
        objs.append(str(o))
    subprocess.run(["arm-none-eabi-ar", "rcs", str(lib), *objs], check=True)
    return lib


def run(layers, cflags: list[str], board: str, cmsis_dir: Path | None, repeat: int, work: Path) -> dict:
    extra, libs = [], []
    if cmsis_dir is not None:
        libs = [cmsis_library(cmsis_dir, [f for f in cflags if f not in ("-Wall", "-Wextra", "-Werror")])]
        extra = ["-I", str(cmsis_dir / "Include")]
    out = RK.build_and_run(generate(layers, repeat, cmsis_dir is not None), work, cflags + extra, board, libs)
    tpi = RK.ticks_per_insn(out)
    return {(int(m[1]), m[2]): (int(m[3]) / tpi, m[4])
            for m in re.finditer(r"RESULT (\d+) (\w+) (\d+) (\w+)", out)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--m4", action="store_true", help="also run the DSP build on mps2-an386 (Cortex-M4)")
    ap.add_argument("--only", choices=["Helium", "DSP", "DSP M4"], help="run one build only")
    args = ap.parse_args(argv)
    cmsis_dir = Path(os.environ["CMSIS_NN_DIR"]) if os.environ.get("CMSIS_NN_DIR") else None
    layers = make_layers(args.seed)
    builds = [("Helium", "mps3-an547", ["-mcpu=cortex-m55", "-mthumb", "-mfloat-abi=hard"]),
              ("DSP", "mps3-an547", ["-mcpu=cortex-m55+nomve", "-mthumb", "-mfloat-abi=hard"])]
    if args.m4:
        builds.append(("DSP M4", "mps2-an386", RK.BENCH_BOARDS["mps2-an386"]))
    commit = ""
    if cmsis_dir is not None:
        c = cmsis_dir / "COMMIT"
        commit = c.read_text().strip()[:8] if c.exists() else "unknown commit"
    bad = 0
    for name, board, cpu in builds:
        if args.only and name != args.only:
            continue
        with tempfile.TemporaryDirectory(prefix="ep-cmsis-") as d:
            res = run(layers, cpu + RK.COMMON_CFLAGS, board, cmsis_dir, args.repeat, Path(d))
        print(f"\n{name} build, QEMU {board}, arm-none-eabi-gcc {' '.join(cpu)} -O2"
              + (f"; CMSIS-NN {commit}" if cmsis_dir else "; CMSIS-NN not given (CMSIS_NN_DIR)") + "\n")
        head = "| layer | MACs | edgepack dense | edgepack palette |"
        if cmsis_dir:
            head += " CMSIS-NN | dense / CMSIS-NN | palette / CMSIS-NN |"
        head += " palette weight B / dense | outputs |"
        print(head)
        print("|" + " --- |" * (head.count("|") - 1))
        for i, ((label, dense, pal, x, expected), macs) in enumerate(layers):
            (d, okd), (p, okp) = res[(i, "dense")], res[(i, "palette")]
            row = f"| {label} | {macs:,} | {d:,.0f} | {p:,.0f} |"
            oks = [okd, okp]
            if cmsis_dir:
                c, okc = res[(i, "cmsis")]
                oks.append(okc)
                row += f" {c:,.0f} | {d / c:.2f} | {p / c:.2f} |"
            ok = all(o == "ok" for o in oks)
            bad += not ok
            row += f" {pal.weight_bytes / dense.weight_bytes:.3f} | {'equal' if ok else 'MISMATCH'} |"
            print(row)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
