"""A wheel carries everything a build needs: boards, templates and the C runtime."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_ships_boards_templates_and_runtime(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path),
                    str(ROOT)], check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("edgepack-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {n.split(".data/data/share/edgepack/", 1)[1] for n in names if ".data/data/share/" in n}
    expected = {str(p.relative_to(ROOT)) for d in ("boards", "templates", "firmware")
                for p in (ROOT / d).rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert expected <= shipped, sorted(expected - shipped)
    assert "edgepack/resources.py" in names and "edgepack/npu/machine.py" in names
