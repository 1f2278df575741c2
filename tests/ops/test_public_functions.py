"""The composite public functions of the elementwise, reduce, shape and linalg families.

They are plain Python over primitive ops, so the registry-generated suite does not see
them: here each is compared with numpy (forward) and with finite differences of the
numpy version (gradient), and the promotion rules and error messages are pinned down.
"""
import math

import numpy as np
import pytest

import lucid
from lucid.ops import shape as S

import _gradcheck as G

RNG = np.random.default_rng(7)


def _x(*shape, low=-2.0, high=2.0):
    return RNG.uniform(low, high, size=shape)


def _np_logsumexp(x, axis=None, keepdims=False):
    m = np.max(x, axis=axis, keepdims=True)
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis) if axis is not None else out.reshape(())


def _np_chunk(x, chunks, axis):
    n = x.shape[axis]
    size = -(-n // chunks)
    return [np.take(x, range(a, min(a + size, n)), axis=axis) for a in range(0, n, size)]


# (id, lucid function, numpy function, inputs): every output is compared with numpy and
# (for floating outputs) its gradient with central differences of the numpy function.
CASES = [
    ("mean-all", lambda x: lucid.mean(x), np.mean, [_x(3, 4)]),
    ("mean-axis", lambda x: lucid.mean(x, axis=1), lambda x: np.mean(x, axis=1), [_x(3, 4)]),
    ("mean-axes-keep", lambda x: lucid.mean(x, axis=(0, 2), keepdims=True),
     lambda x: np.mean(x, axis=(0, 2), keepdims=True), [_x(2, 3, 4)]),
    ("var-all", lambda x: lucid.var(x), np.var, [_x(3, 4)]),
    ("var-ddof1", lambda x: lucid.var(x, axis=0, ddof=1), lambda x: np.var(x, axis=0, ddof=1), [_x(4, 3)]),
    ("var-neg-axis-keep", lambda x: lucid.var(x, axis=-1, keepdims=True),
     lambda x: np.var(x, axis=-1, keepdims=True), [_x(2, 5)]),
    ("std-all", lambda x: lucid.std(x), np.std, [_x(3, 4)]),
    ("std-ddof1", lambda x: lucid.std(x, axis=1, ddof=1), lambda x: np.std(x, axis=1, ddof=1), [_x(3, 4)]),
    ("std-method", lambda x: x.std(axis=(0, 1)), lambda x: np.std(x, axis=(0, 1)), [_x(2, 3, 2)]),
    ("logsumexp-all", lambda x: lucid.logsumexp(x), _np_logsumexp, [_x(3, 4)]),
    ("logsumexp-axis", lambda x: lucid.logsumexp(x, axis=1), lambda x: _np_logsumexp(x, axis=1), [_x(3, 4)]),
    ("logsumexp-keep", lambda x: lucid.logsumexp(x, axis=0, keepdims=True),
     lambda x: _np_logsumexp(x, axis=0, keepdims=True), [_x(3, 4)]),
    ("logsumexp-large", lambda x: lucid.logsumexp(x, axis=-1), lambda x: _np_logsumexp(x, axis=-1),
     [_x(2, 3, low=800.0, high=805.0)]),
    ("clip-both", lambda x: lucid.clip(x, -0.5, 0.7), lambda x: np.clip(x, -0.5, 0.7), [_x(3, 4)]),
    ("clip-min", lambda x: lucid.clip(x, min=0.1), lambda x: np.maximum(x, 0.1), [_x(3, 4)]),
    ("clip-max", lambda x: lucid.clamp(x, max=0.2), lambda x: np.minimum(x, 0.2), [_x(3, 4)]),
    ("square", lucid.square, np.square, [_x(3, 4)]),
    ("log2", lucid.log2, np.log2, [_x(3, 4, low=0.5)]),
    ("log10", lucid.log10, np.log10, [_x(5, low=0.5)]),
    ("reciprocal", lucid.reciprocal, np.reciprocal, [_x(5, low=0.5)]),
    ("tile-int", lambda x: lucid.tile(x, 2), lambda x: np.tile(x, 2), [_x(2, 3)]),
    ("tile-tuple", lambda x: lucid.tile(x, (2, 1, 3)), lambda x: np.tile(x, (2, 1, 3)), [_x(2, 3)]),
    ("tile-short", lambda x: lucid.tile(x, (2,)), lambda x: np.tile(x, (2,)), [_x(2, 3)]),
    ("repeat-none", lambda x: lucid.repeat(x, 2), lambda x: np.repeat(x, 2), [_x(2, 3)]),
    ("repeat-axis", lambda x: lucid.repeat(x, 3, axis=1), lambda x: np.repeat(x, 3, axis=1), [_x(2, 3)]),
    ("repeat-list", lambda x: lucid.repeat(x, [1, 0, 2], axis=-1),
     lambda x: np.repeat(x, [1, 0, 2], axis=-1), [_x(2, 3)]),
    ("stack-0", lambda a, b, c: lucid.stack([a, b, c]), lambda a, b, c: np.stack([a, b, c]),
     [_x(2, 3), _x(2, 3), _x(2, 3)]),
    ("stack-last", lambda a, b: lucid.stack([a, b], axis=-1), lambda a, b: np.stack([a, b], axis=-1),
     [_x(2, 3), _x(2, 3)]),
    ("split-sections", lambda x: tuple(lucid.split(x, 3, axis=1)), lambda x: tuple(np.split(x, 3, axis=1)),
     [_x(2, 6)]),
    ("split-points", lambda x: tuple(lucid.split(x, [1, 3])), lambda x: tuple(np.split(x, [1, 3])),
     [_x(5, 2)]),
    ("chunk", lambda x: tuple(lucid.chunk(x, 3, axis=0)), lambda x: tuple(_np_chunk(x, 3, 0)), [_x(7, 2)]),
    ("squeeze-all", lucid.squeeze, np.squeeze, [_x(1, 3, 1, 2)]),
    ("squeeze-axis", lambda x: lucid.squeeze(x, axis=-2), lambda x: np.squeeze(x, axis=-2), [_x(1, 3, 1, 2)]),
    ("unsqueeze", lambda x: lucid.unsqueeze(x, 1), lambda x: np.expand_dims(x, 1), [_x(2, 3)]),
    ("unsqueeze-neg-many", lambda x: lucid.unsqueeze(x, (0, -1)), lambda x: np.expand_dims(x, (0, -1)),
     [_x(2, 3)]),
    ("expand_dims", lambda x: lucid.expand_dims(x, -1), lambda x: np.expand_dims(x, -1), [_x(3)]),
    ("flatten", lucid.flatten, np.ravel, [_x(2, 3, 2)]),
    ("flatten-range", lambda x: lucid.flatten(x, 1, 2), lambda x: x.reshape(2, 6, 2), [_x(2, 3, 2, 2)]),
    ("flatten-0d", lucid.flatten, lambda x: x.reshape(1), [_x()]),
    ("ravel", lucid.ravel, np.ravel, [_x(2, 3)]),
    ("expand", lambda x: lucid.expand(x, 2, -1, 4), lambda x: np.broadcast_to(x, (2, 3, 4)), [_x(3, 1)]),
    ("dot-vv", lucid.dot, np.dot, [_x(4), _x(4)]),
    ("dot-mv", lucid.dot, np.dot, [_x(3, 4), _x(4)]),
    ("dot-vm", lucid.dot, np.dot, [_x(3), _x(3, 2)]),
    ("dot-mm", lucid.dot, np.dot, [_x(2, 3), _x(3, 4)]),
    ("dot-scalar", lucid.dot, np.dot, [_x(), _x(3)]),
    ("matmul-vv", lucid.matmul, np.matmul, [_x(3), _x(3)]),
    ("matmul-batch-v", lucid.matmul, np.matmul, [_x(2, 3, 4), _x(4)]),
    ("inner", lucid.inner, np.inner, [_x(2, 3), _x(3)]),
    ("outer", lucid.outer, np.outer, [_x(3), _x(4)]),
    ("outer-2d", lucid.outer, np.outer, [_x(2, 2), _x(3)]),
    ("swapaxes", lambda x: lucid.swapaxes(x, 0, -1), lambda x: np.swapaxes(x, 0, -1), [_x(2, 3, 4)]),
    ("permute", lambda x: x.permute(1, 2, 0), lambda x: np.transpose(x, (1, 2, 0)), [_x(2, 3, 4)]),
    ("transpose-T", lambda x: x.T, lambda x: x.T, [_x(2, 3, 4)]),
    ("flip-none", lucid.flip, np.flip, [_x(2, 3)]),
    ("pad-int", lambda x: lucid.pad(x, 1, value=2.0), lambda x: np.pad(x, 1, constant_values=2.0), [_x(2, 3)]),
    ("concatenate-neg", lambda a, b: lucid.concatenate([a, b], axis=-1),
     lambda a, b: np.concatenate([a, b], axis=-1), [_x(2, 1), _x(2, 3)]),
    ("floor_divide", lucid.floor_divide, np.floor_divide, [_x(3, 4), _x(3, 4, low=0.5)]),
    ("mod", lucid.mod, np.mod, [_x(3, 4), _x(3, 4, low=0.5)]),
    ("cumsum-neg-axis", lambda x: lucid.cumsum(x, axis=-1), lambda x: np.cumsum(x, axis=-1), [_x(2, 4)]),
    ("prod-all", lucid.prod, np.prod, [_x(2, 3)]),
    ("amax-axis", lambda x: lucid.amax(x, axis=0), lambda x: np.max(x, axis=0), [_x(3, 4)]),
    ("max-all", lucid.max, np.max, [_x(3, 4)]),
    ("min-keep", lambda x: lucid.min(x, axis=1, keepdims=True), lambda x: np.min(x, axis=1, keepdims=True),
     [_x(3, 4)]),
]
# floor_divide and mod are piecewise constant / linear: their gradients are checked away
# from the jumps (uniform samples hit one with probability zero).


def _outs(x):
    return list(x) if isinstance(x, (tuple, list)) else [x]


@pytest.mark.parametrize("name,fn,np_fn,inputs", CASES, ids=[c[0] for c in CASES])
def test_forward_matches_numpy(name, fn, np_fn, inputs):
    got = _outs(fn(*[lucid.tensor(a) for a in inputs]))
    want = _outs(np_fn(*inputs))
    assert len(got) == len(want)
    for g, w in zip(got, want):
        w = np.asarray(w)
        assert g.shape == w.shape, f"{name}: shape {g.shape}, numpy gives {w.shape}"
        assert g.dtype == lucid.float64
        np.testing.assert_allclose(g.numpy(), w, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name,fn,np_fn,inputs", CASES, ids=[c[0] for c in CASES])
def test_gradient_matches_finite_differences(name, fn, np_fn, inputs):
    positions = list(range(len(inputs)))
    outs = _outs(np_fn(*inputs))
    cots = [np.random.default_rng(3 + k).normal(size=np.shape(o)) for k, o in enumerate(outs)]

    def np_total(*xs):
        return sum(np.sum(np.asarray(o) * c) for o, c in zip(_outs(np_fn(*xs)), cots))

    def lucid_total(*ts):
        return lucid.stack([lucid.sum(o * lucid.tensor(c)) for o, c in zip(_outs(fn(*ts)), cots)]).sum()

    numeric = G.numeric_vjp_fn(np_total, inputs, positions, np.ones(()))
    got = G.eager_vjp_fn(lucid_total, inputs, positions, np.ones(()))
    for p, g, w in zip(positions, got, numeric):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6, err_msg=f"{name}: gradient of input {p}")


@pytest.mark.parametrize("name,fn,np_fn,inputs", CASES, ids=[c[0] for c in CASES])
def test_traces_to_the_same_values(name, fn, np_fn, inputs):
    graph = lucid.trace(lambda *xs: fn(*xs), *inputs)
    got = _outs(lucid.ir.interpret(graph, *inputs))
    want = _outs(fn(*[lucid.tensor(a) for a in inputs]))
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w.numpy())


