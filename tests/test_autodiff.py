"""Eager backward, lucid.grad and grad_graph: one autodiff, checked against finite differences."""
import gc
import weakref

import numpy as np
import pytest

import lucid
from lucid.errors import LucidError


def fd_grad(f, x, eps=1e-6):
    """Central finite differences of a scalar numpy function."""
    x = np.array(x, dtype=np.float64)
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[i] += eps
        xm[i] -= eps
        g[i] = (f(xp) - f(xm)) / (2 * eps)
    return g


def test_backward_matches_finite_differences(rng):
    a = rng.normal(size=(3, 4))
    b = rng.normal(size=(4, 2))
    ta = lucid.tensor(a, requires_grad=True)
    tb = lucid.tensor(b, requires_grad=True)
    loss = (lucid.tanh(ta @ tb) * lucid.exp(-ta.sum(axis=1, keepdims=True))).sum()
    loss.backward()

    def f(a_, b_):
        return (np.tanh(a_ @ b_) * np.exp(-a_.sum(1, keepdims=True))).sum()

    np.testing.assert_allclose(ta.grad.data, fd_grad(lambda v: f(v, b), a), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(tb.grad.data, fd_grad(lambda v: f(a, v), b), rtol=1e-6, atol=1e-8)


def test_gradients_accumulate_and_zero_grad():
    x = lucid.tensor([1.0, 2.0, 3.0], requires_grad=True)
    (x * x).sum().backward()
    (x * 3.0).sum().backward()
    np.testing.assert_allclose(x.grad.data, 2 * np.array([1, 2, 3]) + 3)
    x.zero_grad()
    assert x.grad is None


def test_broadcasting_is_reduced_to_input_shapes(rng):
    a = lucid.tensor(rng.normal(size=(3, 1)), requires_grad=True)
    b = lucid.tensor(rng.normal(size=(1, 4)), requires_grad=True)
    c = lucid.tensor(rng.normal(size=()), requires_grad=True)
    (a * b + c).sum().backward()
    assert a.grad.shape == (3, 1) and b.grad.shape == (1, 4) and c.grad.shape == ()
    np.testing.assert_allclose(a.grad.data, np.full((3, 1), b.data.sum()), rtol=1e-12)
    np.testing.assert_allclose(b.grad.data, np.full((1, 4), a.data.sum()), rtol=1e-12)
    assert c.grad.item() == pytest.approx(12.0)


def test_no_grad_records_nothing():
    x = lucid.tensor([1.0, 2.0], requires_grad=True)
    with lucid.no_grad():
        y = x * 2.0
    assert not y.requires_grad and y.is_leaf
    with pytest.raises(LucidError, match="does not require grad"):
        y.sum().backward()

    @lucid.no_grad()
    def f(t):
        return t + 1.0

    assert not f(x).requires_grad
    assert lucid.is_grad_enabled()


def test_graph_is_freed_after_backward():
    x = lucid.tensor(np.ones(1000), requires_grad=True)
    hidden = lucid.exp(x)
    ref = weakref.ref(hidden)
    loss = (hidden * 2.0).sum()
    del hidden
    loss.backward()
    gc.collect()
    assert ref() is None, "intermediate values must be released once backward is done"
    with pytest.raises(LucidError, match="retain_graph"):
        loss.backward()


def test_retain_graph_allows_a_second_backward():
    x = lucid.tensor([2.0], requires_grad=True)
    y = (x ** 3.0).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad.data, [24.0])


def test_backward_of_non_scalar_needs_a_gradient():
    x = lucid.tensor([1.0, 2.0], requires_grad=True)
    y = x * x
    with pytest.raises(LucidError, match="one-element"):
        y.backward()
    y.backward(lucid.tensor([1.0, 10.0]))
    np.testing.assert_allclose(x.grad.data, [2.0, 40.0])


def test_retain_grad_and_detach():
    x = lucid.tensor([1.0, 2.0], requires_grad=True)
    h = (x * 3.0).retain_grad()
    d = h.detach()
    assert not d.requires_grad and d.is_leaf
    (h * h + d).sum().backward()
    np.testing.assert_allclose(h.grad.data, 2 * h.data)
    np.testing.assert_allclose(x.grad.data, 18 * x.data)


