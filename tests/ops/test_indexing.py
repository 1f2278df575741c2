"""Indexing: gather/take/scatter functions, sorting, and numpy-style x[key] / x[key] = v,
checked against numpy, finite differences, tracing and (where installed) torch."""
import numpy as np
import pytest

import lucid
from lucid.errors import DTypeError, LucidError, ShapeError, TraceError


def fd_grad(f, x, eps=1e-6):
    """Central finite differences of a scalar numpy function of one array."""
    x = np.array(x, dtype=np.float64)
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[i] += eps
        xm[i] -= eps
        g[i] = (f(xp) - f(xm)) / (2 * eps)
    return g


def check_grad(lucid_fn, numpy_fn, x, rng):
    """d sum(fn(x) * w)/dx by lucid.grad equals finite differences of the numpy version."""
    w = rng.normal(size=np.shape(numpy_fn(x)))
    got = lucid.grad(lambda t: (lucid_fn(t) * lucid.tensor(w)).sum())(lucid.tensor(x))
    want = fd_grad(lambda v: float((numpy_fn(v) * w).sum()), x)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-6, atol=1e-8)


def values(rng, *shape):
    return rng.normal(size=shape)


# ---- gather / take / scatter_add ----------------------------------------------------------

def test_gather_is_take_along_axis(rng):
    x = values(rng, 3, 4, 5)
    idx = rng.integers(-4, 4, (3, 6, 5))
    np.testing.assert_array_equal(lucid.gather(x, idx, 1).numpy(), np.take_along_axis(x, idx, 1))
    np.testing.assert_array_equal(lucid.take_along_axis(lucid.tensor(x), idx, -2).numpy(),
                                  np.take_along_axis(x, idx, 1))
    np.testing.assert_array_equal(lucid.tensor(x).gather(idx, axis=1).numpy(), np.take_along_axis(x, idx, 1))
    check_grad(lambda t: lucid.gather(t, idx, 1), lambda v: np.take_along_axis(v, idx, 1), x, rng)


@pytest.mark.parametrize("axis,idx_shape", [(0, (7,)), (1, (2, 3)), (-1, ()), (None, (4,))])
def test_take_shapes_values_and_gradient(rng, axis, idx_shape):
    x = values(rng, 3, 4, 5)
    n = x.size if axis is None else x.shape[axis]
    idx = rng.integers(-n, n, idx_shape)
    want = np.take(x, idx, axis=axis)
    got = lucid.take(x, idx, axis=axis)
    assert got.shape == want.shape
    np.testing.assert_array_equal(got.numpy(), want)
    check_grad(lambda t: lucid.take(t, idx, axis=axis), lambda v: np.take(v, idx, axis=axis), x, rng)


def test_take_with_a_python_int_and_index_select(rng):
    x = values(rng, 4, 3)
    assert lucid.take(x, 2, axis=0).shape == (3,)
    np.testing.assert_array_equal(lucid.index_select(x, 1, [2, 0, 2]).numpy(), x[:, [2, 0, 2]])
    np.testing.assert_array_equal(lucid.tensor(x).index_select(0, lucid.tensor([3, 1])).numpy(), x[[3, 1]])
    with pytest.raises(ShapeError, match="index_select: index must be 1-D"):
        lucid.index_select(x, 0, [[0]])


def test_take_out_of_range_names_index_axis_and_size():
    with pytest.raises(ShapeError, match="take: index 7 is out of range for axis 0 of size 5"):
        lucid.take(lucid.arange(5), [1, 7])
    with pytest.raises(ShapeError, match="index -6 is out of range"):
        lucid.take(lucid.arange(5), -6)
    with pytest.raises(ShapeError, match="gather: index 3 is out of range for axis 1 of size 3"):
        lucid.gather(np.zeros((2, 3)), [[0, 3]] * 2, 1)


