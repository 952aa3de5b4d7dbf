"""Errors that reach the user as one line and an exit code (never a traceback)."""

from __future__ import annotations


class EdgepackError(Exception):
    """A problem the user can act on. `str(err)` is the whole one-line message."""

    exit_code = 1

    def __init__(self, message: str, path: str | None = None):
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


class UsageError(EdgepackError):
    """Bad command-line usage: missing path, a directory, an unknown board (exit 2)."""

    exit_code = 2


class ModelError(EdgepackError):
    """The model cannot be read or is outside what edgepack supports (exit 1)."""


class CommandStreamRefused(ModelError):
    """The functional Ethos-U model refused an NPU command stream (a feature it does not model,
    or an access outside the memory Vela planned); `vela_operator` is the ethos-u operator's
    index in Vela's optimized model."""

    def __init__(self, message: str, vela_operator: int):
        super().__init__(message)
        self.vela_operator = vela_operator


class BuildError(EdgepackError):
    """A stage of the build failed: does not fit, toolchain missing, Vela refused (exit 1)."""


class StageError(EdgepackError):
    """A stage's tool crashed, hung or refused the model, in an isolated process (exit 1)."""
