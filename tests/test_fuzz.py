"""Spec: a mutated model ends in a result or one clear error line, for every command.

`inspect` runs in this process on byte-level mutants of the fixtures; `inspect`, `fold` and
`build` run in forked children on mutants of every kind (tests/mutants.py), where a traceback,
a signal, a hang, a memory blow-up, stray stderr or a half-written output would show.
"""

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


# Every command on mutants of every kind, schema edits included, each run in a forked child
# (tests/mutants.py): a signal, a hang or a memory blow-up is seen, not suffered. Seeded: the
# same mutants on every run; bench/fuzz.py runs >= 10,000 per command.
FORKED_COUNTS = {"inspect": 300, "fold": 200, "build": 200}
FORKED_SEED = 1616


@pytest.mark.parametrize("command", list(FORKED_COUNTS))
def test_every_command_survives_mutants_with_a_result_or_one_line(command, tmp_path):
    from tests.mutants import mutant, run_command, seeds

    base = seeds()
    workdir = tmp_path / "run"
    workdir.mkdir()
    bad = []
    for n in range(FORKED_COUNTS[command]):
        label, data = mutant(FORKED_SEED, n, base)
        outcome = run_command(command, data, workdir, timeout=60)
        # result, one-line error (exit 1) or usage error (exit 2); anything else is a finding:
        # traceback, signal, hang, memory blow-up, multi-line error, stray stderr, output left
        if outcome.kind not in ("result", "one-line error", "usage error"):
            bad.append(f"{label}: {outcome.kind}: {outcome.stderr.strip()[-300:]}")
    assert bad == []
