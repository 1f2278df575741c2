"""Differential fuzzing: random graphs compiled to native code match the interpreter.

Hypothesis builds random lucid programs (tests/codegen/_graphgen.py: elementwise chains,
broadcasting, comparisons and where, casts, reductions, argmax, injective ops, take and
gather, matmul and conv with epilogues, pooling, cumsum, softmax, layer norm; one in ten
big enough for the parallel path), biased towards what operator fusion must get right.
Each example traces them, compiles the graph at `pipeline(2)` (optimised, fused,
memory-planned) and at `pipeline(0)`, and checks both native programs against
`lucid.ir.interpret` of the traced graph: floats within a tolerance that grows with the
program's own error estimate, ints and bools exactly. The fused program also runs a
second time and must give the same bits, and neither may write to its inputs or params.
A second test differentiates seeded losses of such programs (`grad_graph`, inputs and
params: the backward ops scatter_add, take_add, conv2d_weight_grad, pooling grads, ...).

Several independent random programs are traced into ONE graph per example
(LUCID_FUZZ_PER_GRAPH, default 3), so one LLVM compilation checks several programs and
the memory plan packs their buffers into one arena. LUCID_FUZZ_EXAMPLES counts programs:
the default 500 runs ceil(500 / 3) = 167 hypothesis examples; the gradient test runs a
tenth as many programs (LUCID_FUZZ_GRAD_EXAMPLES). A long run (benchmarks/fuzz_long.py):

    LUCID_FUZZ_EXAMPLES=10000 python -m pytest tests/codegen/test_fuzz.py -q

Runs are derandomized (the same examples every time) unless LUCID_FUZZ_SEED is set;
LUCID_FUZZ_SHRINK=0 skips minimising a failure (every shrink step compiles again).
"""
import math
import os
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, note, seed, settings
from hypothesis.control import current_build_context

import lucid
from lucid.codegen.program import NativeProgram
from lucid.ir.passes import PassManager, pipeline

sys.path.insert(0, os.path.dirname(__file__))
import _graphgen as G  # noqa: E402  (the generator lives beside this test)