# ---- argmax / argmin -------------------------------------------------------------------------

def test_argmax_argmin_axis_none_flatten():
    x = RNG.permutation(12).reshape(3, 4).astype(np.float64)
    t = lucid.tensor(x)
    assert lucid.argmax(t).shape == () and lucid.argmax(t).item() == np.argmax(x)
    assert lucid.argmin(t).item() == np.argmin(x)
    assert lucid.argmax(t).dtype == lucid.int64
    kept = lucid.argmax(t, keepdims=True)
    np.testing.assert_array_equal(kept.numpy(), np.argmax(x, keepdims=True))
    np.testing.assert_array_equal(lucid.argmax(t, axis=-1).numpy(), np.argmax(x, axis=-1))
    np.testing.assert_array_equal(t.argmin(axis=0, keepdims=True).numpy(), np.argmin(x, axis=0, keepdims=True))


# ---- ties share gradients ------------------------------------------------------------------

def test_maximum_and_max_split_ties_evenly():
    a = lucid.tensor([1.0, 2.0, 3.0], requires_grad=True)
    b = lucid.tensor([1.0, 1.0, 4.0], requires_grad=True)
    lucid.maximum(a, b).sum().backward()
    np.testing.assert_array_equal(a.grad.numpy(), [0.5, 1.0, 0.0])
    np.testing.assert_array_equal(b.grad.numpy(), [0.5, 0.0, 1.0])
    x = lucid.tensor([[3.0, 1.0, 3.0], [0.0, 2.0, 1.0]], requires_grad=True)
    lucid.max(x, axis=1).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[0.5, 0.0, 0.5], [0.0, 1.0, 0.0]])


