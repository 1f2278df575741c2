"""The convolution and pooling primitives of lucid.ops.nn.

Beyond the registry-generated suite (samples vs reference, interpreter, finite
differences, torch): hand-computed cases, the adjoint identities that tie the three
convolution ops together, a geometry sweep checked by finite differences of the numpy
references, second-order gradients through the closed conv set, shape-rule errors,
tracing, and the reference's speed on a ResNet-sized layer.
"""

import numpy as np
import pytest

import lucid
from lucid.errors import DTypeError, ShapeError
from lucid.ops import nn as N
from lucid.tensor import Tensor

import _gradcheck as G


def _conv_attrs(stride=1, padding=0, dilation=1, groups=1):
    p = lambda v: (v, v) if isinstance(v, int) else tuple(v)  # noqa: E731
    return {"stride": p(stride), "padding": p(padding), "dilation": p(dilation), "groups": groups}


def _run(op, *arrays, **attrs):
    return op(*[Tensor(a) for a in arrays], **attrs).numpy()


# ---- hand-computed cases ------------------------------------------------------------------------

def test_conv2d_hand_computed():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    w = np.ones((1, 1, 2, 2))
    np.testing.assert_array_equal(_run(N.conv2d, x, w, **_conv_attrs(stride=2))[0, 0], [[10, 18], [42, 50]])
    x2 = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    np.testing.assert_array_equal(_run(N.conv2d, x2, np.ones((1, 1, 3, 3)), **_conv_attrs(padding=1))[0, 0],
                                  np.full((2, 2), 10.0))
    # dilation 2 on a 3x3 input picks the four corners
    x3 = np.arange(9.0).reshape(1, 1, 3, 3)
    assert _run(N.conv2d, x3, np.ones((1, 1, 2, 2)), **_conv_attrs(dilation=2)).item() == 0 + 2 + 6 + 8


def test_conv2d_groups_hand_computed():
    # two groups of one channel each, the second channel doubled by its own filter
    x = np.stack([np.ones((2, 2)), np.full((2, 2), 3.0)])[None]
    w = np.stack([np.ones((1, 2, 2)), 2 * np.ones((1, 2, 2))])
    np.testing.assert_array_equal(_run(N.conv2d, x, w, **_conv_attrs(groups=2)).ravel(), [4.0, 24.0])


def test_conv_transpose2d_hand_computed():
    x = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    w = np.ones((1, 1, 2, 2))
    attrs = {**_conv_attrs(stride=2), "output_padding": (0, 0)}
    np.testing.assert_array_equal(_run(N.conv_transpose2d, x, w, **attrs)[0, 0],
                                  [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]])
    attrs = {**_conv_attrs(stride=1), "output_padding": (0, 0)}
    np.testing.assert_array_equal(_run(N.conv_transpose2d, x, w, **attrs)[0, 0],
                                  [[1, 3, 2], [4, 10, 6], [3, 7, 4]])
    # output_padding adds a last row/column that no input position reaches
    attrs = {**_conv_attrs(stride=2), "output_padding": (1, 1)}
    y = _run(N.conv_transpose2d, x, w, **attrs)[0, 0]
    assert y.shape == (5, 5) and not y[4].any() and not y[:, 4].any()


def test_pooling_hand_computed():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    pool = {"kernel": (2, 2), "stride": (2, 2), "padding": (0, 0)}
    np.testing.assert_array_equal(_run(N.max_pool2d, x, **pool)[0, 0], [[5, 7], [13, 15]])
    np.testing.assert_array_equal(_run(N.avg_pool2d, x, **pool)[0, 0], [[2.5, 4.5], [10.5, 12.5]])
    x2 = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    pad = {"kernel": (3, 3), "stride": (1, 1), "padding": (1, 1)}
    np.testing.assert_allclose(_run(N.avg_pool2d, x2, **pad, count_include_pad=True)[0, 0], np.full((2, 2), 10 / 9))
    np.testing.assert_allclose(_run(N.avg_pool2d, x2, **pad, count_include_pad=False)[0, 0], np.full((2, 2), 2.5))
    # negative inputs: -inf padding is never the maximum
    np.testing.assert_array_equal(_run(N.max_pool2d, -x2, **pad)[0, 0], [[-1, -1], [-1, -1]])


