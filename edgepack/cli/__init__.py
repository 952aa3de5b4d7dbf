"""The `edgepack` command line: parse arguments, call a pipeline stage, print its result.

Every error the user can act on is an `EdgepackError`: one line on stderr naming the file and
the problem, exit code 2 for usage and 1 for a bad model or a failed build, never a traceback.

The top of the house: it may import every stage; no stage imports it. `text` holds every table
and line printed for people; `--json` prints the stages' own data.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import textwrap

from .. import __version__
from ..errors import EdgepackError

EPILOG = """\
typical use:
  edgepack inspect model.tflite       how palette-ready are the weights?
  edgepack build model.tflite --board corstone-300 -o fw/
  edgepack run fw/                    build the firmware, run it, check vs TFLM
  edgepack report fw/                 the summary; open fw/report.html

`edgepack COMMAND --help` explains a command, with examples. --json (inspect,
fold, boards, build, run, flash, report) prints only JSON on stdout; progress
and errors go to stderr.

exit codes: 0 success, 1 bad model or failed build/run, 2 usage error.
"""
EXIT_CODES = {
    "inspect": "0 printed; 1 not an int8 TFLite model; 2 usage (a missing file, a directory)",
    "fold": "0 OUT written; 1 a bad model or no int8 weights; 2 usage (K outside 1..256, --clusters "
            "with --max-error, a calibration file that does not match the input, a missing "
            "output directory). Nothing is written on an error.",
    "boards": "0 listed; 2 usage: an unknown board (the known ones are named) or a malformed board "
              "file (the file and the field are named)",
    "report": "0 rendered; 2 usage (no such build directory, no report.json, not a report)",
    "build": "0 project written; 1 a bad model, an operator the runtime lacks, a Vela error or "
             "a model that does not fit the board (nothing written); 2 usage (a missing file, "
             "an unknown board, DIR exists without --force)",
    "run": "0 every output bit-exact with TFLM; 1 a mismatch, a hang (--timeout), a hard "
           "fault, a failed firmware build, a missing tool (the apt package is named) or "
           "--sim fvp without the FVP; 2 usage (not a project, a --sim the board cannot do)",
    "flash": "0 flashed; 1 no board or probe found, a missing image; 2 usage (not a mounted "
             "drive, pyOCD not installed, the host board)",
}


def _print_json(data) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


def _console():
    from rich.console import Console

    return Console()


def _print_result(args, as_json, render) -> None:
    """Every command's output: with --json the data AS_JSON on stdout, else the text view that
    RENDER(console) draws."""
    if args.json:
        _print_json(as_json)
    else:
        render(_console())


def _help_width() -> int:
    """Columns for help paragraphs: the terminal's (as argparse reads it), at most 88."""
    return max(40, min(88, shutil.get_terminal_size().columns - 2))


def _formatter(prog: str) -> argparse.HelpFormatter:
    # argparse subtracts 2 from the width it is given, as it does from the terminal's
    return argparse.RawDescriptionHelpFormatter(prog, width=_help_width() + 2)


def _command(sub, name: str, func, *, help: str, description: str, epilog: str):
    """Add the subcommand NAME that runs FUNC. The description is one paragraph, wrapped here
    to the terminal (at most 88 columns); the epilog (worked examples, each line under 80
    columns) is printed exactly as written, followed by the command's exit codes."""
    paragraph = textwrap.fill(description, _help_width(), break_on_hyphens=False)
    exits = textwrap.fill(f"exit codes: {EXIT_CODES[name]}", _help_width(),
                          subsequent_indent="  ", break_on_hyphens=False)
    epilog = f"{epilog}\n\n{exits}"
    p = sub.add_parser(name, help=help, description=paragraph, epilog=epilog,
                       formatter_class=_formatter)
    p.set_defaults(func=func)
    return p


