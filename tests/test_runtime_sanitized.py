"""Spec: the runtime kernel suites also pass with the runtime built with
-fsanitize=address,undefined (-fno-sanitize-recover=all): no out-of-bounds access, no undefined
behaviour, on every random configuration.

The sanitized library is loaded into a child Python process with libasan preloaded
(ASAN_OPTIONS=detect_leaks=0: the interpreter itself is not instrumented).
"""
import subprocess
import sys
from pathlib import Path

import pytest

from tests.runtime_harness import build_library, sanitizer_env

ROOT = Path(__file__).resolve().parents[1]
SUITES = ["tests/test_runtime_kernels.py", "tests/test_runtime_layout_kernels.py", "tests/test_runtime_fixtures.py",
          "tests/test_runtime_plan.py", "tests/test_runtime_fuzz.py", "tests/test_ethosu_driver.py"]


@pytest.mark.parametrize("suite", SUITES)
def test_suite_under_sanitizers(suite):
    if not (ROOT / suite).exists():
        pytest.skip(f"{suite} missing")
    build_library(sanitize=True)  # build errors surface here, not in the child
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", suite],
                       cwd=ROOT, env=sanitizer_env(), capture_output=True, text=True, timeout=1500)
    tail = (r.stdout[-4000:] + "\n" + r.stderr[-6000:])
    assert r.returncode == 0, f"{suite} failed under ASan/UBSan:\n{tail}"
    assert "passed" in r.stdout


def test_sanitizer_catches_out_of_bounds(tmp_path):
    """The sanitizer build is real: a deliberately bad C driver trips ASan."""
    src = tmp_path / "oob.c"
    src.write_text("#include <stdlib.h>\nint main(void){ volatile char *p = malloc(4); p[4] = 1; free((void*)p);"
                   " return 0; }\n")
    exe = tmp_path / "oob"
    subprocess.run(["gcc", "-fsanitize=address", str(src), "-o", str(exe)], check=True)
    r = subprocess.run([str(exe)], capture_output=True, text=True)
    assert r.returncode != 0 and "heap-buffer-overflow" in r.stderr
