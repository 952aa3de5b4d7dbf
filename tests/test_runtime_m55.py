"""Spec: the runtime built for the Cortex-M55 (arm-none-eabi-gcc -O2, Helium paths, DSP for the rest)
computes the same bytes as the host build, which is bit-exact with TFLM: every weighted layer of
every fixture model in both weight forms, plus random layers with odd lengths and every index
width 1-8, run under QEMU (mps3-an547). Skipped where the toolchain or QEMU is missing."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(not (shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-gcc")),
                                reason="needs qemu-system-arm and arm-none-eabi-gcc")


def test_m55_firmware_matches_host(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "runtime_kernels.py"), "--random", "64",
                        "--seed", "7", "--keep", str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rows = [line for line in r.stdout.splitlines() if line.startswith("| ") and "op" in line or "random" in line]
    assert len(rows) >= 16 + 64
    assert "MISMATCH" not in r.stdout


def test_m55_lookup_path_matches_host(tmp_path):
    """The per-index lookup decode (small layers), forced everywhere, on random layers."""
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "runtime_kernels.py"), "--models", "none", "--random",
                        "48", "--seed", "11", "--cflags=-DEP_PALETTE_FORCE_LUT"], cwd=ROOT, capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "MISMATCH" not in r.stdout


def test_m55_whole_model_plan_matches_tflm(tmp_path):
    """A whole fixture model as a static ep_plan (dense and palette) on the M55, hook counting per op."""
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "runtime_kernels.py"), "--plan", "pertensor",
                        "--images", "3"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "all equal" in r.stdout
    assert r.stdout.count("| conv2d |") == 2
