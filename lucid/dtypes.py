"""lucid's dtypes and its type-promotion rule.

The default floating dtype is float32: Python floats, `lucid.randn` and every layer's
parameters are float32, and mixing a float32 tensor with a Python float stays float32.
(The Lucid 2.x framework defaulted to float64 and silently promoted whole models.)
"""
import numpy as np

from .errors import DTypeError


class DType:
    """A tensor element type: `lucid.float32`, `float64`, `int32`, `int64`, `bool`."""

    __slots__ = ("name", "short", "np", "is_float", "is_int", "rank")

    def __init__(self, name, short, np_dtype, rank):
        self.name = name
        self.short = short
        self.np = np.dtype(np_dtype)
        self.is_float = self.np.kind == "f"
        self.is_int = self.np.kind in "iu"
        self.rank = rank

    def __repr__(self):
        return f"lucid.{self.name}"

    def __str__(self):
        return self.name

    def __eq__(self, other):
        if isinstance(other, DType):
            return self is other
        try:
            return as_dtype(other) is self
        except DTypeError:
            return False

    def __hash__(self):
        return hash(self.name)

    def __reduce__(self):
        return (as_dtype, (self.name,))

    @property
    def itemsize(self):
        return self.np.itemsize


bool_ = DType("bool", "bool", np.bool_, 0)
int32 = DType("int32", "i32", np.int32, 1)
int64 = DType("int64", "i64", np.int64, 2)
float32 = DType("float32", "f32", np.float32, 3)
float64 = DType("float64", "f64", np.float64, 4)

ALL = (bool_, int32, int64, float32, float64)
_BY_NAME = {}
for _d in ALL:
    _BY_NAME[_d.name] = _d
    _BY_NAME[_d.short] = _d
_BY_NAME["bool_"] = bool_

DEFAULT_FLOAT = float32
DEFAULT_INT = int64


_BY_NP = {d.np: d for d in ALL}


def as_dtype(x):
    """Turn a lucid dtype, a numpy dtype/type or a name into a lucid DType."""
    if isinstance(x, DType):
        return x
    hit = _BY_NP.get(x) if isinstance(x, np.dtype) else None
    if hit is not None:
        return hit
    if isinstance(x, str) and x in _BY_NAME:
        return _BY_NAME[x]
    if x is float:
        return DEFAULT_FLOAT
    if x is int:
        return DEFAULT_INT
    if x is bool:
        return bool_
    try:
        npd = np.dtype(x)
    except TypeError:
        raise DTypeError(f"unknown dtype {x!r}") from None
    for d in ALL:
        if d.np == npd:
            return d
    if npd.kind == "f":
        return float32 if npd.itemsize <= 4 else float64
    if npd.kind in "iu":
        return int64 if npd.itemsize > 4 or npd.kind == "u" and npd.itemsize == 4 else int32
    raise DTypeError(f"lucid has no dtype for numpy dtype {npd}")


def promote(*dtypes):
    """The dtype two or more tensors meet at (an int meeting a float takes the float)."""
    return max((as_dtype(d) for d in dtypes), key=lambda d: d.rank)
