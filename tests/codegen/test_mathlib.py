"""lucid.codegen.mathlib: accuracy over the whole float range, special values, vectorisation.

Each function is JIT-compiled inside a loop kernel `void k(T* x, T* y, i64 n)` (through
lucid.codegen.llvm, the process's one engine and O3 pipeline) and run on ~1e6 inputs: random
bit patterns (every binade of both signs, subnormals included), dense grids around the
interesting ranges and the switch points of the approximations. Errors are measured in
ulps of the result type at the exact (float64 / long double) reference value; float32
results in the subnormal range are held to the same bound in units of the smallest
subnormal (that is the ulp there).
"""
import ctypes
import math
import re
import time

import numpy as np
import pytest

from lucid.codegen import mathlib
from lucid.codegen.llvm import asm, jit
from lucid.errors import LucidError

KERNEL = """
define void @{sym}(ptr noalias %x, ptr noalias %y, i64 %n) {{
entry:
  %go = icmp sgt i64 %n, 0
  br i1 %go, label %loop, label %done
loop:
  %i = phi i64 [ 0, %entry ], [ %next, %loop ]
  %px = getelementptr inbounds {t}, ptr %x, i64 %i
  %v = load {t}, ptr %px
  %r = call {t} @lucid_{fn}_{d}({t} %v)
  %py = getelementptr inbounds {t}, ptr %y, i64 %i
  store {t} %r, ptr %py
  %next = add nuw nsw i64 %i, 1
  %end = icmp eq i64 %next, %n
  br i1 %end, label %done, label %loop
done:
  ret void
}}
"""
F32 = ("exp", "log", "tanh", "sigmoid", "erf")
F64 = ("exp", "log", "tanh", "sigmoid", "erf")
ALL = F32 + ("gelu",)  # gelu's accuracy has its own test (cancellation where Phi is small)
_NP = {"f32": np.float32, "f64": np.float64}
_compiled = {}


def kernel_text(fn, d):
    t = "float" if d == "f32" else "double"
    return KERNEL.format(sym=f"test_mathlib_{fn}_{d}", t=t, fn=fn, d=d) + mathlib.math_ir(d, only=[fn])


def run(fn, d, x):
    """y = lucid_<fn>_<d>(x) elementwise, through a JIT-compiled loop."""
    if (fn, d) not in _compiled:
        sym = f"test_mathlib_{fn}_{d}"
        module = jit(kernel_text(fn, d), sym)
        _compiled[fn, d] = (module, module.cfunc(sym, None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64))
    x = np.ascontiguousarray(x, dtype=_NP[d])
    y = np.empty_like(x)
    _compiled[fn, d][1](x.ctypes.data, y.ctypes.data, x.size)
    return y


# ---- references ----------------------------------------------------------------------------
_erf = np.frompyfunc(math.erf, 1, 1)


def _sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1, e) / (1 + e)


def reference(fn, x):
    """The exact function at the (exactly representable) inputs: float64 arithmetic for
    float32 inputs, long double (64-bit mantissa on x86) for float64 exp/log/tanh/sigmoid."""
    wide = np.longdouble if x.dtype == np.float64 else np.float64
    v = x.astype(wide)
    with np.errstate(all="ignore"):
        if fn == "exp":
            return np.exp(v)
        if fn == "log":
            return np.log(v)
        if fn == "tanh":
            return np.tanh(v)
        if fn == "sigmoid":
            return _sigmoid(v)
        if fn == "erf":
            return _erf(x.astype(np.float64)).astype(wide)
    raise AssertionError(fn)