def _add_codebook_options(p) -> None:
    """How `fold` and `build` choose each weight tensor's codebook size (fold.fold_model's
    `clusters` and `max_error_db`)."""
    p.add_argument("--clusters", default="auto", metavar="K|auto",
                   help="codebook size 1..256 for every weight tensor, or 'auto' (default): "
                        "each tensor's own clustering; tensors that were never clustered stay "
                        "dense int8")
    p.add_argument("--max-error", type=float, metavar="DB", dest="max_error",
                   help="instead of --clusters: per tensor the cheapest of the target's codebook "
                        "sizes whose weight SQNR is at least DB (e.g. 40)")
    p.add_argument("--budget", metavar="PCT",
                   help="instead of --clusters: the fewest weight bytes on the board whose "
                        "top-1 agreement with the model as given (accuracy with --labels) stays "
                        "at least PCT (e.g. 99%%) on the calibration inputs")
    p.add_argument("--calibration", metavar="X.npy",
                   help="inputs for the end-to-end check and the budget (default: 32 random "
                        "int8 inputs)")
    p.add_argument("--labels", metavar="Y.npy",
                   help="with --budget and --calibration: one integer class per input; the "
                        "budget then bounds accuracy")


# --- inspect -------------------------------------------------------------------------------

def _add_inspect(sub) -> None:
    p = _command(
        sub, "inspect", _cmd_inspect,
        help="show operators and how palette-ready each weight tensor is",
        description="Per operator and per weight tensor: shape, quantization, distinct int8 "
                    "values in the tensor and in any one output channel, the values a "
                    "layer-shared codebook needs, zeros and all-zero channels, and a verdict "
                    "(palette-ready / clustered but per-channel / dense).",
        epilog="example:\n  edgepack inspect model.tflite --json | jq '.weights[].verdict'")
    p.add_argument("model", help="an int8 .tflite model")
    p.add_argument("--json", action="store_true", help="machine-readable output (see README)")


def _cmd_inspect(args) -> int:
    from ..inspect import inspect_model
    from ..tflite import check_int8
    from ..validate import load_model
    from .text import inspect_text

    model = load_model(args.model)
    check_int8(model)
    info = inspect_model(model)
    _print_result(args, info, lambda console: inspect_text(info, console))
    return 0


# --- fold ----------------------------------------------------------------------------------

def _add_fold(sub) -> None:
    p = _command(
        sub, "fold", _cmd_fold,
        help="fold weights into layer-shared int8 codebooks (palette form)",
        description="Give every weight tensor one int8 codebook shared by all its output "
                    "channels, with per-channel scales absorbing each channel's gain, so the "
                    "weights become codebook[index]. This recovers clustering that per-channel "
                    "quantization and batch-norm folding spread out (the Ethos-U weight encoder "
                    "and edgepack's palette kernels only gain from a shared codebook). Zero "
                    "weights stay exactly zero. OUT is a standard TFLite model (biases are "
                    "re-derived for the new scales); the report gives per tensor K, index bits "
                    "and weight SQNR, and the end-to-end agreement with the input model through "
                    "the TFLM interpreter.",
        epilog="examples:\n"
               "  edgepack fold m.tflite -o folded.tflite     each tensor's own clustering\n"
               "  edgepack fold m.tflite -o folded.tflite --clusters 16\n"
               "  edgepack fold m.tflite -o folded.tflite --max-error 40\n"
               "                                   per tensor the smallest K with >= 40 dB\n"
               "  edgepack fold m.tflite -o f.tflite --calibration x.npy --json | jq .agreement\n"
               "\ncalibration .npy: shape [N, *input shape without batch]; int8 values are used\n"
               "as they are, float32 values are real inputs, quantized with the input's scale\n"
               "and zero point.")
    p.add_argument("model", help="an int8 .tflite model")
    p.add_argument("-o", "--output", required=True, metavar="OUT.tflite",
                   help="where to write the folded model (written atomically)")
    _add_codebook_options(p)
    p.add_argument("--board", default="corstone-300",
                   help="the board whose weight storage prices each fold (default: "
                        "corstone-300; see `edgepack boards`)")
    p.add_argument("--json", action="store_true", help="machine-readable report (see README)")