def test_max_pool2d_grad_routes_to_first_maximum_on_ties():
    x = np.zeros((1, 1, 2, 4))
    x[0, 0, 1, 3] = 5.0  # the second window has one clear maximum
    gy = np.array([[[[2.0, 7.0]]]])
    gx = _run(N.max_pool2d_grad, x, gy, kernel=(2, 2), stride=(2, 2), padding=(0, 0))
    np.testing.assert_array_equal(gx[0, 0], [[2, 0, 0, 0], [0, 0, 0, 7]])
    # overlapping windows that share a maximum add their gradients there
    x = np.array([[[[0.0, 9.0, 0.0]]]])
    gx = _run(N.max_pool2d_grad, x, np.array([[[[1.0, 3.0]]]]), kernel=(1, 2), stride=(1, 1), padding=(0, 0))
    np.testing.assert_array_equal(gx[0, 0], [[0, 4, 0]])
    assert N.max_pool2d_grad.vjp is None


# ---- adjoint identities ----------------------------------------------------------------------------

@pytest.mark.parametrize("xs,ws,stride,padding,dilation,groups", [
    ((2, 4, 9, 8), (6, 2, 3, 3), (2, 2), (1, 1), (1, 1), 2),
    ((1, 3, 10, 7), (2, 3, 2, 3), (3, 2), (0, 1), (2, 1), 1),
    ((1, 4, 6, 6), (4, 1, 3, 3), (1, 1), (2, 2), (2, 2), 4),
])
def test_conv_ops_are_adjoint(rng, xs, ws, stride, padding, dilation, groups):
    """<conv2d(x, w), y> = <x, conv_transpose2d(y, w)> = <w, conv2d_weight_grad(x, y)>."""
    attrs = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    x, w = rng.normal(size=xs), rng.normal(size=ws)
    out = _run(N.conv2d, x, w, **attrs)
    y = rng.normal(size=out.shape)
    opad = N._transpose_output_padding(xs[2:], out.shape[2:], ws[2:], stride, padding, dilation)
    xt = _run(N.conv_transpose2d, y, w, output_padding=opad, **attrs)
    dw = _run(N.conv2d_weight_grad, x, y, weight_shape=ws, **attrs)
    assert xt.shape == xs and dw.shape == ws
    lhs = np.sum(out * y)
    np.testing.assert_allclose(np.sum(x * xt), lhs, rtol=1e-10)
    np.testing.assert_allclose(np.sum(w * dw), lhs, rtol=1e-10)


def test_avg_pool_ops_are_adjoint(rng):
    attrs = {"kernel": (3, 2), "stride": (2, 1), "padding": (1, 1), "count_include_pad": False}
    x = rng.normal(size=(2, 3, 7, 6))
    y = _run(N.avg_pool2d, x, **attrs)
    gy = rng.normal(size=y.shape)
    gx = _run(N.avg_pool2d_grad, gy, input_shape=x.shape, **attrs)
    np.testing.assert_allclose(np.sum(y * gy), np.sum(x * gx), rtol=1e-10)


# ---- finite differences over a geometry sweep ---------------------------------------------------------

CONV_GEOMETRY = [
    # x shape, w shape, stride, padding, dilation, groups
    ((1, 2, 6, 5), (3, 2, 3, 3), (1, 1), (0, 0), (1, 1), 1),
    ((2, 2, 7, 7), (2, 2, 3, 3), (2, 3), (1, 2), (1, 1), 1),   # strides differ per axis
    ((1, 3, 8, 6), (2, 3, 2, 3), (1, 1), (1, 0), (3, 2), 1),   # dilation, non-square
    ((1, 6, 5, 5), (4, 3, 3, 1), (2, 1), (1, 0), (1, 1), 2),   # groups
    ((2, 4, 5, 6), (4, 1, 3, 3), (1, 2), (1, 1), (1, 1), 4),   # depthwise
    ((1, 4, 6, 6), (8, 1, 3, 3), (1, 1), (2, 2), (2, 2), 4),   # depthwise multiplier 2, dilated
]


