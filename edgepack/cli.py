"""The `edgepack` command line: parse arguments, call a pipeline stage, print its result.

Every error the user can act on is an `EdgepackError`: one line on stderr naming the file and
the problem, exit code 2 for usage and 1 for a bad model or a failed build, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys

from . import __version__
from .errors import EdgepackError

EPILOG = """\
typical use:
  edgepack inspect model.tflite            how palette-ready are the weights?
  edgepack build model.tflite --board corstone-300 -o fw/
  edgepack run fw/                         build the firmware and run it on a simulator

exit codes: 0 success, 1 bad model or failed build/run, 2 usage error.
"""


def _print_json(data) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


def _console():
    from rich.console import Console

    return Console()


# --- inspect -------------------------------------------------------------------------------

def _add_inspect(sub) -> None:
    p = sub.add_parser(
        "inspect", help="show operators and how palette-ready each weight tensor is",
        description="Per operator and per weight tensor: shape, quantization, distinct int8 "
                    "values in the tensor and in any one output channel, the values a "
                    "layer-shared codebook needs, zeros and all-zero channels, and a verdict "
                    "(palette-ready / clustered but per-channel / dense).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  edgepack inspect model.tflite --json | jq '.weights[].verdict'")
    p.add_argument("model", help="an int8 .tflite model")
    p.add_argument("--json", action="store_true", help="machine-readable output (see README)")
    p.set_defaults(func=_cmd_inspect)


def _cmd_inspect(args) -> int:
    from .inspect import inspect_model, render_text
    from .tflite import check_int8, read_model

    model = read_model(args.model)
    check_int8(model)
    info = inspect_model(model)
    if args.json:
        _print_json(info)
    else:
        render_text(info, _console())
    return 0


# --- fold ----------------------------------------------------------------------------------

def _add_fold(sub) -> None:
    p = sub.add_parser(
        "fold", help="fold weights into layer-shared int8 codebooks (palette form)",
        description="Give every weight tensor one int8 codebook shared by all its output "
                    "channels, with per-channel scales absorbing each channel's gain, so the "
                    "weights become codebook[index]. This recovers clustering that per-channel "
                    "quantization and batch-norm folding spread out (the Ethos-U weight encoder "
                    "and edgepack's palette kernels only gain from a shared codebook). Zero "
                    "weights stay exactly zero. OUT is a standard TFLite model (biases are "
                    "re-derived for the new scales); the report gives per tensor K, index bits "
                    "and weight SQNR, and the end-to-end agreement with the input model through "
                    "the TFLM interpreter.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  edgepack fold model.tflite -o folded.tflite              fold to the model's own clustering\n"
               "  edgepack fold model.tflite -o folded.tflite --clusters 16\n"
               "  edgepack fold model.tflite -o folded.tflite --max-error 40   per layer the smallest K >= 40 dB\n"
               "  edgepack fold model.tflite -o f.tflite --calibration x.npy --json | jq .agreement\n"
               "\ncalibration .npy: shape [N, *input shape without batch]; int8 values are used as "
               "they are,\nfloat32 values are real inputs, quantized with the input scale and zero point.")
    p.add_argument("model", help="an int8 .tflite model")
    p.add_argument("-o", "--output", required=True, metavar="OUT.tflite",
                   help="where to write the folded model (written atomically)")
    p.add_argument("--clusters", default="auto", metavar="K|auto",
                   help="codebook size 1..256 for every weight tensor, or 'auto' (default): "
                        "each tensor's own clustering; tensors that were never clustered stay "
                        "dense int8")
    p.add_argument("--max-error", type=float, metavar="DB", dest="max_error",
                   help="instead of K: per tensor the smallest K in 2..256 whose weight SQNR "
                        "is at least DB (e.g. 40)")
    p.add_argument("--calibration", metavar="X.npy",
                   help="inputs for the end-to-end check (default: 32 random int8 inputs)")
    p.add_argument("--json", action="store_true", help="machine-readable report (see README)")
    p.set_defaults(func=_cmd_fold)


def _cmd_fold(args) -> int:
    from pathlib import Path

    from .errors import UsageError
    from .fold import fold_model, load_calibration, render_text
    from .tflite import check_int8, read_model, write_model

    out = Path(args.output)
    if out.is_dir():
        raise UsageError("is a directory, expected an output .tflite path", args.output)
    if not out.parent.is_dir():
        raise UsageError("output directory does not exist", args.output)
    model = read_model(args.model)
    check_int8(model)
    calibration = load_calibration(args.calibration) if args.calibration else None
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("folding", total=None)

        def progress(done: int, total: int, name: str) -> None:
            bar.update(task, completed=done, total=total, description=f"folding {name[:40]}")

        result = fold_model(model, args.clusters, args.max_error, calibration, progress)
    write_model(result.model, out)
    if args.json:
        info = result.to_json()
        info["output"] = str(out)
        _print_json(info)
    else:
        render_text(result, _console(), str(out))
    return 0


# --- boards --------------------------------------------------------------------------------

def _add_boards(sub) -> None:
    p = sub.add_parser(
        "boards", help="list the boards edgepack can build for",
        description="The boards edgepack knows: CPU and compiler, the Ethos-U NPU as Vela sees "
                    "it (accelerator, system config, memory mode), memory regions (address, "
                    "size, what the firmware puts there) and how to simulate each. Boards are "
                    "data: one TOML file per board in boards/; a new board needs no code, and "
                    "--board accepts the path of your own board file.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  edgepack boards\n  edgepack boards --json | jq '.[].name'\n"
               "  edgepack boards --board corstone-320      one board (a name or a .toml path)")
    p.add_argument("--board", help="show only this board (a name or the path of a board file)")
    p.add_argument("--json", action="store_true", help="machine-readable output (see README)")
    p.set_defaults(func=_cmd_boards)


def _cmd_boards(args) -> int:
    from .boards import board_info, list_boards, load_board, render_boards

    boards = [load_board(args.board)] if args.board else list_boards()
    if args.json:
        _print_json([board_info(b) for b in boards])
    else:
        render_boards(boards, _console())
    return 0


# --- the parser ----------------------------------------------------------------------------

COMMANDS = [_add_inspect, _add_fold, _add_boards]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgepack",
        description="edgepack compiles clustered/pruned int8 TFLite models into firmware for "
                    "Arm Cortex-M boards with Ethos-U NPUs: it folds weights into layer-shared "
                    "int8 codebooks, compiles with Vela, and generates a C project that runs "
                    "bit-exactly with TFLM.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
