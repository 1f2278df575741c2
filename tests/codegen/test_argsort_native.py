"""The native argsort (lucid.codegen.lowering_sort) gives exactly the reference's indices:
stable, -0.0 tied with +0.0, NaNs (any sign or payload) last ascending and first
descending, ties in index order both ways, for every dtype, axis and row length (the
ranked short rows and the radix-sorted long ones), on one thread and on two."""
import numpy as np
import pytest

import lucid
from lucid.codegen.lowering_sort import SMALL
from lucid.codegen.program import NativeProgram
from lucid.ir.passes import PassManager, pipeline
from lucid.ops.registry import OPS


def _native(a, axis, descending):
    g = lucid.trace(lambda x: lucid.argsort(x, axis=axis, descending=descending), lucid.Tensor(a))
    (got,) = NativeProgram(PassManager(pipeline(0)).run(g), use_cache=False).run([a], g.params)
    return got


def _check(a, axis, descending):
    got = _native(a, axis, descending)
    expected = OPS["argsort"].reference(a, axis=axis, descending=descending)
    if not descending:
        np.testing.assert_array_equal(expected, np.argsort(a, axis=axis, kind="stable"))
    assert got.dtype == np.int64 and got.shape == a.shape
    np.testing.assert_array_equal(got, expected)


def _nasty_floats(rng, shape, dtype):
    """Many ties, both zeros, NaNs of both signs and other payloads, infinities, denormals."""
    bits = np.uint32 if dtype == np.float32 else np.uint64
    width = 32 if dtype == np.float32 else 64
    neg_nan = np.array([(1 << width) - 1 - 5], bits).view(dtype)[0]  # sign set, odd payload
    tiny = np.finfo(dtype).smallest_subnormal
    pool = np.array([-2.5, -1, -0.0, 0.0, 0.5, 1, 3, np.nan, neg_nan, np.inf, -np.inf, tiny, -tiny,
                     np.finfo(dtype).max, -np.finfo(dtype).max], dtype)
    a = rng.choice(pool, size=shape)
    noise = rng.random(shape) < 0.3
    return np.where(noise, rng.standard_normal(shape).astype(dtype), a).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 7, SMALL, SMALL + 1, 1000])
def test_floats_every_axis_both_orders(rng, dtype, n):
    a = _nasty_floats(rng, (3, n, 4), dtype)
    for axis in range(3):
        for descending in (False, True):
            _check(a, axis, descending)


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
@pytest.mark.parametrize("n", [5, 300])
def test_ints_with_extremes(rng, dtype, n):
    info = np.iinfo(dtype)
    a = rng.integers(-3, 3, (4, n)).astype(dtype)
    a[rng.random(a.shape) < 0.1] = info.min
    a[rng.random(a.shape) < 0.1] = info.max
    a[rng.random(a.shape) < 0.2] = rng.integers(info.min, info.max, dtype=dtype)
    for axis in (0, 1):
        for descending in (False, True):
            _check(a, axis, descending)


@pytest.mark.parametrize("n", [9, 500])
def test_bools(rng, n):
    a = rng.random((3, n)) < 0.5
    for descending in (False, True):
        _check(a, 1, descending)
        _check(a, 0, descending)


def test_degenerate_shapes():
    _check(np.array([3.0], np.float32), 0, False)
    _check(np.zeros((3, 0), np.float32), 1, True)
    _check(np.zeros((0, 5), np.float32), 1, False)
    _check(np.full(200, -0.0, np.float32), 0, True)  # all equal: the identity


def test_big_row(rng, threads):
    a = _nasty_floats(rng, (100_000,), np.float32)
    _check(a, 0, False)
    _check(a, 0, True)
    _check(rng.integers(-1000, 1000, 100_000), 0, True)


@pytest.mark.parametrize("n", [40, 300])
def test_many_rows_in_parallel(rng, threads, n):
    a = _nasty_floats(rng, (60_000 // n, n), np.float32)
    _check(a, 1, True)
    _check(a, 0, False)


def test_topk_of_a_long_row_compiled(rng):
    """The case that motivated the radix sort: the top 1000 of 28,224 anchor scores."""
    x = rng.standard_normal((1, 28224)).astype(np.float32)
    x[0, ::7] = x[0, 3]  # ties
    f = lucid.compile(lambda t: lucid.topk(t, 1000, axis=1))
    values, idx = f(lucid.Tensor(x))
    expected = np.argsort(-x, axis=1, kind="stable")[:, :1000]
    np.testing.assert_array_equal(idx.numpy(), expected)
    np.testing.assert_array_equal(values.numpy(), np.take_along_axis(x, expected, axis=1))
