"""Reductions: sum, max, min, prod, argmax, argmin, cumsum; mean, var, std, logsumexp.

Primitives carry `axes` as a sorted tuple of non-negative axes and `keepdims`; the
public functions take Lucid's `axis=` (None, an int or a tuple) and normalise it.
"""
import builtins

import numpy as np

from .. import dtypes as _dt
from ..errors import DTypeError
from ..ir.types import TensorType
from ..tensor import Tensor, tensor_method
from . import _rules as R
from .registry import OUT_FUSABLE, REDUCE, Sample, defop


def _reduced_shape(shape, axes, keepdims):
    if keepdims:
        return tuple(1 if i in axes else s for i, s in enumerate(shape))
    return tuple(s for i, s in enumerate(shape) if i not in axes)


def _reduce_infer(name, result_dtype=None, floats_only=False):
    def infer(t, axes, keepdims):
        for a in axes:
            if not 0 <= a < builtins.max(t.ndim, 1):
                raise R.ShapeError(f"{name}: axis {a} is out of range for shape {t.shape}")
        if floats_only and not t.dtype.is_float:
            raise DTypeError(f"{name}: needs a floating input, got {t.dtype}")
        return TensorType(_reduced_shape(t.shape, axes, keepdims), result_dtype or t.dtype)

    return infer


def _kept(g, x_shape, axes, keepdims):
    """Reshape a reduced gradient back to rank of the input (size-1 reduced axes)."""
    from .shape import reshape

    if keepdims:
        return g
    return reshape(g, _reduced_shape(x_shape, axes, True))


def _expand(g, x_shape, axes, keepdims):
    from .shape import broadcast_to

    return broadcast_to(_kept(g, x_shape, axes, keepdims), x_shape)


def _sum_vjp(g, y, x, axes, keepdims):
    return (_expand(g, x.shape, axes, keepdims),)


def _extreme_vjp(g, y, x, axes, keepdims):
    # Ties share the gradient equally (as torch's amax/amin do).
    from .elementwise import cast, where

    yk = _kept(y, x.shape, axes, keepdims)
    mask = cast(x == yk, x.dtype)
    count = _sum(mask, axes=axes, keepdims=True)
    return (where(x == yk, _kept(g, x.shape, axes, keepdims) / count, 0.0),)


def _prod_vjp(g, y, x, axes, keepdims):
    # d prod / d x_i = prod of the others; computed without dividing by x (zeros are fine):
    # exclusive cumulative products from both sides along each reduced axis.
    from .shape import reshape, transpose

    keep = [i for i in range(x.ndim) if i not in axes]
    perm = keep + list(axes)
    xt = transpose(x, perm)
    lead = tuple(xt.shape[:len(keep)])
    n = int(np.prod([x.shape[a] for a in axes], dtype=np.int64))
    flat = reshape(xt, lead + (n,))
    left = _exclusive_cumprod(flat)
    right = flip_last(_exclusive_cumprod(flip_last(flat)))
    others = left * right
    gk = reshape(_kept(g, x.shape, axes, keepdims), lead + (1,)) if lead else reshape(g, (1,))
    gx = reshape(gk * others, tuple(xt.shape))
    inv = list(np.argsort(perm))
    return (transpose(gx, inv),)


def flip_last(t):
    from .shape import flip

    return flip(t, axis=-1)


def _exclusive_cumprod(t):
    # [1, t0, t0*t1, ...] along the last axis, as a product over a masked triangle.
    from .elementwise import where
    from .shape import broadcast_to, reshape

    n = t.shape[-1]
    tri = Tensor._wrap(np.tril(np.ones((n, n), dtype=bool), k=-1))  # [i, j]: j < i
    rows = broadcast_to(reshape(t, t.shape[:-1] + (1, n)), t.shape[:-1] + (n, n))
    return _prod(where(tri, rows, 1.0), axes=(t.ndim,), keepdims=False)


def _reduce_samples(rng):
    x = R.rng_float(rng, (3, 4, 5))
    return [Sample([x], {"axes": (1,), "keepdims": False}),
            Sample([x], {"axes": (0, 2), "keepdims": True}),
            Sample([x], {"axes": (0, 1, 2), "keepdims": False}),
            Sample([R.rng_float(rng, ())], {"axes": (), "keepdims": False}),
            Sample([R.rng_float(rng, (2, 3))], {"axes": (), "keepdims": True})]  # reduces nothing


