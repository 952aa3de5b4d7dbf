"""Shared by the build/run/flash tests: build each fixture once per board per session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from edgepack.build import build

_CACHE: dict[tuple[str, str, bool], Path] = {}


def built_project(tmp_root: Path, model: Path, board: str, cpu_only: bool = True) -> Path:
    """The project of `model` for `board`, built once per test session. By default the CPU-only
    firmware (`--cpu-only`: every operator in edgepack's runtime, what the build/run/flash tests
    check); `cpu_only=False` gives the default firmware, which drives the NPU on NPU boards
    (tests/test_cosim.py)."""
    key = (model.name, board, cpu_only)
    if key not in _CACHE:
        out = tmp_root / f"{model.stem}_{board}{'' if cpu_only else '_npu'}"
        build(str(model), board, out, cpu_only=cpu_only)
        _CACHE[key] = out
    return _CACHE[key]


def needs(*tools: str):
    missing = [t for t in tools if shutil.which(t) is None]
    return pytest.mark.skipif(bool(missing), reason=f"not installed: {', '.join(missing)}")