PROGRAMS = int(os.environ.get("LUCID_FUZZ_EXAMPLES", "500"))
PER_GRAPH = max(1, int(os.environ.get("LUCID_FUZZ_PER_GRAPH", "3")))
SEED = os.environ.get("LUCID_FUZZ_SEED")
GRAD_PROGRAMS = int(os.environ.get("LUCID_FUZZ_GRAD_EXAMPLES", str(max(1, PROGRAMS // 10))))
GRAD_RTOL = 1e-3
SHRINK = os.environ.get("LUCID_FUZZ_SHRINK", "1") != "0"  # 0: report the first failure unminimised


def _settings(programs):
    def deco(fn):
        fn = settings(max_examples=math.ceil(programs / PER_GRAPH), deadline=None, database=None,
                      derandomize=SEED is None, print_blob=True,
                      phases=[Phase.explicit, Phase.generate] + [Phase.shrink] * SHRINK,
                      suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                             HealthCheck.filter_too_much, HealthCheck.large_base_example])(fn)
        return seed(int(SEED))(fn) if SEED is not None else fn

    return deco


def _flat(out):
    return list(out) if isinstance(out, (tuple, list)) else [out]


def _compare(batch, expected, got, what):
    assert len(got) == len(expected), f"{what}: {len(got)} outputs, expected {len(expected)}"
    for k, (e, g) in enumerate(zip(expected, got)):
        e = np.asarray(e)
        where = f"{what}, output {k}"
        assert g.shape == e.shape and g.dtype == e.dtype, \
            f"{where}: got {g.dtype}{list(g.shape)}, expected {e.dtype}{list(e.shape)}"
        if e.dtype.kind == "f":
            rtol, atol = batch.tolerance(k)
            np.testing.assert_allclose(g, e, rtol=rtol, atol=atol, err_msg=where)
        else:
            np.testing.assert_array_equal(g, e, err_msg=where)


def check_batch(batch):
    """Trace `batch`, compile it at levels 2 and 0 and compare with the interpreter."""
    inputs = [a.copy() for a in batch.inputs]
    graph = lucid.trace(batch.fn, *[lucid.Tensor(a) for a in inputs], name="fuzz")
    note(f"traced graph:\n{graph}")
    expected = _flat(lucid.ir.interpret(graph, *inputs))
    for level in (2, 0):
        opt = PassManager(pipeline(level)).run(graph)
        if level == 2:
            note(f"optimised graph:\n{opt}")
            for name, fn in opt.functions.items():
                note(f"kernel {name}:\n{fn}")
        params = {k: v.copy() for k, v in opt.params.items()}
        prog = NativeProgram(opt, name=f"fuzz_O{level}", use_cache=False)
        got = prog.run(inputs, params)
        _compare(batch, expected, got, f"native O{level}")
        if level == 2:
            again = prog.run(inputs, params)
            for k, (a, b) in enumerate(zip(got, again)):
                assert np.array_equal(a, b, equal_nan=True), f"O2 output {k} changed on a second run"
        for k, (a, b) in enumerate(zip(inputs, batch.inputs)):
            assert np.array_equal(a, b), f"native O{level} wrote to input {k}"
        for name, v in params.items():
            assert np.array_equal(v, opt.params[name]), f"native O{level} wrote to param {name}"


def check_grad_batch(batch):
    """The batch's seeded loss, differentiated (inputs and params), native vs interpreter."""
    inputs = [a.copy() for a in batch.inputs]
    forward = lucid.trace(batch.loss, *[lucid.Tensor(a) for a in inputs], name="fuzz_loss")
    wrt = [k for k, a in enumerate(inputs) if a.dtype == np.float32]
    graph = lucid.ir.grad_graph(forward, wrt=wrt, params=True)
    note(f"gradient graph:\n{graph}")
    expected = _flat(lucid.ir.interpret(graph, *inputs))
    for level in (2, 0):
        opt = PassManager(pipeline(level)).run(graph)
        got = NativeProgram(opt, name=f"fuzz_grad_O{level}", use_cache=False).run(inputs, opt.params)
        assert len(got) == len(expected)
        for k, (e, g) in enumerate(zip(expected, got)):
            e = np.asarray(e)
            assert g.shape == e.shape and g.dtype == e.dtype, f"O{level} gradient output {k}: {g.shape} {g.dtype}"
            atol = batch.loss_tolerance() if k == 0 else GRAD_RTOL * max(1e-2, float(np.max(np.abs(e), initial=0)))
            np.testing.assert_allclose(g, e, rtol=GRAD_RTOL, atol=atol,
                                       err_msg=f"native O{level}, gradient output {k}")


def _explain_failure(batch, check):
    final = current_build_context().is_final  # the minimised example's last replay
    if final and len(batch.programs) > 1:  # say which batched programs fail on their own
        for k, p in enumerate(batch.programs):
            try:
                check(G.Batch([p]))
            except Exception as e:  # noqa: BLE001  (a report, the original error is raised)
                note(f"program {k} fails alone: {type(e).__name__}: {str(e)[:2000]}")


@_settings(GRAD_PROGRAMS)
@given(batch=G.batches(PER_GRAPH, grad=True))
def test_native_gradients_match_interpreter(batch):
    try:
        check_grad_batch(batch)
    except Exception:
        _explain_failure(batch, check_grad_batch)
        raise


@_settings(PROGRAMS)
@given(batch=G.batches(PER_GRAPH))
def test_native_matches_interpreter(batch):
    try:
        check_batch(batch)
    except Exception:
        _explain_failure(batch, check_batch)
        raise


def test_generator_covers_the_op_families():
    """The generator reaches every family it promises (a guard against silent skips)."""
    from hypothesis import strategies as st

    seen = set()

    @settings(max_examples=300, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def collect(data):
        p = data.draw(G.programs())
        seen.update(step[0] for step in p.steps)

    collect()
    want = {"neg", "add", "mul", "div_g", "pow_g", "compare", "where_c", "cast", "reduce", "argext",
            "cumsum", "reshape", "transpose", "index", "flip", "pad", "take_c", "gather_c", "linear",
            "matmul_t", "conv", "max_pool", "avg_pool", "layer_norm", "floor"}
    if G.HAVE_MATH:
        want |= {"exp_g", "log_g", "tanh", "softmax", "log_softmax"}
    missing = want - seen
    assert not missing, f"the generator never produced {sorted(missing)}"


@pytest.mark.parametrize("make", [
    lambda x: lucid.sum(x > 0.0),
    lambda x: lucid.max(x > 0.0, axis=0),
    lambda x: lucid.min(x > 0.0, axis=-1),
    lambda x: lucid.argmax(x > 0.5, axis=1),
    lambda x: lucid.argmin(x > 0.5, axis=0),
    lambda x: lucid.cumsum(x > 0.0, axis=1),
    lambda x: lucid.maximum(x > 0.0, x < 1.0),
    lambda x: lucid.less(x > 0.0, x < 1.0),
    lambda x: lucid.add(x > 0.0, x < 1.0),
], ids=["sum", "max", "min", "argmax", "argmin", "cumsum", "maximum", "less", "add"])
def test_bool_paths(make):
    """Regressions found by the fuzzer: bool (i1) values must compare unsigned and add as `or`."""
    x = np.array([[-1.0, 2.0, 3.0, 0.5], [0.25, -2.0, 1.5, 0.0], [4.0, 1.0, -0.5, 0.75]], np.float32)
    graph = lucid.trace(make, lucid.Tensor(x))
    expected = _flat(lucid.ir.interpret(graph, x))
    for level in (0, 2):
        opt = PassManager(pipeline(level)).run(graph)
        got = NativeProgram(opt, use_cache=False).run([x], opt.params)
        for e, g in zip(expected, got):
            np.testing.assert_array_equal(g, e)


_W = np.linspace(-1.0, 1.0, 20, dtype=np.float32).reshape(4, 5)
_WC = np.linspace(-1.0, 1.0, 54, dtype=np.float32).reshape(3, 2, 3, 3)


@pytest.mark.parametrize("make, shape", [
    (lambda x: lucid.cast(lucid.matmul(x, lucid.Tensor(_W)), lucid.int32), (3, 4)),
    (lambda x: lucid.matmul(x, lucid.Tensor(_W)) > 0.0, (3, 4)),
    (lambda x: lucid.cast(lucid.nn.functional.conv2d(x, lucid.Tensor(_WC), padding=1), lucid.float64),
     (1, 2, 5, 5)),
], ids=["matmul-cast-i32", "matmul-gt", "conv-cast-f64"])
def test_gemm_anchor_with_a_dtype_changing_epilogue(make, shape):
    """Found by the fuzzer: a matmul / conv whose fused epilogue changes the dtype (the gemm
    wrote float32 into the int32 / bool / float64 output buffer)."""
    x = np.linspace(-3.0, 3.0, int(np.prod(shape)), dtype=np.float32).reshape(shape)
    graph = lucid.trace(make, lucid.Tensor(x))
    expected = _flat(lucid.ir.interpret(graph, x))
    opt = PassManager(pipeline(2)).run(graph)
    (got,) = NativeProgram(opt, use_cache=False).run([x], opt.params)
    assert got.dtype == expected[0].dtype
    np.testing.assert_allclose(got, expected[0], rtol=1e-5, atol=1e-5)