def _distinct_samples(rng):
    # Distinct values so max/min have one winner and finite differences are clean.
    out = []
    for s in _reduce_samples(rng):
        shape = s.inputs[0].shape
        vals = rng.permutation(builtins.max(int(np.prod(shape)), 1)).reshape(shape) * 0.3 + rng.uniform(0, .01)
        out.append(Sample([vals], s.attrs))
    return out


def _prod_samples(rng):
    # Zeros (one, and two in one reduced group) exercise the division-free gradient.
    x = R.rng_float(rng, (3, 4))
    x[0, 1] = 0.0
    x[2, 0] = x[2, 3] = 0.0
    return _reduce_samples(rng) + [Sample([x], {"axes": (1,), "keepdims": False}),
                                   Sample([x], {"axes": (0, 1), "keepdims": True})]


def _torch_reduce(name):
    # Our `axes=()` reduces nothing, while torch reads an empty `dim` as "all axes".
    def oracle(torch, x, axes, keepdims):
        return getattr(torch, name)(x, dim=axes, keepdim=keepdims) if axes else x.clone()

    return oracle


def _torch_prod(torch, x, axes, keepdims):
    # torch.prod takes one dim at a time; descending order keeps the others' indices valid.
    for a in sorted(axes, reverse=True):
        x = torch.prod(x, dim=a, keepdim=keepdims)
    return x if axes else x.clone()


_REDUCE_ATTRS = {"axes": (), "keepdims": False}
_sum = defop("sum", infer=_reduce_infer("sum"), vjp=_sum_vjp, fusion=REDUCE, attrs=_REDUCE_ATTRS,
             reference=lambda x, axes, keepdims: np.sum(x, axis=axes, keepdims=keepdims, dtype=x.dtype),
             samples=_reduce_samples, torch=_torch_reduce("sum"))
_max = defop("max", infer=_reduce_infer("max"), vjp=_extreme_vjp, fusion=REDUCE, attrs=_REDUCE_ATTRS,
             reference=lambda x, axes, keepdims: np.max(x, axis=axes, keepdims=keepdims),
             samples=_distinct_samples, torch=_torch_reduce("amax"))
_min = defop("min", infer=_reduce_infer("min"), vjp=_extreme_vjp, fusion=REDUCE, attrs=_REDUCE_ATTRS,
             reference=lambda x, axes, keepdims: np.min(x, axis=axes, keepdims=keepdims),
             samples=_distinct_samples, torch=_torch_reduce("amin"))
_prod = defop("prod", infer=_reduce_infer("prod"), vjp=_prod_vjp, fusion=REDUCE, attrs=_REDUCE_ATTRS,
              reference=lambda x, axes, keepdims: np.prod(x, axis=axes, keepdims=keepdims, dtype=x.dtype),
              samples=_prod_samples, torch=_torch_prod)


def _arg_infer(name):
    def infer(t, axis, keepdims):
        if not 0 <= axis < builtins.max(t.ndim, 1):
            raise R.ShapeError(f"{name}: axis {axis} is out of range for shape {t.shape}")
        return TensorType(_reduced_shape(t.shape, (axis,) if t.ndim else (), keepdims), _dt.int64)

    return infer


def _arg_samples(rng):
    x = _distinct_samples(rng)[0].inputs[0]
    return [Sample([x], {"axis": 1, "keepdims": False}, grad=False),
            Sample([x], {"axis": 0, "keepdims": True}, grad=False)]


_argmax = defop("argmax", infer=_arg_infer("argmax"), fusion=REDUCE, attrs={"axis": 0, "keepdims": False},
                reference=lambda x, axis, keepdims: np.argmax(x, axis=axis, keepdims=keepdims),
                samples=_arg_samples,
                torch=lambda torch, x, axis, keepdims: torch.argmax(x, dim=axis, keepdim=keepdims))
_argmin = defop("argmin", infer=_arg_infer("argmin"), fusion=REDUCE, attrs={"axis": 0, "keepdims": False},
                reference=lambda x, axis, keepdims: np.argmin(x, axis=axis, keepdims=keepdims),
                samples=_arg_samples,
                torch=lambda torch, x, axis, keepdims: torch.argmin(x, dim=axis, keepdim=keepdims))