def test_index_dtype_and_shape_errors():
    x = np.zeros((2, 3))
    with pytest.raises(DTypeError, match="take: indices must be"):
        lucid.take(x, lucid.tensor([0.0, 1.0]), 0)
    with pytest.raises(DTypeError, match="gather: indices must be"):
        lucid.gather(x, [[0.5]], 0)
    with pytest.raises(ShapeError, match=r"gather: indices of shape \(2, 2\) must match shape \(2, 3\)"):
        lucid.gather(x, np.zeros((2, 2), np.int64), 0)
    with pytest.raises(ShapeError, match="gather: axis 2 is out of range"):
        lucid.gather(x, np.zeros((2, 3), np.int64), 2)
    with pytest.raises(ShapeError, match="scatter_add: indices of shape"):
        lucid.scatter_add(x, np.zeros((2, 3), np.int64), np.zeros((2, 4)), 0)


def test_scatter_add_accumulates_repeats_and_differentiates(rng):
    base = values(rng, 3, 4)
    idx = rng.integers(-3, 3, (5, 4))
    src = values(rng, 5, 4)
    want = base.copy()
    np.add.at(want, (idx, np.arange(4)[None, :]), src)
    np.testing.assert_allclose(lucid.scatter_add(base, idx, src, 0).numpy(), want)
    np.testing.assert_allclose(lucid.tensor(base).scatter_add(idx, 1.0, axis=0).numpy()[0].sum(),
                               base[0].sum() + (np.where(idx < 0, idx + 3, idx) == 0).sum())

    def np_fn(b, s):
        out = b.copy()
        np.add.at(out, (idx, np.arange(4)[None, :]), s)
        return out

    check_grad(lambda t: lucid.scatter_add(t, idx, src, 0), lambda v: np_fn(v, src), base, rng)
    check_grad(lambda t: lucid.scatter_add(base, idx, t, 0), lambda v: np_fn(base, v), src, rng)


def test_masked_fill_keeps_dtype_and_shape(rng):
    x = values(rng, 3, 4)
    mask = x > 0.3
    np.testing.assert_array_equal(lucid.masked_fill(x, mask, -1.0).numpy(), np.where(mask, -1.0, x))
    xi = lucid.tensor([[1, 2], [3, 4]])
    out = xi.masked_fill(lucid.tensor([True, False]), 9)
    assert out.dtype == lucid.int64
    np.testing.assert_array_equal(out.numpy(), [[9, 2], [9, 4]])
    check_grad(lambda t: lucid.masked_fill(t, mask, 2.0), lambda v: np.where(mask, 2.0, v), x, rng)
    with pytest.raises(ShapeError, match="masked_fill: a mask of shape"):
        lucid.masked_fill(x, np.ones((2, 3, 4), bool), 0.0)
    with pytest.raises(DTypeError, match="masked_fill: the mask must be bool"):
        lucid.masked_fill(x, lucid.tensor(x), 0.0)


# ---- sorting -------------------------------------------------------------------------------

def test_argsort_is_stable_in_both_directions(rng):
    x = rng.integers(0, 3, (4, 9))
    np.testing.assert_array_equal(lucid.argsort(x).numpy(), np.argsort(x, axis=-1, kind="stable"))
    desc = lucid.argsort(x, axis=1, descending=True).numpy()
    # Descending and stable: ties keep their original order.
    want = np.array([sorted(range(9), key=lambda j, r=r: (-r[j], j)) for r in x])
    np.testing.assert_array_equal(desc, want)
    np.testing.assert_array_equal(lucid.argsort(x, axis=None).numpy(), np.argsort(x, axis=None, kind="stable"))
    assert lucid.tensor(x).argsort(0).dtype == lucid.int64


def test_sort_and_its_gradient(rng):
    x = values(rng, 3, 5)
    np.testing.assert_array_equal(lucid.sort(x, axis=0).numpy(), np.sort(x, axis=0))
    np.testing.assert_array_equal(lucid.tensor(x).sort(descending=True).numpy(), -np.sort(-x, axis=-1))
    check_grad(lambda t: lucid.sort(t, axis=1), lambda v: np.sort(v, axis=1), x, rng)


