"""Shared shape rules and argument helpers for the op families."""
import numpy as np

from .. import dtypes as _dt
from ..errors import DTypeError, ShapeError
from ..ir.types import TensorType
from ..tensor import Tensor


def broadcast_shapes(op_name, *shapes):
    """numpy's broadcasting rule, raising a ShapeError that names the op and the shapes."""
    ndim = max(len(s) for s in shapes)
    out = []
    for k in range(ndim):
        dims = {s[len(s) - ndim + k] for s in shapes if len(s) - ndim + k >= 0}
        dims.discard(1)
        if len(dims) > 1:
            shown = " and ".join(str(tuple(s)) for s in shapes)
            raise ShapeError(f"{op_name}: shapes {shown} cannot be broadcast together")
        out.append(dims.pop() if dims else 1)
    return tuple(out)


def same_dtype(op_name, *types):
    d = types[0].dtype
    for t in types[1:]:
        if t.dtype != d:
            shown = ", ".join(str(t.dtype) for t in types)
            raise DTypeError(f"{op_name}: inputs must share one dtype, got {shown}")
    return d


def unary_type(t, **_):
    return t


def float_unary_type(op_name):
    def infer(t, **_):
        if not t.dtype.is_float:
            raise DTypeError(f"{op_name}: needs a floating input, got {t.dtype}")
        return t

    return infer


def binary_type(op_name, result_dtype=None):
    def infer(a, b, **_):
        d = same_dtype(op_name, a, b)
        return TensorType(broadcast_shapes(op_name, a.shape, b.shape), result_dtype or d)

    return infer


def norm_axis(op_name, axis, ndim):
    """One axis, negative allowed, checked against `ndim`."""
    a = int(axis)
    if not -max(ndim, 1) <= a < max(ndim, 1):
        raise ShapeError(f"{op_name}: axis {axis} is out of range for a tensor with {ndim} dims")
    return a % max(ndim, 1)


def norm_axes(op_name, axis, ndim):
    """`axis` as a sorted tuple of non-negative axes (None means all)."""
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, (int, np.integer)):
        axis = (axis,)
    axes = tuple(sorted(norm_axis(op_name, a, ndim) for a in axis))
    if len(set(axes)) != len(axes):
        raise ShapeError(f"{op_name}: repeated axis in {axis}")
    return axes


def scalar_like(value, like):
    """A 0-d tensor for a Python number, in the dtype it meets `like` at.

    Python numbers are weakly typed: a float meets a float tensor at its dtype and an
    int tensor at the default float; an int or bool takes the tensor's dtype."""
    d = like.dtype
    if isinstance(value, (bool, np.bool_)):
        dtype = d
    elif isinstance(value, (int, np.integer)):
        dtype = d if d is not _dt.bool_ else _dt.DEFAULT_INT
    elif isinstance(value, (float, np.floating)):
        dtype = d if d.is_float else _dt.DEFAULT_FLOAT
    else:
        raise DTypeError(f"cannot combine a tensor with {type(value).__name__}")
    return Tensor._wrap(np.asarray(value, dtype=dtype.np))


def to_tensor_pair(a, b):
    """Make two operands tensors of one dtype (Python numbers and arrays welcome)."""
    from .elementwise import cast

    if not isinstance(a, Tensor) and not isinstance(b, Tensor):
        a = Tensor(a)
    if not isinstance(a, Tensor):
        a = scalar_like(a, b) if np.ndim(a) == 0 and not isinstance(a, np.ndarray) else Tensor(a)
    if not isinstance(b, Tensor):
        b = scalar_like(b, a) if np.ndim(b) == 0 and not isinstance(b, np.ndarray) else Tensor(b)
    if a.dtype != b.dtype:
        d = _dt.promote(a.dtype, b.dtype)
        a = a if a.dtype == d else cast(a, d)
        b = b if b.dtype == d else cast(b, d)
    return a, b


def rng_float(rng, shape, low=-2.0, high=2.0, dtype=np.float64):
    return rng.uniform(low, high, size=shape).astype(dtype)


def rng_positive(rng, shape, low=0.5, high=2.0):
    return rng.uniform(low, high, size=shape)


def rng_away_from(rng, shape, points, margin=0.1, low=-2.0, high=2.0):
    """Uniform samples kept `margin` away from `points` (kinks where gradients jump)."""
    x = rng.uniform(low, high, size=shape)
    for p in points:
        near = np.abs(x - p) < margin
        x = np.where(near, p + np.sign(x - p + 1e-12) * margin * 2, x)
    return x
