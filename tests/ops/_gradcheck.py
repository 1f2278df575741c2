"""Helpers for the registry-generated op tests: sample collection, dtype conversion,
finite differences against numpy references, and gradients through lucid's autodiff.

Finite differences here never go through lucid: they perturb one element at a time
and evaluate the op's numpy reference, which is cheap for the small sample inputs and
keeps the check independent of the code under test.
"""
import zlib

import numpy as np

import lucid
from lucid.ops.registry import OPS
from lucid.tensor import Tensor

EPS = 1e-6


def op_seed(name):
    """A stable per-op seed, so an op's samples do not change when other ops are added."""
    return zlib.crc32(name.encode())


def op_samples(op):
    """The op's samples from its own seeded generator (None if it has no sample function)."""
    if op.samples is None:
        return None
    return list(op.samples(np.random.default_rng(op_seed(op.name))))


def collect_cases():
    """(op name, index, sample or the exception from `samples`) for every op in OPS."""
    cases = []
    for name in sorted(OPS):
        op = OPS[name]
        try:
            samples = op_samples(op)
        except Exception as err:  # reported by a failing test, not at collection
            cases.append((name, "samples", err))
            continue
        for i, s in enumerate(samples or ()):
            cases.append((name, i, s))
    return cases


def is_float(a):
    return np.asarray(a).dtype.kind == "f"


def as_float(arrays, dtype):
    """Copies of `arrays` with floating ones converted to `dtype`."""
    return [np.asarray(a).astype(dtype) if is_float(a) else np.array(a, copy=True) for a in arrays]


def grad_positions(op, sample):
    """Input positions whose gradient is checked: floating and not declared non-differentiable."""
    return [i for i, a in enumerate(sample.inputs)
            if is_float(a) and i not in sample.nondiff and i not in op.nondiff]


def reference(op, arrays, attrs):
    return np.asarray(op.reference(*arrays, **dict(op.bind_attrs(attrs))))


def numeric_vjp(op, arrays, attrs, positions, cot, eps=EPS):
    """Central differences of sum(reference(arrays) * cot) for each input in `positions`."""
    return numeric_vjp_fn(lambda *xs: reference(op, xs, attrs), arrays, positions, cot, eps)


def numeric_vjp_fn(fn, arrays, positions, cot, eps=EPS):
    """Central differences of sum(fn(*arrays) * cot), `fn` a numpy function."""
    arrays = [np.array(a, dtype=np.float64) if i in positions else a for i, a in enumerate(arrays)]
    cot = np.asarray(cot, dtype=np.float64)

    def f():
        return float(np.sum(np.asarray(fn(*arrays)).astype(np.float64) * cot))

    grads = []
    for p in positions:
        x = arrays[p]
        g = np.zeros_like(x)
        flat, gflat = x.reshape(-1), g.reshape(-1)
        for k in range(flat.size):
            old = flat[k]
            flat[k] = old + eps
            hi = f()
            flat[k] = old - eps
            lo = f()
            flat[k] = old
            gflat[k] = (hi - lo) / (2 * eps)
        grads.append(g)
    return grads


def tensors(arrays, positions=()):
    return [Tensor(np.array(a, copy=True), requires_grad=i in positions) for i, a in enumerate(arrays)]


def eager_vjp(op, arrays, attrs, positions, cot):
    """Gradients of sum(op(arrays) * cot) by `.backward()` on eager tensors."""
    return eager_vjp_fn(lambda *ts: op(*ts, **attrs), arrays, positions, cot)


def eager_vjp_fn(fn, arrays, positions, cot):
    """Gradients of sum(fn(*tensors) * cot) by `.backward()`; `fn` any lucid function."""
    ts = tensors(arrays, positions)
    out = fn(*ts)
    loss = lucid.sum(out * Tensor(np.asarray(cot, dtype=out.dtype.np)))
    loss.backward()
    return [ts[p].grad.numpy() if ts[p].grad is not None else np.zeros_like(arrays[p]) for p in positions]


def loss_fn(op, attrs, cot):
    """The scalar function sum(op(*xs) * cot) of lucid tensors (traceable)."""
    def f(*xs):
        out = op(*xs, **attrs)
        return lucid.sum(out * Tensor(np.asarray(cot, dtype=out.dtype.np)))

    return f


def traced_vjp(op, arrays, attrs, positions, cot):
    """The same gradients from `grad_graph` of a trace, run by the interpreter."""
    graph = lucid.trace(loss_fn(op, attrs, cot), *arrays)
    gg = lucid.ir.verify(lucid.ir.grad_graph(graph, wrt=list(positions)))
    outs = lucid.ir.interpret(gg, *arrays)
    return list(outs[1:])


def traced_grad_fn_vjp(op, arrays, attrs, positions, cot):
    """The same gradients from tracing `lucid.grad(f)` and interpreting the graph."""
    gfn = lucid.grad(loss_fn(op, attrs, cot), argnums=tuple(positions))
    outs = lucid.ir.interpret(lucid.ir.verify(lucid.trace(gfn, *arrays)), *arrays)
    return list(outs)


def tolerances(op, arrays, attrs):
    """(eps, rtol, atol) for a finite-difference check: looser when the op computes in
    float32 (e.g. `cast` to float32), where float64 steps of 1e-6 would drown in rounding."""
    ref = reference(op, arrays, attrs)
    if ref.dtype.kind == "f" and ref.dtype.itemsize < 8:
        return 1e-3, 1e-3, 1e-3
    scale = max(1.0, float(np.max(np.abs(ref.astype(np.float64)), initial=0.0)))
    return EPS, 1e-5, 1e-7 * scale * 10