def test_topk_values_indices_and_gradient(rng):
    x = values(rng, 4, 6)
    vals, idx = lucid.topk(x, 3)
    want_idx = np.argsort(-x, axis=-1)[:, :3]
    np.testing.assert_array_equal(idx.numpy(), want_idx)
    np.testing.assert_array_equal(vals.numpy(), np.take_along_axis(x, want_idx, -1))
    small, sidx = lucid.tensor(x).topk(2, axis=0, largest=False)
    np.testing.assert_array_equal(small.numpy(), np.sort(x, axis=0)[:2])
    assert sidx.dtype == lucid.int64
    check_grad(lambda t: lucid.topk(t, 2, axis=1)[0], lambda v: -np.sort(-v, axis=1)[:, :2], x, rng)
    with pytest.raises(ShapeError, match="topk: k=7 is out of range for axis 1 of size 6"):
        lucid.topk(x, 7)


def test_sort_topk_match_torch(rng):
    torch = pytest.importorskip("torch")
    x = values(rng, 3, 7)
    tv, ti = torch.topk(torch.from_numpy(x), 4, dim=1)
    v, i = lucid.topk(x, 4, axis=1)
    np.testing.assert_array_equal(v.numpy(), tv.numpy())
    np.testing.assert_array_equal(i.numpy(), ti.numpy())
    np.testing.assert_array_equal(lucid.sort(x, 0, descending=True).numpy(),
                                  torch.sort(torch.from_numpy(x), 0, descending=True).values.numpy())


# ---- nonzero, one_hot ------------------------------------------------------------------------

def test_nonzero_both_forms_and_refuses_to_trace():
    x = np.array([[0, 1, 0], [2, 0, 3]])
    np.testing.assert_array_equal(lucid.nonzero(x).numpy(), np.argwhere(x))
    assert lucid.nonzero(x).dtype == lucid.int64
    for got, want in zip(lucid.tensor(x).nonzero(as_tuple=True), np.nonzero(x)):
        np.testing.assert_array_equal(got.numpy(), want)
    with pytest.raises(TraceError, match="nonzero: the shape of its result depends"):
        lucid.trace(lambda t: lucid.nonzero(t), x)


def test_one_hot():
    idx = np.array([[0, 2], [1, 1]])
    out = lucid.one_hot(idx, 4)
    assert out.dtype == lucid.float32 and out.shape == (2, 2, 4)
    np.testing.assert_array_equal(out.numpy(), np.eye(4, dtype=np.float32)[idx])
    assert lucid.one_hot(lucid.tensor([0, 3])).shape == (2, 4)
    with pytest.raises(ShapeError, match="one_hot: class 4 is out of range for num_classes=3"):
        lucid.one_hot([0, 4], 3)
    g = lucid.trace(lambda t: lucid.one_hot(t, 5), idx)
    np.testing.assert_array_equal(lucid.ir.interpret(g, idx), np.eye(5, dtype=np.float32)[idx])


@pytest.mark.parametrize("backend", ["native", "interpreter"])
def test_traced_one_hot_refuses_classes_out_of_range(backend):
    f = lucid.compile(lambda t: lucid.one_hot(t, 3) * 2.0, backend=backend)
    ok = np.array([[0, 2], [1, 1]])
    np.testing.assert_array_equal(f(lucid.tensor(ok)).numpy(), 2 * np.eye(3, dtype=np.float32)[ok])
    for bad in ([0, 3], [-1, 1], [7, 0]):
        with pytest.raises(ShapeError, match="out of range"):
            f(lucid.tensor(np.array(bad)))
    np.testing.assert_array_equal(f(lucid.tensor(ok)).numpy(), 2 * np.eye(3, dtype=np.float32)[ok])


# ---- x[key] ---------------------------------------------------------------------------------

