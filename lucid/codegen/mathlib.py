"""Vectorisable exp, log, tanh, sigmoid, erf and GELU as LLVM IR text (float32 and float64).

Why: a fused elementwise kernel is a loop whose body calls these functions. libm calls
stop LLVM's loop vectoriser; these bodies are `internal alwaysinline` and branch-free
(fcmp/select, integer bit tricks on the float representation, `llvm.fma`, `llvm.fabs`,
`llvm.copysign`), so after inlining the loop body is straight-line code that the loop
vectoriser widens to AVX2 (8 floats or 4 doubles per instruction). No function touches
memory, so the IR is the same with typed or opaque pointers.

`math_ir(dtype)` returns the definitions (plus the declarations of the llvm.* intrinsics
they use) for a kernel module to link in or paste in (mathlib_glue.link_math links them
into kernels that declare `@lucid_<fn>_<f32|f64>`).

Approximations (x the argument; "deg" counts the fitted polynomial's degree):

exp   x = n*ln2 + r, n = rint(x*log2e) (fma with the 1.5*2^23 / 1.5*2^52 "shifter", so n
      comes out in the low bits and needs no float->int conversion), r by two fmas with
      ln2 split in hi+lo, |r| <= ln2/2. e^r = 1 + r + r^2*P(r), P deg 4 (f32) / 9 (f64).
      2^n is applied as two exactly representable factors 2^n1 * 2^n2 (n1 = floor(n/2),
      an arithmetic shift for f32), so overflow gives inf and results in the subnormal
      range are rounded once. x is clamped to [-104, 89] (f32) / [-746, 710] (f64): those
      saturate to 0 / inf; a NaN passes the (ordered-compare) clamps and stays NaN.
log   subnormal x is scaled by 2^23 (2^54) first. x = 2^e * m with m in [sqrt(1/2), sqrt 2)
      (integer arithmetic on the bits), f = m - 1 (exact). f32: log1p(f) = f + f^2*(-1/2 +
      f*P(f)), P deg 7. f64: s = f/(2+f), z = s^2, log1p(f) = f - (f^2/2 - s*(f^2/2 + z*S(z))),
      S deg 6 (the classical atanh form). Result e*ln2 + log1p(f) with ln2 in hi+lo.
tanh  |x| < 0.625 (f32) / 0.55 (f64): x + x^3*P(x^2), P deg 4 / 9. Otherwise
      sign(x) * (1 - 2/(exp(2|x|) + 1)), which saturates to +-1 without overflow NaNs.
sigmoid  t = exp(-|x|) in (0, 1]: 1/(1+t) for x >= 0, t/(1+t) for x < 0 (no overflow,
      and sigmoid(-100) = 3.7e-44 comes out right as a subnormal).
erf   f32: x*P(u)/Q(u), u = min(x^2, 16) (erf rounds to +-1 beyond 3.92), a
      (5, 5) rational in u fitted for the relative error of erf(x)/x on u in [0, 16], both
      polynomials by Horner's scheme, the result clamped to [-1, 1]: 16 vector operations,
      one division, no branch (interleaved by the loop, Horner's fewer operations beat
      Estrin's shorter chains). Its fit error is 2.5e-8; the float32 rounding of P and Q
      (relative to their own binades, while just below 1 the result's ulp is 2^-24) makes
      up the rest of the 5.2 ulp. An earlier form (x*P(x^2) below 1, 1 - erfc rational
      above, both computed and selected) reached 1.04 ulp with twice the operations: it
      made a fused gelu(x*w + b) over 16M values compute-bound at 3.4x a copy; this one is
      2x faster. 5.2 ulp is 3.1e-7 relative, within torch.testing's float32
      tolerance (1.3e-6) and the accuracy of XLA's float32 erf (the same clamped-rational
      shape). f64: |x| < 1: x*P(x^2), P deg 11 (leading coefficient split in hi + lo).
      |x| >= 1: 1 - erfc(|x|) with erfc(z) = exp(-z^2) * T(t) / (z + K),  t = (z - K)/(z + K),
      a Moebius change of variable that maps z in [1/2, inf) into [-1, 1), on which
      T(t) = erfcx(z)*(z+K) is smooth and tends to 1/sqrt(pi). K = 3, T deg 11, absolute
      accuracy of erf on z in [1, 6]. z is clamped at 6, where the result has rounded and
      exp(-z^2) is still normal (no subnormal slow paths). z^2 is split exactly into
      hi + lo with an fma, and exp(-hi-lo) = exp(-hi)*(1-lo).

Accuracy (tests/codegen/test_mathlib.py, ~1e6 inputs over every binade, against float64 /
long double references), max error in ulps of the result: f32 exp 0.96, log 0.86,
tanh 1.2, sigmoid 2.1, erf 5.2 (3.1e-7 relative);
f64 exp 1.0, log 1.1, tanh 1.3, sigmoid 2.3, erf 1.0 (all <= 3.2e-16 relative). Subnormal
results are within one unit of the smallest subnormal; specials (+-inf, NaN, +-0) exact.

Coefficients: every table below was fitted here, by `derive()`: a linear Remez exchange
(minimax with a weight that makes the error relative, or absolute where that is what
matters) run in 45-digit mpmath arithmetic against mpmath's exp/log1p/atanh/tanh/erf/erfc,
with the error extrema located on a dense Chebyshev-distributed grid of the interval, then
rounded to float64 (and to float32 when emitted for f32). Degrees were chosen so that the
approximation error is a small fraction of an ulp of the target type.
"""
import re
import struct

