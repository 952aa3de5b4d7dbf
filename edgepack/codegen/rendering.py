"""Rendering the project: the jinja2 templates in `templates/` filled from the plan, the arena
and the model data, the runtime copied in, every file headed "generated, do not edit".

Determinism: nothing here reads the clock or the environment; every collection is emitted in
a fixed order, so two builds of the same inputs are byte-identical."""

from __future__ import annotations

import functools

from dataclasses import asdict
from pathlib import Path

from .. import __version__
from ..plan import DataBlob, PlanStep, c_initializer
from ..project import board_files, load_images
from ..resources import FIRMWARE_DIR, TEMPLATES_DIR
from ..tflite import Model
from .arena import ArenaPlan


def file_header(model: Model, comment: str = "//") -> str:
    """The first lines of every generated file."""
    lines = [f"edgepack {__version__}: generated, do not edit.",
             f"model sha256 {model.sha256}"]
    if comment == "/*":
        return "/*\n" + "".join(f" * {line}\n" for line in lines) + " */"
    return "\n".join(f"{comment} {line}" for line in lines)


@functools.lru_cache(maxsize=None)
def _jinja_env():
    """One environment per process: it keeps the compiled templates (compiling them is most of
    a small model's build time); a template changed on disk is recompiled."""
    import jinja2

    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                              trim_blocks=True, lstrip_blocks=True, autoescape=False)


def runtime_sources() -> list[Path]:
    """The runtime files a project needs, relative to firmware/ (all kernels: the plan runner
    dispatches to any of them; --gc-sections drops what a model does not call)."""
    files = sorted((FIRMWARE_DIR / "include").glob("*.h")) + sorted((FIRMWARE_DIR / "src").glob("*.[ch]"))
    return [p.relative_to(FIRMWARE_DIR) for p in files]


def copy_runtime(dest: Path, model: Model) -> list[str]:
    """Copy the runtime into dest/runtime with the generated-file header prepended."""
    out = []
    for rel in runtime_sources():
        target = dest / "runtime" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        text = (FIRMWARE_DIR / rel).read_text(encoding="utf-8")
        target.write_text(file_header(model, "/*") + "\n/* copied from edgepack's firmware/"
                          + rel.as_posix() + " */\n" + text, encoding="utf-8")
        out.append(("runtime" / rel).as_posix())
    return out


def render(template: str, dest: Path, **context) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    text = _jinja_env().get_template(template).render(**context)
    dest.write_text(text, encoding="utf-8")


def c_bytes(data: bytes, per_line: int = 16) -> str:
    """Bytes as C initializer text, per_line values a line."""
    lines = []
    for i in range(0, len(data), per_line):
        lines.append("    " + ", ".join(f"0x{b:02x}" for b in data[i:i + per_line]) + ",")
    return "\n".join(lines)


def params_text(step: PlanStep) -> str:
    return c_initializer(step.params)


def as_dict(obj) -> dict:
    return asdict(obj)


def _io_tensor(model: Model, t: int, arena: ArenaPlan) -> dict:
    """A model input or output as the application API describes it (model.h)."""
    tensor = model.tensors[t]
    q = tensor.quantization
    shape = [int(d) for d in tensor.shape]
    name = "".join(c if c.isprintable() and c not in '"\\?' else "_" for c in tensor.name)  # a C string literal
    return {"offset": arena.offsets[t], "size": tensor.nbytes, "dtype": tensor.dtype,
            "ctype": {"int8": "int8_t", "int32": "int32_t", "float32": "float"}.get(tensor.dtype, "int8_t"), "name": name, "shape": shape,
            "dims": (shape + [0] * 4)[:4] if len(shape) <= 4 else shape[:4], "rank": len(shape),
            "scale": repr(float(q.scale[0])) + "f" if q is not None else "1.0f",
            "zero_point": int(q.zero_point[0]) if q is not None else 0}