X = np.arange(4 * 5 * 6 * 3, dtype=np.float64).reshape(4, 5, 6, 3) / 7.0
MASK2 = (np.arange(20).reshape(4, 5) % 3) == 0
KEYS = [
    0, -1, 3, (1, 2), (-1, -2, -3, -1), slice(None), slice(1, 3), slice(None, None, -1),
    (slice(3, None, -2), slice(None, 1, -1)), (slice(-1, -5, -3), Ellipsis, slice(2, None, 2)),
    Ellipsis, (Ellipsis, 0), (Ellipsis, None), (None, 1, Ellipsis, None), (0, None, slice(None), None),
    [2, 0, 2], [[0, 1], [-1, 2]], np.array([3, 1]), (slice(None), [0, 4], slice(1, 2)),
    ([0, 1], None, [0, 1]), (slice(None), [0, 1], None, [0, 1]), (0, slice(None), [0, 1]),
    (slice(None), 0, [0, 1]), ([[0], [1]], slice(None), [2, 3, 4]), (slice(None), [0, 1], [1, 2]),
    ([0, -1], [1, 2], [3, 4], [2, 0]), (1, [2, 3], slice(None, None, 3)), (Ellipsis, [0, 2], slice(1, 2)),
    ([1, 2], Ellipsis, [0, 2]), (slice(None), [1, 2], Ellipsis, [0, 2]), (np.array(2), slice(1, 3)),
    [], (None, slice(None), [1, 0], [[2], [3]], None), MASK2, (MASK2, 1), (slice(None), np.arange(5) > 1),
    (Ellipsis, np.array([True, False, True])), (MASK2, [0, 1, 2, 0, 1, 2, 0]), True, np.array(True), (0, np.True_),
]


def _np_key(key):
    if isinstance(key, tuple):
        return tuple(k.numpy() if isinstance(k, lucid.Tensor) else k for k in key)
    return key.numpy() if isinstance(key, lucid.Tensor) else key


@pytest.mark.parametrize("key", KEYS, ids=[repr(k)[:40] for k in KEYS])
def test_getitem_matches_numpy(key):
    want = X[_np_key(key)]
    got = lucid.tensor(X)[key]
    assert got.shape == want.shape
    np.testing.assert_array_equal(got.numpy(), want)


@pytest.mark.parametrize("key", [(lucid.tensor([1, -2]), slice(None), lucid.tensor([0, 3])),
                                 lucid.tensor([[3], [0]]), (lucid.tensor(2), lucid.tensor([1, 0])),
                                 lucid.tensor(MASK2), (slice(None), lucid.tensor([0, 4]).int())])
def test_getitem_with_tensor_indices(key):
    np.testing.assert_array_equal(lucid.tensor(X)[key].numpy(), X[_np_key(key)])


@pytest.mark.parametrize("key", [(slice(None, None, -2), 1), ([0, 2, 0], slice(1, None), [1, 1, 0]),
                                 (1, slice(None), [0, 0, 2]), (MASK2[:, :4],), (None, Ellipsis, [2, 0])])
def test_getitem_gradient(rng, key):
    x = rng.normal(size=(4, 4, 3))
    check_grad(lambda t: t[key], lambda v: v[key], x, rng)


def test_getitem_errors_are_lucid_and_index_errors():
    t = lucid.tensor(np.zeros((3, 4)))
    for key, msg in [(3, "index 3 is out of range for axis 0 with size 3"),
                     ((0, -5), "index -5 is out of range for axis 1 with size 4"),
                     ([0, 3], "index 3 is out of range for axis 0 with size 3"),
                     ((0, 0, 0), "too many indices for a tensor of shape"),
                     (np.ones(4, bool), "a boolean mask of shape"),
                     ((Ellipsis, Ellipsis), "single ellipsis")]:
        with pytest.raises(IndexError, match=msg) as info:
            t[key]
        assert isinstance(info.value, LucidError)
    with pytest.raises(DTypeError, match="integer or bool"):
        t[lucid.tensor([0.0])]
    with pytest.raises(DTypeError, match="valid indices"):
        t["a"]
    with pytest.raises(ShapeError, match="cannot be broadcast"):
        t[[0, 1], [0, 1, 2]]
    with pytest.raises(ShapeError, match="step cannot be zero"):
        t[::0]


def test_iteration_over_the_first_axis():
    x = np.arange(6).reshape(3, 2)
    rows = list(lucid.tensor(x))
    assert len(rows) == 3 and all(r.shape == (2,) for r in rows)
    np.testing.assert_array_equal(np.stack([r.numpy() for r in rows]), x)
    with pytest.raises(TypeError):
        iter(lucid.tensor(1.0))