def _cmd_fold(args) -> int:
    from pathlib import Path

    from ..errors import UsageError
    from ..fold import fold_model, load_calibration
    from ..tflite import check_int8, write_model
    from ..validate import load_model
    from .text import fold_text

    out = Path(args.output)
    if out.is_dir():
        raise UsageError("is a directory, expected an output .tflite path", args.output)
    if not out.parent.is_dir():
        raise UsageError("output directory does not exist", args.output)
    model = load_model(args.model)
    check_int8(model)
    from ..boards import load_board
    from ..fold import load_labels

    board = load_board(args.board)
    calibration = load_calibration(args.calibration) if args.calibration else None
    labels = (load_labels(args.labels, calibration, model, args.calibration)
              if args.labels else None)
    from rich.console import Console
    from rich.progress import Progress

    err_console = _fork_safe(Console(stderr=True))
    with Progress(console=err_console, transient=True, disable=not err_console.is_terminal) as bar:
        task = bar.add_task("folding", total=None)

        def progress(done: int, total: int, name: str) -> None:
            bar.update(task, completed=done, total=total, description=f"folding {name[:40]}")

        result = fold_model(model, args.clusters, args.max_error, calibration, progress,
                            board=board, budget=args.budget, labels=labels)
    write_model(result.model, out)
    _print_result(args, {**result.to_json(), "output": str(out)},
                  lambda console: fold_text(result, console, str(out)))
    return 0


# --- boards --------------------------------------------------------------------------------

def _add_boards(sub) -> None:
    p = _command(
        sub, "boards", _cmd_boards,
        help="list the boards edgepack can build for",
        description="The boards edgepack knows: CPU and compiler, the Ethos-U NPU as Vela sees "
                    "it (accelerator, system config, memory mode), memory regions (address, "
                    "size, what the firmware puts there) and how to simulate each. Boards are "
                    "data: one TOML file per board in boards/; a new board needs no code, and "
                    "--board accepts the path of your own board file.",
        epilog="examples:\n  edgepack boards\n  edgepack boards --json | jq '.[].name'\n"
               "  edgepack boards --board corstone-320      one board (a name or a .toml path)")
    p.add_argument("--board", help="show only this board (a name or the path of a board file)")
    p.add_argument("--json", action="store_true", help="machine-readable output (see README)")


def _cmd_boards(args) -> int:
    from ..boards import board_info, list_boards, load_board
    from .text import boards_text

    boards = [load_board(args.board)] if args.board else list_boards()
    _print_result(args, [board_info(b) for b in boards],
                  lambda console: boards_text(boards, console))
    return 0


# --- report --------------------------------------------------------------------------------

def _add_report(sub) -> None:
    p = _command(
        sub, "report", _cmd_report,
        help="re-render a build's report (report.html) from its report.json",
        description="Every `edgepack build` writes DIR/report.json (the figures: fit per memory "
                    "region, weight bytes dense / folded / packed / Vela-encoded, Vela's NPU "
                    "cycle estimate before and after folding, output agreement with the "
                    "unfolded model, and a per-layer table) and DIR/report.html (the same as a "
                    "self-contained page with charts, for any browser, offline). This command "
                    "re-renders report.html from report.json and prints the summary.",
        epilog="examples:\n  edgepack report fw/                      summary table, rewrite "
               "fw/report.html\n  edgepack report fw/ --json | jq .summary  the figures for CI")
    p.add_argument("dir", help="a build directory (holds report.json)")
    p.add_argument("--json", action="store_true",
                   help="print report.json (schema edgepack-report/1, see README) instead")


def _cmd_report(args) -> int:
    from ..report import load_report, write_report
    from .text import report_text

    report = load_report(args.dir)
    write_report(report, args.dir)

    def render(console) -> None:
        report_text(report, console)
        console.print(f"wrote {args.dir.rstrip('/')}/report.html")

    _print_result(args, report.to_json(), render)
    return 0


# --- build / run / flash -------------------------------------------------------------------

def _fork_safe(console):
    """Hold `console`'s lock across fork(): fold forks worker processes while rich's refresh
    thread may be writing, and a child that inherits the lock (or stderr's) mid-write would
    deadlock when it flushes at exit. Rich writes only under this lock."""
    lock = console._lock
    os.register_at_fork(before=lock.acquire, after_in_parent=lock.release,
                        after_in_child=lock.release)
    return console