def samples(d, n, rng):
    """Random bit patterns over all finite values of both signs, plus dense grids."""
    if d == "f32":
        a = rng.integers(0, 0x7F800000, n, dtype=np.int64).astype(np.uint32).view(np.float32)
        sub = rng.integers(1, 0x00800000, n // 20, dtype=np.int64).astype(np.uint32).view(np.float32)
    else:
        a = rng.integers(0, 0x7FF0000000000000, n, dtype=np.int64).view(np.float64)
        sub = rng.integers(1, 1 << 52, n // 20, dtype=np.int64).view(np.float64)
    t = _NP[d]
    grids = [np.linspace(-20, 20, n // 4), np.linspace(-1.5, 1.5, n // 8),
             np.linspace(-120, 100, n // 8) if d == "f32" else np.linspace(-760, 720, n // 8),
             np.geomspace(1e-8, 30, n // 8)]
    g = np.concatenate(grids).astype(t)
    return np.concatenate([a, -a, sub, -sub, g, -g])


# ulps allowed (measured maxima are in the report; bounds leave a little margin)
ULPS = {("exp", "f32"): 1.5, ("log", "f32"): 1.5, ("tanh", "f32"): 2, ("sigmoid", "f32"): 3,
        ("erf", "f32"): 6,
        ("exp", "f64"): 2, ("log", "f64"): 2, ("tanh", "f64"): 2, ("sigmoid", "f64"): 3,
        ("erf", "f64"): 2.5}


def ulp_errors(y, ref, d):
    """|y - ref| in ulps of type d at ref (non-finite references must match exactly)."""
    t = _NP[d]
    with np.errstate(all="ignore"):
        r = ref.astype(t)  # rounds (and overflows to inf) like the result type
        special = ~np.isfinite(r)
        same = (np.isnan(r) & np.isnan(y)) | (r == y)
        assert same[special].all(), (
            f"non-finite mismatch: ref {r[special & ~same][:5]} got {y[special & ~same][:5]}")
        ulp = np.spacing(np.abs(r)).astype(ref.dtype)
        err = np.abs(y.astype(ref.dtype) - ref) / ulp
    return np.where(special, 0, err).astype(np.float64)


# ---- accuracy --------------------------------------------------------------------------------
@pytest.mark.parametrize("fn", F32)
def test_float32_accuracy_over_the_whole_range(fn):
    rng = np.random.default_rng(7)
    x = samples("f32", 150_000, rng)
    y = run(fn, "f32", x)
    ref = reference(fn, x)
    err = ulp_errors(y, ref, "f32")
    bound = ULPS[fn, "f32"]
    worst = np.argmax(err - bound)
    assert (err <= bound).all(), (
        f"{fn}_f32: {err[worst]:.2f} ulp at x={x[worst]!r}: got {y[worst]!r}, want {ref[worst]!r}")
    finite = (np.abs(ref) > 1e-30) & (np.abs(ref) < 1e30)
    rel = np.abs(y[finite] - ref[finite]) / np.abs(ref[finite])
    assert rel.max() <= 1e-6, f"{fn}_f32: relative error {rel.max():.2e}"


@pytest.mark.parametrize("fn", F64)
def test_float64_accuracy_over_the_whole_range(fn):
    if np.finfo(np.longdouble).nmant < 63:
        pytest.skip("needs an 80-bit long double for the float64 reference")
    rng = np.random.default_rng(8)
    x = samples("f64", 60_000, rng)
    if fn == "erf":  # reference via math.erf (libm, < 1 ulp): keep the sample small
        x = x[np.abs(x) < 8][::2]
    y = run(fn, "f64", x)
    ref = reference(fn, x)
    err = ulp_errors(y, ref, "f64")
    worst = np.argmax(err)
    assert err.max() <= ULPS[fn, "f64"], (
        f"{fn}_f64: {err[worst]:.2f} ulp at x={x[worst]!r}: got {y[worst]!r}, want {ref[worst]!r}")
    finite = (np.abs(ref) > 1e-300) & (np.abs(ref) < 1e300)
    rel = (np.abs(y[finite] - ref[finite]) / np.abs(ref[finite])).astype(np.float64)
    assert rel.max() <= 1e-15, f"{fn}_f64: relative error {rel.max():.2e}"


# ---- special values ----------------------------------------------------------------------------
inf, nan = np.inf, np.nan
SPECIAL = {
    "exp": [(-inf, 0.0), (inf, inf), (nan, nan), (0.0, 1.0), (-0.0, 1.0), (1000.0, inf), (-1000.0, 0.0)],
    "log": [(0.0, -inf), (-0.0, -inf), (-1.0, nan), (-inf, nan), (inf, inf), (nan, nan), (1.0, 0.0)],
    "tanh": [(inf, 1.0), (-inf, -1.0), (nan, nan), (0.0, 0.0), (-0.0, -0.0), (30.0, 1.0), (-1e30, -1.0)],
    "sigmoid": [(inf, 1.0), (-inf, 0.0), (nan, nan), (0.0, 0.5), (1e30, 1.0), (-1e30, 0.0)],
    "erf": [(inf, 1.0), (-inf, -1.0), (nan, nan), (0.0, 0.0), (-0.0, -0.0), (10.0, 1.0), (-1e30, -1.0)],
    "gelu": [(inf, inf), (-inf, -0.0), (nan, nan), (0.0, 0.0), (-0.0, -0.0), (-1e30, -0.0), (-40.0, -0.0),
             (40.0, 40.0), (1e30, 1e30)],
}


@pytest.mark.parametrize("fn,d", [(f, d) for f in ALL for d in ("f32", "f64")])
def test_special_values_exactly(fn, d):
    t = _NP[d]
    x = np.array([a for a, _ in SPECIAL[fn]], t)
    want = np.array([b for _, b in SPECIAL[fn]], t)
    y = run(fn, d, x)
    same = (np.isnan(want) & np.isnan(y)) | ((y == want) & (np.signbit(y) == np.signbit(want)))
    assert same.all(), f"{fn}_{d}({x[~same]}) = {y[~same]}, want {want[~same]}"


def test_gelu_is_accurate_relative_to_its_conditioning():
    # x*Phi(x) = x*(1/2 + erf(x/sqrt2)/2): where Phi is small (x < 0) the sum cancels, so
    # the bound is in ulps of the result plus ulps of |x| (the absolute accuracy of Phi),
    # as for any evaluation through erf (torch's included).
    rng = np.random.default_rng(9)
    for d, eps, bound in (("f32", 2.0 ** -24, 4), ("f64", 2.0 ** -53, 4)):
        t = _NP[d]
        x = np.concatenate([samples(d, 100_000, rng), np.linspace(-12, 12, 200_001)]).astype(t)
        x = x[np.abs(x.astype(np.float64)) < 1e300]  # x*x*0.5 of the reference stays finite
        y = run("gelu", d, x)
        v = x.astype(np.longdouble if d == "f64" else np.float64)
        erfc = np.array([math.erfc(float(-a) / np.sqrt(2.0)) for a in x], dtype=v.dtype)
        ref = 0.5 * v * erfc
        with np.errstate(over="ignore", invalid="ignore"):
            scale = np.spacing(np.abs(ref.astype(t))).astype(v.dtype) + np.abs(v) * eps
            err = np.where(np.isfinite(ref), np.abs(y.astype(v.dtype) - ref) / scale, 0)
        worst = int(np.argmax(err))
        assert err.max() <= bound, f"gelu_{d}: {err[worst]:.2f} at x={x[worst]!r}: got {y[worst]!r}, want {ref[worst]!r}"
        pos = (x > 0) & (x < 1e30)  # no cancellation: ulps of the result alone
        assert (ulp_errors(y[pos], ref[pos], d) <= bound).all()


def test_float32_tails_and_subnormals():
    # exp: overflow threshold, gradual underflow rounded once
    x = np.array([88.72283, 88.7229, -87.33654, -100.0, -103.9, -103.98], np.float32)
    y = run("exp", "f32", x)
    assert y[0] == np.float32(np.exp(np.float64(x[0]))) and np.isinf(y[1])
    np.testing.assert_array_equal(y[2:], np.exp(x[2:].astype(np.float64)).astype(np.float32))
    # log of subnormals; tanh and erf keep tiny arguments (no cancellation)
    s = np.array([1e-45, 1e-40, 1e-39, 1.1754942e-38], np.float32)
    np.testing.assert_allclose(run("log", "f32", s), np.log(s.astype(np.float64)), rtol=1e-7)
    tiny = np.array([1e-20, -3e-30, 1e-40, -1e-45], np.float32)
    np.testing.assert_array_equal(run("tanh", "f32", tiny), tiny)
    np.testing.assert_allclose(run("erf", "f32", tiny[:2]), 2 / np.sqrt(np.pi) * tiny[:2], rtol=1e-7)
    # sigmoid(-100) = 3.7e-44 is a subnormal, not 0 or NaN
    y = run("sigmoid", "f32", np.array([-100.0, -88.0, 100.0], np.float32))
    assert abs(y[0] - 3.720076e-44) <= 1.5e-45 and y[1] > 0 and y[2] == 1.0
    # float64: subnormal results and arguments
    x = np.array([-740.0, -745.0, 709.78, 709.79, 5e-324, 1e-310], np.float64)
    e = run("exp", "f64", x[:4])
    assert e[0] == np.exp(-740.0) and e[1] == np.exp(-745.0) and np.isfinite(e[2]) and np.isinf(e[3])
    np.testing.assert_allclose(run("log", "f64", x[4:]), np.log(x[4:]), rtol=1e-15)


# ---- vectorisation and IR ------------------------------------------------------------------------
@pytest.mark.parametrize("d", ["f32", "f64"])
def test_loops_calling_the_functions_vectorise_to_avx2(d):
    suffix = "ps" if d == "f32" else "pd"
    for fn in ALL:
        text = asm(kernel_text(fn, d), f"vec_{fn}_{d}")
        assert re.search(rf"\bv\w+{suffix}\s[^\n]*%ymm", text), f"{fn}_{d}: no packed ymm arithmetic"
        assert re.search(r"\bvfn?m(add|sub)\w*" + suffix + r"\s[^\n]*%ymm", text), f"{fn}_{d}: no vector fma"
        libm = re.search(r"^\s*(call|jmp)\s+[a-z_]*(exp|log|tanh|erf)", text, re.M)
        assert not libm, f"{fn}_{d} calls libm"


def test_math_ir_text():
    text = mathlib.math_ir("f32")
    for name in mathlib.functions("f32"):
        assert f"define internal float @{name}(float %x) alwaysinline nounwind" in text
    assert "memory(none)" in text and "declare float @llvm.fma.f32(float, float, float)" in text
    assert mathlib.functions("f64") == tuple(f"lucid_{k}_f64" for k in ALL)
    one = mathlib.math_ir("float64", pointers="typed", only=["lucid_exp_f64"], declarations=False)
    assert one.count("define") == 1 and "declare" not in one and "double @lucid_exp_f64" in one
    calls = re.findall(r"\bcall\b[^@]*(@[\w.]+)", mathlib.math_ir("f32") + mathlib.math_ir("f64"))
    assert calls and all(c.startswith("@llvm.") for c in calls), "only llvm.* intrinsics may be called"
    with pytest.raises(LucidError, match="dtype"):
        mathlib.math_ir("f16")
    with pytest.raises(LucidError, match="softplus"):
        mathlib.math_ir("f32", only=["softplus"])


def test_coefficients_come_from_the_documented_fit():
    mpmath = pytest.importorskip("mpmath")
    assert mpmath
    got = mathlib.derive([("exp", "f32"), ("tanh", "f32")], grid=300)
    for key, (coeffs, err) in got.items():
        np.testing.assert_allclose(coeffs, mathlib._COEFFS[key], rtol=2e-4, err_msg=str(key))
        assert err < 5e-9


def test_exp_speed_against_numpy(capsys):
    """Not asserted: one thread, 16M float32 values, best of 3."""
    x = np.random.default_rng(0).uniform(-80, 80, 1 << 24).astype(np.float32)
    y = np.empty_like(x)
    run("exp", "f32", x[:8])
    f = _compiled["exp", "f32"][1]

    def best(call):
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            call()
            times.append(time.perf_counter() - t0)
        return min(times)

    ours = best(lambda: f(x.ctypes.data, y.ctypes.data, x.size))
    theirs = best(lambda: np.exp(x, out=y))
    with capsys.disabled():
        print(f"\nexp f32 over 16M: lucid {ours * 1e3:.1f} ms, numpy {theirs * 1e3:.1f} ms "
              f"({theirs / ours:.2f}x)")
