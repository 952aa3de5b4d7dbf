"""Spec: a generator-style static plan (ep_op list over one arena) runs whole fixture models
end to end bit-exactly against TFLM, with dense and palette weights; the per-op hook fires
before and after every op; a plan whose offsets leave the arena is refused before any kernel runs;
kernels refuse inconsistent dimensions and short buffers instead of touching memory."""
import ctypes as C
from pathlib import Path

import numpy as np
import pytest

from tests import runtime_harness as H
from tests.opmodels import run_tflm
from tests.runtime_lowering import build_plan, load_model, lower
from tests.test_runtime_fixtures import MODELS, quantized_inputs

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def rt():
    return H.Runtime()


def run_plan(rt, plan, arena_bytes, hook=None):
    arena = np.zeros(arena_bytes + 64, np.uint8)
    cb = H.HOOK(hook) if hook else H.HOOK()
    st = rt.lib.ep_plan_run(C.byref(plan), H._ptr(arena), arena_bytes, cb, None)
    return st, arena


@pytest.mark.parametrize("form", ["dense", "palette"])
@pytest.mark.parametrize("name", MODELS)
def test_whole_model_end_to_end(rt, name, form):
    model = load_model(FIXTURES / name)
    model_bytes = (FIXTURES / name).read_bytes()
    plan, arena_bytes, in_off, out_off, out_n, keep = build_plan(model, form)
    xs = quantized_inputs(model, 40)
    events = []
    for img in xs:
        arena = np.zeros(arena_bytes + 64, np.uint8)
        arena[in_off:in_off + img.size] = img.ravel().view(np.uint8)
        cb = H.HOOK(lambda user, k, op, phase: events.append((k, phase)))
        st = rt.lib.ep_plan_run(C.byref(plan), H._ptr(arena), arena_bytes, cb, None)
        assert st == 0
        got = arena[out_off:out_off + out_n].view(np.int8)
        expected = run_tflm(model_bytes, [img.reshape(1, 16, 16, 1)]).ravel()
        np.testing.assert_array_equal(got, expected)
    n_ops = len(model.operators)
    assert events[:2 * n_ops] == [(k, ph) for k in range(n_ops) for ph in (0, 1)]


def test_plan_refuses_out_of_arena_offsets(rt):
    model = load_model(FIXTURES / MODELS[0])
    plan, arena_bytes, *_ , keep = build_plan(model)
    st, _ = run_plan(rt, plan, arena_bytes - 1)  # arena smaller than the plan needs
    assert st == -3
    ops = C.cast(plan.ops, C.POINTER(H.Op))
    saved = ops[2].output
    ops[2].output = arena_bytes - 8  # output would run past the arena end
    calls = []
    st, _ = run_plan(rt, plan, arena_bytes, lambda u, k, op, ph: calls.append(k))
    ops[2].output = saved
    assert st == -3 and 2 not in calls
    saved = ops[0].kernel
    ops[0].kernel = 99
    st, _ = run_plan(rt, plan, arena_bytes)
    ops[0].kernel = saved
    assert st != 0


def test_kernels_refuse_bad_dimensions(rt):
    model = load_model(FIXTURES / MODELS[0])
    conv = lower(model, 0)
    x = np.zeros(conv.in_shape, np.int8)
    conv.params.filter.c = 2  # filter depth no longer matches the input
    with pytest.raises(AssertionError, match="returned -2"):
        conv.run(rt, x)
    pal = lower(model, 0, "palette")
    pal.params.weights.data_bytes -= 1  # packed indices shorter than the shape needs
    with pytest.raises(AssertionError, match="returned -3"):
        pal.run(rt, x)
    pal = lower(model, 0, "palette")
    pal.params.weights.bits = 9
    with pytest.raises(AssertionError, match="returned -1"):
        pal.run(rt, x)
    fc = lower(model, 5)
    fc.params.requant.count = 3  # neither per-tensor nor per-channel
    with pytest.raises(AssertionError, match="returned -1"):
        fc.run(rt, np.zeros(fc.in_shape, np.int8))
    pool = lower(model, 1)
    pool.params.output.c = 17
    with pytest.raises(AssertionError, match="returned -2"):
        pool.run(rt, np.zeros(pool.in_shape, np.int8))
    assert rt.lib.ep_conv2d_s8(None, None, None, None, 0) == -1


def test_scratch_too_small_is_refused(rt):
    model = load_model(FIXTURES / MODELS[0])
    conv = lower(model, 2)
    x = np.zeros(conv.in_shape, np.int8)
    out = np.zeros(int(np.prod(conv.out_shape)), np.int8)
    need = rt.lib.ep_conv2d_s8_get_buffer_size(C.byref(conv.params))
    scratch = np.zeros(need, np.uint8)
    assert rt.lib.ep_conv2d_s8(C.byref(conv.params), H._ptr(x), H._ptr(out), H._ptr(scratch), need - 2) == -3
    assert rt.lib.ep_conv2d_s8(C.byref(conv.params), H._ptr(x), H._ptr(out), H._ptr(scratch), need) == 0


def test_plan_constant_inputs_and_multi_input_ops(rt):
    """ADD with a constant operand (EP_CONST) then CONCATENATION of two arena tensors: the plan
    gives the same bytes as calling the kernels directly."""
    rng = np.random.default_rng(5)
    x = rng.integers(-128, 128, size=(1, 2, 3, 4)).astype(np.int8)
    k = rng.integers(-128, 128, size=(1, 1, 1, 4)).astype(np.int8)
    add_kw = dict(input1_offset=3, input2_offset=-7, output_offset=1, left_shift=20,
                  input1_multiplier=1 << 30, input1_shift=0, input2_multiplier=1 << 30, input2_shift=-1,
                  output_multiplier=1 << 30, output_shift=-19, act_min=-128, act_max=127)
    direct_add = rt.add(x, k, out_shape=(1, 2, 3, 4), **add_kw)
    direct = rt.concatenation([x, direct_add], axis=3)

    add_p = H.AddParams(H.shape4(x.shape), H.shape4(k.shape), H.shape4((1, 2, 3, 4)), **add_kw)
    sizes = np.asarray([4, 4], np.int32)
    cat_p = H.ConcatParams(2, 6, 1, H._ptr(sizes))
    add_in = np.asarray([0, -1], np.int32)           # arena offset 0, EP_CONST(0)
    cat_in = np.asarray([0, 32], np.int32)
    ops = (H.Op * 2)(H.Op(7, C.cast(C.byref(add_p), C.c_void_p), 2, H._ptr(add_in), 32),
                     H.Op(14, C.cast(C.byref(cat_p), C.c_void_p), 2, H._ptr(cat_in), 64))
    consts = (C.c_void_p * 1)(H._ptr(k))
    plan = H.Plan(C.cast(ops, C.c_void_p), 2, 128, 0, 0, C.cast(consts, C.c_void_p), 1)
    arena = np.zeros(128, np.uint8)
    arena[:24] = x.ravel().view(np.uint8)
    assert rt.lib.ep_plan_run(C.byref(plan), H._ptr(arena), 128, H.HOOK(), None) == 0
    np.testing.assert_array_equal(arena[64:112].view(np.int8), direct.ravel())
    plan.num_constants = 0  # the constant reference no longer resolves
    assert rt.lib.ep_plan_run(C.byref(plan), H._ptr(arena), 128, H.HOOK(), None) == -1
