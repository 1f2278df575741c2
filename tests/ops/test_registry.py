"""The op test-suite generated from the registry (as PyTorch's OpInfo tests are).

Every op in `lucid.ops.registry.OPS` and every `Sample` its `samples(rng)` returns
becomes a family of test cases, with ids like `exp-0`:

- the shape rule (`infer`) agrees with the numpy reference, in float32 and float64;
- eager execution and the interpreter on a traced graph give the same array;
- gradients (eager `.backward()`, `grad_graph` of a trace, a traced `lucid.grad`) agree
  with central finite differences of the numpy reference, in float64;
- the op agrees with its PyTorch oracle, forward and backward;
- second-order gradients of elementwise ops and matmul agree with finite differences
  of the first gradient.

An op added to the registry is an op tested: nothing here lists ops by name.
"""
import numpy as np
import pytest

import lucid
from lucid.ir.types import TensorType
from lucid.ops.registry import BROADCAST, ELEMENTWISE, FUSION_KINDS, OPS
from lucid.tensor import Tensor

import _gradcheck as G

CASES = G.collect_cases()
PARAMS = [pytest.param(name, i, s, id=f"{name}-{i}") for name, i, s in CASES]
GRAD_PARAMS = [pytest.param(name, i, s, id=f"{name}-{i}") for name, i, s in CASES
               if isinstance(s, Exception) or (OPS[name].differentiable and s.grad)]
SECOND_ORDER_KINDS = (ELEMENTWISE, BROADCAST)
SECOND_PARAMS = [p for p in GRAD_PARAMS
                 if OPS[p.values[0]].fusion in SECOND_ORDER_KINDS or p.values[0] == "matmul"]


def _sample(name, sample):
    """The op and a fresh copy of the sample's inputs (a failing `samples` fails here)."""
    if isinstance(sample, Exception):
        raise AssertionError(f"{name}: samples(rng) raised {sample!r}") from sample
    return OPS[name], [np.array(a, copy=True) for a in sample.inputs]


def _cotangent(op, arrays, attrs, seed=1):
    out = G.reference(op, arrays, attrs)
    return np.random.default_rng(seed).normal(size=out.shape)


# ---- registry coverage ------------------------------------------------------------------

def test_every_op_has_samples():
    missing = sorted(n for n, op in OPS.items() if op.samples is None)
    assert not missing, f"ops without samples: {missing}"
    empty = sorted(n for n, op in OPS.items() if op.samples is not None and not G.op_samples(op))
    assert not empty, f"ops whose samples(rng) is empty: {empty}"


def test_every_op_has_a_fusion_kind():
    bad = sorted(n for n, op in OPS.items() if op.fusion not in FUSION_KINDS)
    assert not bad, f"ops without a valid fusion kind: {bad}"


def test_every_op_has_a_torch_oracle():
    missing = sorted(n for n, op in OPS.items() if op.torch is None)
    assert not missing, f"ops without a torch= oracle: {missing}"


def test_samples_follow_the_conventions():
    """Float inputs are float64 (the suite derives float32 itself); attributes bind and hash."""
    bad = []
    for name, index, sample in CASES:
        if isinstance(sample, Exception):
            continue
        if any(np.asarray(a).dtype.kind == "f" and np.asarray(a).dtype != np.float64 for a in sample.inputs):
            bad.append(f"{name}-{index}: float input that is not float64")
        try:
            hash(OPS[name].bind_attrs(sample.attrs))
        except Exception as err:
            bad.append(f"{name}-{index}: attributes {sample.attrs} do not bind: {err}")
    assert not bad, "\n".join(bad)


def test_differentiable_ops_have_gradient_samples():
    lacking = sorted(n for n, op in OPS.items() if op.differentiable and op.samples is not None
                     and not any(s.grad and G.grad_positions(op, s) for s in G.op_samples(op)))
    assert not lacking, f"differentiable ops with no sample that checks a gradient: {lacking}"