class _StderrProgress:
    """A rich status line on stderr for the long steps (silent when stderr is not a terminal)."""

    def __init__(self):
        from rich.console import Console

        self.console = _fork_safe(Console(stderr=True))
        self.status = None

    def __call__(self, step: str) -> None:
        if self.status is None:
            self.status = self.console.status(step)
            self.status.start()
        else:
            self.status.update(step)

    def stop(self) -> None:
        if self.status is not None:
            self.status.stop()


def _add_build(sub) -> None:
    p = _command(
        sub, "build", _cmd_build,
        help="fold, compile with Vela, and generate a firmware project",
        description="Read an int8 TFLite model, fold its weights into layer-shared codebooks, "
                    "compile it with Vela for the board's Ethos-U (model as given and folded: "
                    "prints what folding changed), plan the runtime kernel calls over one arena, "
                    "compute golden outputs with TFLM, and write a C project (CMake, linker "
                    "script, start-up code, main.c, model data, runtime) into DIR. Nothing is "
                    "written unless everything fits the board.",
        epilog="examples:\n"
               "  edgepack build model.tflite --board corstone-300 -o fw/\n"
               "  edgepack build model.tflite --board host -o fw-host/ --input x.npy\n"
               "  edgepack build model.tflite -o fw/ --force --json | jq .arena_bytes\n"
               "then: edgepack run fw/   (see `edgepack boards` for the boards)")
    p.add_argument("model", help="an int8 .tflite model (clustered and/or pruned gains most)")
    p.add_argument("--board", default="corstone-300",
                   help="board name or board .toml file (default: corstone-300)")
    p.add_argument("-o", "--output", metavar="DIR", help="project directory (default: <model>_<board>)")
    _add_codebook_options(p)
    p.add_argument("--input", metavar="X.npy", help="golden inputs [N, ...] (int8, or float32 "
                   "real values); default: 4 seeded random int8 inputs")
    p.add_argument("--force", action="store_true", help="replace DIR if it exists")
    p.add_argument("--cpu-only", action="store_true", dest="cpu_only",
                   help="NPU boards: run every operator on the CPU (the firmware drives no NPU)")
    p.add_argument("--tflm-semantics", action="store_true", dest="tflm_semantics",
                   help="run operators the NPU computes differently from TFLM (see README, "
                        "'Where the NPU differs from TFLM') on the CPU instead")
    p.add_argument("--json", action="store_true", help="print build.json's figures as JSON")


def _cmd_build(args) -> int:
    from pathlib import Path

    from ..build import build, summary
    from .text import build_text, divergence_warnings, unmodelled_warnings

    board_stem = Path(args.board).stem
    out = args.output or f"{Path(args.model).stem}_{board_stem}"
    timings: dict = {}
    progress = _StderrProgress()
    try:
        result = build(args.model, args.board, out, clusters=args.clusters,
                       max_error_db=args.max_error, input_npy=args.input, force=args.force,
                       cpu_only=args.cpu_only, progress=progress, timings=timings,
                       budget=args.budget, calibration_npy=args.calibration,
                       labels_npy=args.labels, tflm_semantics=args.tflm_semantics)
    finally:
        progress.stop()
    for line in unmodelled_warnings(result.vela) + divergence_warnings(result.npu_semantics):
        print(line, file=sys.stderr)
    _print_result(args, summary(result, out, timings),
                  lambda console: build_text(result, out, console, timings))
    return 0


