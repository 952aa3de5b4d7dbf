"""Vela's debug database (`--enable-debug-db`): which input-model operator each NPU operation computes.

Vela may run operators in another order than the model lists them (two branches of a residual
block), fuse several into one NPU operation (an activation into the convolution before it), split
one into many (stripes, the ~28 operations of a softmax) or run none for it (RESHAPE, a
CONCATENATION whose producers write into its slices). The database says which: its `queue` table
lists every NPU operation by command-stream offset (the offset of its NPU_OP_* command) and
command stream (`cmdstream_id`: the n-th `ethos-u` operator of Vela's output, from 1); the
operation's `scheduled_id` is a row of `perf`, whose `source_id` is a row of `source`, whose
`ext_key` is the operator's index in the model Vela compiled. Rows of `group` attach a fused
operator's `perf` row to the operation that runs it.
"""

from __future__ import annotations

import csv
import io
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from edgepack.errors import ModelError


@dataclass(frozen=True)
class NpuOperation:
    """One NPU operation of Vela's output and the input-model operators it computes."""

    stream: int  # which `ethos-u` operator of Vela's output (0 = the first)
    offset: int  # byte offset of its NPU_OP_* command in that command stream
    operators: tuple[int, ...]  # input-model operator indices, ascending: the first runs it,
    # the others are fused into it (its output is the last one's)


@dataclass(frozen=True)
class VelaDebugDb:
    operations: dict[tuple[int, int], NpuOperation]  # by (stream, offset)

    def operation(self, stream: int, offset: int) -> NpuOperation | None:
        return self.operations.get((stream, offset))

    def operators_run(self) -> set[int]:
        return {k for op in self.operations.values() for k in op.operators}


def _tables(text: str) -> dict[str, list[dict[str, str]]]:
    root = ET.fromstring(text)
    out = {}
    for table in root.iter("table"):
        rows = list(csv.DictReader(io.StringIO((table.text or "").strip())))
        out[table.get("name", "")] = rows
    return out


def read_debug_db(data: bytes | str, where: str = "Vela's debug database") -> VelaDebugDb:
    """Parse the XML Vela writes with `--enable-debug-db`; ModelError if it is not one."""
    text = data.decode("utf-8", "replace") if isinstance(data, (bytes, bytearray)) else data
    try:
        tables = _tables(text)
        sources = {r["id"]: int(r["ext_key"]) for r in tables["source"]}
        perf_source = {r["id"]: r["source_id"] for r in tables["perf"]}
        fused: dict[str, set[int]] = {}
        for r in tables.get("group", []):
            src = perf_source.get(r["id"])
            if src in sources:
                fused.setdefault(r["group_id"], set()).add(sources[src])
        streams = sorted(int(r["id"]) for r in tables["cmdstream"])
        ops = {}
        for r in tables["queue"]:
            sched = r["scheduled_id"]
            ks = set(fused.get(sched, set()))
            src = perf_source.get(sched)
            if src in sources:
                ks.add(sources[src])
            stream = streams.index(int(r["cmdstream_id"]))
            offset = int(r["offset"])
            ops[(stream, offset)] = NpuOperation(stream, offset, tuple(sorted(ks)))
    except (ET.ParseError, KeyError, ValueError) as err:
        raise ModelError(f"{where} is not Vela's debug database ({type(err).__name__}: {err})") from None
    return VelaDebugDb(ops)
