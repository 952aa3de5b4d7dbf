"""Run what can crash (the TFLM interpreter) in a forked child process, so that a crash, a hang
or a refusal becomes one line naming the stage and the model instead of the death of edgepack.

The child runs a plain function and sends its result back pickled through a pipe. What the
child prints on stderr (TFLM prints its reasons there) is captured, never shown directly, and
becomes part of the one-line error. A fork costs a few milliseconds, small beside a TFLM pass.
May import: errors.
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import sys
import tempfile
import time

from .errors import EdgepackError, StageError

DEFAULT_TIMEOUT_S = 600.0  # a TFLM pass over a MobileNet takes seconds; a hang, forever
TFLM = "the TFLM interpreter"


def one_line(text: str, limit: int = 300) -> str:
    """`text` as one line of at most `limit` characters: whitespace runs become one space."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[:limit - 3] + "..."


class Isolated:
    """`fn(*args)` running in a forked child; `result()` waits for it (see the module doc)."""

    def __init__(self, fn, *args, stage: str, model: str, tool: str = TFLM,
                 timeout: float = DEFAULT_TIMEOUT_S):
        self.stage, self.model, self.tool, self.timeout = stage, model, tool, timeout
        self.stderr = tempfile.TemporaryFile()
        read_end, write_end = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            os.close(read_end)
            _child(fn, args, write_end, self.stderr.fileno())
        os.close(write_end)
        self.pid, self.pipe, self.started = pid, read_end, time.monotonic()
        self.finished = False

    def cancel(self) -> None:
        """Stop the child and forget its result (another part of the stage failed)."""
        if self.finished:
            return
        self.finished = True
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(self.pipe)
        self.stderr.close()

    def _fail(self, what: str) -> StageError:
        return StageError(f"{self.stage}: {what}", self.model)

    def _captured(self) -> str:
        self.stderr.seek(0)
        text = self.stderr.read(64 * 1024).decode("utf-8", "replace")
        self.stderr.close()
        return one_line(text)

    def result(self):
        if self.finished:
            raise RuntimeError("the isolated call's result was taken or cancelled")
        self.finished = True
        chunks, deadline = [], self.started + self.timeout
        try:
            while True:
                left = deadline - time.monotonic()
                ready = select.select([self.pipe], [], [], max(left, 0))[0] if left > 0 else []
                if not ready:
                    os.kill(self.pid, signal.SIGKILL)
                    os.waitpid(self.pid, 0)
                    self.stderr.close()
                    raise self._fail(f"{self.tool} did not finish within {self.timeout:g} s")
                chunk = os.read(self.pipe, 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            os.close(self.pipe)
        _, status = os.waitpid(self.pid, 0)
        said = self._captured()
        if os.WIFSIGNALED(status):
            name = signal.Signals(os.WTERMSIG(status)).name
            raise self._fail(f"{self.tool} crashed ({name})" + (f": {said}" if said else ""))
        try:
            kind, value = pickle.loads(b"".join(chunks))
        except Exception:  # an exit without a result: the child died before it could answer
            raise self._fail(f"{self.tool} exited with status {os.WEXITSTATUS(status)} and no "
                             "result" + (f": {said}" if said else "")) from None
        if kind == "ok":
            return value
        if isinstance(value, EdgepackError):
            raise value
        reason = one_line(str(value)) or type(value).__name__
        if said and said not in reason:
            reason += f" ({said})"
        raise self._fail(f"{self.tool} refused the model: {reason}")


def _child(fn, args, pipe: int, stderr_fd: int) -> None:
    status = 0
    try:
        import faulthandler

        faulthandler.disable()  # a crash is the parent's to report, as one line
        os.dup2(stderr_fd, 2)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles ^C and kills us
        try:
            payload = pickle.dumps(("ok", fn(*args)))
        except BaseException as err:  # noqa: BLE001 - every error goes back to the parent
            try:
                payload = pickle.dumps(("error", err))
            except Exception:
                payload = pickle.dumps(("error", RuntimeError(f"{type(err).__name__}: {err}")))
        view = memoryview(payload)
        while view:
            view = view[os.write(pipe, view):]
    except BaseException:  # noqa: BLE001
        status = 70
    finally:
        os._exit(status)  # no atexit handlers, no flushing of the parent's buffers


def load_tflm() -> None:
    """Import the TFLM interpreter in this process, once, before forking children that run it:
    each child would otherwise import it anew (a few hundred milliseconds)."""
    from tflite_micro import runtime  # noqa: F401


def run_isolated(fn, *args, stage: str, model: str, tool: str = TFLM,
                 timeout: float = DEFAULT_TIMEOUT_S):
    """`fn(*args)` in a forked child: its result, or a one-line `StageError`."""
    return Isolated(fn, *args, stage=stage, model=model, tool=tool, timeout=timeout).result()
