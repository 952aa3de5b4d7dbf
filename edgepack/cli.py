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


# --- the parser ----------------------------------------------------------------------------

COMMANDS = [_add_inspect]


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
