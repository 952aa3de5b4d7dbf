"""Spec: edgepack's modules import one way (README "Architecture").

The imports of every module under `edgepack/` (top-level and inside functions alike) form a
graph without cycles; no pipeline stage imports the command line; no `_private` name is
imported from another module; and the stages import in pipeline order only.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "edgepack"

# The house's layers, lowest first: a module may import its own layer or a lower one.
LAYERS = [
    {"errors", "resources", "__init__"},
    {"tflite", "quant", "packing", "boards", "tools", "plan", "codebook", "validate",
     "isolate"},
    {"project", "ops", "inspect"},
    {"fold"},
    {"vela"},
    {"codegen"},
    {"npu"},
    {"sim", "flash"},
    {"report"},
    {"build"},
    {"cli", "__main__"},
]
LAYER_OF = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def edgepack_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def resolve(importer: str, is_package: bool, node: ast.ImportFrom | ast.Import) -> list[tuple[str, list[str]]]:
    """(imported module, names taken from it) for one import statement."""
    if isinstance(node, ast.Import):
        return [(a.name, []) for a in node.names if a.name.startswith("edgepack")]
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    if node.level:
        base = base[:len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    if not target.startswith("edgepack"):
        return []
    return [(target, [a.name for a in node.names])]


def import_graph():
    modules = edgepack_modules()
    edges: dict[str, set[str]] = {m: set() for m in modules}
    private: list[str] = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for target, names in resolve(name, path.name == "__init__.py", node):
                for n in names:
                    sub = f"{target}.{n}"
                    if sub in modules:  # `from . import fold` imports a module
                        edges[name].add(sub)
                    elif n.startswith("_") and not n.startswith("__"):
                        private.append(f"{name} imports {n} from {target}")
                    else:
                        edges[name].add(target)
                if not names:
                    edges[name].add(target)
    return modules, edges, private


def stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """A cycle among modules, ignoring a package's imports of its own submodules (a package's
    __init__ re-exporting its parts is not a circle)."""
    def deps(m):
        return {d for d in edges.get(m, ()) if d in edges and not d.startswith(m + ".") and d != m}

    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for d in sorted(deps(m)):
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state:
                found = visit(d)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(edges):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_every_module_is_in_a_layer():
    modules, _, _ = import_graph()
    assert sorted({stage(m) for m in modules} - set(LAYER_OF)) == []


def test_no_import_cycle():
    _, edges, _ = import_graph()
    assert find_cycle(edges) is None


def test_no_stage_imports_the_command_line():
    _, edges, _ = import_graph()
    offenders = [f"{m} -> {d}" for m, ds in edges.items() for d in ds
                 if stage(d) == "cli" and stage(m) not in ("cli", "__main__")]
    assert offenders == []


def test_no_private_name_is_imported_across_modules():
    _, _, private = import_graph()
    assert private == []


def test_stages_import_in_pipeline_order():
    _, edges, _ = import_graph()
    upward = [f"{m} -> {d}" for m, ds in edges.items() for d in ds
              if LAYER_OF[stage(d)] > LAYER_OF[stage(m)]]
    assert upward == []


@pytest.mark.parametrize("package", ["fold", "codegen", "ops", "npu", "cli"])
def test_each_package_says_what_it_holds_and_may_import(package):
    doc = ast.get_docstring(ast.parse((PACKAGE / package / "__init__.py").read_text()))
    assert doc and "import" in doc.lower()


def test_a_cycle_is_detected():
    # the checker itself: a two-module circle and a three-module one are found
    assert find_cycle({"a": {"b"}, "b": {"a"}}) in (["a", "b", "a"], ["b", "a", "b"])
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) is not None
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_long_modules_say_why_they_are_one_piece():
    long = []
    for name, path in edgepack_modules().items():
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > 600:
            doc = ast.get_docstring(ast.parse(text)) or ""
            if "one piece" not in doc:
                long.append(f"{name} ({text.count(chr(10))} lines)")
    assert long == []