def test_prod_gradient_with_zeros():
    x = np.array([[2.0, 0.0, 3.0], [0.0, 0.0, 5.0], [1.5, -2.0, 4.0]])
    t = lucid.tensor(x, requires_grad=True)
    lucid.prod(t, axis=1).sum().backward()
    want = np.array([[0.0, 6.0, 0.0], [0.0, 0.0, 0.0], [-8.0, 6.0, -3.0]])
    np.testing.assert_allclose(t.grad.numpy(), want)


# ---- slicing edge cases (Python slice semantics, negative steps, empty results) ----------------

@pytest.mark.parametrize("sl", [slice(None), slice(1, 4), slice(None, None, -1), slice(4, 0, -2),
                                slice(-10, None, -1), slice(10, None, -1), slice(-2, None),
                                slice(3, 1), slice(None, -10, -1), slice(None, None, 3), slice(-1, -6, -2)],
                         ids=str)
def test_slice_axis_matches_python_slicing(sl):
    x = np.arange(10.0).reshape(5, 2)
    got = S.slice_axis(lucid.tensor(x), 0, sl.start, sl.stop, sl.step if sl.step is not None else 1)
    np.testing.assert_array_equal(got.numpy(), x[sl])
    t = lucid.tensor(x, requires_grad=True)
    S.slice_axis(t, 0, sl.start, sl.stop, sl.step if sl.step is not None else 1).sum().backward()
    want = np.zeros_like(x)
    want[sl] = 1.0
    np.testing.assert_array_equal(t.grad.numpy(), want)


