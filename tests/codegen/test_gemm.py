"""The packed, register-blocked float32 gemm (lucid/codegen/gemm.py) against numpy."""
import threading

import numpy as np
import pytest

from lucid.codegen import gemm
from lucid.codegen.llvm import asm

EPS32 = np.finfo(np.float32).eps


def _close(got, a, b, extra=None):
    """float32 accumulation error bound: a few ulps per term of the K-long dot products."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    ref = a64 @ b64 if extra is None else extra(a64 @ b64)
    k = a.shape[-1]
    bound = 4 * (k + 2) * EPS32 * (np.abs(a64) @ np.abs(b64) + np.abs(ref)) + 1e-30
    err = np.abs(got.astype(np.float64) - ref)
    assert got.dtype == np.float32 and got.shape == ref.shape
    assert np.all(err <= bound), f"max err {err.max()} (bound there {bound.flat[err.argmax()]})"


def _mats(rng, m, n, k):
    return (rng.standard_normal((m, k)).astype(np.float32), rng.standard_normal((k, n)).astype(np.float32))


EDGE_SHAPES = [(1, 1, 1), (6, 16, 1), (5, 513, 7), (7, 17, 5), (12, 32, 256), (13, 33, 257),
               (145, 20, 3), (2000, 3, 5), (3, 2000, 5), (4, 5, 3000), (1, 700, 40), (300, 1, 300),
               (150, 4100, 9)]


@pytest.mark.parametrize("shape", EDGE_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_shapes(rng, threads, shape):
    a, b = _mats(rng, *shape)
    _close(gemm.matmul(a, b), a, b)


# K blocks (KC = 256) with a short last one, rows past a 6-row panel and an MC block,
# column panels of 16, 8 and 1, whole-B and per-block modes (N > NC)
PACKED_SHAPES = [(1, 1, 1), (5, 513, 7), (6, 16, 256), (13, 33, 257), (150, 49, 1152), (64, 3136, 576),
                 (2048, 49, 512), (7, 4100, 300)]


@pytest.mark.parametrize("packed", [(True, False), (False, True), (True, True)], ids=["A", "B", "AB"])
@pytest.mark.parametrize("shape", PACKED_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_prepacked_operands(rng, threads, shape, packed):
    """The packed entries read A in pack_a's layout (a constant weight packed once) and B in
    pack_b's (a convolution's patches), and give the same product and epilogue as the
    matrix entry: few rows (no direct path) and B wider than one NC block included."""
    a, b = _mats(rng, *shape)
    bias = rng.standard_normal(shape[1]).astype(np.float32)
    got = gemm.matmul(a, b, bias, gemm.BIAS_RELU, prepack_a=packed[0], prepack_b=packed[1])
    _close(got, a, b, lambda y: np.maximum(y + bias, 0))
    np.testing.assert_allclose(got, gemm.matmul(a, b, bias, gemm.BIAS_RELU), rtol=1e-5, atol=1e-5)


def test_pack_a_layout(rng):
    """pack_a's layout, element by element: block pc at pc*Mp, panel q, step k, row i."""
    m, k = 8, 300
    a = rng.standard_normal((m, k)).astype(np.float32)
    ap = gemm.pack_a(a)
    mp = 12
    assert ap.shape == (mp * k + gemm.VW,) == (gemm.pack_a_floats(m, k),)
    for pc, kc in ((0, 256), (256, 44)):
        for q in range(2):
            for kk in (0, 5, kc - 1):
                for i in range(6):
                    want = a[6 * q + i, pc + kk] if 6 * q + i < m else 0.0
                    assert ap[pc * mp + q * 6 * kc + kk * 6 + i] == want
    assert not ap[mp * k:].any()
    with pytest.raises(gemm.ShapeError, match="pack_a"):
        gemm.pack_a(np.zeros((2, 3, 4), np.float32))