def _fd_check(op, arrays, attrs, rng, positions=None):
    positions = list(range(len(arrays))) if positions is None else positions
    out = G.reference(op, arrays, attrs)
    cot = rng.normal(size=out.shape)
    numeric = G.numeric_vjp(op, arrays, attrs, positions, cot)
    got = G.eager_vjp(op, arrays, attrs, positions, cot)
    for p, g, n in zip(positions, got, numeric):
        np.testing.assert_allclose(g, n, rtol=1e-6, atol=1e-8, err_msg=f"{op.name}: input {p}")


@pytest.mark.parametrize("case", CONV_GEOMETRY)
def test_conv2d_gradients_by_finite_differences(rng, case):
    xs, ws, s, p, d, g = case
    _fd_check(N.conv2d, [rng.normal(size=xs), rng.normal(size=ws)],
              {"stride": s, "padding": p, "dilation": d, "groups": g}, rng)


@pytest.mark.parametrize("case", CONV_GEOMETRY)
def test_conv2d_weight_grad_gradients_by_finite_differences(rng, case):
    xs, ws, s, p, d, g = case
    ho, wo = (N.conv_out_len(*a) for a in zip(xs[2:], ws[2:], s, p, d))
    _fd_check(N.conv2d_weight_grad, [rng.normal(size=xs), rng.normal(size=(xs[0], ws[0], ho, wo))],
              {"stride": s, "padding": p, "dilation": d, "groups": g, "weight_shape": ws}, rng)


@pytest.mark.parametrize("xs,ws,stride,padding,output_padding,dilation,groups", [
    ((1, 2, 3, 4), (2, 3, 3, 3), (2, 2), (0, 0), (1, 1), (1, 1), 1),
    ((2, 4, 3, 3), (4, 1, 3, 2), (3, 2), (1, 0), (2, 1), (1, 1), 2),
    ((1, 3, 4, 3), (3, 3, 2, 2), (1, 1), (0, 1), (1, 0), (2, 1), 1),  # output_padding < dilation
    ((1, 2, 2, 3), (2, 2, 3, 3), (2, 1), (2, 1), (0, 0), (2, 2), 2),
])
def test_conv_transpose2d_gradients_by_finite_differences(rng, xs, ws, stride, padding, output_padding,
                                                          dilation, groups):
    attrs = {"stride": stride, "padding": padding, "output_padding": output_padding,
             "dilation": dilation, "groups": groups}
    arrays = [rng.normal(size=xs), rng.normal(size=ws)]
    out = G.reference(N.conv_transpose2d, arrays, attrs)
    assert out.shape[2:] == tuple(N.conv_transpose_out_len(*a) for a in
                                  zip(xs[2:], ws[2:], stride, padding, output_padding, dilation))
    _fd_check(N.conv_transpose2d, arrays, attrs, rng)


@pytest.mark.parametrize("xs,k,s,p,d", [
    ((2, 2, 7, 6), (3, 3), (2, 2), (1, 1), (1, 1)),
    ((1, 3, 6, 8), (2, 3), (1, 2), (0, 1), (1, 1)),
    ((1, 2, 9, 8), (3, 2), (2, 1), (1, 1), (2, 3)),
])
def test_pool_gradients_by_finite_differences(rng, xs, k, s, p, d):
    x = N._distinct(rng, xs)
    _fd_check(N.max_pool2d, [x], {"kernel": k, "stride": s, "padding": p, "dilation": d}, rng)
    if d == (1, 1):
        for include in (True, False):
            _fd_check(N.avg_pool2d, [x], {"kernel": k, "stride": s, "padding": p, "count_include_pad": include}, rng)


# ---- higher order: the three conv ops are closed under differentiation --------------------------------

