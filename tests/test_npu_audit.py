"""Specification: edgepack.npu.divergence's audit table says where Vela's compilation for the
Ethos-U55/U65 computes differently from TFLM, and stays true. A fixed seeded sample of every
operator kind (one random configuration each, on MAC configurations taken in turn) is compiled
by Vela, run in the functional model and in TFLM: a kind the table calls bit-exact never differs,
a divergent class differs only under its condition and by at most its recorded bound, and a kind
the model does not execute is refused or equal, never guessed. Kernels Vela splits are covered on
every MAC configuration by tests/test_npu_dscnn.py (10x4); bench/npu_audit.py runs the sweep."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgepack.npu.divergence import (
    AUDIT,
    BIT_EXACT,
    BY_KIND,
    DIVERGENT,
    NO_ORACLE,
    NOT_MODELLED,
    audit_table,
    classify,
)

from .npu_audit import ACCELERATORS, KINDS, random_case, run_case

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = 1  # one seeded configuration per kind (MAC configurations in turn); the sweep is in bench/


def test_the_table_covers_every_generated_kind_and_names_those_tflm_cannot_run():
    assert sorted(a.kind for a in AUDIT if a.status != NO_ORACLE) == KINDS
    assert sorted(a.kind for a in AUDIT if a.status == NO_ORACLE) == ["EXP", "RELU_0_TO_1", "RELU_N1_TO_1"]


@pytest.mark.parametrize("kind", KINDS)
def test_seeded_sample_agrees_with_the_table(kind):
    rng = np.random.default_rng(sum(map(ord, kind)))
    audit = BY_KIND[kind]
    for i in range(SAMPLE):
        case = random_case(kind, rng)
        r = run_case(case, ACCELERATORS[(KINDS.index(kind) + i) % len(ACCELERATORS)], n_inputs=8)
        if not r.on_npu:
            continue  # Vela left this configuration on the CPU: nothing to compare
        if audit.status == NOT_MODELLED:  # refused (never guessed), or executed and equal
            assert r.differing == 0 or "not modelled" in r.features["unmodelled"]
            continue
        assert r.differing >= 0, r.features
        rule = classify(kind, r.features)
        if rule is None:
            assert r.differing == 0, (kind, r.accelerator, r.features, r.max_difference)
        else:
            assert r.max_difference <= rule.max_difference, (kind, r.features, r.max_difference)


@pytest.mark.parametrize("accel", ["ethos-u55-128", "ethos-u65-256"])
def test_relu6_with_different_quantization_really_diverges_and_with_equal_does_not(accel):
    rng = np.random.default_rng(4)
    seen = {True: 0, False: 0}
    while min(seen.values()) == 0:
        case = random_case("RELU6", rng)
        r = run_case(case, accel, n_inputs=8)
        assert r.on_npu
        equal = case.features["equal_quantization"]
        if equal:
            assert r.differing == 0
        else:
            assert 0 < r.max_difference <= BY_KIND["RELU6"].max_difference
        seen[equal] += 1


def test_readmes_carry_the_table_verbatim():
    table = audit_table()
    assert table in (ROOT / "README.md").read_text()
    assert table in (ROOT / "edgepack" / "npu" / "README.md").read_text()
    assert BIT_EXACT in table and DIVERGENT in table
