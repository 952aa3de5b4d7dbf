"""Where edgepack's data directories are: `boards/`, `templates/`, `firmware/`.

In a source checkout (and an editable install) they sit beside the package; a wheel installs
them under `<prefix>/share/edgepack/` (see `[tool.setuptools.data-files]` in pyproject.toml).
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parent.parent


def data_dir(name: str) -> Path:
    """The directory `name` ("boards", "templates" or "firmware")."""
    candidates = [_CHECKOUT / name,
                  Path(sysconfig.get_path("data")) / "share" / "edgepack" / name,
                  Path(sys.prefix) / "share" / "edgepack" / name]
    for path in candidates:
        if path.is_dir():
            return path
    return candidates[0]


BOARDS_DIR = data_dir("boards")
TEMPLATES_DIR = data_dir("templates")
FIRMWARE_DIR = data_dir("firmware")