@pytest.mark.parametrize("key", [slice(None), Ellipsis, ()])
def test_full_slice_is_a_new_tensor_with_history(key):
    x = lucid.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = x[key]
    assert y is not x
    y = y * 1.0
    z = y[key]
    z[0] = 9.0
    np.testing.assert_array_equal(y.numpy(), [1, 2, 3])
    (x[key] * 2.0).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [2, 2, 2])


# ---- x[key] while tracing ----------------------------------------------------------------

@pytest.mark.parametrize("key", [(slice(None, None, -1), 2), (Ellipsis, None, [1, 0]),
                                 ([0, 2], slice(None), [1, 1]), (0, slice(1, None), [0, 0, 2]), MASK2])
def test_getitem_traces(key):
    def f(t):
        return t[key] * 2.0

    g = lucid.trace(f, X)
    np.testing.assert_array_equal(lucid.ir.interpret(g, X), f(lucid.tensor(X)).numpy())


def test_getitem_with_traced_indices_and_its_gradient_graph(rng):
    x = rng.normal(size=(4, 5))
    i = np.array([3, -1, 0])
    j = np.array([[1], [3]])

    def f(t, a, b):
        return (t[a, 1:] ** 2).sum() + (t[b, a] * 3.0).sum()

    g = lucid.trace(f, x, i, j)
    np.testing.assert_allclose(lucid.ir.interpret(g, x, i, j), (x[i, 1:] ** 2).sum() + 3 * x[j, i].sum())
    grad = lucid.ir.interpret(lucid.trace(lucid.grad(f), x, i, j), x, i, j)
    want = fd_grad(lambda v: float((v[i, 1:] ** 2).sum() + 3 * v[j, i].sum()), x)
    np.testing.assert_allclose(grad, want, rtol=1e-6, atol=1e-8)


def test_traced_index_out_of_range_fails_when_run():
    g = lucid.trace(lambda t, i: t[i], np.zeros((3, 2)), np.array([0]))
    with pytest.raises(ShapeError, match="take: index 5 is out of range for axis 0 of size 3"):
        lucid.ir.interpret(g, np.zeros((3, 2)), np.array([5]))
    # Several traced indices go through one flat index: a bad one must not alias a neighbour.
    g2 = lucid.trace(lambda t, i, j: t[i, j], np.zeros((3, 2)), np.array([0]), np.array([0]))
    for i, j in [([0], [2]), ([-4], [0]), ([0], [-3])]:
        with pytest.raises(ShapeError, match="out of range"):
            lucid.ir.interpret(g2, np.zeros((3, 2)), np.array(i), np.array(j))
    np.testing.assert_array_equal(lucid.ir.interpret(g2, X[:3, :2, 0, 0], np.array([-1]), np.array([-2])),
                                  X[:3, :2, 0, 0][[-1], [-2]])


def test_bool_mask_tracer_refuses_with_the_users_line():
    def f(t):
        return t[t > 0]  # MARK-mask

    with pytest.raises(TraceError, match="boolean mask") as info:
        lucid.trace(f, np.ones(3))
    line = next(k for k, s in enumerate(open(__file__), 1) if "MARK-mask" in s and "next(" not in s)
    assert f"{__file__}:{line}" in str(info.value)


# ---- x[key] = value ------------------------------------------------------------------------

SET_KEYS = [0, -1, (1, 2), (slice(None), 1), (slice(None, None, -2), slice(1, None)), (Ellipsis, 0),
            (None, 1), [2, 0], ([0, 2], [1, 3]), (slice(1, 3), [3, 0, 3]), MASK2[:3, :4],
            (MASK2[:3, :4],), (Ellipsis, np.array([True, False, True, True])), ([1, 1, 2], [0, 0, 3])]


@pytest.mark.parametrize("key", SET_KEYS, ids=[repr(k)[:40] for k in SET_KEYS])
@pytest.mark.parametrize("scalar", [True, False])
def test_setitem_matches_numpy(rng, key, scalar):
    x = rng.normal(size=(3, 4))
    shape = x[key].shape
    v = 2.5 if scalar else rng.normal(size=shape[1:] if len(shape) > 1 else shape)
    want = x.copy()
    want[key] = v
    t = lucid.tensor(x)
    t[key] = v
    np.testing.assert_array_equal(t.numpy(), want)