import numpy as np

from ..errors import LucidError

# ---- coefficient tables (from derive(); lowest degree first) -----------------------------
_K = 3.0  # float64 erfc's change of variable t = (z - K)/(z + K)

# (table, dtype) -> coefficients of P, lowest degree first (see _fit_specs for each P)
_COEFFS = {
    ("exp", "f32"): (  # max weighted error 3.08e-09
        0.49999993412599236, 0.16666520107349475, 0.04166839418211614, 0.008368780460342914,
        0.001381446887330142,
    ),
    ("exp", "f64"): (  # max weighted error 3.66e-18
        0.5000000000000011, 0.1666666666666641, 0.04166666666652919, 0.008333333333495629,
        0.0013888888943922619, 0.00019841269504752314, 2.4801492762801898e-05,
        2.755758735567651e-06, 2.763037862226396e-07, 2.499996066492109e-08,
    ),
    ("log", "f32"): (  # max weighted error 5.83e-09
        0.3333333170272577, -0.250008210563636, 0.2000122705360518, -0.16623356709848636,
        0.14201755249613318, -0.13160186118278908, 0.12761593465401058, -0.07634505042676726,
    ),
    ("log", "f64"): (  # max weighted error 1.23e-18
        0.6666666666666734, 0.39999999999416375, 0.28571428742015054, 0.2222219861084117,
        0.18183562401759712, 0.15314098928422024, 0.1479547418483834,
    ),
    ("tanh", "f32"): (  # max weighted error 4.39e-09
        -0.33333281948238697, 0.13331442234628313, -0.053739714195890284, 0.020639078661222318,
        -0.005704974162906974,
    ),
    ("tanh", "f64"): (  # max weighted error 2.00e-17
        -0.33333333333332316, 0.13333333333168715, -0.05396825387608273, 0.02186948597488453,
        -0.008863194505084077, 0.003591719704310787, -0.0014532167840772383,
        0.0005791370786600529, -0.00021030247473610082, 5.102151321823178e-05,
    ),
    ("erf", "f64"): (  # max weighted error 7.30e-18
        1.1283791670955126, -0.3761263890318352, 0.11283791670944185, -0.02686617064311148,
        0.005223977606118547, -0.0008548325929317402, 0.00012055293576971665,
        -1.492471230311617e-05, 1.6447131582266812e-06, -1.6206313825552598e-07,
        1.371098062574706e-08, -7.779468815181768e-10,
    ),
    ("erf_rational", "f32"): (  # (P, Q) of erf(x)/x in u = x^2 on [0, 16]; max weighted error 2.46e-08
        (1.1283791392967433, 0.19354591719317119, 0.0531018653323058, 0.003883383223707568,
         0.0002845672320851705, 1.986781253518698e-06),
        (1.0, 0.5048581584231965, 0.11535035964533538, 0.015207328199940934, 0.0011855815564587755,
         3.7420234049208675e-05),
    ),
    ("erfc", "f64"): (  # max weighted error 1.24e-18
        1.0740069070883984, -0.8833944531671744, 0.5902283571173913, -0.3104672627780054,
        0.11952774246460655, -0.026827416665929926, -0.0012134460732381245,
        0.003030443638043394, -0.0005560161592206855, -0.0002849275552419992,
        0.00010938013988390403, 4.667789324403959e-05,
    ),
}


