"""Every op in the registry, compiled alone to native code, matches the interpreter —
forward, and backward through autodiff. Generated from the registry's samples."""
import numpy as np
import pytest

import lucid
from lucid.codegen.lowering import has_lowering
from lucid.codegen.program import NativeProgram
from lucid.ir.passes import PassManager, pipeline
from lucid.ops.registry import OPS


def _samples():
    out = []
    for name, op in sorted(OPS.items()):
        rng = np.random.default_rng(abs(hash(name)) % (2 ** 32))
        for k, s in enumerate(op.samples(rng)):
            out.append(pytest.param(op, s, id=f"{name}-{k}"))
    return out


SAMPLES = _samples()


def test_every_op_has_a_native_lowering():
    missing = [name for name in OPS if not has_lowering(name)]
    assert not missing, f"ops without a native lowering: {missing}"


def _f32(a):
    a = np.asarray(a)
    return a.astype(np.float32) if a.dtype == np.float64 else a


def _native(graph, arrays):
    prog = NativeProgram(PassManager(pipeline(0)).run(graph))
    return prog.run(arrays, graph.params)


def _tolerance(op):
    return dict(rtol=2e-5, atol=2e-6) if op.name not in ("pow", "erf") else dict(rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("op, sample", SAMPLES)
def test_forward_matches_interpreter(op, sample):
    arrays = [_f32(a) for a in sample.inputs]
    g = lucid.trace(lambda *xs: op(*xs, **sample.attrs), *[lucid.Tensor(a) for a in arrays])
    expected = lucid.ir.interpret(g, *arrays)
    (got,) = _native(g, arrays)
    assert got.shape == expected.shape and got.dtype == expected.dtype
    if got.dtype.kind == "f":
        np.testing.assert_allclose(got, expected, **_tolerance(op))
    else:
        np.testing.assert_array_equal(got, expected)


GRAD_SAMPLES = [p for p in SAMPLES if p.values[0].differentiable and p.values[1].grad]


@pytest.mark.parametrize("op, sample", GRAD_SAMPLES)
def test_backward_matches_interpreter(op, sample, rng):
    arrays = [_f32(a) for a in sample.inputs]
    skip = set(sample.nondiff) | set(op.nondiff)
    wrt = [k for k, a in enumerate(arrays) if a.dtype.kind == "f" and k not in skip]
    out_shape = op(*[lucid.Tensor(a) for a in arrays], **sample.attrs).shape
    cot = rng.normal(size=out_shape).astype(np.float32)

    def loss(*xs):
        return (op(*xs, **sample.attrs) * lucid.Tensor(cot)).sum()

    g = lucid.ir.grad_graph(lucid.trace(loss, *[lucid.Tensor(a) for a in arrays]), wrt=wrt)
    expected = lucid.ir.interpret(g, *arrays)
    got = _native(g, arrays)
    for e, n in zip(expected, got):
        np.testing.assert_allclose(n, e, rtol=1e-4, atol=1e-5)
