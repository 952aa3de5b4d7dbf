"""Results as text for people: every table and line the command line prints, in one place.

Each function takes a stage's result (a dataclass or its JSON-ready dict) and a rich console.
May import any stage's result types; stages never import this.
"""

from __future__ import annotations


from ..boards import DEFAULT_BOARD, BoardSpec
from ..build import BuildResult
from ..fold import FoldResult
from ..report import as_report, human_bytes, percent
from ..sim import RunResult


def inspect_text(info: dict, console) -> None:
    """People's view: the operator list, then one table of weight tensors with verdicts."""
    from rich.table import Table

    console.print(f"[bold]{info['model']}[/]  sha256 {info['sha256'][:16]}…  "
                  f"{len(info['operators'])} operators, {info['total_weights']:,} weights")
    ops = Table(title="Operators", title_justify="left", show_edge=False)
    for col in ("#", "operator", "output shape", "activation"):
        ops.add_column(col)
    for op in info["operators"]:
        ops.add_row(str(op["index"]), op["op_type"], str(op["output_shape"]), op["activation"])
    console.print(ops)
    if not info["weights"]:
        console.print("no weight tensors")
        return
    wt = Table(title="Weight tensors (int8 = distinct values; shared = values a layer-shared "
                     "codebook needs)", title_justify="left", show_edge=False)
    for col in ("op", "type", "shape", "quant", "int8", "max/ch", "shared", "zeros", "0-ch"):
        wt.add_column(col, justify="left" if col in ("type", "shape", "quant") else "right",
                      no_wrap=True)
    short = {"DEPTHWISE_CONV_2D": "DW_CONV", "FULLY_CONNECTED": "FC"}
    for w in info["weights"]:
        wt.add_row(str(w["operator"]), short.get(w["op_type"], w["op_type"]),
                   "x".join(map(str, w["shape"])),
                   "channel" if w["granularity"].startswith("per-channel") else "tensor",
                   str(w["distinct_int8"]), str(w["max_distinct_per_channel"]),
                   str(w["distinct_shared"]), f"{100 * w['zero_fraction']:.1f}%",
                   str(len(w["zero_channels"])))
    console.print(wt)
    colour = {"palette-ready": "green", "clustered-per-channel": "yellow", "dense": "white"}
    for w in info["weights"]:
        console.print(f"  op {w['operator']}: [{colour[w['verdict']]}]{w['summary']}[/]")


HYPOTHESIS_SHORT = {"layer-wide scale": "layer", "per-channel gain": "gain"}


def fold_text(result: FoldResult, console, output: str | None = None) -> None:
    """One table row per weight tensor, then the end-to-end agreement."""
    from rich.table import Table

    short = {"DEPTHWISE_CONV_2D": "DW_CONV", "FULLY_CONNECTED": "FC"}
    table = Table(title="Weight tensors (K = codebook entries shared by all output channels; "
                        "fold: layer = one layer-wide scale, gain = per-channel gains recovered)",
                  title_justify="left", show_edge=False)
    for col in ("op", "type", "shape", "K", "bits", "SQNR dB", "zeros", "+0", "0-ch", "fold"):
        table.add_column(col, justify="left" if col in ("type", "shape", "fold") else "right",
                         no_wrap=col != "fold")
    for t in result.tensors:
        if not t.folded:
            sqnr, how = "-", "dense"
        elif t.lossless:
            sqnr, how = "lossless", "[green]lossless[/]"
        else:
            colour = "green" if t.sqnr_db >= 40 else "yellow" if t.sqnr_db >= 30 else "red"
            sqnr, how = f"[{colour}]{t.sqnr_db:.1f}[/]", HYPOTHESIS_SHORT.get(t.hypothesis, t.hypothesis)
        table.add_row(str(t.operator), short.get(t.op_type, t.op_type), "x".join(map(str, t.shape)),
                      str(t.clusters), str(t.index_bits) if t.folded else "8", sqnr,
                      f"{t.zeros:,}", str(t.zeros_added), str(len(t.zero_channels)), how)
    console.print(table)
    for t in result.tensors:
        if not t.folded or t.zero_channels:
            note = t.reason if not t.folded else f"{len(t.zero_channels)} all-zero channel(s)"
            console.print(f"  op {t.operator} ({t.name}): {note}")
    a = result.agreement
    if a is not None:
        colour = "green" if a.top1_agreement == 1.0 else "yellow"
        console.print(f"end to end (TFLM, {a.source}): top-1 agreement "
                      f"[{colour}]{100 * a.top1_agreement:.1f}%[/], mean |output difference| "
                      f"{a.mean_abs_diff:.3f} int8 steps (max {a.max_abs_diff})"
                      + (f"; accuracy {100 * a.accuracy:.1f}% (as given "
                         f"{100 * a.given_accuracy:.1f}%)" if a.accuracy is not None else ""))
        if a.top1_changed:
            console.print(f"[yellow]warning: {a.top1_changed} of {a.samples} top-1 results "
                          "changed against the model as given[/]")
    g = result.gate
    if g is not None:
        state = "[green]holds[/]" if g.held else "[red]missed[/]"
        console.print(f"budget ({g.budget}): {state} after {g.runs} TFLM passes"
                      + (f"; backed off to dense: {', '.join(g.backed_off)}" if g.backed_off
                         else ""))
    if result.dense_bytes:
        console.print(f"weights on {result.target}: {result.dense_bytes:,} B as given -> "
                      f"{result.target_bytes:,} B (cost model)")
    if output:
        folded = sum(t.folded for t in result.tensors)
        console.print(f"wrote {output}: {folded} of {len(result.tensors)} weight tensors folded")


