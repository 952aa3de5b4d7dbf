"""Spec: a generated project is a library an application links. The application in the generated
README (its CMake lines and its C file, taken from the README as written) builds against
`edgepack::model` + `edgepack::board` with add_subdirectory, runs under QEMU with the NPU
co-simulated, and prints what the functional Ethos-U model computes for its input."""
from __future__ import annotations

import json
import re
import subprocess

import numpy as np

from edgepack.boards import load_board
from edgepack.build import build
from edgepack.npu.cosim import run_cosim
from edgepack.npu.golden import functional_model_outputs

from .conftest import fixture_path
from .firmware_support import needs

pytestmark = needs("arm-none-eabi-gcc", "qemu-system-arm", "cmake", "ninja")


def test_the_readme_application_builds_against_the_library_and_runs(tmp_path):
    project = tmp_path / "digits_corstone-300"
    build(str(fixture_path("digits_b_cluster16_int8.tflite")), "corstone-300", project)
    readme = (project / "README.md").read_text()
    cmake_lines = re.search(r"```cmake\n(.*?)```", readme, re.DOTALL).group(1)
    app_c = re.search(r"```c\n(.*?)```", readme, re.DOTALL).group(1)
    assert len(app_c.splitlines()) <= 25  # a short application

    app = tmp_path / "app"
    app.mkdir()
    (app / "app.c").write_text(app_c)
    (app / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.16)\n"
        f"set(CMAKE_TOOLCHAIN_FILE {project}/cmake/arm-none-eabi.cmake)\n"
        "project(app C ASM)\n"
        + cmake_lines.replace("path/to/digits_b_cluster16_int8_corstone-300", str(project)))
    for cmd in (["cmake", "-G", "Ninja", "-S", str(app), "-B", str(app / "build")],
                ["ninja", "-C", str(app / "build")]):
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    elf = app / "build" / "app"
    assert elf.is_file()
    assert not (app / "build" / "edgepack" / "firmware.elf").exists()  # only the libraries

    info = json.loads((project / "build.json").read_text())
    board = load_board("corstone-300")
    run = run_cosim(elf, info, board.npu.accelerator, board.npu.base_address, board.sim.qemu_machine, 60)
    assert run.failure == "" and run.exit_code == 0, run.failure + run.output
    assert run.streams == 1
    printed = [int(v) for v in run.output.split()]

    n_in = int(np.prod(info["input_shapes"][0]))
    x = ((np.arange(n_in) * 7) % 256 - 128).astype(np.int8).reshape(info["input_shapes"][0])
    want = functional_model_outputs((project / "npu" / "model_vela.tflite").read_bytes(), [[x]])[0][0]
    assert printed == [int(v) for v in want.reshape(-1)]
