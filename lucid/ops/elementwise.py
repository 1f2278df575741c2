"""Elementwise ops: unary math, binary arithmetic with broadcasting, comparisons, where.

Primitives here: neg abs exp log sqrt sin cos tanh sigmoid erf gelu relu floor ceil round sign
logical_not cast add sub mul div pow maximum minimum eq ne lt le gt ge logical_and
logical_or where. Everything else in this file (square, log2, clip, ...) composes them.
"""
import math

import numpy as np

from .. import dtypes as _dt
from ..errors import DTypeError
from ..ir.types import TensorType
from ..tensor import Tensor, tensor_method
from . import _rules as R
from .registry import BROADCAST, ELEMENTWISE, Sample, defop

_SHAPES = [(), (5,), (2, 3, 4)]


def _zeros_like(x):
    return Tensor._wrap(np.zeros(x.shape, dtype=x.dtype.np)) if x._node is None else x * 0


def _unary_samples(gen=R.rng_float, grad=True, **kw):
    def samples(rng):
        return [Sample([gen(rng, s, **kw)], grad=grad) for s in _SHAPES]

    return samples


# ---- unary -------------------------------------------------------------------

def _unary(name, reference, vjp, gen=R.rng_float, floats_only=True, grad=True, doc="", torch=None,
           **gen_kw):
    infer = R.float_unary_type(name) if floats_only else R.unary_type
    return defop(name, infer=infer, reference=reference, vjp=vjp, fusion=ELEMENTWISE,
                 samples=_unary_samples(gen, grad, **gen_kw), doc=doc,
                 torch=torch or (lambda torch, x: getattr(torch, name)(x)))


def _sigmoid_ref(x):
    with np.errstate(over="ignore"):
        e = np.exp(-np.abs(x))
        return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype)


_erf_vec = np.frompyfunc(math.erf, 1, 1)


def _erf_ref(x):
    return np.asarray(_erf_vec(x), dtype=x.dtype)  # frompyfunc gives a bare float for 0-d input


def _gelu_ref(x):
    """x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)), in float64; -inf gives -0 (the limit)."""
    v = x.astype(np.float64)
    with np.errstate(invalid="ignore"):
        y = 0.5 * v * (1.0 + np.asarray(_erf_vec(v / math.sqrt(2.0)), dtype=np.float64))
    return np.where(v == -np.inf, -0.0, y).astype(x.dtype)


def _gelu_vjp(g, y, x):
    phi = 0.5 * (1.0 + erf(x * (1.0 / math.sqrt(2.0))))
    density = exp(x * x * -0.5) * (1.0 / math.sqrt(2.0 * math.pi))
    return (g * (phi + x * density),)


def _num_neg_infer(t, **_):
    if t.dtype is _dt.bool_:
        raise DTypeError("neg: cannot negate a bool tensor (use logical_not)")
    return t


neg = defop("neg", infer=_num_neg_infer, reference=np.negative, vjp=lambda g, y, x: (-g,),
            fusion=ELEMENTWISE, samples=_unary_samples(), torch=lambda torch, x: torch.neg(x))
abs = defop("abs", infer=_num_neg_infer, reference=np.abs, fusion=ELEMENTWISE,
            vjp=lambda g, y, x: (g * sign(x),),
            samples=_unary_samples(R.rng_away_from, points=(0.0,)), torch=lambda torch, x: torch.abs(x))
exp = _unary("exp", np.exp, lambda g, y, x: (g * y,))
log = _unary("log", np.log, lambda g, y, x: (g / x,), gen=R.rng_positive)
sqrt = _unary("sqrt", np.sqrt, lambda g, y, x: (g / (y * 2.0),), gen=R.rng_positive)
sin = _unary("sin", np.sin, lambda g, y, x: (g * cos(x),))
cos = _unary("cos", np.cos, lambda g, y, x: (-(g * sin(x)),))
tanh = _unary("tanh", np.tanh, lambda g, y, x: (g * (1.0 - y * y),))
sigmoid = _unary("sigmoid", _sigmoid_ref, lambda g, y, x: (g * y * (1.0 - y),))
erf = _unary("erf", _erf_ref, lambda g, y, x: (g * (2.0 / math.sqrt(math.pi)) * exp(-(x * x)),))
gelu = _unary("gelu", _gelu_ref, _gelu_vjp, low=-5.0, high=5.0,
              doc="x * Phi(x), Phi the standard normal CDF: GELU with the exact erf",
              torch=lambda torch, x: torch.nn.functional.gelu(x))
