"""max_pool2d_grad's window-loop kernel (lucid.codegen.lowering_pool) for windows that tile
the input, against the numpy reference: odd sizes (uncovered rows and columns get zero),
ties (the first maximum in row-major window order), NaN and -inf, both float types; and
the geometries it declines keep the elemental rule with the same results."""
import numpy as np
import pytest

import lucid
from lucid.ops.nn import _max_pool2d_grad_ref, max_pool2d_grad


def _grad(x, gy, kernel, stride, padding=(0, 0), dilation=(1, 1)):
    attrs = dict(kernel=kernel, stride=stride, padding=padding, dilation=dilation)
    f = lucid.compile(lambda a, g: max_pool2d_grad(a, g, **attrs))
    got = f(lucid.tensor(x), lucid.tensor(gy)).data
    return got, _max_pool2d_grad_ref(x, gy, **attrs)


def _pooled(h, w, k, s, p=0, d=1):
    return ((h + 2 * p - d * (k - 1) - 1) // s + 1, (w + 2 * p - d * (k - 1) - 1) // s + 1)


@pytest.mark.parametrize("shape,k", [((2, 3, 6, 6), 2), ((1, 2, 7, 9), 2), ((3, 1, 9, 8), 3), ((2, 2, 5, 5), 1),
                                     ((1, 4, 28, 28), 2), ((2, 3, 4, 7), (2, 3))])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tiled_windows_match_the_reference(shape, k, dtype):
    kh, kw = (k, k) if isinstance(k, int) else k
    rng = np.random.default_rng(3)
    x = rng.integers(-3, 4, size=shape).astype(dtype)  # small integers: many ties
    x.flat[::7] = np.nan
    x.flat[3::11] = -np.inf
    ho, wo = _pooled(shape[2], shape[3], kh, kh)[0], _pooled(shape[2], shape[3], kw, kw)[1]
    gy = rng.normal(size=shape[:2] + (ho, wo)).astype(dtype)
    got, want = _grad(x, gy, (kh, kw), (kh, kw))
    np.testing.assert_array_equal(got, want)


def test_the_tiled_kernel_is_the_one_compiled_and_others_are_elemental():
    from lucid.codegen.program import emit_module, output_slots
    from lucid.ir.passes import PassManager
    from lucid.ir.passes.pipelines import pipeline

    rng = np.random.default_rng(4)
    x = rng.normal(size=(2, 3, 8, 8)).astype(np.float32)
    for (k, s, p), tiled in ((((2, 2), (2, 2), (0, 0)), True), (((3, 3), (2, 2), (1, 1)), False),
                             (((2, 2), (3, 3), (0, 0)), False)):
        ho, wo = _pooled(8, 8, k[0], s[0], p[0])
        gy = rng.normal(size=(2, 3, ho, wo)).astype(np.float32)
        attrs = dict(kernel=k, stride=s, padding=p, dilation=(1, 1))

        def fn(a, g, attrs=attrs):
            return max_pool2d_grad(a, g, **attrs)

        graph = PassManager(pipeline(2)).run(lucid.trace(fn, lucid.tensor(x), lucid.tensor(gy)))
        text = emit_module(graph, "m", "lucid_entry_t", graph.meta["memory"], output_slots(graph))[0]
        assert ("wrow" in text) == tiled, (k, s, p)
        got = lucid.compile(fn)(lucid.tensor(x), lucid.tensor(gy)).data
        np.testing.assert_array_equal(got, _max_pool2d_grad_ref(x, gy, **attrs))


def test_a_training_step_through_tiled_pooling_matches_eager():
    import lucid.nn as nn
    import lucid.nn.functional as F

    def run(compiled):
        lucid.random.seed(0)
        conv = nn.Conv2d(1, 4, 3, padding=1)
        opt = lucid.optim.SGD(conv.parameters(), lr=0.1)
        x = lucid.random.randn(2, 1, 9, 9)

        def step(t):
            loss = (F.max_pool2d(F.relu(conv(t)), 2) ** 2).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            return loss

        f = lucid.compile(step) if compiled else step
        return [float(f(x).data) for _ in range(3)], conv.weight.data.copy()

    (l1, w1), (l2, w2) = run(True), run(False)
    np.testing.assert_allclose(l1, l2, rtol=1e-5)
    np.testing.assert_allclose(w1, w2, rtol=1e-5, atol=1e-6)
