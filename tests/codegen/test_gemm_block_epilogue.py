"""The gemm's block epilogue (gemm.BlockEpilogue): the callback sees every element of C
exactly once, after its K reduction is complete, on every path of the driver."""
import ctypes
import threading

import numpy as np
import pytest

from lucid.codegen import gemm

TILE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64)


SHAPES = [  # (M, N, K): the paths of the driver
    (4, 300, 50),       # M <= 6: rows streamed, no packing
    (64, 49, 4608),     # whole mode, 6x1 edge column, many K blocks
    (70, 3136, 64),     # whole mode, wide: split over column panels
    (300, 196, 300),    # whole mode, split over rows
    (50, 4100, 300),    # B too big to pack whole: one block per K step, two column blocks
    (13, 9, 0),         # K = 0: C = 0, still one pass
]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_block_callback_covers_c_once_after_the_reduction(shape, threads):
    m, n, k = shape
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    out = np.empty((m, n), np.float32)
    seen = np.zeros((m, n), np.int32)
    doubled = np.empty((m, n), np.float32)
    lock = threading.Lock()

    def on_block(ctx, r0, r1, c0, c1):
        assert ctx == 12345
        with lock:
            seen[r0:r1, c0:c1] += 1
            doubled[r0:r1, c0:c1] = 2 * out[r0:r1, c0:c1]  # the block is final here

    cb = TILE(on_block)
    gemm.matmul(a, b, epilogue=gemm.BLOCK, args=(ctypes.cast(cb, ctypes.c_void_p).value, 12345), out=out)
    assert (seen == 1).all(), np.argwhere(seen != 1)[:5]
    ref = a.astype(np.float64) @ b.astype(np.float64)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-3 * np.sqrt(max(k, 1)))
    np.testing.assert_array_equal(doubled, 2 * out)


def test_null_callback_is_a_plain_gemm(threads):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((37, 123)).astype(np.float32)
    b = rng.standard_normal((123, 49)).astype(np.float32)
    got = gemm.matmul(a, b, epilogue=gemm.BLOCK, args=(None, None))
    np.testing.assert_allclose(got, a.astype(np.float64) @ b, rtol=1e-4, atol=1e-3)