relu = _unary("relu", lambda x: np.maximum(x, 0).astype(x.dtype),
              lambda g, y, x: (where(y > 0, g, 0.0),), gen=R.rng_away_from, points=(0.0,))
floor = _unary("floor", np.floor, lambda g, y, x: (_zeros_like(x),), gen=R.rng_away_from,
               points=(-2, -1, 0, 1, 2))
ceil = _unary("ceil", np.ceil, lambda g, y, x: (_zeros_like(x),), gen=R.rng_away_from,
              points=(-2, -1, 0, 1, 2))
round = _unary("round", np.round, lambda g, y, x: (_zeros_like(x),), gen=R.rng_away_from,
               points=(-1.5, -0.5, 0.5, 1.5))
sign = _unary("sign", np.sign, lambda g, y, x: (_zeros_like(x),), floats_only=False,
              gen=R.rng_away_from, points=(0.0,))


def _bool_infer(name):
    def infer(t, **_):
        if t.dtype is not _dt.bool_:
            raise DTypeError(f"{name}: needs a bool input, got {t.dtype}")
        return t

    return infer


logical_not = defop("logical_not", infer=_bool_infer("logical_not"), reference=np.logical_not,
                    fusion=ELEMENTWISE,
                    samples=lambda rng: [Sample([rng.random((3, 4)) > 0.5], grad=False),
                                         Sample([np.array(True)], grad=False)],
                    torch=lambda torch, x: torch.logical_not(x))


def _cast_vjp(g, y, x, dtype):
    return (g.astype(x.dtype) if x.dtype.is_float else None,)


_cast = defop("cast", infer=lambda t, dtype: TensorType(t.shape, dtype),
              reference=lambda x, dtype: x.astype(_dt.as_dtype(dtype).np),
              vjp=_cast_vjp, fusion=ELEMENTWISE, attrs={"dtype": _dt.float32},
              samples=lambda rng: [Sample([R.rng_float(rng, (3, 4))], {"dtype": _dt.float32}),
                                   Sample([R.rng_float(rng, (3,)) * 5], {"dtype": _dt.int32}, grad=False),
                                   Sample([rng.integers(-5, 5, (2, 3))], {"dtype": _dt.float64}, grad=False),
                                   Sample([rng.integers(-1, 2, (4,))], {"dtype": _dt.bool_}, grad=False),
                                   Sample([rng.random((2, 2)) > 0.5], {"dtype": _dt.float32}, grad=False)],
              torch=lambda torch, x, dtype: x.to(getattr(torch, _dt.as_dtype(dtype).name)))


def cast(x, dtype):
    """`x` converted to `dtype` (a no-op when it already has it)."""
    dtype = _dt.as_dtype(dtype)
    x = x if isinstance(x, Tensor) else Tensor(x)
    return x if x.dtype == dtype else _cast(x, dtype=dtype)


# ---- binary ------------------------------------------------------------------

_BINARY_SHAPES = [((3, 4), (3, 4)), ((2, 3, 4), (4,)), ((3, 1), (1, 4)), ((), (2, 3))]


def _binary_samples(gen_a=R.rng_float, gen_b=R.rng_float, grad=True):
    def samples(rng):
        return [Sample([gen_a(rng, sa), gen_b(rng, sb)], grad=grad) for sa, sb in _BINARY_SHAPES]

    return samples


def _binary(name, reference, vjp, torch, result_dtype=None, samples=None, kind=BROADCAST):
    return defop(name, infer=R.binary_type(name, result_dtype), reference=reference, vjp=vjp,
                 fusion=kind, samples=samples or _binary_samples(), torch=torch)


def _pow_vjp(g, y, a, b):
    ga = g * b * (a ** (b - 1.0)) if a.requires_grad else None
    gb = None
    if b.requires_grad:
        safe = where(a > 0, a, 1.0)
        gb = where(a > 0, g * y * log(safe), 0.0)
    return ga, gb


def _minmax_vjp(first_wins):
    def vjp(g, y, a, b):
        win_a = (a > b) if first_wins else (a < b)
        tie = a == b
        half = g * 0.5
        ga = where(win_a, g, where(tie, half, 0.0))
        gb = where(win_a, 0.0, where(tie, half, g))
        return ga, gb

    return vjp