def _second_order_check(fn, arrays, rng):
    """grad of <grad f, v> against central differences of grad f along v."""
    nums = tuple(range(len(arrays)))
    first = lucid.grad(fn, argnums=nums)
    v = [rng.normal(size=a.shape) for a in arrays]

    def inner(*xs):
        return lucid.sum(lucid.stack([lucid.sum(g * Tensor(vi)) for g, vi in zip(first(*xs), v)]))

    second = lucid.grad(inner, argnums=nums)(*[Tensor(a) for a in arrays])
    eps = 1e-5

    def first_at(t):
        return [g.numpy() for g in first(*[Tensor(a + t * vi) for a, vi in zip(arrays, v)])]

    numeric = [(hi - lo) / (2 * eps) for hi, lo in zip(first_at(eps), first_at(-eps))]
    for got, want in zip(second, numeric):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-6)


def test_conv2d_second_order(rng):
    c = rng.normal(size=(1, 3, 3, 2))
    attrs = _conv_attrs(stride=2, padding=1, dilation=1, groups=1)

    def f(x, w):
        y = N.conv2d(x, w, **attrs)
        return lucid.sum(y * y * Tensor(c))

    _second_order_check(f, [rng.normal(size=(1, 2, 5, 4)), rng.normal(size=(3, 2, 3, 3))], rng)


def test_conv_transpose2d_and_weight_grad_second_order(rng):
    attrs = {**_conv_attrs(stride=2, padding=1, groups=2), "output_padding": (1, 0)}
    c = rng.normal(size=(1, 4, 6, 5))

    def f(x, w):
        y = N.conv_transpose2d(x, w, **attrs)
        return lucid.sum(y * y * Tensor(c))

    _second_order_check(f, [rng.normal(size=(1, 4, 3, 3)), rng.normal(size=(4, 2, 3, 3))], rng)
    wattrs = _conv_attrs(stride=1, padding=1, groups=1)
    cw = rng.normal(size=(3, 2, 3, 3))

    def h(x, gy):
        dw = N.conv2d_weight_grad(x, gy, weight_shape=(3, 2, 3, 3), **wattrs)
        return lucid.sum(dw * dw * Tensor(cw))

    _second_order_check(h, [rng.normal(size=(1, 2, 4, 4)), rng.normal(size=(1, 3, 4, 4))], rng)


def test_avg_pool2d_second_order(rng):
    attrs = {"kernel": (3, 3), "stride": (2, 2), "padding": (1, 1), "count_include_pad": False}
    c = rng.normal(size=(1, 2, 3, 3))

    def f(x):
        y = N.avg_pool2d(x, **attrs)
        return lucid.sum(y * y * y * Tensor(c))

    _second_order_check(f, [rng.normal(size=(1, 2, 5, 6))], rng)


# ---- shape rules and their errors -----------------------------------------------------------------------

def _t(*shape, dtype=np.float64):
    return Tensor(np.zeros(shape, dtype=dtype))


def test_conv2d_errors_name_op_and_both_shapes():
    with pytest.raises(ShapeError, match=r"conv2d.*\(1, 3, 8, 8\).*\(4, 2, 3, 3\)"):
        N.conv2d(_t(1, 3, 8, 8), _t(4, 2, 3, 3), **_conv_attrs())
    with pytest.raises(ShapeError, match=r"conv2d.*\(1, 4, 8, 8\).*\(4, 1, 3, 3\).*1\*2 = 2"):
        N.conv2d(_t(1, 4, 8, 8), _t(4, 1, 3, 3), **_conv_attrs(groups=2))
    with pytest.raises(ShapeError, match="conv2d: out_channels .5. is not divisible by groups=2"):
        N.conv2d(_t(1, 4, 8, 8), _t(5, 2, 3, 3), **_conv_attrs(groups=2))
    with pytest.raises(ShapeError, match="conv2d: .*does not fit"):
        N.conv2d(_t(1, 1, 2, 2), _t(1, 1, 3, 3), **_conv_attrs())
    with pytest.raises(ShapeError, match="conv2d: x must be 4-D"):
        N.conv2d(_t(3, 8, 8), _t(4, 3, 3, 3), **_conv_attrs())
    with pytest.raises(ShapeError, match="conv2d: stride must be >= 1"):
        N.conv2d(_t(1, 1, 4, 4), _t(1, 1, 3, 3), **_conv_attrs(stride=0))
    with pytest.raises(DTypeError, match="conv2d"):
        N.conv2d(_t(1, 1, 4, 4, dtype=np.int64), _t(1, 1, 3, 3, dtype=np.int64), **_conv_attrs())
    with pytest.raises(DTypeError, match="conv2d"):
        N.conv2d(_t(1, 1, 4, 4, dtype=np.float32), _t(1, 1, 3, 3), **_conv_attrs())