def test_pack_b_layout(rng):
    """pack_b's layout, element by element: block pc at pc*Np, panel p, step k, column j."""
    k, n = 300, 20
    b = rng.standard_normal((k, n)).astype(np.float32)
    bp = gemm.pack_b(b)
    npad = 32
    assert bp.shape == (k * npad,)
    for pc, kc in ((0, 256), (256, 44)):
        for p in range(2):
            for kk in (0, 7, kc - 1):
                for j in range(16):
                    want = b[pc + kk, 16 * p + j] if 16 * p + j < n else 0.0
                    assert bp[pc * npad + p * 16 * kc + kk * 16 + j] == want
    with pytest.raises(gemm.ShapeError, match="pack_b"):
        gemm.pack_b(np.zeros(3, np.float32))


def test_few_rows_many_columns(rng, threads):
    """M <= 6 streams B row by row; column chunks with vector tails, K with remainders.
    (Products under PARALLEL_MIN_FLOPS run in one thread; (3001, 200) is above it.)"""
    for m in range(1, 8):
        for n, k in [(1100, 37), (7, 9), (515, 1), (3001, 200)]:
            a, b = _mats(rng, m, n, k)
            _close(gemm.matmul(a, b), a, b)


def test_random_small_shapes(rng, threads):
    for _ in range(40):
        m, n, k = rng.integers(1, 38, size=3)
        a, b = _mats(rng, m, n, k)
        _close(gemm.matmul(a, b), a, b)


def test_empty_dimensions(rng):
    a, b = _mats(rng, 4, 9, 0)
    assert np.array_equal(gemm.matmul(a, b), np.zeros((4, 9), np.float32))
    bias = rng.standard_normal(9).astype(np.float32)
    np.testing.assert_array_equal(gemm.matmul(a, b, bias, gemm.BIAS), np.broadcast_to(bias, (4, 9)))
    np.testing.assert_array_equal(gemm.matmul(a, b, bias, gemm.BIAS_RELU),
                                  np.broadcast_to(np.maximum(bias, 0), (4, 9)))
    assert gemm.matmul(*_mats(rng, 0, 5, 3)).shape == (0, 5)
    assert gemm.matmul(*_mats(rng, 5, 0, 3)).shape == (5, 0)


@pytest.mark.parametrize("m", [3, 37], ids=["rows-path", "packed-path"])
def test_strided_views(rng, threads, m):
    """Leading dimensions larger than the rows: A, B and C are column slices of wider arrays."""
    n, k = 45, 300
    big_a = rng.standard_normal((m, k + 11)).astype(np.float32)
    big_b = rng.standard_normal((k, n + 7)).astype(np.float32)
    big_c = np.full((m, n + 20), 7.0, np.float32)
    a, b, c = big_a[:, 5:5 + k], big_b[:, 3:3 + n], big_c[:, 9:9 + n]
    out = gemm.matmul(a, b, out=c)
    assert out is c
    _close(c, np.ascontiguousarray(a), np.ascontiguousarray(b))
    assert np.all(big_c[:, :9] == 7.0) and np.all(big_c[:, 9 + n:] == 7.0)
    # non-unit column strides are copied first
    at = rng.standard_normal((k, m)).astype(np.float32).T
    _close(gemm.matmul(at, b), np.ascontiguousarray(at), np.ascontiguousarray(b))


@pytest.mark.parametrize("trans_a", [False, True], ids=["A", "At"])
@pytest.mark.parametrize("trans_b", [False, True], ids=["B", "Bt"])
# (20, 700, 300) and (40, 333, 600) split C by columns, each claim packing its own B
# panels (a 13-column edge panel, K blocks with a short last one)
@pytest.mark.parametrize("shape", [(1, 33, 20), (5, 40, 300), (37, 45, 300), (70, 20, 9), (13, 1, 17),
                                   (20, 700, 300), (40, 333, 600)],
                         ids=lambda s: "x".join(map(str, s)))