def _torch_fn(name):
    return lambda torch, *xs: getattr(torch, name)(*xs)


_add = _binary("add", np.add, lambda g, y, a, b: (g, g), _torch_fn("add"))
_sub = _binary("sub", np.subtract, lambda g, y, a, b: (g, -g), _torch_fn("sub"))
_mul = _binary("mul", np.multiply, lambda g, y, a, b: (g * b if a.requires_grad else None,
                                                       g * a if b.requires_grad else None),
               _torch_fn("mul"))
_div = _binary("div", np.divide, lambda g, y, a, b: (g / b if a.requires_grad else None,
                                                     -(g * y / b) if b.requires_grad else None),
               _torch_fn("div"), samples=_binary_samples(R.rng_float, R.rng_positive))
_pow = _binary("pow", np.power, _pow_vjp, _torch_fn("pow"), samples=_binary_samples(R.rng_positive, R.rng_float))
_maximum = _binary("maximum", np.maximum, _minmax_vjp(True), _torch_fn("maximum"))
_minimum = _binary("minimum", np.minimum, _minmax_vjp(False), _torch_fn("minimum"))


def _cmp(name, fn):
    return _binary(name, fn, None, _torch_fn(name), result_dtype=_dt.bool_,
                   samples=lambda rng: [Sample([rng.integers(0, 3, sa).astype(float),
                                                rng.integers(0, 3, sb).astype(float)], grad=False)
                                        for sa, sb in _BINARY_SHAPES])


_eq, _ne = _cmp("eq", np.equal), _cmp("ne", np.not_equal)
_lt, _le = _cmp("lt", np.less), _cmp("le", np.less_equal)
_gt, _ge = _cmp("gt", np.greater), _cmp("ge", np.greater_equal)


def _logical(name, fn):
    def infer(a, b, **_):
        for t in (a, b):
            if t.dtype is not _dt.bool_:
                raise DTypeError(f"{name}: needs bool inputs, got {a.dtype} and {b.dtype}")
        return TensorType(R.broadcast_shapes(name, a.shape, b.shape), _dt.bool_)

    return defop(name, infer=infer, reference=fn, fusion=BROADCAST, torch=_torch_fn(name),
                 samples=lambda rng: [Sample([rng.random(sa) > 0.5, rng.random(sb) > 0.5], grad=False)
                                      for sa, sb in _BINARY_SHAPES])


_logical_and = _logical("logical_and", np.logical_and)
_logical_or = _logical("logical_or", np.logical_or)


def _where_infer(c, a, b):
    if c.dtype is not _dt.bool_:
        raise DTypeError(f"where: the condition must be bool, got {c.dtype}")
    d = R.same_dtype("where", a, b)
    return TensorType(R.broadcast_shapes("where", c.shape, a.shape, b.shape), d)


def _where_vjp(g, y, c, a, b):
    zero = Tensor._wrap(np.zeros((), g.dtype.np))
    return None, _where(c, g, zero), _where(c, zero, g)


_where = defop("where", infer=_where_infer, reference=np.where, vjp=_where_vjp, fusion=BROADCAST,
               nondiff=(0,), torch=_torch_fn("where"),
               samples=lambda rng: [Sample([rng.random((3, 4)) > 0.5, R.rng_float(rng, (3, 4)),
                                            R.rng_float(rng, (3, 4))]),
                                    Sample([rng.random((3, 1)) > 0.5, R.rng_float(rng, (4,)),
                                            R.rng_float(rng, (3, 4))]),
                                    Sample([rng.random((3, 4)) > 0.5, R.rng_float(rng, (3, 1)),
                                            R.rng_float(rng, (1, 4))]),
                                    Sample([rng.random((2, 3)) > 0.5, R.rng_float(rng, ()),
                                            R.rng_float(rng, (3,))])])


# ---- public functions (Python numbers and arrays accepted, dtypes promoted) -------

def _binary_fn(op):
    def fn(a, b):
        a, b = R.to_tensor_pair(a, b)
        return op(a, b)

    fn.__name__ = op.name
    return fn


add = _binary_fn(_add)
sub = subtract = _binary_fn(_sub)
mul = multiply = _binary_fn(_mul)
maximum = _binary_fn(_maximum)
minimum = _binary_fn(_minimum)
equal, not_equal = _binary_fn(_eq), _binary_fn(_ne)
less, less_equal = _binary_fn(_lt), _binary_fn(_le)
greater, greater_equal = _binary_fn(_gt), _binary_fn(_ge)
logical_and = _binary_fn(_logical_and)
logical_or = _binary_fn(_logical_or)