def _cumsum_infer(t, axis):
    if not 0 <= axis < builtins.max(t.ndim, 1):
        raise R.ShapeError(f"cumsum: axis {axis} is out of range for shape {t.shape}")
    return t


def _cumsum_vjp(g, y, x, axis):
    from .shape import flip

    if x.ndim == 0:  # the cumulative sum of a 0-d tensor is itself
        return (g,)
    return (flip(_cumsum(flip(g, axis=axis), axis=axis), axis=axis),)


_cumsum = defop("cumsum", infer=_cumsum_infer, vjp=_cumsum_vjp, fusion=OUT_FUSABLE, attrs={"axis": 0},
                reference=lambda x, axis: np.cumsum(x, axis=axis, dtype=x.dtype) if x.ndim else x.copy(),
                samples=lambda rng: [Sample([R.rng_float(rng, (3, 4))], {"axis": 1}),
                                     Sample([R.rng_float(rng, (3, 4))], {"axis": 0}),
                                     Sample([R.rng_float(rng, (2, 3, 4))], {"axis": 2}),
                                     Sample([R.rng_float(rng, ())], {"axis": 0})],
                torch=lambda torch, x, axis: torch.cumsum(x, dim=axis))


# ---- public functions -------------------------------------------------------------

def _as_t(x):
    return x if isinstance(x, Tensor) else Tensor(x)


def _reducer(op, name):
    def fn(x, axis=None, keepdims=False):
        x = _as_t(x)
        axes = R.norm_axes(name, axis, x.ndim)
        return op(x, axes=axes, keepdims=bool(keepdims))

    fn.__name__ = name
    return fn


sum = _reducer(_sum, "sum")
max = _reducer(_max, "max")
min = _reducer(_min, "min")
prod = _reducer(_prod, "prod")
amax, amin = max, min


def _arg(op, name):
    def fn(x, axis=None, keepdims=False):
        x = _as_t(x)
        if axis is None:
            from .shape import reshape

            out = op(reshape(x, (-1,)), axis=0, keepdims=False)
            if keepdims:
                out = reshape(out, (1,) * x.ndim)
            return out
        return op(x, axis=R.norm_axis(name, axis, x.ndim), keepdims=bool(keepdims))

    fn.__name__ = name
    return fn


argmax = _arg(_argmax, "argmax")
argmin = _arg(_argmin, "argmin")


def cumsum(x, axis=0):
    x = _as_t(x)
    return _cumsum(x, axis=R.norm_axis("cumsum", axis, x.ndim))


def _count(x, axis):
    axes = R.norm_axes("mean", axis, x.ndim)
    return int(np.prod([x.shape[a] for a in axes], dtype=np.int64))


def mean(x, axis=None, keepdims=False):
    x = _as_t(x)
    if not x.dtype.is_float:
        x = x.astype(_dt.DEFAULT_FLOAT)
    return sum(x, axis, keepdims) * (1.0 / builtins.max(_count(x, axis), 1))


def var(x, axis=None, keepdims=False, ddof=0):
    """Variance (population by default, `ddof=1` for the sample variance)."""
    x = _as_t(x)
    m = mean(x, axis, keepdims=True)
    d = x - m
    n = _count(x, axis)
    return sum(d * d, axis, keepdims) * (1.0 / builtins.max(n - ddof, 1))


def std(x, axis=None, keepdims=False, ddof=0):
    from .elementwise import sqrt

    return sqrt(var(x, axis, keepdims, ddof))


def logsumexp(x, axis=None, keepdims=False):
    """log(sum(exp(x))) computed stably (the max is subtracted first)."""
    from .elementwise import exp, log

    from .elementwise import abs, where

    x = _as_t(x)
    m = max(x, axis, keepdims=True).detach()
    m = where(abs(m) < float("inf"), m, 0.0)  # all -inf (a fully masked row) gives -inf, not nan
    out = log(sum(exp(x - m), axis, keepdims=True)) + m
    if not keepdims:
        from .shape import reshape

        out = reshape(out, _reduced_shape(x.shape, R.norm_axes("logsumexp", axis, x.ndim), False))
    return out


for _fn in (sum, max, min, prod, argmax, argmin, cumsum, mean, var, std, logsumexp):
    tensor_method(_fn.__name__)(_fn)
