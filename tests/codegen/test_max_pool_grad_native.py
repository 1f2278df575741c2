"""Native max_pool2d_grad against its numpy reference: the direct path for windows that
do not overlap (extent <= stride) and the general path, with ties (the first maximum of a
window takes the gradient), padding, dilation, -inf and NaN."""
import numpy as np
import pytest

import lucid
from lucid.codegen.program import NativeProgram
from lucid.ir.passes import PassManager, pipeline
from lucid.ops.registry import OPS

CASES = [  # kernel, stride, padding, dilation
    ((2, 2), (2, 2), (0, 0), (1, 1)),   # non-overlapping: the direct path
    ((2, 3), (3, 3), (1, 1), (1, 1)),   # gaps between windows, padding
    ((2, 2), (4, 3), (0, 1), (2, 1)),   # dilated, still non-overlapping
    ((3, 3), (2, 2), (1, 1), (1, 1)),   # overlapping: every tap's window
    ((3, 2), (1, 2), (1, 0), (1, 1)),
]


@pytest.mark.parametrize("kernel, stride, padding, dilation", CASES)
@pytest.mark.parametrize("values", ["ties", "special"])
def test_native_max_pool2d_grad_equals_reference(kernel, stride, padding, dilation, values):
    rng = np.random.default_rng(7)
    x = rng.integers(-2, 3, (2, 3, 11, 10)).astype(np.float32)  # many ties
    if values == "special":
        x = rng.standard_normal(x.shape).astype(np.float32)
        x.flat[rng.choice(x.size, 12, replace=False)] = -np.inf
        x.flat[rng.choice(x.size, 5, replace=False)] = np.nan
    attrs = dict(kernel=kernel, stride=stride, padding=padding, dilation=dilation)
    pooled = OPS["max_pool2d"].reference(x, **attrs)
    gy = rng.standard_normal(pooled.shape).astype(np.float32)
    want = OPS["max_pool2d_grad"].reference(x, gy, **attrs)

    def f(a, g):
        return lucid.ops.registry.apply("max_pool2d_grad", a, g, **attrs)

    graph = lucid.trace(f, lucid.Tensor(x), lucid.Tensor(gy))
    (got,) = NativeProgram(PassManager(pipeline(0)).run(graph), use_cache=False).run([x, gy], graph.params)
    np.testing.assert_array_equal(got, want)