def div(a, b):
    """True division; integer inputs divide as the default float dtype."""
    a, b = R.to_tensor_pair(a, b)
    if not a.dtype.is_float:
        a, b = cast(a, _dt.DEFAULT_FLOAT), cast(b, _dt.DEFAULT_FLOAT)
    return _div(a, b)


divide = true_divide = div


def power(a, b):
    a, b = R.to_tensor_pair(a, b)
    return _pow(a, b)


pow = power


def where(cond, a, b):
    """Elements of `a` where `cond` holds, else of `b` (all three broadcast)."""
    cond = cond if isinstance(cond, Tensor) else Tensor(np.asarray(cond, dtype=bool))
    if cond.dtype is not _dt.bool_:
        cond = cast(cond, _dt.bool_)
    a, b = R.to_tensor_pair(a, b)
    return _where(cond, a, b)


def square(x):
    return x * x


def reciprocal(x):
    return div(1.0, x)


def log2(x):
    return log(x) * (1.0 / math.log(2.0))


def log10(x):
    return log(x) * (1.0 / math.log(10.0))


def clip(x, min=None, max=None):
    """Clamp to [min, max] (either bound may be None)."""
    if min is not None:
        x = maximum(x, min)
    if max is not None:
        x = minimum(x, max)
    return x


clamp = clip


def floor_divide(a, b):
    """numpy's floor division: integer operands give integers of their dtype.

    Integers divide in float64, whose correctly rounded quotient never crosses an integer
    for |a| < 2**53 (the default float32 would be wrong from 2**24 on)."""
    a, b = R.to_tensor_pair(a, b)
    if a.dtype.is_float:
        return floor(_div(a, b))
    return cast(floor(_div(cast(a, _dt.float64), cast(b, _dt.float64))), a.dtype)


def mod(a, b):
    """numpy's modulo: the remainder takes the sign of `b`."""
    a, b = R.to_tensor_pair(a, b)
    return a - floor_divide(a, b) * b


def isnan(x):
    return x != x


def logical_xor(a, b):
    return not_equal(a, b)


# ---- Tensor operators and methods ---------------------------------------------

_OPERANDS = (Tensor, np.ndarray, np.generic, int, float, bool, list, tuple)


def _operator(fn):
    # Anything else (None, strings, ...) is not an operand: Python then falls back to its
    # default (`t == None` is False, `t + "a"` a TypeError) instead of a lucid error.
    return lambda self, other: fn(self, other) if isinstance(other, _OPERANDS) else NotImplemented


def _reflect(fn):
    return lambda self, other: fn(other, self) if isinstance(other, _OPERANDS) else NotImplemented


for _name, _fn in [("__add__", add), ("__sub__", sub), ("__mul__", mul), ("__truediv__", div),
                   ("__pow__", power), ("__floordiv__", floor_divide), ("__mod__", mod),
                   ("__eq__", equal), ("__ne__", not_equal), ("__lt__", less), ("__le__", less_equal),
                   ("__gt__", greater), ("__ge__", greater_equal), ("__and__", logical_and),
                   ("__or__", logical_or), ("__xor__", logical_xor)]:
    setattr(Tensor, _name, _operator(_fn))
for _name, _fn in [("__radd__", add), ("__rsub__", sub), ("__rmul__", mul), ("__rtruediv__", div),
                   ("__rpow__", power), ("__rfloordiv__", floor_divide), ("__rmod__", mod),
                   ("__rand__", logical_and), ("__ror__", logical_or), ("__rxor__", logical_xor)]:
    setattr(Tensor, _name, _reflect(_fn))
Tensor.__neg__ = lambda self: neg(self)
Tensor.__abs__ = lambda self: abs(self)
Tensor.__invert__ = lambda self: logical_not(self)
Tensor.__pos__ = lambda self: self

for _fn in (exp, log, sqrt, sin, cos, tanh, sigmoid, erf, relu, floor, ceil, round, sign, abs, neg,
            logical_not):
    tensor_method(_fn.name)(lambda self, _op=_fn: _op(self))
for _fn in (square, reciprocal, log2, log10, clip, clamp, maximum, minimum, power, isnan):
    tensor_method(_fn.__name__)(_fn)
tensor_method("pow")(power)