def test_transposed_operands(rng, threads, trans_a, trans_b, shape):
    """Transposed views (x @ w.T, x.T @ g) run in place through the trans_a / trans_b kernels."""
    m, n, k = shape
    a = rng.standard_normal((k, m)).astype(np.float32).T if trans_a else rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((n, k)).astype(np.float32).T if trans_b else rng.standard_normal((k, n)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    _close(gemm.matmul(a, b, bias, gemm.BIAS), np.ascontiguousarray(a), np.ascontiguousarray(b),
           lambda y: y + bias)
    assert gemm.compiled(gemm.BIAS, True, trans_a, trans_b)  # the flavour was compiled once


def test_transposed_batched_and_out(rng):
    a = rng.standard_normal((3, 40, 25)).astype(np.float32).transpose(0, 2, 1)  # (3, 25, 40)
    b = rng.standard_normal((30, 40)).astype(np.float32).T                      # (40, 30)
    out = np.empty((3, 30, 25), np.float32).transpose(0, 2, 1)                  # not row-major
    got = gemm.matmul(a, b, out=out)
    assert got is out
    np.testing.assert_allclose(out, np.matmul(a.astype(np.float64), b), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shape", [(50, 70, 600), (6, 16, 8), (7, 21, 300), (3, 1000, 20)],
                         ids=lambda s: "x".join(map(str, s)))
def test_builtin_epilogues(rng, threads, shape):
    m, n, k = shape
    a, b = _mats(rng, m, n, k)
    bias = rng.standard_normal(n).astype(np.float32)
    res = rng.standard_normal((m, n + 3)).astype(np.float32)
    _close(gemm.matmul(a, b, epilogue=gemm.NONE), a, b)
    _close(gemm.matmul(a, b, bias, gemm.BIAS), a, b, lambda y: y + bias)
    _close(gemm.matmul(a, b, epilogue=gemm.RELU), a, b, lambda y: np.maximum(y, 0))
    a_nan = a.copy()
    a_nan[0, 0] = np.nan
    assert np.isnan(gemm.matmul(a_nan, b, epilogue=gemm.RELU)[0]).all()  # numpy's maximum keeps NaN
    _close(gemm.matmul(a, b, bias, gemm.BIAS_RELU), a, b, lambda y: np.maximum(y + bias, 0))
    _close(gemm.matmul(a, b, epilogue=gemm.RESIDUAL, args=(res, res.shape[1])), a, b,
           lambda y: y + res[:, :n])


_fused = gemm.chain(gemm.BIAS, gemm.RESIDUAL, gemm.RELU)


def test_chained_epilogue(rng, threads):
    a, b = _mats(rng, 40, 50, 270)
    bias = rng.standard_normal(50).astype(np.float32)
    res = rng.standard_normal((40, 50)).astype(np.float32)
    _close(gemm.matmul(a, b, bias, _fused, args=(res, 50)), a, b, lambda y: np.maximum(y + bias + res, 0))


def _position(c, v, row, col):
    """2 v + 1000 row + col: not idempotent, and shows which element got which row and col."""
    b = c.b
    colv = b.sitofp(c.columns(col), c.type)
    rowv = c.splat(b.sitofp(row, gemm.F32))
    return b.fadd(b.fadd(b.fmul(v, c.const(2.0)), b.fmul(rowv, c.const(1000.0))), colv)


_POSITION = gemm.Epilogue("position", _position)


@pytest.mark.parametrize("m", [5, 20], ids=["rows-path", "packed-path"])
@pytest.mark.parametrize("k", [0, 1, 255, 256, 257, 700])
def test_custom_epilogue_once_with_row_and_col(rng, threads, k, m):
    """The epilogue runs once per element, after the whole K reduction (K spans several
    KC blocks here), and sees the element's own row and column, in full and edge tiles."""
    n = 37
    a, b = _mats(rng, m, n, k)
    rows, cols = np.meshgrid(np.arange(m), np.arange(n), indexing="ij")
    _close(gemm.matmul(a, b, epilogue=_POSITION), a, b, lambda y: 2 * y + 1000 * rows + cols)


_ABS = gemm.elementwise("abs", lambda c, v: c.b.call(c.intrinsic("llvm.fabs"), [v]))
_TWICE_PRELUDE = """define internal float @twice_f(float %x) alwaysinline {
  %y = fmul float %x, 2.0
  ret float %y
}
define internal <8 x float> @twice_v(<8 x float> %x) alwaysinline {
  %y = fmul <8 x float> %x, <float 2.0, float 2.0, float 2.0, float 2.0, float 2.0, float 2.0, float 2.0, float 2.0>
  ret <8 x float> %y
}
"""
_TWICE = gemm.elementwise(
    "twice", lambda c, v: c.b.call(c.function("twice_f" if c.width == 1 else "twice_v"), [v]),
    prelude=_TWICE_PRELUDE)


_ABS_TWICE = gemm.chain(_ABS, _TWICE)


def test_elementwise_epilogues_with_intrinsics_and_prelude(rng):
    for m in (4, 19):
        a, b = _mats(rng, m, 35, 40)
        _close(gemm.matmul(a, b, epilogue=_ABS_TWICE), a, b, lambda y: 2 * np.abs(y))
    text = gemm.gemm_ir("prelude_check", _TWICE)
    assert "declare float @twice_f" not in text and "define internal float @twice_f" in text


@pytest.mark.parametrize("a_shape,b_shape", [((3, 20, 30), (30, 40)), ((20, 30), (4, 30, 8)),
                                             ((2, 3, 7, 9), (2, 3, 9, 5)), ((2, 1, 5, 6), (3, 6, 4)),
                                             ((3, 130, 120), (3, 120, 110))])
def test_batched(rng, threads, a_shape, b_shape):
    a = rng.standard_normal(a_shape).astype(np.float32)
    b = rng.standard_normal(b_shape).astype(np.float32)
    got = gemm.matmul(a, b)
    want = np.matmul(a.astype(np.float64), b.astype(np.float64))
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.sqrt(a.shape[-1]))