def test_conv_transpose2d_and_weight_grad_errors():
    attrs = {**_conv_attrs(stride=2), "output_padding": (0, 0)}
    with pytest.raises(ShapeError, match=r"conv_transpose2d.*\(1, 3, 4, 4\).*\(2, 2, 3, 3\)"):
        N.conv_transpose2d(_t(1, 3, 4, 4), _t(2, 2, 3, 3), **attrs)
    with pytest.raises(ShapeError, match="conv_transpose2d: output_padding"):
        N.conv_transpose2d(_t(1, 2, 4, 4), _t(2, 2, 3, 3), **{**attrs, "output_padding": (2, 0)})
    with pytest.raises(ShapeError, match=r"conv2d_weight_grad: gy \(1, 2, 3, 3\).*\(1, 2, 4, 4\)"):
        N.conv2d_weight_grad(_t(1, 1, 6, 6), _t(1, 2, 3, 3), weight_shape=(2, 1, 3, 3), **_conv_attrs())
    with pytest.raises(ShapeError, match=r"conv2d_weight_grad.*\(1, 3, 6, 6\).*\(2, 1, 3, 3\)"):
        N.conv2d_weight_grad(_t(1, 3, 6, 6), _t(1, 2, 4, 4), weight_shape=(2, 1, 3, 3), **_conv_attrs())


def test_pool_errors():
    pool = {"kernel": (2, 2), "stride": (2, 2), "padding": (0, 0)}
    with pytest.raises(ShapeError, match=r"max_pool2d: input must be 4-D.*\(4, 4\)"):
        N.max_pool2d(_t(4, 4), **pool)
    with pytest.raises(ShapeError, match="max_pool2d: padding .* at most half"):
        N.max_pool2d(_t(1, 1, 4, 4), **{**pool, "padding": (2, 2)})
    with pytest.raises(ShapeError, match="avg_pool2d: .*does not fit"):
        N.avg_pool2d(_t(1, 1, 1, 4), **pool)
    with pytest.raises(ShapeError, match=r"max_pool2d_grad: gy \(1, 1, 3, 3\)"):
        N.max_pool2d_grad(_t(1, 1, 4, 4), _t(1, 1, 3, 3), **pool)
    with pytest.raises(ShapeError, match=r"avg_pool2d_grad: gy \(1, 1, 3, 3\).*\(1, 1, 4, 4\)"):
        N.avg_pool2d_grad(_t(1, 1, 3, 3), input_shape=(1, 1, 4, 4), **pool)
    with pytest.raises(DTypeError, match="max_pool2d"):
        N.max_pool2d(_t(1, 1, 4, 4, dtype=np.int32), **pool)


# ---- tracing ------------------------------------------------------------------------------------------------

def test_conv_and_pool_trace_and_interpret_like_eager(rng):
    x = rng.normal(size=(2, 3, 9, 8)).astype(np.float32)
    w = Tensor(rng.normal(size=(4, 3, 3, 3)).astype(np.float32))

    def net(x):
        y = N.conv2d(x, w, **_conv_attrs(stride=1, padding=1))
        y = N.max_pool2d(lucid.relu(y), kernel=(3, 3), stride=(2, 2), padding=(1, 1))
        return N.avg_pool2d(y, kernel=(2, 2), stride=(2, 2), padding=(0, 0), count_include_pad=True)

    graph = lucid.trace(net, x)
    assert [n.op for n in graph.compute_nodes] == ["conv2d", "relu", "max_pool2d", "avg_pool2d"]
    np.testing.assert_array_equal(lucid.ir.interpret(graph, x), net(Tensor(x)).numpy())


