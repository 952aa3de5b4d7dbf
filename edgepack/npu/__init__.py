"""Functional Ethos-U model of Vela's command stream (Ethos-U55 32/64/128/256 MACs, Ethos-U65-256).

Public API:
- `run_vela_model(vela_tflite, inputs, cpu_op_runner=None)`: run Vela's tflite output.
- `run_vela_raw(npz, inputs)`: run Vela's `--output-format raw` output.
- `parse_driver_payload(bytes)`, `decode_command_stream(bytes)`: the decoder.
- `RULES` / `rules_text()`: the inferred hardware rules with their evidence.

May import: errors, tools, tflite, quant, plan, project (and Vela's own modules). Never: build,
report, cli.
"""

from .decoder import Command, DriverPayload, decode_command_stream, format_command, parse_driver_payload
from .machine import NpuMachine, run_command_stream, scale_round
from .rules import RULES, rules_text
from .runner import run_vela_model, run_vela_raw

__all__ = ["Command", "DriverPayload", "NpuMachine", "RULES", "decode_command_stream", "format_command",
           "parse_driver_payload", "rules_text", "run_command_stream", "run_vela_model", "run_vela_raw",
           "scale_round"]