def test_batched_bias_shared(rng, threads):
    a = rng.standard_normal((5, 9, 12)).astype(np.float32)
    b = rng.standard_normal((5, 12, 7)).astype(np.float32)
    bias = rng.standard_normal(7).astype(np.float32)
    np.testing.assert_allclose(gemm.matmul(a, b, bias, gemm.BIAS_RELU), np.maximum(a @ b + bias, 0),
                               rtol=1e-5, atol=1e-5)


def test_serial_module_needs_no_pool(rng):
    """parallel=False declares no runtime symbol and computes the same result."""
    text = gemm.gemm_ir("serial_check", parallel=False)
    assert "lucid_parallel_for" not in text and "lucid_get_num_threads" not in text
    a, b = _mats(rng, 70, 90, 300)
    _close(gemm.matmul(a, b, parallel=False), a, b)


def test_concurrent_callers(rng):
    """Two host threads in the same kernel: one gets the cached pack buffer, one its own."""
    pairs = [_mats(rng, 120, 300, 260) for _ in range(2)]
    results, errors = [None, None], []

    def work(i):
        try:
            for _ in range(15):
                results[i] = gemm.matmul(*pairs[i])
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors
    for (a, b), got in zip(pairs, results):
        _close(got, a, b)


def test_micro_kernel_uses_ymm_fma():
    text = asm(gemm.gemm_ir("asm_check"))
    start = text.index('"asm_check.kernel":') if '"asm_check.kernel":' in text else text.index("asm_check.kernel:")
    body = text[start:text.index(".Lfunc_end", start)]
    fmas = [ln for ln in body.splitlines() if "vfmadd" in ln and "%ymm" in ln]
    assert len(fmas) >= 2 * gemm.MR * gemm.UNROLL


def test_bad_arguments(rng):
    from lucid.errors import CompileError, DTypeError, ShapeError

    a, b = _mats(rng, 3, 4, 5)
    with pytest.raises(ShapeError, match="not aligned"):
        gemm.matmul(a, a)
    with pytest.raises(DTypeError, match="float32"):
        gemm.matmul(a.astype(np.float64), b)
    with pytest.raises(ShapeError, match="bias"):
        gemm.matmul(a, b, np.zeros(3, np.float32), gemm.BIAS)
    with pytest.raises(CompileError, match="two epilogues"):
        gemm.chain(gemm.RESIDUAL, gemm.RESIDUAL)
