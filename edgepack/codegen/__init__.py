"""The code generator: lower a model to a plan of kernel calls (`lowering`, through the operator
registry `edgepack.ops`), place its tensors in one arena (`arena`), and render the firmware
project from the jinja2 templates (`rendering`). On NPU boards `mixed` lowers Vela's optimized
model instead: NPU steps (Vela's command streams) and CPU steps over one arena.

Everything the firmware computes offline is computed before rendering, in Python, once:
requantization multipliers and shifts, padding, activation ranges, softmax constants, arena
offsets. The templates only lay the results out.
May import: errors, tflite, quant, packing, plan, ops, project, resources, boards.
Never: run, flash, report, cli.
"""

from .arena import ArenaBuffer, ArenaPlan, plan_arena
from .lowering import lower_model, lower_operators
from .rendering import file_header, render, runtime_sources, write_project

__all__ = ["ArenaBuffer", "ArenaPlan", "file_header", "lower_model", "lower_operators", "plan_arena", "render",
           "runtime_sources", "write_project"]
