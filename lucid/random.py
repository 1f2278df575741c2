"""`lucid.random`: seeded random tensors (float32 unless a dtype is given), also inside
traced and compiled functions.

The draws (`rand`, `randn`, `uniform`, `normal`, `randint`, `bernoulli`, `permutation`,
and dropout's masks) are the `random_uniform` op (lucid.ops.random: Philox-4x32-10, a pure
function of a key) applied to one global key, an int64[2] tensor (seed, stream): each
draw uses the current key and advances the stream by one.

- Eagerly, that simply produces values.
- While tracing, the key is a named state tensor of the graph (`random.key`), read at the
  start of each call and written back at the end, exactly like an optimiser's step count:
  each draw inside the trace uses the advanced key of the one before, and the last key is
  the graph's update of `random.key`. So a compiled function gives fresh numbers on every
  call, and after `seed(n)` a compiled run draws exactly what the eager run would: the
  [0, 1) uniforms (and hence dropout masks) bit for bit; scaled uniforms and normals to
  rounding (native code contracts `u * (high - low) + low` into one FMA).

`seed(n)` also seeds a numpy Generator, `get_rng()`, which parameter initialisers
(lucid.nn.init, model constructors) and `choice` draw from: they run eagerly at model
construction or in data pipelines, never inside a trace, and keep numpy's algorithms
(`choice` refuses to run inside a trace rather than freeze its draw into the graph).
"""
import os

import numpy as np

from . import dtypes as _dt
from .errors import LucidError, TraceError
from .ir.trace import _active as _active_traces
from .ops.random import random_normal, random_uniform
from .tensor import Tensor

KEY_NAME = "random.key"  # the key's name as a graph param / state update

_key = Tensor(np.array([int.from_bytes(os.urandom(8), "little", signed=True), 0], dtype=np.int64))
_STEP = Tensor(np.array([0, 1], dtype=np.int64))  # one draw: the stream advances by one
_rng = np.random.default_rng()


def seed(n):
    """Make every draw after this reproducible: the key becomes (n, 0), and the numpy
    generator of the initialisers is reseeded with n."""
    global _rng
    n = int(n)
    _rng = np.random.default_rng(n & (2 ** 64 - 1))
    _key._data = np.array([(n + 2 ** 63) % 2 ** 64 - 2 ** 63, 0], dtype=np.int64)  # n mod 2^64, signed


def get_rng():
    """The numpy generator for eager-only draws (parameter initialisers, `choice`)."""
    return _rng


def key_tensor():
    """The global key tensor itself (int64[2]: seed, stream); its value changes as draws
    are made, and compiled functions read and write it."""
    return _key


def next_key():
    """The key for one draw, advancing the global key: an eager value, or inside a trace
    a tracer derived from the graph's `random.key` state (see the module docstring)."""
    if not _active_traces:
        key = _key._data
        _key._data = key + _STEP._data
        return Tensor._wrap(key)
    builder = _active_traces[-1]
    builder.param_names.setdefault(id(_key), KEY_NAME)
    name = builder.capture(_key).name
    current = builder.updates.get(name, _key)  # _key itself is named, so ops on it are traced
    builder.assign(_key, current + _STEP)
    return current


def _shape(shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return tuple(int(s) for s in shape)


def _size(size):
    return (int(size),) if isinstance(size, (int, np.integer)) else tuple(int(s) for s in size)


def _float(dtype):
    d = _dt.as_dtype(dtype) if dtype is not None else _dt.DEFAULT_FLOAT
    if not d.is_float:
        raise _dt.DTypeError(f"lucid.random: dtype must be floating, got {d}")
    return d


def _grad(t, requires_grad):
    if requires_grad:
        t.requires_grad = True
    return t


def rand(*shape, dtype=None, requires_grad=False):
    """Uniform on [0, 1)."""
    return _grad(random_uniform(next_key(), shape=_shape(shape), dtype=_float(dtype)), requires_grad)


def randn(*shape, dtype=None, requires_grad=False):
    """Standard normal."""
    return _grad(random_normal(next_key(), _shape(shape), _float(dtype)), requires_grad)


def uniform(low=0.0, high=1.0, size=(), dtype=None, requires_grad=False):
    """Uniform on [low, high)."""
    u = random_uniform(next_key(), shape=_size(size), dtype=_float(dtype))
    return _grad(u * (high - low) + low, requires_grad)


def normal(mean=0.0, std=1.0, size=(), dtype=None, requires_grad=False):
    return _grad(random_normal(next_key(), _size(size), _float(dtype)) * std + mean, requires_grad)


def randint(low, high=None, size=(), dtype=None):
    """Integers in [low, high) (int64 by default): floor(u * (high - low)) + low of a
    float64 uniform u, whose 53 bits make the bias negligible below 2^40 values."""
    from .ops.elementwise import cast, floor, minimum

    if high is None:
        low, high = 0, low
    low, high = int(low), int(high)
    if high <= low:
        raise LucidError(f"randint: high must be greater than low, got low={low}, high={high}")
    d = _dt.as_dtype(dtype) if dtype is not None else _dt.DEFAULT_INT
    u = random_uniform(next_key(), shape=_size(size), dtype=_dt.float64)
    k = minimum(cast(floor(u * float(high - low)), _dt.int64), high - low - 1)  # u*n may round up to n
    return cast(k + low, d)


def bernoulli(p, size=None, dtype=None):
    """1 with probability `p` (a number or a tensor of probabilities), else 0."""
    from .ops.elementwise import cast

    if isinstance(p, Tensor):
        shape = tuple(p.shape) if size is None else _size(size)
        udt = p.dtype if p.dtype.is_float else _dt.DEFAULT_FLOAT
    else:
        shape = np.shape(p) if size is None else _size(size)
        udt = _dt.DEFAULT_FLOAT
        p = Tensor(np.asarray(p, dtype=np.float64), dtype=udt) if np.ndim(p) else float(p)
    u = random_uniform(next_key(), shape=tuple(shape), dtype=udt)
    return cast(u < p, _float(dtype))


def permutation(n):
    """A random permutation of range(n) (or of a tensor's first axis): the order that
    sorts n float64 uniforms."""
    from .ops.indexing import argsort, take

    if isinstance(n, Tensor):
        if n.ndim == 0:
            raise LucidError("permutation: a tensor argument must have at least one axis")
        return take(n, permutation(n.shape[0]), axis=0)
    order = argsort(random_uniform(next_key(), shape=(int(n),), dtype=_dt.float64))
    return order


def choice(a, size=None, replace=True, p=None):
    """numpy's Generator.choice; eager only (a trace would freeze the draw)."""
    if _active_traces:
        raise TraceError("lucid.random.choice cannot run inside a trace (its draw would become a "
                         "constant); use randint, permutation or rand instead")
    if isinstance(a, Tensor):
        a = a.numpy()
    return Tensor(_rng.choice(a, size=size, replace=replace, p=p))
