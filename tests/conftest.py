"""Shared fixtures: the fixture models, and ways to derive edited models from them."""

from __future__ import annotations

from pathlib import Path

import flatbuffers
import numpy as np
import pytest

from edgepack.tflite import schema

FIXTURES = Path(__file__).parent / "fixtures"
INT8_MODELS = sorted(p.name for p in FIXTURES.glob("*.tflite"))


def fixture_path(name: str) -> Path:
    return FIXTURES / name


def edit_model(name: str, edit) -> bytes:
    """Bytes of fixture `name` after `edit(model_t)` changed its object-API form."""
    m = schema.ModelT.InitFromPackedBuf(fixture_path(name).read_bytes(), 0)
    edit(m)
    b = flatbuffers.Builder(1 << 16)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def retype_activations(m, type_code: int) -> None:
    """Turn every non-constant tensor into `type_code` (float or int16 activations)."""
    sg = m.subgraphs[0]
    for t in sg.tensors:
        data = m.buffers[t.buffer].data
        if data is None or len(data) == 0:
            t.type = type_code


@pytest.fixture
def digits_b() -> Path:
    return fixture_path("digits_b_cluster16_int8.tflite")


@pytest.fixture(params=INT8_MODELS)
def int8_model(request) -> Path:
    return fixture_path(request.param)


@pytest.fixture
def rng():
    return np.random.default_rng(20261122)
