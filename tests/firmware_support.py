"""Shared by the build/run/flash tests: build each fixture once per board per session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from edgepack.build import build

_CACHE: dict[tuple[str, str], Path] = {}


def built_project(tmp_root: Path, model: Path, board: str) -> Path:
    """The project of `model` for `board`, built once per test session."""
    key = (model.name, board)
    if key not in _CACHE:
        out = tmp_root / f"{model.stem}_{board}"
        build(str(model), board, out)
        _CACHE[key] = out
    return _CACHE[key]


def needs(*tools: str):
    missing = [t for t in tools if shutil.which(t) is None]
    return pytest.mark.skipif(bool(missing), reason=f"not installed: {', '.join(missing)}")
