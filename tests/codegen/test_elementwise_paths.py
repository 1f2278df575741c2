"""Speed-motivated paths of the elementwise code generator, checked for correctness.

- Row-invariant values (softmax's row max and sum, layer norm's moments, a column
  broadcast) are hoisted out of the row loop (Elemental.scoped(loop=...)): results match
  numpy, and a wide softmax runs in linear, not quadratic, time.
- Output buffers of a compiled function are reused only when nobody holds them.
- float32 erf (one clamped rational): where it rounds to +-1 and the clamp at 4.
- mul/add contraction into fma: x*w + b matches numpy within float32 rounding.
"""
import gc
import math
import re
import time

import numpy as np
import pytest

import lucid
import lucid.nn.functional as F


def _softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@pytest.mark.parametrize("shape", [(3, 5), (64, 33), (2, 3, 70), (1, 9000), (300, 1)])
def test_hoisted_row_reductions_match_numpy(shape):
    rng = np.random.default_rng(1)
    x = (rng.normal(size=shape) * 4).astype(np.float32)
    g = rng.normal(size=shape[-1]).astype(np.float32)
    bias = rng.normal(size=shape[-1]).astype(np.float32)
    sm = lucid.compile(lambda t: F.softmax(t, axis=-1))
    np.testing.assert_allclose(sm(lucid.tensor(x)).data, _softmax(x.astype(np.float64)), rtol=2e-5, atol=1e-7)
    ln = lucid.compile(lambda t, w, b: F.layer_norm(t, shape[-1], w, b))
    got = ln(lucid.tensor(x), lucid.tensor(g), lucid.tensor(bias)).data
    xd = x.astype(np.float64)
    mu = xd.mean(-1, keepdims=True)
    want = (xd - mu) / np.sqrt(((xd - mu) ** 2).mean(-1, keepdims=True) + 1e-5) * g + bias
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_hoisting_with_column_broadcasts_argmax_and_nested_reductions():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(17, 40)).astype(np.float32)
    col = rng.normal(size=(17, 1)).astype(np.float32)

    def fn(t, c):
        centred = t - lucid.max(t, axis=1, keepdims=True) + c  # invariant reduction + column
        ranked = lucid.argmax(t, axis=1).reshape(17, 1).astype(lucid.float32)  # int reduction
        double = lucid.sum(t * lucid.sum(t, axis=1, keepdims=True), axis=1, keepdims=True)
        return centred * 2.0 + ranked + double * 0.001

    f = lucid.compile(fn)
    got = f(lucid.tensor(a), lucid.tensor(col)).data
    ad = a.astype(np.float64)
    want = ((ad - ad.max(1, keepdims=True) + col) * 2 + ad.argmax(1)[:, None]
            + (ad * ad.sum(1, keepdims=True)).sum(1, keepdims=True) * 0.001)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shape", [(2, 1 << 16), (1, 1 << 21)])
def test_wide_softmax_is_linear_in_the_row_length(shape):
    # 2 rows of 2^16: a per-element recomputation of the row max and sum would be
    # 2 * 2^32 exps (minutes); hoisted it is 2^18 of them (milliseconds). One row of 2^21:
    # split into blocks of 4096 for the threads, each block would redo the row's max and
    # sum (2^30 exps); a kernel with a row reduction keeps whole rows.
    x = np.random.default_rng(3).normal(size=shape).astype(np.float32)
    f = lucid.compile(lambda t: F.softmax(t, axis=-1))
    tx = lucid.tensor(x)
    f(tx)
    t0 = time.perf_counter()
    y = f(tx).data
    assert time.perf_counter() - t0 < 2.0
    np.testing.assert_allclose(y, _softmax(x.astype(np.float64)), rtol=2e-5, atol=1e-10)


def test_output_buffers_are_reused_only_when_nobody_holds_them():
    f = lucid.compile(lambda t: t * 2.0 + 1.0)
    x = np.arange(8, dtype=np.float32)
    f(lucid.tensor(x))
    program = f.builds[-1].program
    first = program.run([x], {})[0]
    second = program.run([x + 1], {})[0]
    assert first is not second  # `first` is held: not written again
    np.testing.assert_array_equal(first, x * 2 + 1)
    view = second[2:]
    del second
    third = program.run([x + 2], {})[0]
    np.testing.assert_array_equal(view, (x + 1)[2:] * 2 + 1)  # a view keeps its base alive
    assert third is not view.base
    address = third.ctypes.data
    del third
    gc.collect()
    fourth = program.run([x + 3], {})[0]
    assert fourth.ctypes.data == address  # dropped: reused, no fresh allocation
    np.testing.assert_array_equal(fourth, (x + 3) * 2 + 1)
    np.testing.assert_array_equal(first, x * 2 + 1)


def _ulps(y, ref):
    r = ref.astype(np.float32)
    return np.abs(y.astype(np.float64) - ref) / np.spacing(np.abs(r)).astype(np.float64)


