"""Vela's own per-layer encoded weight bytes (`--enable-debug-db`), to check fold's cost model.

    per_layer = vela_weight_bytes(model_bytes, board)   # {operator index: bytes}

`perf_debug.weight_total_bytes` (weights + 10 B bias and scale per output channel; sums to the
summary CSV's total_npu_encoded_weights) maps to the input model's operator through
perf.source_id -> source.ext_key (Vela may reorder operators, so never by position).
"""

from __future__ import annotations

import csv
import io
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

from edgepack.vela import vela_arguments


def _tables(path: Path) -> dict[str, list[dict]]:
    out = {}
    for table in ET.parse(path).getroot().findall("table"):
        rows = list(csv.reader(io.StringIO((table.text or "").strip())))
        out[table.get("name")] = [dict(zip(rows[0], r)) for r in rows[1:]] if rows else []
    return out


def vela_weight_bytes(model: bytes, board) -> dict[int, int]:
    with tempfile.TemporaryDirectory(prefix="edgepack-veladb-") as tmp:
        src = Path(tmp) / "m.tflite"
        src.write_bytes(model)
        out = Path(tmp) / "out"
        cmd = [sys.executable, "-m", "ethosu.vela", str(src), "--enable-debug-db"] + \
            vela_arguments(board, out, verbose_performance=False)
        subprocess.run(cmd, check=True, capture_output=True, cwd=tmp, timeout=300)
        t = _tables(out / "m_debug.xml")
    source = {r["id"]: int(r["ext_key"]) for r in t["source"]}
    perf = {r["id"]: r["source_id"] for r in t["perf"]}
    per_op: dict[int, int] = {}
    for r in t["perf_debug"]:
        if r.get("weight_total_bytes", "").strip():
            op = source[perf[r["id"]]]
            per_op[op] = per_op.get(op, 0) + int(r["weight_total_bytes"])
    return per_op