def test_grad_argnums_aux_and_value(rng):
    a, b = rng.normal(size=(3,)), rng.normal(size=(3,))

    def f(x, y):
        return (x * y * y).sum(), x + 1.0

    (ga, gb), aux = lucid.grad(f, argnums=(0, 1), has_aux=True)(a, b)
    np.testing.assert_allclose(ga.data, b * b)
    np.testing.assert_allclose(gb.data, 2 * a * b)
    np.testing.assert_allclose(aux.data, a + 1.0)
    value, g = lucid.value_and_grad(lambda x: (x * x).sum())(lucid.tensor(a))
    assert value.item() == pytest.approx((a * a).sum())
    assert not g.requires_grad and not value.requires_grad
    with pytest.raises(LucidError, match="one-element"):
        lucid.grad(lambda x: x * 2.0)(lucid.tensor(a))


def test_second_order_elementwise():
    f = lambda x: (lucid.tanh(x) * x * x).sum()  # noqa: E731
    x = np.array([-1.2, 0.3, 0.9])
    second = lucid.grad(lambda t: lucid.grad(f)(t).sum())(lucid.tensor(x))
    expected = fd_grad(lambda v: (lambda t: (1 - np.tanh(t) ** 2) * t * t + 2 * t * np.tanh(t))(v).sum(), x)
    np.testing.assert_allclose(second.data, expected, rtol=1e-5, atol=1e-7)


def test_second_order_matmul_with_create_graph(rng):
    a = rng.normal(size=(2, 3))
    b = rng.normal(size=(3, 2))
    ta = lucid.tensor(a, requires_grad=True)
    loss = ((ta @ lucid.tensor(b)) ** 2.0).sum()
    loss.backward(create_graph=True)
    g = ta.grad
    assert g.requires_grad
    ta.grad = None
    (g * g).sum().backward()

    def first(a_):
        return 2 * (a_ @ b) @ b.T

    np.testing.assert_allclose(ta.grad.data, fd_grad(lambda v: (first(v) ** 2).sum(), a), rtol=1e-5, atol=1e-6)


def test_grad_inside_trace_builds_the_backward_graph(rng):
    x = rng.normal(size=(4, 3)).astype(np.float32)
    w = rng.normal(size=(3, 2)).astype(np.float32)

    def loss(x_, w_):
        return (lucid.sigmoid(x_ @ w_) ** 2.0).mean()

    g = lucid.trace(lucid.grad(loss, argnums=1), x, w)
    assert [n.name for n in g.inputs] == ["x_", "w_"]
    ops = [n.op for n in g.compute_nodes]
    assert ops.count("matmul") >= 2  # forward and backward matmuls are graph nodes
    traced = lucid.ir.interpret(g, x, w)
    eager = lucid.grad(loss, argnums=1)(x, w)
    np.testing.assert_allclose(traced, eager.data, rtol=1e-6)


def test_grad_graph_is_a_graph_to_graph_transformation(rng):
    x = rng.normal(size=(5,))
    g = lucid.trace(lambda x: (lucid.sin(x) * x).sum(), x)
    dg = lucid.ir.grad_graph(g)
    value, grad = lucid.ir.interpret(dg, x)
    assert value == pytest.approx((np.sin(x) * x).sum())
    np.testing.assert_allclose(grad, np.cos(x) * x + np.sin(x), rtol=1e-12)


def test_grad_graph_with_respect_to_params():
    w = lucid.tensor(np.array([[1.0, 2.0], [3.0, 4.0]]))
    g = lucid.trace(lambda x: (x @ w).sum(), np.ones((1, 2)), param_names={id(w): "w"})
    dg = lucid.ir.grad_graph(g, wrt=[], params=True)
    value, gw = lucid.ir.interpret(dg, np.ones((1, 2)))
    assert value == pytest.approx(10.0)
    np.testing.assert_allclose(gw, np.ones((2, 2)))
