"""Weight bytes per fixture model, in every form, against int8 dense measured in the same run.

    .venv/bin/python bench/weight_bytes.py [--board corstone-300] [MODEL ...]

Columns (bytes of all weight tensors; "x" = relative to int8 dense, the baseline):
* int8 dense: the model as given.
* edgepack packed: layer-shared codebooks + indices in the runtime's layout (`edgepack.packing`,
  rows 4-byte aligned), what the firmware stores. Tensors `fold` keeps dense count as int8.
* TFLM LUT: TFLite Micro's lookup-table compression of the model as given: per-channel value
  tables (equal stride = the most distinct values in any channel, at most 128, else the tensor
  stays dense) + MSB-first indices of ceil(log2(stride)) bits, no gaps, + a 16-byte header;
  a tensor that would grow stays dense.
* entropy bound: codebooks + indices at their empirical entropy; no fixed-width code beats it.
* Vela before / after: Vela's NPU-encoded weight streams (incl. 10 B bias+scale per output
  channel) of the model as given and of the folded model, for the board's Ethos-U.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgepack import vela  # noqa: E402
from edgepack.boards import load_board  # noqa: E402
from edgepack.fold import fold_model  # noqa: E402
from edgepack.inspect import channel_axis  # noqa: E402
from edgepack.report import index_entropy_bits, packed_weight_bytes  # noqa: E402
from edgepack.tflite import read_model, serialize_model  # noqa: E402

FIXTURES = sorted((ROOT / "tests" / "fixtures").glob("*.tflite"))
TFLM_HEADER = 16  # the TFLM_DECODE ancillary tensor's header
TFLM_MAX_STRIDE = 128


def tflm_lut_bytes(op, t) -> int:
    """TFLM LUT compression size of one int8 weight tensor (per-channel tables)."""
    per = np.moveaxis(np.asarray(t.data), channel_axis(op, t), 0)
    per = per.reshape(per.shape[0], -1)
    q = per.reshape(-1)
    per_channel = t.quantization is not None and t.quantization.per_channel
    if per_channel:
        stride = max(np.unique(row).size for row in per)
        tables = per.shape[0]
    else:
        stride = int(np.unique(q).size)
        tables = 1
    if stride > TFLM_MAX_STRIDE:
        return int(q.size)
    bits = max(1, math.ceil(math.log2(stride)))
    # a tensor is worth compressing only when it gets smaller
    return min(int(q.size), TFLM_HEADER + tables * stride + math.ceil(q.size * bits / 8))


def measure(path: Path, board) -> dict:
    model = read_model(path)
    fr = fold_model(model, check_agreement=False)
    by_tensor = {ft.tensor: ft for ft in fr.tensors}
    dense = packed = lut = 0
    entropy = 0.0
    seen = set()
    for op, t in model.weight_tensors():
        if t.index in seen or t.dtype != "int8":
            continue
        seen.add(t.index)
        n = int(t.data.size)
        dense += n
        lut += tflm_lut_bytes(op, t)
        ft = by_tensor[t.index]
        if ft.folded:
            packed += packed_weight_bytes(op.opcode, t.shape, ft.codebook.size, ft.index_bits)
            entropy += ft.codebook.size + n * index_entropy_bits(ft.indices) / 8
        else:  # kept dense: its distinct values as the table, the values at their entropy
            packed += n
            entropy += np.unique(t.data).size + n * index_entropy_bits(t.data) / 8
    row = {"model": path.stem, "dense": dense, "packed": packed, "lut": lut,
           "entropy": math.ceil(entropy), "vela_before": None, "vela_after": None}
    if board.npu is not None:
        cmp = vela.compare_raw_and_folded(str(path), serialize_model(fr.model), board)
        row["vela_before"] = cmp.raw.encoded_weight_bytes
        row["vela_after"] = cmp.folded.encoded_weight_bytes
    return row


def _cell(n, base) -> str:
    return "–" if n is None else f"{n:,} ({n / base:.2f}x)"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="*", type=Path, default=FIXTURES)
    ap.add_argument("--board", default="corstone-300")
    args = ap.parse_args(argv)
    board = load_board(args.board)
    t0 = time.perf_counter()
    rows = [measure(p, board) for p in args.models]
    acc = board.npu.accelerator if board.npu else "no NPU"
    print(f"### Weight bytes ({board.name}, Vela {acc}); x = relative to int8 dense\n")
    print("| model | int8 dense (baseline) | edgepack packed | TFLM LUT (per-channel) "
          "| index entropy bound | Vela encoded, as given | Vela encoded, folded |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        b = r["dense"]
        print(f"| {r['model']} | {b:,} | {_cell(r['packed'], b)} | {_cell(r['lut'], b)} "
              f"| {_cell(r['entropy'], b)} | {_cell(r['vela_before'], b)} "
              f"| {_cell(r['vela_after'], b)} |")
    print(f"\n({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