def test_float32_erf_near_one_and_at_its_clamp():
    from lucid.codegen.mathlib import math_ir

    # through a compiled graph, as kernels use it
    f = lucid.compile(lambda t: lucid.erf(t))
    pts = []
    for p in (1.0, 3.92, 4.0):  # mid-range, where erf rounds to 1, the clamp
        c = np.float32(p)
        pts.append(c + np.arange(-200, 201) * np.spacing(c))
    x = np.concatenate(pts + [np.linspace(0.9, 1.1, 5001), np.linspace(3.5, 4.5, 5001)]).astype(np.float32)
    x = np.concatenate([x, -x])
    y = f(lucid.tensor(x)).data
    ref = np.array([math.erf(float(v)) for v in x])
    assert _ulps(y, ref).max() <= 6  # the documented bound (lucid.codegen.mathlib)
    assert (np.abs(y) <= 1).all() and (y[np.abs(x) >= 4] == np.sign(x[np.abs(x) >= 4])).all()
    assert "lucid_erf_f32" in math_ir("f32")


def test_contracted_affine_matches_numpy():
    rng = np.random.default_rng(4)
    x = rng.normal(size=4096).astype(np.float32)
    f = lucid.compile(lambda t: t * 1.3 - 0.2)
    got = f(lucid.tensor(x)).data
    want = x.astype(np.float64) * np.float64(np.float32(1.3)) - np.float64(np.float32(0.2))
    assert (np.abs(got - want) <= 2 * np.spacing(np.abs(want).astype(np.float32))).all()


def test_erf_coefficients_come_from_the_documented_rational_fit():
    pytest.importorskip("mpmath")
    from lucid.codegen import mathlib

    (p, q), err = mathlib.derive([("erf_rational", "f32")], grid=120)[("erf_rational", "f32")]
    want_p, want_q = mathlib._COEFFS["erf_rational", "f32"]
    np.testing.assert_allclose(p, want_p, rtol=2e-3, atol=1e-7)
    np.testing.assert_allclose(q, want_q, rtol=2e-3, atol=1e-7)
    assert err < 3e-8


def test_loops_with_transcendentals_ask_for_interleaving_and_others_do_not(module_text):
    import llvmlite.binding as binding

    x = np.ones((4, 100), np.float32)
    text = module_text(lambda t: F.gelu(t * 1.3 - 0.2), x)
    loop_ids = re.findall(r"^(!\d+) = distinct !\{ ?(!\d+), (!\d+) ?\}", text, re.M)
    assert loop_ids and all(a == b for a, b, _ in loop_ids), "a loop ID must refer to itself"
    counts = {m for _, _, m in loop_ids}
    assert all(re.search(rf'^{re.escape(m)} = !\{{ ?!"llvm.loop.interleave.count", i32 4 ?\}}', text, re.M)
               for m in counts)
    assert re.search(r"br label %[\w.\"]+, !llvm.loop !\d+", text)
    binding.parse_assembly(text).verify()
    plain = module_text(lambda t: t * 1.3 - 0.2, x)
    assert "llvm.loop" not in plain and "lucid.loop.id" not in plain


@pytest.mark.parametrize("shape", [(1,), (7,), (33,), (5, 31), (3, 1000), (1, 70001)])
def test_interleaved_loops_cover_every_element(shape):
    # 4 interleaved 8-wide vectors per trip: the remainder loop covers what is left
    rng = np.random.default_rng(5)
    x = (rng.normal(size=shape) * 3).astype(np.float32)
    f = lucid.compile(lambda t: lucid.exp(t) * 0.5 + lucid.tanh(t) - lucid.sigmoid(t))
    y = f(lucid.tensor(x)).data
    xd = x.astype(np.float64)
    want = np.exp(xd) * 0.5 + np.tanh(xd) - 1 / (1 + np.exp(-xd))
    np.testing.assert_allclose(y, want, rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize("shape,axes", [((8, 64, 14, 14), (0, 2, 3)), ((3, 4, 5), (0, 1)), ((3, 4, 5), (1, 2)),
                                        ((2, 3, 4, 5), (0, 1, 3)), ((5, 0, 3), (1, 2)), ((4, 1, 6), (0, 1, 2)),
                                        ((2, 3, 4), (0, 2))])
@pytest.mark.parametrize("keepdims", [False, True])
def test_reductions_of_a_buffer_over_adjacent_axes_match_numpy(shape, axes, keepdims):
    # adjacent reduced axes of a kernel input are read as one merged run (lowering._reducer)
    rng = np.random.default_rng(6)
    x = rng.normal(size=shape).astype(np.float32)
    near_one = (1 + 0.01 * rng.normal(size=shape)).astype(np.float32)  # a product that stays finite
    for op, ref, a in ((lucid.sum, np.sum, x), (lucid.prod, np.prod, near_one)):
        got = lucid.compile(lambda t: op(t, axis=axes, keepdims=keepdims))(lucid.tensor(a)).data
        want = ref(a.astype(np.float64), axis=axes, keepdims=keepdims)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


def test_a_bias_gradient_sum_runs_over_the_merged_spatial_axes(module_text):
    text = module_text(lambda t: lucid.sum(t, axis=(0, 2, 3)), np.ones((8, 64, 14, 14), np.float32))
    assert re.search(r"icmp slt i64 %\"?r1\"?, 196", text), "the H*W run should be one loop of 196"
