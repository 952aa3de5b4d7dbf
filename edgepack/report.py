"""The build report: `report.json` (a stable, documented schema) and a self-contained
`report.html` (inline CSS and SVG, no network), plus a short terminal summary.

The report answers what a user asks after a build: does it fit, where did the bytes go, what did
folding save on the NPU (weight bytes and Vela's cycle estimate), and what did it cost (weight
SQNR per layer, output agreement with the unfolded model through TFLM).

Everything is computed from a build's own figures; rendering reads only the report, so
`edgepack report DIR` re-renders the page from `DIR/report.json` alone. The schema is versioned
(`schema`); fields are only ever added within a version. See README, "Report".
"""

from __future__ import annotations

import functools
import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path

import numpy as np

from . import __version__
from .errors import UsageError
from .resources import TEMPLATES_DIR

SCHEMA = "edgepack-report/1"
REPORT_JSON = "report.json"
REPORT_HTML = "report.html"
NPU_ARENA = "NPU arena (Vela)"
WEIGHT_OPERATORS_ROWS_ONE = ("DEPTHWISE_CONV_2D",)  # packed as a single row (packing.py)


# --- the report ----------------------------------------------------------------------------

@dataclass
class RegionUse:
    """One memory region of the board and what the firmware puts there."""

    name: str
    address: int
    size: int
    holds: list[str]  # what the board file places here ("model", "arena", "code", ...)
    parts: dict[str, int]  # bytes used, by what uses them ("model data", "arena", ...)

    @property
    def used(self) -> int:
        return sum(self.parts.values())

    @property
    def fits(self) -> bool:
        return self.used <= self.size


@dataclass
class WeightBytes:
    """The weights of the whole model in each form, in bytes."""

    dense_int8: int  # the input model's int8 weights
    folded: int  # codebooks + indices at their bit width, no padding: the folded form's size
    packed: int  # what the firmware stores: codebooks + indices in the runtime's row layout
    entropy_bound: int | None  # codebooks + indices at their empirical entropy (None: not computed)
    vela_dense: int | None  # Vela's NPU-encoded weights (incl. bias/scale) of the input model
    vela_folded: int | None  # the same for the folded model


@dataclass
class LayerRow:
    index: int  # TFLite operator index
    op_type: str
    target: str  # "NPU" or "CPU"
    output_shape: list[int]
    weight_shape: list[int] | None
    weights_form: str  # "palette 4-bit K=16", "dense int8", "" (no weights)
    clusters: int | None  # K: codebook entries (distinct values when kept dense)
    index_bits: int | None
    sqnr_db: float | None  # weight SQNR of the fold; None when lossless or no weights
    lossless: bool
    hypothesis: str
    dense_bytes: int
    folded_bytes: int
    packed_bytes: int
    arena_offset: int | None
    arena_size: int


