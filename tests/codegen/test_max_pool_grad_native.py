"""Native max_pool2d_grad against its numpy reference, with ties (the first maximum of a
window takes the gradient), padding, dilation, -inf and NaN: the window-loop kernel for
windows that tile the input (lucid.codegen.lowering_pool), including sizes that are not a
multiple of the stride (uncovered rows and columns get zero) and float64, and the
elemental rule for every other geometry."""
import numpy as np
import pytest

import lucid
from lucid.ops.registry import OPS, apply

CASES = [  # kernel, stride, padding, dilation
    ((2, 2), (2, 2), (0, 0), (1, 1)),   # tiling windows: the window-loop kernel
    ((2, 3), (2, 3), (0, 0), (1, 1)),   # tiling, not square
    ((2, 3), (3, 3), (1, 1), (1, 1)),   # gaps between windows, padding
    ((2, 2), (4, 3), (0, 1), (2, 1)),   # dilated, still non-overlapping
    ((3, 3), (2, 2), (1, 1), (1, 1)),   # overlapping: every tap's window
    ((3, 2), (1, 2), (1, 0), (1, 1)),
]


def _tiled(kernel, stride, padding, dilation):
    return kernel == stride and padding == (0, 0) and dilation == (1, 1)


def _case(kernel, stride, padding, dilation, values, shape=(2, 3, 11, 10), dtype=np.float32):
    rng = np.random.default_rng(7)
    x = rng.integers(-2, 3, shape).astype(dtype)  # many ties
    if values == "special":
        x = rng.standard_normal(shape).astype(dtype)
        x.flat[rng.choice(x.size, 12, replace=False)] = -np.inf
        x.flat[rng.choice(x.size, 5, replace=False)] = np.nan
    attrs = dict(kernel=kernel, stride=stride, padding=padding, dilation=dilation)
    gy = rng.standard_normal(OPS["max_pool2d"].reference(x, **attrs).shape).astype(dtype)
    return x, gy, attrs


@pytest.mark.parametrize("kernel, stride, padding, dilation", CASES)
@pytest.mark.parametrize("values", ["ties", "special"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_native_max_pool2d_grad_equals_reference(kernel, stride, padding, dilation, values, dtype):
    x, gy, attrs = _case(kernel, stride, padding, dilation, values, dtype=dtype)
    f = lucid.compile(lambda a, g: apply("max_pool2d_grad", a, g, **attrs))
    got = f(lucid.tensor(x), lucid.tensor(gy)).numpy()
    np.testing.assert_array_equal(got, OPS["max_pool2d_grad"].reference(x, gy, **attrs))


def test_only_tiling_windows_take_the_window_loop(module_text):
    for kernel, stride, padding, dilation in CASES:
        x, gy, attrs = _case(kernel, stride, padding, dilation, "ties")
        text = module_text(lambda a, g: apply("max_pool2d_grad", a, g, **attrs), x, gy)
        assert ("wrow" in text) == _tiled(kernel, stride, padding, dilation), attrs


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