def _add_run(sub) -> None:
    p = _command(
        sub, "run", _cmd_run,
        help="build a generated project and run it on a simulator",
        description="Configure and build DIR with CMake + Ninja, then run it under a timeout: "
                    "on the board's Corstone FVP when its binary is on PATH, else the CPU path "
                    "under QEMU, else natively on the host; on NPU boards also "
                    "Vela's command stream in edgepack's functional Ethos-U model (operators "
                    "Vela leaves on the CPU run in the project's C runtime built for the host; a "
                    "mismatch names the first differing layer). Exits 0 only "
                    "when every output matches TFLM's golden outputs bit for bit.",
        epilog="examples:\n  edgepack run fw/\n  edgepack run fw/ --sim host --sanitize\n"
               "  edgepack run fw/ --sim qemu --timeout 60 --json\n"
               "  edgepack run fw/ --sim npu-model        # the NPU path, no FVP needed")
    p.add_argument("dir", help="a project written by `edgepack build`")
    p.add_argument("--sim", default="auto", choices=["auto", "fvp", "qemu", "cosim", "host", "npu-model"],
                   help="where to run (default: auto = the board's FVP if it is on PATH, else "
                        "QEMU with the NPU co-simulated for firmware that drives the NPU, else "
                        "QEMU, else the host; plus npu-model for --cpu-only firmware on NPU "
                        "boards). fvp: the Corstone FVP; qemu: QEMU as is (no NPU); cosim: QEMU "
                        "with edgepack's Ethos-U model playing the NPU; host: native gcc build; "
                        "npu-model: Vela's command stream in edgepack's Ethos-U model")
    p.add_argument("--timeout", type=float, default=120, metavar="S",
                   help="seconds before a run counts as hung (default: 120)")
    p.add_argument("--sanitize", action="store_true",
                   help="host runs: build with -fsanitize=address,undefined")
    p.add_argument("--json", action="store_true",
                   help="print only JSON on stdout: passed, and per run the result line, "
                        "per-layer counts, memory per region (see README)")


def _cmd_run(args) -> int:
    from ..sim import run_project
    from .text import run_text

    progress = _StderrProgress()
    try:
        results = run_project(args.dir, sim=args.sim, timeout=args.timeout,
                              sanitize=args.sanitize, progress=progress)
    finally:
        progress.stop()
    ok = bool(results) and all(r.passed for r in results)
    from ..report import record_runs  # measured memory and per-layer counts into the report

    record_runs(args.dir, results)
    _print_result(args, {"dir": args.dir, "passed": ok, "runs": [r.as_dict() for r in results]},
                  lambda console: run_text(results, console))
    return 0 if ok else 1


def _add_flash(sub) -> None:
    p = _command(
        sub, "flash", _cmd_flash,
        help="put a built firmware on a board (MPS3 USB drive or a debug probe)",
        description="Copy the firmware onto the board: for Arm MPS3 boards the SD-card layout "
                    "(images in SOFTWARE/, MB/HBI0309C/<AN>/images.txt with their load "
                    "addresses) onto the board's mounted USB drive; or program firmware.hex "
                    "through pyOCD (optional: pip install pyocd) when a debug probe is attached. "
                    "Builds the firmware first when DIR has no build.",
        epilog="examples:\n  edgepack flash fw/ --to /media/$USER/V2M-MPS3\n  edgepack flash fw/ --probe")
    p.add_argument("dir", help="a project written by `edgepack build`")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--to", metavar="MOUNTPOINT", help="the board's mounted USB drive")
    g.add_argument("--probe", action="store_true", help="program through pyOCD")
    p.add_argument("--target", help="pyOCD target type (default: what the probe reports)")
    p.add_argument("--json", action="store_true", help="machine-readable result")


def _cmd_flash(args) -> int:
    from ..flash import flash_project

    result = flash_project(args.dir, to=args.to, probe=args.probe, target=args.target)
    _print_result(args, {"method": result.method, "target": result.target, "files": result.files},
                  lambda console: console.print(result.message))
    return 0


# --- the parser ----------------------------------------------------------------------------

# in the order a user meets them
COMMANDS = [_add_inspect, _add_fold, _add_boards, _add_build, _add_run, _add_flash, _add_report]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgepack",
        description=textwrap.fill(
            "edgepack compiles clustered/pruned int8 TFLite models into firmware for Arm "
            "Cortex-M boards with Ethos-U NPUs: it folds weights into layer-shared int8 "
            "codebooks, compiles with Vela, and generates a C project that runs bit-exactly "
            "with TFLM.", _help_width()),
        formatter_class=_formatter, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"edgepack {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except EdgepackError as err:
        print(f"edgepack: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("edgepack: interrupted", file=sys.stderr)
        return 130