@dataclass
class Report:
    schema: str
    edgepack_version: str
    model: dict  # path, name, sha256
    board: dict  # name, description, cpu, npu (accelerator or None)
    fits: bool
    problems: list[str]  # why it does not fit (empty when it does)
    memory: list[RegionUse]
    weights: WeightBytes
    npu_cycles: dict | None  # {"before": n, "after": n}: Vela's estimate, unfolded vs folded
    agreement: dict | None  # fold.Agreement as a dict: folded vs unfolded through TFLM
    arena: dict  # size, naive_size (every tensor its own place), scratch
    layers: list[LayerRow]
    notes: list[str] = field(default_factory=list)
    memory_source: str = "build"  # "build": placed by the build, before linking; else the map file
    runs: list[dict] = field(default_factory=list)  # `edgepack run` results (record_runs)
    tradeoff: list[dict] = field(default_factory=list)  # fold's (bytes, agreement) points tried
    gate: dict | None = None  # the fold's end-to-end budget and what it backed off
    # build.json's npu_semantics: divergent NPU operators measured on the golden inputs, and the
    # device's golden outputs beside TFLM's where they differ
    npu_semantics: dict | None = None

    @property
    def layer_counts(self) -> dict:
        w = [r for r in self.layers if r.weight_shape is not None]
        return {"total": len(self.layers),
                "npu": sum(r.target == "NPU" for r in self.layers),
                "cpu": sum(r.target == "CPU" for r in self.layers),
                "weights": len(w),
                "folded": sum(r.weights_form.startswith("palette") for r in w)}

    @property
    def min_sqnr_db(self) -> float | None:
        vals = [r.sqnr_db for r in self.layers if r.sqnr_db is not None]
        return min(vals) if vals else None

    def to_json(self) -> dict:
        d = asdict(self)
        for region, obj in zip(d["memory"], self.memory):
            region["used"] = obj.used
            region["free"] = obj.size - obj.used
            region["fits"] = obj.fits
        d["summary"] = {
            "layers": self.layer_counts,
            "min_sqnr_db": self.min_sqnr_db,
            "folded_vs_dense": _ratio(self.weights.packed, self.weights.dense_int8),
            "vela_folded_vs_dense": _ratio(self.weights.vela_folded, self.weights.vela_dense),
            "npu_cycles_after_vs_before": (None if not self.npu_cycles else
                                           _ratio(self.npu_cycles["after"],
                                                  self.npu_cycles["before"])),
        }
        order = ["schema", "edgepack_version", "model", "board", "fits", "problems", "summary"]
        return {k: d[k] for k in order} | {k: v for k, v in d.items() if k not in order}

    @classmethod
    def from_json(cls, d: dict) -> "Report":
        if not isinstance(d, dict) or d.get("schema") != SCHEMA:
            found = d.get("schema") if isinstance(d, dict) else type(d).__name__
            raise ValueError(f"not an {SCHEMA} report (schema: {found!r})")
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        kw["memory"] = [RegionUse(**_pick(RegionUse, r)) for r in d["memory"]]
        kw["weights"] = WeightBytes(**_pick(WeightBytes, d["weights"]))
        kw["layers"] = [LayerRow(**_pick(LayerRow, r)) for r in d["layers"]]
        return cls(**kw)


def _pick(cls, d: dict) -> dict:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in d.items() if k in names}


def _ratio(a, b) -> float | None:
    return None if a is None or not b else round(a / b, 4)


# --- computing the figures -----------------------------------------------------------------

def index_entropy_bits(indices: np.ndarray) -> float:
    """Empirical entropy of the indices in bits per index (0 for a single value)."""
    _, counts = np.unique(np.asarray(indices).reshape(-1), return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum()) if p.size > 1 else 0.0