def test_setitem_gradient_reaches_old_value_and_value(rng):
    x = rng.normal(size=(3, 4))
    w = rng.normal(size=(3, 4))

    def np_fn(a, b, key):
        out = a * 2.0
        out[key] = b
        return float((out * w).sum())

    for key in [1, slice(None, None, -2), ([2, 0], slice(1, 3)), MASK2[:3, :4]]:
        v = rng.normal(size=np.zeros((3, 4))[key].shape)

        def f(a, b):
            y = a * 2.0
            y[key] = b
            return (y * lucid.tensor(w)).sum()

        ga, gb = lucid.grad(f, argnums=(0, 1))(lucid.tensor(x), lucid.tensor(v))
        np.testing.assert_allclose(ga.numpy(), fd_grad(lambda a: np_fn(a, v, key), x), atol=1e-8)
        np.testing.assert_allclose(gb.numpy(), fd_grad(lambda b: np_fn(x, b, key), v), atol=1e-8)


def test_setitem_broadcast_value_gets_summed_gradient(rng):
    x = lucid.tensor(rng.normal(size=(3, 4)))
    v = lucid.tensor(rng.normal(size=(4,)), requires_grad=True)
    y = x * 1.0
    y[MASK2[:3, :4]] = 0.0
    y[[0, 2]] = v
    y.sum().backward()
    np.testing.assert_allclose(v.grad.numpy(), np.full(4, 2.0))
    assert not y.is_leaf and y.requires_grad


def test_setitem_repeated_positions_last_value_wins():
    t = lucid.zeros(4)
    t[[1, 1, 3]] = lucid.tensor([5.0, 6.0, 7.0])
    np.testing.assert_array_equal(t.numpy(), [0, 6, 0, 7])


def test_setitem_on_a_leaf_that_requires_grad():
    p = lucid.tensor([1.0, 2.0, 3.0], requires_grad=True)
    with pytest.raises(LucidError, match="a leaf tensor that requires grad is used in an in-place operation"):
        p[0] = 0.0
    with lucid.no_grad():
        p[0] = 10.0
    assert p.is_leaf and p.requires_grad
    np.testing.assert_array_equal(p.numpy(), [10, 2, 3])


def test_setitem_errors():
    t = lucid.zeros(3, 4)
    with pytest.raises(ShapeError, match=r"a value of shape \(3,\) cannot be broadcast to the indexed shape \(4,\)"):
        t[0] = lucid.ones(3)
    with pytest.raises(IndexError, match="out of range"):
        t[5] = 1.0
    with pytest.raises(IndexError, match="out of range"):
        t[[0, 7]] = 1.0


def test_setitem_casts_to_the_tensors_dtype():
    t = lucid.tensor([1, 2, 3])
    t[1:] = lucid.tensor([7.9, 8.2])
    assert t.dtype == lucid.int64
    np.testing.assert_array_equal(t.numpy(), [1, 7, 8])


def test_setitem_inside_a_trace(rng):
    x = rng.normal(size=(3, 4))
    i = np.array([2, 0])

    def f(t, idx):
        y = t * 1.0
        y[:, ::-2] = 0.0
        y[idx, 1] = t[0, :2] * 5.0
        return y

    g = lucid.trace(f, x, i)
    np.testing.assert_allclose(lucid.ir.interpret(g, x, i), f(lucid.tensor(x), lucid.tensor(i)).numpy())
    want = x.copy()
    want[:, ::-2] = 0.0
    want[i, 1] = x[0, :2] * 5.0
    np.testing.assert_allclose(lucid.ir.interpret(g, x, i), want)


def test_advanced_indexing_gradient_matches_torch(rng):
    torch = pytest.importorskip("torch")
    x = rng.normal(size=(4, 5, 3))
    key = ([0, 3, 3], slice(None), [2, 0, 2])
    tx = torch.tensor(x, requires_grad=True)
    (tx[key] ** 2).sum().backward()
    got = lucid.grad(lambda t: (t[key] ** 2).sum())(lucid.tensor(x))
    np.testing.assert_allclose(got.numpy(), tx.grad.numpy(), rtol=1e-12)
