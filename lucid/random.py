"""`lucid.random`: seeded random tensors (float32 unless a dtype is given).

One generator serves lucid (parameter initialisation, dropout masks, these functions);
`lucid.random.seed(n)` makes everything after it reproducible."""
import numpy as np

from . import dtypes as _dt
from .tensor import Tensor

_rng = np.random.default_rng()


def seed(n):
    global _rng
    _rng = np.random.default_rng(int(n))


def get_rng():
    """The generator lucid draws from (for initialisers and dropout)."""
    return _rng


def _shape(shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return tuple(int(s) for s in shape)


def _float(dtype):
    return (_dt.as_dtype(dtype) if dtype is not None else _dt.DEFAULT_FLOAT).np


def rand(*shape, dtype=None, requires_grad=False):
    """Uniform on [0, 1)."""
    return Tensor(_rng.random(_shape(shape)).astype(_float(dtype)), requires_grad=requires_grad)


def randn(*shape, dtype=None, requires_grad=False):
    """Standard normal."""
    return Tensor(_rng.standard_normal(_shape(shape)).astype(_float(dtype)), requires_grad=requires_grad)


def uniform(low=0.0, high=1.0, size=(), dtype=None, requires_grad=False):
    size = (size,) if isinstance(size, (int, np.integer)) else tuple(size)
    return Tensor(_rng.uniform(low, high, size).astype(_float(dtype)), requires_grad=requires_grad)


def normal(mean=0.0, std=1.0, size=(), dtype=None, requires_grad=False):
    size = (size,) if isinstance(size, (int, np.integer)) else tuple(size)
    return Tensor(_rng.normal(mean, std, size).astype(_float(dtype)), requires_grad=requires_grad)


def randint(low, high=None, size=(), dtype=None):
    """Integers in [low, high) (int64 by default)."""
    if high is None:
        low, high = 0, low
    size = (size,) if isinstance(size, (int, np.integer)) else tuple(size)
    d = _dt.as_dtype(dtype) if dtype is not None else _dt.DEFAULT_INT
    return Tensor(_rng.integers(low, high, size).astype(d.np))


def bernoulli(p, size=None, dtype=None):
    """1 with probability `p` (a number or a tensor of probabilities), else 0."""
    probs = p.data if isinstance(p, Tensor) else np.asarray(p, dtype=np.float64)
    shape = probs.shape if size is None else ((size,) if isinstance(size, int) else tuple(size))
    return Tensor((_rng.random(shape) < probs).astype(_float(dtype)))


def permutation(n):
    """A random permutation of range(n) (or of a tensor's first axis)."""
    if isinstance(n, Tensor):
        return Tensor(_rng.permutation(n.data))
    return Tensor(_rng.permutation(int(n)))


def choice(a, size=None, replace=True, p=None):
    return Tensor(_rng.choice(a, size=size, replace=replace, p=p))