def packed_weight_bytes(op_type: str, shape, codebook_size: int, bits: int) -> int:
    """Codebook + packed indices in the runtime's layout (one row per output channel, a single
    row for depthwise; rows 4-byte aligned)."""
    from .packing import packed_size

    n = int(np.prod(shape))
    rows = 1 if op_type in WEIGHT_OPERATORS_ROWS_ONE or not shape else int(shape[0])
    return codebook_size + packed_size(rows, n // max(rows, 1), bits)


def _num(x: float) -> float | None:
    return None if x is None or math.isinf(x) or math.isnan(x) else round(float(x), 2)


def _as_dict(build) -> dict:
    if isinstance(build, dict):
        return build
    if hasattr(build, "as_dict"):
        return build.as_dict()
    if is_dataclass(build):
        return asdict(build)
    raise TypeError(f"cannot make a report from {type(build).__name__}")


def _region_parts(b: dict, r: dict) -> dict[str, int]:
    """What one region holds, in bytes. The build sums a region's needs; split the sum back
    into the parts whose sizes the build also records, the rest under the remaining labels."""
    known = {"tensor arena": b.get("arena_bytes"),
             "model data + golden vectors": (b.get("model_data_bytes") or 0)
             + (b.get("golden_bytes") or 0)}
    parts: dict[str, int] = {}
    rest_labels = []
    for label in r.get("what", []):
        if label in known and known[label] is not None:
            parts[label] = int(known[label])
        else:
            rest_labels.append(label)
    rest = int(r.get("needed", 0)) - sum(parts.values())
    if rest_labels and rest > 0:
        parts[" + ".join(rest_labels)] = rest
    return parts


def report_from_build(build, model=None, fold=None) -> Report:
    """The report of one `edgepack build`: `build` is its `BuildResult` (or `build.json` as a
    dict). `model` (the input `tflite.Model`) and `fold` (its `fold.FoldResult`) add what
    build.json does not keep: tensor shapes and the index entropy bound."""
    from .boards import load_board

    b = _as_dict(build)
    try:
        board = load_board(b["board"])
        board_regions = [(r.name, r.address, r.size, list(r.holds)) for r in board.memory]
        board_npu = board.npu
    except Exception:  # a board file that has since gone: the build's own regions still tell
        board, board_npu = None, None
        board_regions = [(r["region"], r["address"], r["size"], []) for r in b.get("regions", [])]
    fold_by_op = {f["operator"]: f for f in b.get("fold", [])}
    ft_by_tensor = {t.tensor: t for t in fold.tensors} if fold is not None else {}

    rows: list[LayerRow] = []
    entropy_total, folded_total, seen = 0.0, 0, set()
    for layer in b.get("operators") or b.get("layers", []):
        op = model.operators[layer["index"]] if model is not None else None
        out = model.tensors[op.outputs[0]] if op is not None and op.outputs else None
        f = fold_by_op.get(layer["index"])
        w_shape = list(f["shape"]) if f is not None else None
        if w_shape is None and op is not None and layer["dense_weight_bytes"]:
            w_shape = list(model.tensors[op.inputs[1]].shape)
        has_w = bool(layer["dense_weight_bytes"])
        palette = layer["weights_form"].startswith("palette")
        k = f.get("codebook_size") if f is not None and palette else None
        bits = f.get("index_bits") if f is not None and palette else (8 if has_w else None)
        n = int(layer["dense_weight_bytes"])
        folded_bytes = (k + math.ceil(n * bits / 8)) if palette and k and bits else n
        sqnr = f.get("sqnr_db") if f is not None and palette else None
        rows.append(LayerRow(
            index=int(layer["index"]), op_type=layer["opcode"],
            target=layer["target"].upper(),
            output_shape=list(out.shape) if out is not None else [],
            weight_shape=w_shape if has_w else None, weights_form=layer["weights_form"],
            clusters=k, index_bits=bits, sqnr_db=_num(sqnr) if sqnr is not None else None,
            lossless=has_w and sqnr is None, hypothesis=(f or {}).get("hypothesis", "") if has_w else "",
            dense_bytes=n, folded_bytes=folded_bytes if has_w else 0,
            packed_bytes=int(layer["weight_bytes"]),
            arena_offset=int(layer["output_offset"]), arena_size=int(layer["output_bytes"])))
        wt = op.inputs[1] if op is not None and has_w else None
        key = wt if wt is not None else ("op", layer["index"])
        if has_w and key not in seen:  # weights shared by two operators are stored once
            seen.add(key)
            folded_total += rows[-1].folded_bytes
            ft = ft_by_tensor.get(wt)
            if ft is not None and ft.folded:
                entropy_total += ft.codebook.size + n * index_entropy_bits(ft.indices) / 8
            elif op is not None:  # dense: its distinct values as the table
                data = model.tensors[wt].data
                entropy_total += np.unique(data).size + n * index_entropy_bits(data) / 8

    vela = b.get("vela") or None
    raw_v = (vela or {}).get("raw") or {}
    fold_v = (vela or {}).get("folded") or {}
    weights = WeightBytes(
        dense_int8=int(b.get("weight_bytes_dense", 0)), folded=folded_total,
        packed=int(b.get("weight_bytes_folded", 0)),
        entropy_bound=math.ceil(entropy_total) if fold is not None and model is not None else None,
        vela_dense=raw_v.get("encoded_weight_bytes"), vela_folded=fold_v.get("encoded_weight_bytes"))
    cycles = None
    if raw_v.get("total_cycles") is not None and fold_v.get("total_cycles") is not None:
        cycles = {"before": int(raw_v["total_cycles"]), "after": int(fold_v["total_cycles"])}

    by_name = {r["region"]: r for r in b.get("regions", [])}
    memory = [RegionUse(name, int(addr), int(size), holds,
                        _region_parts(b, by_name[name]) if name in by_name else {})
              for name, addr, size, holds in board_regions]
    if vela and fold_v.get("sram_used_bytes") and board is not None:
        # Vela's SRAM need is the NPU's arena: it shares the region with the CPU arena
        try:
            region = board.region_for("arena").name
            for m in memory:
                if m.name == region:
                    m.parts[NPU_ARENA] = int(fold_v["sram_used_bytes"])
        except KeyError:
            pass
    problems = [f"{r.name}: {r.used:,} bytes needed, {r.size:,} available "
                f"({', '.join(f'{k} {v:,}' for k, v in r.parts.items())})"
                for r in memory if not r.fits]
    a = b.get("fold_agreement")
    agreement = None if not a else {
        "samples": int(a["samples"]), "source": a["source"],
        "mean_abs_diff": round(float(a["mean_abs_diff"]), 6),
        "max_abs_diff": int(a["max_abs_diff"]), "top1_agreement": round(float(a["top1_agreement"]), 6),
        "top1_changed": int(a.get("top1_changed") or 0), "accuracy": a.get("accuracy")}
    notes = []
    if b.get("npu_path_executed") and board_npu is not None:
        notes.append(f"NPU command stream executed: {b['npu_path_executed']}.")
    if b.get("golden_source"):
        notes.append(f"Golden vectors: {b['golden_source']}.")
    return Report(
        schema=SCHEMA, edgepack_version=b.get("edgepack_version", __version__),
        model={"path": b["model"], "name": Path(b["model"]).name, "sha256": b["model_sha256"],
               "folded_sha256": b.get("folded_model_sha256")},
        board={"name": b["board"], "description": b.get("board_description", ""),
               "cpu": board.cpu.core if board is not None else None, "npu": b.get("npu"),
               "system_config": board_npu.system_config if board_npu is not None else None,
               "memory_mode": board_npu.memory_mode if board_npu is not None else None},
        fits=not problems, problems=problems, memory=memory, weights=weights,
        npu_cycles=cycles, agreement=agreement,
        arena={"size": b.get("arena_bytes"), "naive_size": b.get("arena_naive_bytes"),
               "scratch": b.get("scratch_bytes")},
        layers=rows, notes=notes, tradeoff=list(b.get("fold_tradeoff") or []),
        gate=b.get("fold_gate"), npu_semantics=b.get("npu_semantics"))


# --- writing and reading -------------------------------------------------------------------

def as_report(build, model=None, fold=None) -> Report:
    """A `Report` from a `Report`, a report.json dict, or a build (`BuildResult` / build.json)."""
    if isinstance(build, Report):
        return build
    if isinstance(build, dict) and build.get("schema") == SCHEMA:
        return Report.from_json(build)
    return report_from_build(build, model=model, fold=fold)


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def report_json_text(report: Report) -> str:
    return json.dumps(report.to_json(), indent=2) + "\n"


def write_report(build, out_dir, model=None, fold=None) -> Report:
    """Write `report.json` and `report.html` into out_dir (each file replaced atomically).
    `build`: a `BuildResult` (or its build.json dict), a `Report` or a report.json dict;
    `model` / `fold`: see `report_from_build`."""
    report = as_report(build, model=model, fold=fold)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    html = render_html(report)  # render first: an error leaves nothing half-written
    js, hp = out / REPORT_JSON, out / REPORT_HTML
    _atomic_write(js, report_json_text(report))
    _atomic_write(hp, html)
    return report


def load_report(directory) -> Report:
    """Read `DIR/report.json` (what `edgepack report DIR` re-renders)."""
    d = Path(directory)
    if not d.exists():
        raise UsageError("no such directory", str(d))
    if not d.is_dir():
        raise UsageError("not a directory (give the build directory that holds report.json)",
                         str(d))
    p = d / REPORT_JSON
    if not p.is_file():
        raise UsageError(f"no {REPORT_JSON} here: is this an edgepack build directory?", str(d))
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
        return Report.from_json(data)
    except (ValueError, KeyError, TypeError) as err:
        raise UsageError(f"not a readable edgepack report ({err})", str(p)) from None


RUN_FIELDS = ("sim", "where", "passed", "result_line", "counter", "layers", "total",
              "instructions", "failure")


def record_runs(directory, runs) -> Report | None:
    """Add `edgepack run` results to DIR's report and re-render it: what ran where, pass or
    fail, per-layer counts, and memory per region from the linker's map file (which replaces
    the build's pre-link figures). `runs`: `sim.RunResult`s or their dicts. A project without
    report.json (built before reports existed) is left alone."""
    d = Path(directory)
    if not (d / REPORT_JSON).is_file():
        return None
    report = load_report(d)
    entries = [r.as_dict() if hasattr(r, "as_dict") else dict(r) for r in runs]
    report.runs = [{k: e.get(k) for k in RUN_FIELDS} for e in entries]
    linked = next((e for e in entries if e.get("memory")), None)
    if linked is not None:
        by_name = {m["region"]: m for m in linked["memory"]}
        for region in report.memory:
            m = by_name.get(region.name)
            if m is not None:
                # the NPU's own arena is not in the CPU firmware's map: keep Vela's figure
                npu = {k: v for k, v in region.parts.items() if k == NPU_ARENA}
                region.parts = {k: int(v) for k, v in m["sections"].items() if v} | npu
        report.memory_source = f"map file of the {linked['sim']} firmware build"
        report.problems = [f"{r.name}: {r.used:,} bytes linked, {r.size:,} available"
                           for r in report.memory if not r.fits]
        report.fits = not report.problems
    write_report(report, d)
    return report


# --- presentation --------------------------------------------------------------------------

def human_bytes(n) -> str:
    """1,234 B / 12.3 KiB / 4.5 MiB: short, exact below 10 KiB."""
    if n is None:
        return "–"
    n = int(n)
    if n < 10 * 1024:
        return f"{n:,} B"
    if n < 10 * 1024 * 1024:
        return f"{n / 1024:,.1f} KiB"
    return f"{n / (1024 * 1024):,.1f} MiB"


def percent(a, b) -> str:
    return "–" if a is None or not b else f"{100 * a / b:.0f} %"


def _bar_rows(items: list[tuple[str, int | None, str]], width: float) -> list[dict]:
    """Horizontal bar geometry, scaled to the largest value."""
    top = max([v for _, v, _ in items if v] + [1])
    rows = []
    for label, value, kind in items:
        if value is None:
            continue
        rows.append({"label": label, "value": value, "kind": kind,
                     "w": round(max(width * value / top, 1.5), 1), "text": human_bytes(value)})
    return rows


def _region_bars(report: Report, width: float) -> list[dict]:
    """One bar per region, scaled to the region's size, stacked by part."""
    out = []
    for r in report.memory:
        x, segs = 0.0, []
        for i, (what, n) in enumerate(r.parts.items()):
            w = width * n / r.size if r.size else 0
            segs.append({"what": what, "bytes": n, "x": round(x, 1),
                         "w": round(max(w, 2.0) if n else 0, 1), "cls": f"seg{i % 4}",
                         "text": human_bytes(n)})
            x += max(w, 2.0) if n else 0
        biggest = sorted(r.parts.items(), key=lambda kv: -kv[1])
        label = " · ".join(f"{k} {human_bytes(v)}" for k, v in biggest[:3])
        if len(biggest) > 3:
            label += f" · {len(biggest) - 3} more"
        out.append({"label": label, "name": r.name, "address": f"0x{r.address:08x}", "size": r.size,
                    "size_text": human_bytes(r.size), "used": r.used,
                    "used_text": human_bytes(r.used), "fits": r.fits,
                    "pct": f"{100 * r.used / r.size:.2f} %" if r.size else "–",
                    "holds": ", ".join(r.holds), "segs": segs})
    return out


def _layer_bars(report: Report, width: float) -> list[dict]:
    """Per weight layer: dense bytes against packed bytes, on one scale."""
    w = [r for r in report.layers if r.weight_shape is not None]
    top = max([r.dense_bytes for r in w] + [1])
    return [{"label": f"#{r.index} {r.op_type}", "dense_w": round(width * r.dense_bytes / top, 1),
             "packed_w": round(max(width * r.packed_bytes / top, 1.5), 1),
             "dense": human_bytes(r.dense_bytes), "packed": human_bytes(r.packed_bytes),
             "pct": percent(r.packed_bytes, r.dense_bytes)} for r in w]


def _tradeoff_points(points: list[dict], width: float, height: float) -> list[dict]:
    """The fold's explored (bytes, agreement) points in a width x height plot: bytes on x (from
    0), top-1 agreement (or accuracy) on y from the lowest seen to 100 %."""
    if len(points) < 2:
        return []
    xs = [int(p["target_bytes"]) for p in points]
    ys = [float(p["accuracy"] if p.get("accuracy") is not None else p["top1_agreement"])
          for p in points]
    top_x = max(xs) or 1
    low_y = min(min(ys), 0.9)
    out = []
    for p, x, y in zip(points, xs, ys):
        out.append({"x": round(width * x / top_x, 1),
                    "y": round(height * (1 - (y - low_y) / ((1 - low_y) or 1)), 1),
                    "bytes": x, "value": f"{100 * y:.1f} %", "label": p.get("label", "")})
    return out


@functools.lru_cache(maxsize=None)
def _html_env():
    """One environment per process: it keeps the compiled template between builds."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
                             undefined=jinja2.StrictUndefined, autoescape=True,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters["bytes"] = human_bytes
    env.filters["num"] = lambda n: "–" if n is None else f"{int(n):,}"
    return env


def render_html(report: Report) -> str:
    env = _html_env()
    wb = report.weights
    weight_bars = _bar_rows([
        ("int8 dense", wb.dense_int8, "base"),
        ("folded, unpadded", wb.folded, "mid"),
        ("edgepack packed", wb.packed, "ours"),
        ("index entropy bound", wb.entropy_bound, "bound"),
        ("Vela encoded, input model", wb.vela_dense, "base"),
        ("Vela encoded, folded", wb.vela_folded, "ours"),
    ], 360)
    cycle_bars = []
    if report.npu_cycles:
        top = max(report.npu_cycles.values()) or 1
        for label, key, kind in (("input model", "before", "base"), ("folded", "after", "ours")):
            v = report.npu_cycles[key]
            cycle_bars.append({"label": label, "value": v, "kind": kind,
                               "w": round(max(360 * v / top, 1.5), 1), "text": f"{v:,}"})
    runs = []
    tradeoff = _tradeoff_points(report.tradeoff, 480, 180)
    for run in report.runs:
        layers = run.get("layers") or []
        top = max([int(x["count"]) for x in layers] + [1])
        total = sum(int(x["count"]) for x in layers) or 1
        runs.append({**run, "bars": [
            {"label": f"#{x['index']} {x['opcode']}", "count": int(x["count"]),
             "w": round(max(560 * int(x["count"]) / top, 1.5), 1),
             "share": f"{100 * int(x['count']) / total:.1f} %"} for x in layers]})
    return env.get_template("report.html.j2").render(runs=runs, tradeoff=tradeoff,
        r=report, counts=report.layer_counts, min_sqnr=report.min_sqnr_db,
        regions=_region_bars(report, 520), weight_bars=weight_bars, cycle_bars=cycle_bars,
        layer_bars=_layer_bars(report, 300), pct=percent,
        packed_ratio=percent(wb.packed, wb.dense_int8),
        vela_ratio=percent(wb.vela_folded, wb.vela_dense),
        cycle_ratio=(percent(report.npu_cycles["after"], report.npu_cycles["before"])
                     if report.npu_cycles else "–"))