def test_binary_broadcast_ops_cover_broadcasting_gradients():
    """Binary broadcast ops must have samples broadcasting both sides and a 0-d operand."""
    lacking = []
    for name, op in OPS.items():
        if op.fusion != BROADCAST or not op.differentiable or op.samples is None:
            continue
        both_sides = scalar = False
        for s in G.op_samples(op):
            floats = [np.shape(a) for a in s.inputs if G.is_float(a)]
            out = np.broadcast_shapes(*[np.shape(a) for a in s.inputs])
            if s.grad and len(floats) >= 2:
                # every floating operand is broadcast (e.g. (3,1)x(1,4)), one of them is 0-d
                both_sides |= all(f != out and len(f) == len(out) for f in floats)
                scalar |= any(f == () for f in floats) and out != ()
        if not (both_sides and scalar):
            lacking.append(name)
    assert not lacking, f"broadcast ops whose samples lack (3,1)x(1,4)- or ()x(2,3)-style cases: {lacking}"


# ---- shape rule vs reference ---------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name,index,sample", PARAMS)
def test_shape_rule_matches_reference(name, index, sample, dtype):
    op, arrays = _sample(name, sample)
    arrays = G.as_float(arrays, dtype)
    attrs = op.bind_attrs(sample.attrs)
    ref = G.reference(op, arrays, sample.attrs)
    inferred = op.infer_type([TensorType(a.shape, a.dtype) for a in arrays], attrs)
    assert inferred.shape == ref.shape, f"{name}: infer says {inferred.shape}, reference gives {ref.shape}"
    assert inferred.dtype.np == ref.dtype, f"{name}: infer says {inferred.dtype}, reference gives {ref.dtype}"


# ---- eager vs interpreter -----------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name,index,sample", PARAMS)
def test_eager_matches_interpreter(name, index, sample, dtype):
    op, arrays = _sample(name, sample)
    arrays = G.as_float(arrays, dtype)
    eager = op(*G.tensors(arrays), **sample.attrs)
    graph = lucid.ir.verify(lucid.trace(lambda *xs: op(*xs, **sample.attrs), *arrays))
    assert [n.op for n in graph.compute_nodes] == [name]
    assert graph.outputs[0].type == eager.type
    interp = lucid.ir.interpret(graph, *arrays)
    assert interp.dtype == eager.numpy().dtype and interp.shape == eager.shape
    np.testing.assert_array_equal(interp, eager.numpy())
    np.testing.assert_array_equal(eager.numpy(), G.reference(op, arrays, sample.attrs))


# ---- gradients vs finite differences ---------------------------------------------------------

def _check_grads(name, what, got, want, positions, tol):
    _, rtol, atol = tol
    for p, g, w in zip(positions, got, want):
        g = np.asarray(g)
        assert g.shape == w.shape, f"{name} {what}: gradient of input {p} has shape {g.shape}, want {w.shape}"
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol,
                                   err_msg=f"{name} {what}: gradient of input {p}")


@pytest.mark.parametrize("name,index,sample", GRAD_PARAMS)
def test_gradient_matches_finite_differences(name, index, sample):
    op, arrays = _sample(name, sample)
    positions = G.grad_positions(op, sample)
    if not positions:
        pytest.skip("no floating input to differentiate")
    cot = _cotangent(op, arrays, sample.attrs)
    tol = G.tolerances(op, arrays, sample.attrs)
    numeric = G.numeric_vjp(op, arrays, sample.attrs, positions, cot, eps=tol[0])
    _check_grads(name, "backward()", G.eager_vjp(op, arrays, sample.attrs, positions, cot),
                 numeric, positions, tol)
    _check_grads(name, "grad_graph", G.traced_vjp(op, arrays, sample.attrs, positions, cot),
                 numeric, positions, tol)
    _check_grads(name, "trace(grad)", G.traced_grad_fn_vjp(op, arrays, sample.attrs, positions, cot),
                 numeric, positions, tol)