# ---- a small text emitter ----------------------------------------------------------------
_TYPES = {"f32": ("float", "i32", np.float32), "f64": ("double", "i64", np.float64)}


def _lit(value, dtype):
    """An LLVM float literal: the hex of the double with the exact value (f32: pre-rounded)."""
    v = float(_TYPES[dtype][2](value))
    return "0x%016X" % struct.unpack("<Q", struct.pack("<d", v))[0]


class _Body:
    """Builds one function body: each method emits an instruction and returns its name."""

    def __init__(self, dtype):
        self.dtype = dtype
        self.ft, self.it, _ = _TYPES[dtype]
        self.lines = []
        self.count = 0
        self.intrinsics = set()

    def c(self, v):
        return _lit(v, self.dtype)

    def _emit(self, rhs):
        self.count += 1
        name = f"%t{self.count}"
        self.lines.append(f"  {name} = {rhs}")
        return name

    def bin(self, op, a, b, ty=None):
        return self._emit(f"{op} {ty or self.ft} {a}, {b}")

    def add(self, a, b):
        return self.bin("fadd", a, b)

    def sub(self, a, b):
        return self.bin("fsub", a, b)

    def mul(self, a, b):
        return self.bin("fmul", a, b)

    def div(self, a, b):
        return self.bin("fdiv", a, b)

    def call(self, name, *args):
        sfx = "f32" if self.ft == "float" else "f64"
        self.intrinsics.add((name, len(args)))
        params = ", ".join(f"{self.ft} {a}" for a in args)
        return self._emit(f"call {self.ft} @llvm.{name}.{sfx}({params})")

    def neg(self, a):
        return self._emit(f"fneg {self.ft} {a}")

    def fma(self, a, b, c):
        return self.call("fma", a, b, c)

    def fabs(self, a):
        return self.call("fabs", a)

    def copysign(self, mag, sign):
        return self.call("copysign", mag, sign)

    def cmp(self, pred, a, b):
        return self._emit(f"fcmp {pred} {self.ft} {a}, {b}")

    def select(self, cond, a, b, ty=None):
        t = ty or self.ft
        return self._emit(f"select i1 {cond}, {t} {a}, {t} {b}")

    def to_int(self, a):
        return self._emit(f"bitcast {self.ft} {a} to {self.it}")

    def to_float(self, a):
        return self._emit(f"bitcast {self.it} {a} to {self.ft}")

    def iop(self, op, a, b):
        return self.bin(op, a, b, ty=self.it)

    def horner(self, coeffs, u):
        p = self.c(coeffs[-1])
        for ck in reversed(coeffs[:-1]):
            p = self.fma(p, u, self.c(ck))
        return p


# ---- bodies (shared by the functions that compose them) ----------------------------------
def _bits(dtype, v):
    return int(np.array(v, _TYPES[dtype][2]).view(np.int32 if dtype == "f32" else np.int64))


_LN2_HI64, _LN2_LO64 = 0.6931471805599453, 2.3190468138462996e-17  # ln 2 = hi + lo


def _ln2(dtype):
    """ln 2 as hi + lo, hi the nearest value of the type."""
    hi = float(_TYPES[dtype][2](_LN2_HI64))
    return hi, (_LN2_HI64 - hi) + _LN2_LO64