def test_traced_gradients_match_eager(rng):
    x = rng.normal(size=(1, 2, 6, 6))
    w = rng.normal(size=(3, 2, 3, 3))

    def loss(x, w):
        y = N.conv2d(x, w, **_conv_attrs(stride=2, padding=1))
        y = N.max_pool2d(y, kernel=(2, 2), stride=(1, 1), padding=(0, 0))
        return lucid.sum(y * y)

    g = lucid.grad(loss, argnums=(0, 1))
    eager = g(Tensor(x), Tensor(w))
    graph = lucid.trace(g, x, w)
    ops = {n.op for n in graph.compute_nodes}
    assert {"conv_transpose2d", "conv2d_weight_grad", "max_pool2d_grad"} <= ops
    traced = lucid.ir.interpret(graph, x, w)
    for e, t in zip(eager, traced):
        np.testing.assert_allclose(t, e.numpy(), rtol=1e-12)


# ---- torch, at realistic sizes and in float32 ----------------------------------------------------------------

@pytest.mark.parametrize("xs,ws,stride,padding,groups", [
    ((2, 16, 28, 28), (32, 16, 3, 3), 1, 1, 1),
    ((1, 3, 64, 48), (8, 3, 7, 7), 2, 3, 1),      # ResNet's stem
    ((2, 32, 14, 14), (16, 32, 1, 1), 2, 0, 1),   # strided 1x1 projection
    ((1, 32, 20, 20), (32, 8, 3, 3), 2, 1, 4),
])
def test_float32_convolutions_match_torch(rng, xs, ws, stride, padding, groups):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = rng.normal(size=xs).astype(np.float32)
    w = (rng.normal(size=ws) * 0.1).astype(np.float32)
    attrs = _conv_attrs(stride=stride, padding=padding, groups=groups)
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    ty = F.conv2d(tx, tw, None, stride, padding, 1, groups)
    lx, lw = Tensor(x, requires_grad=True), Tensor(w, requires_grad=True)
    ly = N.conv2d(lx, lw, **attrs)
    np.testing.assert_allclose(ly.numpy(), ty.detach().numpy(), rtol=1e-4, atol=1e-4)
    cot = rng.normal(size=ty.shape).astype(np.float32)
    ty.backward(torch.tensor(cot))
    lucid.sum(ly * Tensor(cot)).backward()
    np.testing.assert_allclose(lx.grad.numpy(), tx.grad.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(lw.grad.numpy(), tw.grad.numpy(), rtol=1e-4, atol=2e-3)
    assert ly.dtype == lucid.float32 and lx.grad.dtype == lucid.float32


def test_large_row_blocks_agree(rng, monkeypatch):
    """Tiny im2col blocks (many row blocks) give the same result as one block."""
    x, w = rng.normal(size=(2, 3, 11, 9)), rng.normal(size=(4, 3, 3, 3))
    gy = rng.normal(size=(2, 4, 6, 5))
    attrs = _conv_attrs(stride=2, padding=1)
    whole = (N._conv2d_ref(x, w, **attrs), N._conv2d_weight_grad_ref(x, gy, weight_shape=w.shape, **attrs),
             N._conv_transpose2d_ref(gy, w, output_padding=(0, 0), **attrs))
    monkeypatch.setattr(N, "_BLOCK", 1)
    parts = (N._conv2d_ref(x, w, **attrs), N._conv2d_weight_grad_ref(x, gy, weight_shape=w.shape, **attrs),
             N._conv_transpose2d_ref(gy, w, output_padding=(0, 0), **attrs))
    for a, b in zip(whole, parts):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