def test_slice_rejects_out_of_range_attributes():
    with pytest.raises(lucid.ShapeError, match=r"slice.*\(5, 3\)"):
        lucid.ops.registry.OPS["slice"](lucid.ones(5, 3), begin=(5, 0), end=(6, 3), step=(1, 1))
    with pytest.raises(lucid.ShapeError, match="slice"):
        lucid.ops.registry.OPS["slice"](lucid.ones(4), begin=(0,), end=(4,), step=(0,))


# ---- dtype promotion --------------------------------------------------------------------------

def test_promotion_rules():
    f32 = lucid.ones(2, 3)
    f64 = lucid.ones(2, 3, dtype=lucid.float64)
    i64 = lucid.tensor([[1, 2, 3], [4, 5, 6]])
    assert f32.dtype == lucid.float32 and i64.dtype == lucid.int64
    assert (f32 + 1.5).dtype == lucid.float32
    assert (2.5 * f32).dtype == lucid.float32
    assert (f32 + 2).dtype == lucid.float32
    assert (i64 + 0.5).dtype == lucid.float32
    np.testing.assert_allclose((i64 + 0.5).numpy(), i64.numpy() + 0.5)
    assert (i64 + 2).dtype == lucid.int64
    assert (f32 + f64).dtype == lucid.float64
    assert (f64 * f32).dtype == lucid.float64
    assert (i64 + f64).dtype == lucid.float64
    q = i64 / lucid.tensor([2, 4, 8])
    assert q.dtype == lucid.float32
    np.testing.assert_allclose(q.numpy(), i64.numpy() / np.array([2, 4, 8]), rtol=1e-6)
    assert (i64 / 2).dtype == lucid.float32
    assert lucid.mean(i64).dtype == lucid.float32
    assert lucid.mean(i64).item() == pytest.approx(3.5)
    assert (i64 // 4).dtype == lucid.int64
    np.testing.assert_array_equal((i64 // 4).numpy(), i64.numpy() // 4)
    np.testing.assert_array_equal((i64 % 4).numpy(), i64.numpy() % 4)
    assert lucid.concatenate([f32, f64]).dtype == lucid.float64
    assert lucid.where(f32 > 0, f32, 0.0).dtype == lucid.float32


def test_python_float_keeps_float32_values():
    x = lucid.tensor([1.0, 2.0, 3.0])
    y = x * (1.0 / 3.0) + math.pi
    assert y.dtype == lucid.float32
    np.testing.assert_allclose(y.numpy(), np.float32([1, 2, 3]) * np.float32(1 / 3) + np.float32(math.pi))


# ---- error messages ----------------------------------------------------------------------------

def _shape_error(fn):
    with pytest.raises(lucid.ShapeError) as info:
        fn()
    return str(info.value)


def test_matmul_mismatch_names_op_and_shapes():
    msg = _shape_error(lambda: lucid.matmul(lucid.ones(2, 3), lucid.ones(4, 5)))
    assert "matmul" in msg and "(2, 3)" in msg and "(4, 5)" in msg
    msg = _shape_error(lambda: lucid.ones(2, 3) @ lucid.ones(2))
    assert "matmul" in msg and "(2, 3)" in msg and "(2,)" in msg
    msg = _shape_error(lambda: lucid.ops.registry.OPS["matmul"](lucid.ones(5, 2, 3), lucid.ones(4, 3, 2)))
    assert "matmul" in msg and "(5, 2, 3)" in msg and "(4, 3, 2)" in msg


def test_reshape_mismatch_names_op_and_shapes():
    msg = _shape_error(lambda: lucid.reshape(lucid.ones(2, 3), (4, 2)))
    assert "reshape" in msg and "(2, 3)" in msg and "(4, 2)" in msg
    msg = _shape_error(lambda: lucid.ones(2, 3).reshape(-1, 4))
    assert "reshape" in msg and "(2, 3)" in msg and "(-1, 4)" in msg


def test_broadcast_mismatch_names_op_and_shapes():
    msg = _shape_error(lambda: lucid.ones(2, 3) + lucid.ones(4))
    assert "add" in msg and "(2, 3)" in msg and "(4,)" in msg
    msg = _shape_error(lambda: lucid.broadcast_to(lucid.ones(2, 3), (3, 3)))
    assert "broadcast_to" in msg and "(2, 3)" in msg and "(3, 3)" in msg
    msg = _shape_error(lambda: lucid.where(lucid.ones(2) > 0, lucid.ones(3), 1.0))
    assert "where" in msg and "(2,)" in msg and "(3,)" in msg


def test_concatenate_mismatch_names_op_and_shapes():
    msg = _shape_error(lambda: lucid.concatenate([lucid.ones(2, 3), lucid.ones(2, 4)], axis=0))
    assert "concatenate" in msg and "(2, 3)" in msg and "(2, 4)" in msg
    msg = _shape_error(lambda: lucid.stack([lucid.ones(2, 3), lucid.ones(3, 2)]))
    assert "stack" in msg and "(2, 3)" in msg and "(3, 2)" in msg


def test_errors_while_tracing_name_op_and_shapes():
    def f(x, y):
        return lucid.matmul(x, y)

    with pytest.raises(lucid.ShapeError) as info:
        lucid.trace(f, np.ones((2, 3), np.float32), np.ones((2, 3), np.float32))
    assert "matmul" in str(info.value) and "(2, 3)" in str(info.value)


def test_axis_errors():
    msg = _shape_error(lambda: lucid.sum(lucid.ones(2, 3), axis=2))
    assert "sum" in msg and "2" in msg
    msg = _shape_error(lambda: lucid.squeeze(lucid.ones(2, 3), axis=0))
    assert "squeeze" in msg and "(2, 3)" in msg
    msg = _shape_error(lambda: lucid.split(lucid.ones(5, 2), 2))
    assert "split" in msg and "5" in msg


# ---- integer arithmetic, operators with non-tensors, stable logsumexp --------------------------

def test_integer_floor_divide_and_mod_are_exact_integers():
    t = lucid.tensor([1, 2, 3, -4])
    for got, want in [(7 // t, 7 // t.numpy()), (t // 2, t.numpy() // 2), (-7 % t, -7 % t.numpy()),
                      (t % -3, t.numpy() % -3), (lucid.floor_divide(t, t), t.numpy() // t.numpy())]:
        assert got.dtype == lucid.int64
        np.testing.assert_array_equal(got.numpy(), want)
    big = np.array([2 ** 40 + 1, -(2 ** 52) + 3, 2 ** 30 + 7])
    np.testing.assert_array_equal((lucid.tensor(big) // 3).numpy(), big // 3)
    np.testing.assert_array_equal((lucid.tensor(big) % 7).numpy(), big % 7)
    x = np.array([-7.5, 7.5, -0.25])
    np.testing.assert_allclose((lucid.tensor(x) % 2.0).numpy(), np.mod(x, 2.0))
    np.testing.assert_allclose((3.0 // lucid.tensor(x)).numpy(), 3.0 // x)


def test_operators_with_non_operands_fall_back_to_python():
    t = lucid.tensor([1.0, 2.0])
    assert (t == None) is False and (t != None) is True  # noqa: E711
    assert None not in [t]
    with pytest.raises(TypeError):
        t + "a"
    a, b = lucid.tensor([True, False]), np.array([True, True])
    np.testing.assert_array_equal((b ^ a).numpy(), [False, True])


def test_logsumexp_handles_infinities_like_torch():
    torch = pytest.importorskip("torch")
    x = np.array([[-np.inf, -np.inf, -np.inf], [0.0, -np.inf, 1.0], [np.inf, 0.0, 1.0]])
    with np.errstate(divide="ignore"):
        got = lucid.logsumexp(lucid.tensor(x), axis=1).numpy()
    np.testing.assert_array_equal(got, torch.logsumexp(torch.tensor(x), dim=1).numpy())
