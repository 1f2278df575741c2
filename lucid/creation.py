"""Creation functions: tensor, zeros, ones, full, empty, eye, arange, linspace, *_like.

They make eager tensors (inside a trace they become captured constants). Floating
results default to float32 (`lucid.dtypes.DEFAULT_FLOAT`)."""
import numpy as np

from . import dtypes as _dt
from .tensor import Tensor


def _shape(shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return tuple(int(s) for s in shape)


def _float(dtype):
    return _dt.as_dtype(dtype) if dtype is not None else _dt.DEFAULT_FLOAT


def tensor(data, requires_grad=False, dtype=None):
    """A new tensor from a number, nested lists, a numpy array or another tensor (copied)."""
    if isinstance(data, Tensor):
        data = data.data
    if isinstance(data, np.ndarray):
        data = data.copy()
    return Tensor(data, requires_grad=requires_grad, dtype=dtype)


def zeros(*shape, dtype=None, requires_grad=False):
    return Tensor(np.zeros(_shape(shape), _float(dtype).np), requires_grad=requires_grad)


def ones(*shape, dtype=None, requires_grad=False):
    return Tensor(np.ones(_shape(shape), _float(dtype).np), requires_grad=requires_grad)


def empty(*shape, dtype=None, requires_grad=False):
    return Tensor(np.empty(_shape(shape), _float(dtype).np), requires_grad=requires_grad)


def full(shape, fill_value, dtype=None, requires_grad=False):
    shape = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(shape)
    if dtype is None:
        dtype = _dt.bool_ if isinstance(fill_value, bool) else (
            _dt.DEFAULT_INT if isinstance(fill_value, (int, np.integer)) else _dt.DEFAULT_FLOAT)
    return Tensor(np.full(shape, fill_value, _dt.as_dtype(dtype).np), requires_grad=requires_grad)


def _like(fn):
    def like(x, dtype=None, requires_grad=False):
        return fn(tuple(x.shape), dtype=dtype if dtype is not None else x.dtype, requires_grad=requires_grad)

    like.__name__ = fn.__name__ + "_like"
    return like


zeros_like, ones_like, empty_like = _like(zeros), _like(ones), _like(empty)


def full_like(x, fill_value, dtype=None, requires_grad=False):
    return full(tuple(x.shape), fill_value, dtype=dtype if dtype is not None else x.dtype,
                requires_grad=requires_grad)


def eye(n, m=None, k=0, dtype=None, requires_grad=False):
    return Tensor(np.eye(n, m, k, dtype=_float(dtype).np), requires_grad=requires_grad)


def arange(start, stop=None, step=1, dtype=None, requires_grad=False):
    """Like numpy: int64 for integer arguments, float32 when any argument is a float."""
    if stop is None:
        start, stop = 0, start
    if dtype is None:
        is_int = all(isinstance(v, (int, np.integer)) for v in (start, stop, step))
        dtype = _dt.DEFAULT_INT if is_int else _dt.DEFAULT_FLOAT
    return Tensor(np.arange(start, stop, step).astype(_dt.as_dtype(dtype).np), requires_grad=requires_grad)


def linspace(start, stop, num=50, dtype=None, requires_grad=False):
    return Tensor(np.linspace(start, stop, num).astype(_float(dtype).np), requires_grad=requires_grad)
