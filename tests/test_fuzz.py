"""Mutated fixture models end in either a valid inspection or one clear error line."""

import time

import numpy as np
import pytest

from edgepack.cli import main
from tests.conftest import INT8_MODELS, edit_model, fixture_path

CASES_PER_KIND = 100
SEED = 7


def check(tmp_path, capsys, data: bytes, label: str):
    p = tmp_path / "m.tflite"
    p.write_bytes(data)
    start = time.monotonic()
    code = main(["inspect", str(p), "--json"])
    out = capsys.readouterr()
    assert time.monotonic() - start < 10, f"{label}: took too long"
    assert code in (0, 1), label
    if code == 1:
        lines = out.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"edgepack: error: {p}: "), (label, out.err)


@pytest.mark.parametrize("kind", ["bitflip", "truncate", "shape", "bytes"])
def test_mutations_end_in_a_result_or_a_clear_error(tmp_path, capsys, kind):
    rng = np.random.default_rng([SEED, ["bitflip", "truncate", "shape", "bytes"].index(kind)])
    for case in range(CASES_PER_KIND):
        name = INT8_MODELS[case % len(INT8_MODELS)]
        data = bytearray(fixture_path(name).read_bytes())
        if kind == "bitflip":
            for pos in rng.integers(0, len(data), size=rng.integers(1, 9)):
                data[pos] ^= 1 << int(rng.integers(0, 8))
        elif kind == "truncate":
            data = data[: int(rng.integers(0, len(data)))]
        elif kind == "bytes":  # overwrite a run of bytes: lengths, offsets, tables
            pos = int(rng.integers(0, len(data) - 8))
            data[pos:pos + 4] = rng.integers(0, 256, 4, dtype=np.uint8).tobytes()
        else:
            dims = rng.choice([0, 1, 3, 7, 1 << 16, 1 << 30, -1, -5], size=rng.integers(0, 6))

            def edit(m, dims=dims, which=int(rng.integers(0, 1 << 16))):
                tensors = m.subgraphs[0].tensors
                tensors[which % len(tensors)].shape = np.array(dims, np.int32)

            data = bytearray(edit_model(name, edit))
        check(tmp_path, capsys, bytes(data), f"{kind} case {case}")