def human_size(size: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale and size % (scale // 16) == 0:
            return f"{size / scale:g} {unit}"
    return f"{size} B"


def boards_text(boards: list[BoardSpec], console) -> None:
    """One block per board: name and description, then labelled rows (CPU, NPU, simulators,
    one line per memory region). Blocks read the same at 80 columns as at 200, where a
    five-column table would crop or break Vela's long config names."""
    from rich.table import Table

    for i, b in enumerate(boards):
        if i:
            console.print()
        default = " (default)" if b.name == DEFAULT_BOARD else ""
        console.print(f"[bold]{b.name}[/bold]{default}: {b.description}", highlight=False)
        rows = Table.grid(padding=(0, 2))
        rows.add_column(style="bold", no_wrap=True)
        rows.add_column(overflow="fold")
        rows.add_row("  CPU", f"{b.cpu.core}, {b.cpu.toolchain}")
        npu = "none"
        if b.npu is not None:
            npu = f"{b.npu.accelerator} ({b.npu.system_config}, {b.npu.memory_mode}"
            npu += f", cache {human_size(b.npu.arena_cache_size)})" if b.npu.arena_cache_size else ")"
        rows.add_row("  NPU", npu)
        sims = [s for s in (b.sim.qemu_machine and f"QEMU {b.sim.qemu_machine}",
                            b.sim.fvp, b.sim.host and "host") if s]
        rows.add_row("  simulate", ", ".join(sims) or "-")
        regions = Table.grid(padding=(0, 2))
        for justify in ("left", "left", "right", "left"):
            regions.add_column(justify=justify, overflow="fold")
        for r in b.memory:
            regions.add_row(r.name, f"{r.address:#010x}", human_size(r.size), ", ".join(r.holds))
        rows.add_row("  memory", regions)
        console.print(rows)


def unmodelled_warnings(vela: dict | None) -> list[str]:
    """One line per reason the build keeps operators Vela would run on the NPU on the CPU: the
    functional Ethos-U model cannot check their NPU lowering (build.json's
    `vela.kept_on_cpu_unmodelled`)."""
    by_why: dict[str, list[str]] = {}
    for u in (vela or {}).get("kept_on_cpu_unmodelled", []):
        by_why.setdefault(u["why"], []).append(f"{u['index']} {u['opcode']}")
    return [f"warning: operator{'s' if len(ops) > 1 else ''} {', '.join(ops)} run{'' if len(ops) > 1 else 's'} "
            f"on the CPU: {why}, so the NPU's result could not be checked" for why, ops in by_why.items()]


def divergence_warnings(npu_semantics: dict | None) -> list[str]:
    """One line per NPU operator the device computes differently from TFLM (build.json's
    `npu_semantics`), with what it was measured to differ by and what --tflm-semantics costs."""
    if not npu_semantics:
        return []
    lines = [f"warning: operator {u['operator']} {u['opcode']} runs on the NPU, which the audit could not "
             "compare with TFLM for this kind (README: 'Where the NPU differs from TFLM')"
             for u in npu_semantics.get("not_audited", [])]
    if not npu_semantics.get("divergent"):
        return lines
    cost = npu_semantics.get("cpu_option") or {}
    on_cpu = npu_semantics.get("tflm_semantics")
    for d in npu_semantics["divergent"]:
        where = "kept on the CPU (--tflm-semantics)" if on_cpu else "runs on the NPU"
        lines.append(f"warning: operator {d['operator']} {d['opcode']} ({d['name']!r}) {where}; the NPU computes "
                     f"it differently from TFLM ({d['condition']}): on the {d['golden_inputs']} golden inputs "
                     f"{d['differing']:,} of {d['elements'] * d['golden_inputs']:,} output bytes differ, by up "
                     f"to {d['max_difference']} steps")
    dv = npu_semantics.get("device_vs_tflm") or {}
    if not on_cpu:
        lines.append(f"warning: golden outputs are the device's: {dv.get('differing', 0):,} bytes differ from "
                     f"TFLM's, by up to {dv.get('max_difference', 0)} steps (report.html shows both)")
    if cost:
        lines.append(f"warning: --tflm-semantics {'keeps' if on_cpu else 'would keep'} them on the CPU: Vela's "
                     f"estimate {cost['total_cycles_on_npu']:,} -> {cost['total_cycles_on_cpu']:,} cycles "
                     f"(NPU only), plus the CPU running {cost['cpu_elements']:,} output elements per inference")
    return lines


def build_text(result: BuildResult, out: str, console, timings: dict | None = None) -> None:
    """Label / value rows (values wrap under their own column, so 80 columns stay readable),
    the memory table, and the next command."""
    from rich.table import Table

    r = result
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold", no_wrap=True)
    facts.add_column(overflow="fold")
    ratio = r.weight_bytes_folded / r.weight_bytes_dense if r.weight_bytes_dense else 0.0
    folded = [f for f in r.fold if f["folded"]]
    facts.add_row("model", str(r.model))
    facts.add_row("project", str(out))
    facts.add_row("board", r.board_description)
    facts.add_row("fold", f"{len(folded)}/{len(r.fold)} weight tensors in palette form; weights "
                          f"{r.weight_bytes_dense:,} B dense int8 -> {r.weight_bytes_folded:,} B "
                          f"({ratio:.2f}x)")
    if r.fold_agreement:
        a = r.fold_agreement
        facts.add_row("agreement", f"given vs folded model through TFLM, {a.get('samples')} "
                                   f"inputs ({a.get('source')}): top-1 "
                                   f"{100 * a.get('top1_agreement', 0):.1f} %, "
                                   f"mean |diff| {a.get('mean_abs_diff', 0):.3f}, "
                                   f"max {a.get('max_abs_diff')} int8 steps")
        changed = round((1 - a.get("top1_agreement", 1)) * a.get("samples", 0))
        if a.get("classifier", True) and changed:
            facts.add_row("[yellow]warning[/]", f"[yellow]{changed} of {a.get('samples')} top-1 "
                                                "results changed against the model as given[/]")
    if r.vela:
        v = r.vela
        facts.add_row("Vela", f"{v['accelerator']}: encoded weights "
                              f"{v['raw']['encoded_weight_bytes']:,} B -> "
                              f"{v['folded']['encoded_weight_bytes']:,} B "
                              f"({v['encoded_weight_delta']:+,d}); cycles "
                              f"{v['raw']['total_cycles']:,} -> {v['folded']['total_cycles']:,} "
                              f"({v['total_cycle_change_pct']:+.1f} %)")
        cpu = ", ".join(f"#{o['index']} {o['opcode']}" for o in v["cpu_operators"]) or "none"
        facts.add_row("operators", f"NPU {len(v['npu_operators'])}; CPU (edgepack runtime): {cpu}")
        facts.add_row("NPU path", r.npu_path_executed)
        if r.npu_semantics:
            facts.add_row("golden out", r.npu_semantics["golden_outputs"])
    n_npu = len(r.npu_steps)
    facts.add_row("plan", f"{n_npu} NPU step{'s' if n_npu != 1 else ''} (the firmware drives the NPU) + "
                          f"{len(r.layers) - n_npu} CPU steps" if r.plan_kind == "mixed"
                  else f"{len(r.layers)} CPU steps (every operator in edgepack's runtime)")
    facts.add_row("arena", f"{r.arena_bytes:,} B (scratch {r.scratch_bytes:,} B; "
                           f"{r.arena_naive_bytes:,} B without lifetime planning)")
    facts.add_row("golden", r.golden_source)
    if timings:
        facts.add_row("time", f"{timings.get('total_s', 0):.1f} s")
    console.print(facts)
    t = Table(title="memory placed by the build (code and stack: after `edgepack run`)",
              title_justify="left")
    for col in ("region", "address", "size", "needed", "what"):
        t.add_column(col, justify="right" if col in ("size", "needed") else "left",
                     no_wrap=col != "what")
    for reg in r.regions:
        t.add_row(reg.region, f"{reg.address:#010x}", f"{reg.size:,}", f"{reg.needed:,}",
                  ", ".join(reg.what))
    console.print(t)
    console.print(f"next: edgepack run {out}", soft_wrap=True)  # one line, to copy


def run_text(results: list[RunResult], console) -> None:
    """Per run: PASS/FAIL and where, the firmware's result line, per-layer counts as a table
    and memory per region (from the map file); every line fits 80 columns."""
    from rich.padding import Padding
    from rich.table import Table

    for r in results:
        status = "[bold green]PASS[/]" if r.passed else "[bold red]FAIL[/]"
        console.print(f"{status} {r.where}")
        console.print(f"  {r.result_line or r.failure} ({r.wall_s:.1f} s wall)", highlight=False)
        if not r.passed and r.result_line and r.failure != r.result_line[len("EDGEPACK RESULT: "):]:
            console.print(f"  [red]{r.failure}[/]")
        if r.layers:
            extra = f", about {r.instructions:,} instructions" if r.instructions else ""
            console.print(f"  {r.counter} per layer, all golden inputs{extra}:")
            t = Table(box=None, padding=(0, 2), pad_edge=False)
            t.add_column("#", justify="right")
            t.add_column("operator")
            t.add_column(r.counter.split(" (")[0] or "count", justify="right")
            estimates = any("npu_estimate_cycles" in layer for layer in r.layers)
            if estimates:  # co-simulated NPU steps: Vela's estimate, not a measurement
                t.add_column("NPU cycles (Vela's estimate)", justify="right")
            for layer in r.layers:
                est = layer.get("npu_estimate_cycles")
                row = [str(layer["index"]), layer["opcode"], "-" if est is not None else f"{layer['count']:,}"]
                if estimates:
                    row.append(f"{est:,}" if est is not None else "-")
                t.add_row(*row)
            console.print(Padding(t, (0, 0, 0, 4), expand=False))
        if r.memory:
            console.print("  memory used, from the linker's map file:")
            t = Table(box=None, padding=(0, 2), pad_edge=False)
            for col in ("region", "used", "size", "%"):
                t.add_column(col, justify="left" if col == "region" else "right")
            for m in r.memory:
                pct = 100.0 * m["used"] / m["size"] if m["size"] else 0.0
                t.add_row(m["region"], f"{m['used']:,}", f"{m['size']:,}", f"{pct:.1f}")
            console.print(Padding(t, (0, 0, 0, 4), expand=False))


def report_text(report, console) -> None:
    """A short table for the terminal at the end of a build."""
    from rich.table import Table

    report = as_report(report)
    wb = report.weights
    t = Table(title=f"edgepack report: {report.model['name']} on {report.board['name']}",
              show_header=True, header_style="bold")
    t.add_column("")
    t.add_column("value", justify="right")
    t.add_column("", style="dim")
    verdict = "[green]fits[/green]" if report.fits else "[red]does not fit[/red]"
    t.add_row("board", verdict, report.board["npu"] or report.board["cpu"])
    for r in report.memory:
        if r.parts:
            t.add_row(f"  {r.name}", f"{r.used:,} B", f"of {human_bytes(r.size)} "
                      f"({100 * r.used / r.size:.1f} %)" if r.size else "")
    t.add_row("weights int8 dense", f"{wb.dense_int8:,} B", "")
    t.add_row("weights packed", f"{wb.packed:,} B", percent(wb.packed, wb.dense_int8) + " of dense")
    if wb.vela_dense is not None and wb.vela_folded is not None:
        t.add_row("Vela encoded", f"{wb.vela_folded:,} B",
                  f"was {wb.vela_dense:,} B ({percent(wb.vela_folded, wb.vela_dense)})")
    if report.npu_cycles:
        c = report.npu_cycles
        t.add_row("NPU cycles (Vela est.)", f"{c['after']:,}",
                  f"was {c['before']:,} ({percent(c['after'], c['before'])})")
    counts = report.layer_counts
    t.add_row("layers", f"{counts['total']}",
              f"{counts['npu']} NPU, {counts['cpu']} CPU; {counts['folded']} of "
              f"{counts['weights']} weight layers folded")
    if report.min_sqnr_db is not None:
        t.add_row("lowest weight SQNR", f"{report.min_sqnr_db:.1f} dB", "")
    if report.agreement:
        a = report.agreement
        t.add_row("top-1 agreement", f"{100 * a['top1_agreement']:.1f} %",
                  f"max |diff| {a['max_abs_diff']} on {a['source']}")
    for run in report.runs:
        verdict = "[green]PASS[/green]" if run.get("passed") else "[red]FAIL[/red]"
        t.add_row(f"run: {run.get('sim')}", verdict, run.get("result_line") or run.get("failure") or "")
    console.print(t)
    for p in report.problems:
        console.print(f"[red]does not fit:[/red] {p}")