def write_project(dest: Path, *, model: Model, board, steps: list[PlanStep], arena: ArenaPlan,
                  blob: DataBlob, golden: DataBlob, model_data: bytes, golden_data: bytes,
                  golden_input_symbols, golden_output_symbols, result, vela_model: bytes | None,
                  placement: dict[int, str], stack_size: int, heap_size: int,
                  uart_base: int) -> list[str]:
    """Render every file of the project into `dest` (an empty directory); returns their paths."""
    host = board.cpu.toolchain == "host"
    model_name = Path(model.path).stem
    ctx = dict(
        header_c=file_header(model, "/*"), header_hash=file_header(model, "#"),
        header_asm=file_header(model, "/*"), board=board, model_name=model_name,
        host_board=host, steps=[], arena=arena, golden_count=len(golden_input_symbols),
        inputs=[_io_tensor(model, t, arena) for t in model.inputs],
        outputs=[_io_tensor(model, t, arena) for t in model.outputs],
        model_arrays=blob.arrays, golden_arrays=golden.arrays,
        golden_input_symbols=golden_input_symbols, golden_output_symbols=golden_output_symbols,
        npu=board.npu is not None and vela_model is not None, result=result,
        stack_size=stack_size, heap_size=heap_size, uart_base=uart_base,
        images=[] if host else load_images(board), placement=placement)
    # Constant operands: plan->constants[k], referred to as EP_CONST(k) in the op's inputs.
    constants: list[str] = []
    for s in steps:
        constants += [sym for sym in s.constants.values() if sym not in constants]
    ctx["constants"] = constants
    for s in steps:
        ctx["steps"].append(dict(
            index=s.index, opcode=s.opcode, kernel=s.kernel, params_type=s.params_type,
            params_text=c_initializer(s.params), symbol=s.symbol, weights_form=s.weights_form,
            input_offsets=[f"EP_CONST({constants.index(s.constants[t])})" if t in s.constants
                           else arena.offsets[t] for t in s.inputs],
            output_offset=arena.offsets[s.output],
            several_output_offsets=[arena.offsets[t] for t in s.several_outputs],
            target="npu" if s.kernel == "EP_KERNEL_ETHOSU" else "cpu",  # where this firmware runs it
            covers=getattr(s, "covers", [])))
    ctx["npu_plan"] = any(s["target"] == "npu" for s in ctx["steps"])
    files = copy_runtime(dest, model)
    ctx["runtime_c"] = [f for f in files if f.endswith(".c")]

    (dest / "data").mkdir(parents=True, exist_ok=True)
    (dest / "data" / "model.bin").write_bytes(model_data)
    (dest / "data" / "golden.bin").write_bytes(golden_data)
    files += ["data/model.bin", "data/golden.bin"]

    plan = [("CMakeLists.txt.j2", "CMakeLists.txt"), ("README.md.j2", "README.md"),
            ("main.c.j2", "src/main.c"), ("model.h.j2", "src/model.h"),
            ("model_plan.c.j2", "src/model_plan.c"), ("golden.c.j2", "src/golden.c"),
            ("golden.h.j2", "src/golden.h"), ("platform.h.j2", "src/platform.h"),
            ("platform_host.c.j2", "src/platform_host.c")]
    if not host:
        plan += [("startup.c.j2", "src/startup.c"), ("platform_arm.c.j2", "src/platform_arm.c"),
                 ("cmake/arm-none-eabi.cmake.j2", "cmake/arm-none-eabi.cmake"),
                 ("linker.ld.j2", f"linker/{board.name}.ld")]
    for template, target in plan:
        extra = {}
        if template == "linker.ld.j2":
            extra = dict(regions=board.memory, arena_bytes=arena.size,
                         place={h: board.region_for(h).name for h in
                                ("code", "rodata", "model", "data", "stack", "arena")})
        render(template, dest / target, **ctx, **extra)
        files.append(target)
    render("data.S.j2", dest / "src/model_data.S", **ctx, what="Model data", file="model.bin",
           size=len(model_data), section=".edgepack.model", arrays=blob.arrays)
    render("data.S.j2", dest / "src/golden_data.S", **ctx, what="Golden vectors",
           file="golden.bin", size=len(golden_data), section=".edgepack.golden",
           arrays=golden.arrays)
    files += ["src/model_data.S", "src/golden_data.S"]
    if ctx["npu"]:
        render("vela_model.c.j2", dest / "npu/vela_model.c", **ctx, vela_size=len(vela_model),
               vela_bytes=c_bytes(vela_model))
        render("vela_model.h.j2", dest / "npu/vela_model.h", **ctx, vela_size=len(vela_model))
        render("npu_README.md.j2", dest / "npu/README.md", **ctx, vela_size=len(vela_model))
        render("host_steps.c.j2", dest / "src/host_steps.c", **ctx)
        files.append("src/host_steps.c")
        (dest / "npu" / "model_vela.tflite").write_bytes(vela_model)
        files += ["npu/vela_model.c", "npu/vela_model.h", "npu/README.md", "npu/model_vela.tflite"]
    for rel, text in board_files(board, ctx["images"], model):
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_text(text, encoding="utf-8")
        files.append(rel)
    return sorted(files)