def _exp(b, x, nonneg=False):
    """exp(x); nonneg: the caller knows x >= 0 (or NaN), as tanh does: x is clamped where
    the result is still finite (88 / 709, beyond which callers saturate anyway) and 2^n
    is one factor (no subnormal results), which saves six vector operations."""
    d = b.dtype
    lo, hi, shift, bias, mbits, off = ((-104.0, 89.0, 1.5 * 2.0**23, 127, 23, 256) if d == "f32"
                                       else (-746.0, 710.0, 1.5 * 2.0**52, 1023, 52, 2048))
    ln2_hi, ln2_lo = _ln2(d)
    if nonneg:
        hi = 88.0 if d == "f32" else 709.0
    xc = b.select(b.cmp("ogt", x, b.c(hi)), b.c(hi), x)
    if not nonneg:
        xc = b.select(b.cmp("olt", xc, b.c(lo)), b.c(lo), xc)
    t = b.fma(xc, b.c(1.4426950408889634), b.c(shift))  # n in the low mantissa bits of t
    nf = b.sub(t, b.c(shift))
    r = b.fma(nf, b.c(-ln2_hi), xc)  # exact: |r| < 1/2 and a multiple of ulp(ln2_hi)
    r = b.fma(nf, b.c(-ln2_lo), r)
    p = b.horner(_COEFFS["exp", d], r)
    s = b.fma(b.mul(r, r), p, r)
    y = b.add(s, b.c(1.0))
    n = b.iop("sub", b.to_int(t), str(_bits(d, shift)))
    if nonneg:  # n <= 127 / 1023: 2^n is a normal number
        return b.mul(y, b.to_float(b.iop("shl", b.iop("add", n, str(bias)), str(mbits))))
    if d == "f32":  # floor(n/2); AVX2 has a 32-bit arithmetic shift, not a 64-bit one
        n1 = b.iop("ashr", n, "1")
    else:
        n1 = b.iop("sub", b.iop("lshr", b.iop("add", n, str(off)), "1"), str(off // 2))
    n2 = b.iop("sub", n, n1)
    s1 = b.to_float(b.iop("shl", b.iop("add", n1, str(bias)), str(mbits)))
    s2 = b.to_float(b.iop("shl", b.iop("add", n2, str(bias)), str(mbits)))
    return b.mul(b.mul(y, s1), s2)  # y*2^n1 is exact; the second product rounds once
    # (a NaN x survives the ordered-compare clamps above, so y is NaN: no extra select)


def _log(b, x):
    d = b.dtype
    tiny, up, mbits = (2.0**-126, 23, 23) if d == "f32" else (2.0**-1022, 54, 52)
    sqrt_half = _bits(d, np.sqrt(0.5))
    small = b.cmp("olt", x, b.c(tiny))  # subnormal (or <= 0: those are special-cased)
    xs = b.select(small, b.mul(x, b.c(2.0**up)), x)
    ix = b.iop("sub", b.to_int(xs), str(sqrt_half))
    m = b.to_float(b.iop("add", b.iop("and", ix, str((1 << mbits) - 1)), str(sqrt_half)))
    f = b.sub(m, b.c(1.0))
    if d == "f32":
        e = b._emit(f"sitofp i32 {b.iop('ashr', ix, str(mbits))} to float")
        q = b.fma(b.horner(_COEFFS["log", d], f), f, b.c(-0.5))
        y = b.fma(b.mul(f, f), q, f)
    else:
        # e + 1100 >= 0 from a logical shift, then to double by the 2^52 magic (AVX2 has no
        # vector i64 -> double conversion and no 64-bit arithmetic shift).
        eb = b.iop("lshr", b.iop("add", ix, str(1100 << 52)), str(mbits))
        e = b.sub(b.to_float(b.iop("add", eb, str(0x4330000000000000))), b.c(2.0**52 + 1100))
        s = b.div(f, b.add(f, b.c(2.0)))
        z = b.mul(s, s)
        r = b.mul(z, b.horner(_COEFFS["log", d], z))
        hfsq = b.mul(b.mul(f, f), b.c(0.5))
        y = b.sub(f, b.sub(hfsq, b.mul(s, b.add(hfsq, r))))
    e = b.sub(e, b.select(small, b.c(float(up)), b.c(0.0)))
    ln2_hi, ln2_lo = _ln2(d)
    res = b.fma(e, b.c(ln2_hi), b.fma(e, b.c(ln2_lo), y))
    res = b.select(b.cmp("oeq", x, b.c(np.inf)), b.c(np.inf), res)
    res = b.select(b.cmp("oeq", x, b.c(0.0)), b.c(-np.inf), res)
    return b.select(b.cmp("ult", x, b.c(0.0)), b.c(np.nan), res)  # x < 0 or NaN


def _tanh(b, x):
    d = b.dtype
    cut = 0.625 if d == "f32" else 0.55
    a = b.fabs(x)
    u = b.mul(x, x)
    small = b.fma(b.mul(x, u), b.horner(_COEFFS["tanh", d], u), x)
    e = _exp(b, b.add(a, a), nonneg=True)
    big = b.sub(b.c(1.0), b.div(b.c(2.0), b.add(e, b.c(1.0))))
    return b.copysign(b.select(b.cmp("olt", a, b.c(cut)), small, big), x)  # odd, tanh(-0) = -0


def _sigmoid(b, x):
    t = _exp(b, b.neg(b.fabs(x)))
    num = b.select(b.cmp("oge", x, b.c(0.0)), b.c(1.0), t)
    return b.div(num, b.add(t, b.c(1.0)))  # one rounding after exp


def _erf(b, x):
    return _erf_f32(b, x) if b.dtype == "f32" else _erf_f64(b, x)


def _erf_f64(b, x):
    """|x| < 1: x*P(x^2) (leading coefficient in hi + lo); beyond: 1 - erfc(z), z = min(|x|, 6),
    erfc(z) = exp(-z^2) * T(t)/(z + K) with z^2 = h + l split exactly (module notes)."""
    c = _COEFFS["erf", "f64"]
    hi = float(c[0])
    u = b.mul(x, x)
    small = b.fma(x, b.c(hi), b.mul(x, b.fma(u, b.horner(c[1:], u), b.c(c[0] - hi))))
    a = b.fabs(x)
    z = b.select(b.cmp("ogt", a, b.c(6.0)), b.c(6.0), a)  # erf rounds to 1 beyond; exp(-36) is normal
    h = b.mul(z, z)
    inv = b.div(b.c(1.0), b.add(z, b.c(_K)))
    t = b.fma(b.c(-2.0 * _K), inv, b.c(1.0))
    f = b.mul(inv, b.horner(_COEFFS["erfc", "f64"], t))
    f = b.fma(b.neg(f), b.fma(z, z, b.neg(h)), f)  # exp(-h-l) = exp(-h)*(1-l)
    tail = b.sub(b.c(1.0), b.mul(_exp(b, b.neg(h)), f))
    return b.copysign(b.select(b.cmp("olt", a, b.c(1.0)), small, tail), x)


def _erf_f32(b, x):
    """x*P(u)/Q(u), u = min(x^2, 16): the (5, 5) rational of the module notes, clamped to
    [-1, 1]. For |x| > 4 the clamped u gives x*erf(4)/4, beyond +-1, so the result
    saturates to exactly +-1 (also for +-inf); near 4 the clamp also removes an ulp of
    overshoot from the rounding of P and Q.

    Odd by construction (erf(-0) = -0, tiny x gives 2x/sqrt(pi) rounded once); a NaN
    passes the ordered-compare clamps and stays NaN."""
    return _scaled_erf_f32(b, x, 1.0, 1.0)


def _scaled_erf_f32(b, x, c, s):
    """s*erf(c*x) by erf's rational with c and s folded into its coefficients (u = x^2 is
    clamped at 16/c^2, the result at +-s): the scaling costs no operation."""
    num, den = _COEFFS["erf_rational", "f32"]
    num = [s * c * a * (c * c) ** k for k, a in enumerate(num)]
    den = [a * (c * c) ** k for k, a in enumerate(den)]
    u = b.mul(x, x)
    u = b.select(b.cmp("ogt", u, b.c(16.0 / (c * c))), b.c(16.0 / (c * c)), u)
    r = b.div(b.mul(x, b.horner(num, u)), b.horner(den, u))
    r = b.select(b.cmp("ogt", r, b.c(s)), b.c(s), r)
    return b.select(b.cmp("olt", r, b.c(-s)), b.c(-s), r)


def _gelu(b, x):
    """x*Phi(x) = x*(1/2 + erf(x/sqrt2)/2). f32: r = erf(x/sqrt2)/2 by `_scaled_erf_f32`
    (u = min(x^2, 32), r clamped to [-1/2, 1/2]), gelu = x*(1/2 + r): two operations fewer
    than the composition. x is first raised to -1e30 at least, so -inf gives
    -1e30 * (1/2 - 1/2) = -0, the limit. f64: the same composition over the float64 erf."""
    if b.dtype == "f64":
        xc = b.select(b.cmp("olt", x, b.c(-1e300)), b.c(-1e300), x)
        e = _erf_f64(b, b.mul(xc, b.c(0.7071067811865476)))
        return b.mul(xc, b.fma(e, b.c(0.5), b.c(0.5)))
    xc = b.select(b.cmp("olt", x, b.c(-1e30)), b.c(-1e30), x)
    r = _scaled_erf_f32(b, xc, 0.7071067811865476, 0.5)
    return b.mul(xc, b.add(r, b.c(0.5)))


_BODIES = {"exp": _exp, "log": _log, "tanh": _tanh, "sigmoid": _sigmoid, "erf": _erf, "gelu": _gelu}
KINDS = tuple(_BODIES)  # the ops the library defines, by op name (lucid.codegen.lowering lowers them)


def functions(dtype="f32"):
    """The names of the functions `math_ir(dtype)` defines (e.g. 'lucid_exp_f32')."""
    dtype = _check_dtype(dtype)
    return tuple(f"lucid_{k}_{dtype}" for k in _BODIES)


def _check_dtype(dtype):
    d = {"float32": "f32", "float64": "f64", "float": "f32", "double": "f64"}.get(str(dtype), str(dtype))
    if d not in _TYPES:
        raise LucidError(f"mathlib: dtype must be 'f32' or 'f64', got {dtype!r}")
    return d


def _define(kind, dtype):
    b = _Body(dtype)
    y = _BODIES[kind](b, "%x")
    text = (f"define internal {b.ft} @lucid_{kind}_{dtype}({b.ft} %x) "
            "alwaysinline nounwind willreturn memory(none) {\n"
            + "\n".join(b.lines) + f"\n  ret {b.ft} {y}\n}}\n")
    return text, {(name, n, b.ft) for name, n in b.intrinsics}


def _declare(name, nargs, ft):
    sfx = "f32" if ft == "float" else "f64"
    return f"declare {ft} @llvm.{name}.{sfx}({', '.join([ft] * nargs)})"


def math_ir(dtype="f32", pointers="opaque", only=None, declarations=True):
    """LLVM IR text defining the math functions of `dtype` ('f32' or 'f64').

    only: names to define (short 'exp' or full 'lucid_exp_f32'); default all of them.
    declarations: also declare the llvm.* intrinsics the bodies call (leave False when
    the module already declares them). `pointers` ('opaque' or 'typed') is accepted for
    symmetry with the other emitters: no pointer type appears in these functions."""
    if pointers not in ("opaque", "typed", None):
        raise LucidError(f"mathlib: pointers must be 'opaque' or 'typed', got {pointers!r}")
    dtype = _check_dtype(dtype)
    kinds = [n[len("lucid_"):-len("_" + dtype)] for n in functions(dtype)]
    if only is not None:
        want = {re.sub(rf"^lucid_|_{dtype}$", "", n) for n in only}
        bad = want - set(kinds)
        if bad:
            raise LucidError(f"mathlib: no {dtype} function(s) {sorted(bad)}; have {kinds}")
        kinds = [k for k in kinds if k in want]
    texts, intr = [], set()
    for k in kinds:
        text, used = _define(k, dtype)
        texts.append(text)
        intr |= used
    decls = [_declare(*i) for i in sorted(intr)] if declarations else []
    return "\n".join(texts + decls) + "\n"


# ---- how the coefficient tables were made (run once by hand; needs mpmath) ---------------
# (table, dtype): (approximated function g(u), weight w(u), interval, degree). The fit
# minimises max |w(u) * (g(u) - P(u))| over the interval; w makes the error of the final
# function relative (or, for erfc_f64, the absolute error of erf).
def _fit_specs(mp):
    sq, rt2 = mp.sqrt, mp.sqrt(2)
    ln2h = mp.log(2) / 2 * mp.mpf("1.001")  # n = rint(x*log2e) may miss by an ulp
    smax2 = ((rt2 - 1) / (rt2 + 1)) ** 2  # largest s^2 = (f/(2+f))^2 in log
    k64 = mp.mpf(_K)

    def z_of(t, k):
        return k * (1 + t) / (1 - t)

    def t_of(z, k):
        return (mp.mpf(z) - k) / (mp.mpf(z) + k)

    def erfcx_k(k):  # T(t) = erfcx(z)*(z+k)
        return lambda t: mp.exp(z_of(t, k) ** 2) * mp.erfc(z_of(t, k)) * (z_of(t, k) + k)

    def erf_abs_weight(t):  # d(erf) = exp(-z^2)/(z+K) * dT
        return mp.exp(-z_of(t, k64) ** 2) / (z_of(t, k64) + k64)

    def exp_spec(deg):  # e^r = 1 + r + r^2 P(r)
        return (lambda r: (mp.exp(r) - 1 - r) / r**2, lambda r: r**2 / mp.exp(r), (-ln2h, ln2h), deg)

    def tanh_spec(cut, deg):  # tanh x = x + x^3 P(x^2)
        return (lambda u: (mp.tanh(sq(u)) - sq(u)) / sq(u) ** 3,
                lambda u: sq(u) ** 3 / mp.tanh(sq(u)), (cut * cut * 1e-8, cut * cut), deg)

    def erf_over_x(u):
        return 2 / sq(mp.pi) if u == 0 else mp.erf(sq(u)) / sq(u)

    def erf_spec(deg):  # erf x = x P(x^2)
        return (lambda u: mp.erf(sq(u)) / sq(u), lambda u: sq(u) / mp.erf(sq(u)), (1e-30, 1.0), deg)

    return {
        ("exp", "f32"): exp_spec(4),
        ("exp", "f64"): exp_spec(9),
        # f32: log1p(f) = f - f^2/2 + f^3 P(f)
        ("log", "f32"): (lambda f: (mp.log1p(f) - f + f * f / 2) / f**3, lambda f: abs(f**3 / mp.log1p(f)),
                         (1 / rt2 - 1, rt2 - 1), 7),
        # f64: 2 atanh(s) = 2s + s z S(z), z = s^2
        ("log", "f64"): (lambda z: (2 * mp.atanh(sq(z)) - 2 * sq(z)) / (sq(z) * z),
                         lambda z: sq(z) * z / (2 * mp.atanh(sq(z))), (smax2 * 1e-8, smax2), 6),
        ("tanh", "f32"): tanh_spec(mp.mpf("0.625"), 4),
        ("tanh", "f64"): tanh_spec(mp.mpf("0.55"), 9),
        ("erf", "f64"): erf_spec(11),
        # f32 erf: erf(x)/x = P(u)/Q(u), u = x^2 in [0, 16], relative error, degrees (5, 5)
        ("erf_rational", "f32"): (erf_over_x, lambda u: 1 / erf_over_x(u), (0, 16), (5, 5)),
        # f64: absolute error of erf = 1 - erfc on z in [1, 6]
        ("erfc", "f64"): (erfcx_k(k64), erf_abs_weight, (t_of(1, k64), t_of(6, k64)), 11),
    }


def _remez(mp, g, w, lo, hi, deg, grid=2000, iters=25):
    """Linear minimax fit of sum c_k u^k to g with weight w on [lo, hi] (Remez exchange on a
    grid). Returns (coefficients, max weighted error)."""
    lo, hi = mp.mpf(lo), mp.mpf(hi)
    xs = [lo] + [(lo + hi) / 2 - (hi - lo) / 2 * mp.cos(mp.pi * (i + 0.5) / grid) for i in range(grid)] + [hi]
    gs, ws = [g(u) for u in xs], [w(u) for u in xs]
    m = deg + 2
    ref = [round((len(xs) - 1) * (1 - float(mp.cos(mp.pi * i / (m - 1)))) / 2) for i in range(m)]
    best = None
    for _ in range(iters):
        a = mp.matrix([[xs[j] ** k for k in range(deg + 1)] + [(-1) ** i / ws[j]] for i, j in enumerate(ref)])
        sol = mp.lu_solve(a, mp.matrix([gs[j] for j in ref]))
        c, lev = [sol[k] for k in range(deg + 1)], abs(sol[deg + 1])
        err = [ws[j] * (gs[j] - mp.polyval(c[::-1], xs[j])) for j in range(len(xs))]
        emax = max(abs(e) for e in err)
        if best is None or emax < best[1]:
            best = (c, emax)
        if emax <= lev * (1 + mp.mpf("1e-3")):
            break
        runs, start = [], 0  # one extremum per run of equal sign, then keep m alternating ones
        for j in range(1, len(xs) + 1):
            if j == len(xs) or (err[j] >= 0) != (err[start] >= 0):
                runs.append(max(range(start, j), key=lambda k: abs(err[k])))
                start = j
        while len(runs) > m:
            runs.pop(0 if abs(err[runs[0]]) < abs(err[runs[-1]]) else -1)
        if len(runs) < m:
            break
        ref = runs
    return best


def _remez_rational(mp, g, w, lo, hi, m, n, grid=2000, iters=40):
    """Minimax P/Q (deg m, n; Q(0) = 1) for g with weight w on [lo, hi]: the Remez exchange
    with the levelled-error system linearised by the previous Q (iterated to a fixed
    point at each reference). Returns ((P, Q), max weighted error)."""
    lo, hi = mp.mpf(lo), mp.mpf(hi)
    xs = [lo] + [(lo + hi) / 2 - (hi - lo) / 2 * mp.cos(mp.pi * (i + 0.5) / grid) for i in range(grid)] + [hi]
    gs, ws = [g(u) for u in xs], [w(u) for u in xs]
    size = m + n + 2
    ref = [round((len(xs) - 1) * (1 - float(mp.cos(mp.pi * i / (size - 1)))) / 2) for i in range(size)]
    q = [mp.mpf(1)] + [mp.mpf(0)] * n
    best = None
    for _ in range(iters):
        for _ in range(8):
            rows = [[xs[j] ** k for k in range(m + 1)] + [-gs[j] * xs[j] ** k for k in range(1, n + 1)]
                    + [-(-1) ** i / ws[j] * mp.polyval(q[::-1], xs[j])] for i, j in enumerate(ref)]
            sol = mp.lu_solve(mp.matrix(rows), mp.matrix([gs[j] for j in ref]))
            p = [sol[k] for k in range(m + 1)]
            q = [mp.mpf(1)] + [sol[m + 1 + k] for k in range(n)]
            lev = abs(sol[m + n + 1])
        err = [ws[j] * (gs[j] - mp.polyval(p[::-1], xs[j]) / mp.polyval(q[::-1], xs[j])) for j in range(len(xs))]
        emax = max(abs(e) for e in err)
        if best is None or emax < best[1]:
            best = ((p, q), emax)
        if emax <= lev * (1 + mp.mpf("1e-4")):
            break
        runs, start = [], 0
        for j in range(1, len(xs) + 1):
            if j == len(xs) or (err[j] >= 0) != (err[start] >= 0):
                runs.append(max(range(start, j), key=lambda k: abs(err[k])))
                start = j
        while len(runs) > size:
            runs.pop(0 if abs(err[runs[0]]) < abs(err[runs[-1]]) else -1)
        if len(runs) < size:
            break
        ref = runs
    return best


def derive(which=None, grid=2000):
    """Re-run the fits; returns {(table, dtype): (coefficients as float64, max weighted error)}
    (a rational table's coefficients are the pair (P, Q))."""
    import mpmath

    out = {}
    with mpmath.workdps(45):
        for key, (g, w, (lo, hi), deg) in _fit_specs(mpmath.mp).items():
            if which is None or key in which:
                if isinstance(deg, tuple):
                    (p, q), e = _remez_rational(mpmath.mp, g, w, lo, hi, *deg, grid=grid)
                    out[key] = ((tuple(float(v) for v in p), tuple(float(v) for v in q)), float(e))
                else:
                    c, e = _remez(mpmath.mp, g, w, lo, hi, deg, grid=grid)
                    out[key] = (tuple(float(v) for v in c), float(e))
    return out