# ---- torch oracle ------------------------------------------------------------------------------

def _to_torch(torch, arrays, positions=()):
    return [torch.tensor(np.asarray(a), requires_grad=i in positions) for i, a in enumerate(arrays)]


@pytest.mark.parametrize("name,index,sample", PARAMS)
def test_forward_matches_torch(name, index, sample):
    torch = pytest.importorskip("torch")
    op, arrays = _sample(name, sample)
    if op.torch is None:
        pytest.fail(f"{name} has no torch oracle")
    attrs = dict(op.bind_attrs(sample.attrs))
    with torch.no_grad():
        got = op.torch(torch, *_to_torch(torch, arrays), **attrs)
    ref = G.reference(op, arrays, sample.attrs)
    got_np = got.numpy()
    assert got_np.shape == ref.shape, f"{name}: torch gives shape {got_np.shape}, reference {ref.shape}"
    assert got_np.dtype == ref.dtype, f"{name}: torch gives dtype {got_np.dtype}, reference {ref.dtype}"
    np.testing.assert_allclose(got_np, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name,index,sample", GRAD_PARAMS)
def test_gradient_matches_torch(name, index, sample):
    torch = pytest.importorskip("torch")
    op, arrays = _sample(name, sample)
    if op.torch is None:
        pytest.fail(f"{name} has no torch oracle")
    positions = G.grad_positions(op, sample)
    if not positions:
        pytest.skip("no floating input to differentiate")
    cot = _cotangent(op, arrays, sample.attrs)
    ts = _to_torch(torch, arrays, positions)
    out = op.torch(torch, *ts, **dict(op.bind_attrs(sample.attrs)))
    out.backward(torch.tensor(cot, dtype=out.dtype))
    want = [ts[p].grad.numpy() if ts[p].grad is not None else np.zeros_like(arrays[p]) for p in positions]
    got = G.eager_vjp(op, arrays, sample.attrs, positions, cot)
    _check_grads(name, "vs torch", got, want, positions, (None, 1e-9, 1e-10))


# ---- second order ------------------------------------------------------------------------------

@pytest.mark.parametrize("name,index,sample", SECOND_PARAMS)
def test_second_order_matches_finite_differences(name, index, sample):
    """grad(<grad f, v>) is the Hessian-vector product H v; compare it with central
    differences of lucid's first gradient along v (eager, then the same through a trace)."""
    op, arrays = _sample(name, sample)
    positions = G.grad_positions(op, sample)
    if not positions:
        pytest.skip("no floating input to differentiate")
    cot = _cotangent(op, arrays, sample.attrs)
    rng = np.random.default_rng(2)
    v = [rng.normal(size=np.shape(arrays[p])) for p in positions]
    nums = tuple(positions)
    first = lucid.grad(G.loss_fn(op, sample.attrs, cot), argnums=nums)

    def inner(*xs):
        gs = first(*xs)
        return lucid.sum(lucid.stack([lucid.sum(g * Tensor(vi)) for g, vi in zip(gs, v)]))

    second = lucid.grad(inner, argnums=nums)

    def first_at(t):
        xs = [a + t * v[positions.index(i)] if i in positions else a for i, a in enumerate(arrays)]
        return [np.asarray(g.numpy()) for g in first(*G.tensors(xs))]

    eps = 1e-5
    numeric = [(hi - lo) / (2 * eps) for hi, lo in zip(first_at(eps), first_at(-eps))]
    scale = max([1.0] + [float(np.max(np.abs(n), initial=0.0)) for n in numeric])
    tol = (eps, 1e-5, 1e-7 * scale)
    _check_grads(name, "grad(grad)", [g.numpy() for g in second(*G.tensors(arrays))], numeric, positions, tol)
    traced = lucid.ir.interpret(lucid.trace(second, *arrays), *arrays)
    _check_grads(name, "trace(grad(grad))", list(traced), numeric, positions, tol)
