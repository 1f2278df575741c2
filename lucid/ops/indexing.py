"""Indexing: gather and take (with their adjoints scatter_add and take_add) and argsort as
primitives; index_select, take_along_axis, masked_fill, sort, topk, one_hot and nonzero
composed of them; and Python indexing of tensors (`x[key]`, `x[key] = v`, `for r in x`).

Indices are data, so an index input never gets a gradient (`nondiff`). Negative indices
wrap as in numpy; out-of-range indices are refused when the reference runs (eager mode,
the interpreter), because a tracer's index values are not known while tracing.

`x[key]` follows numpy's rules and is built only from lucid ops (slice, reshape,
transpose, take), so it traces and differentiates. A boolean mask is the one exception:
the result's shape depends on the mask's values, so it works on eager masks only.
`x[key] = v` is a functional update: `x` is rebound to a new value that has both the
old value and `v` in its autodiff history.
"""
import numpy as np

from .. import dtypes as _dt
from ..autograd_mode import is_grad_enabled
from ..errors import DTypeError, LucidError, ShapeError, TraceError
from ..ir.types import TensorType
from .._source import user_location
from ..tensor import Tensor, tensor_method
from . import _rules as R
from .registry import INJECTIVE, OPAQUE, OUT_FUSABLE, REQUIRED, Sample, defop

__all__ = ["gather", "take", "index_select", "take_along_axis", "scatter_add", "masked_fill",
           "argsort", "sort", "topk", "nonzero", "one_hot"]


class _IndexOutOfRange(ShapeError, IndexError):
    """A bad index in `x[key]`: a lucid error that is also Python's IndexError, so the old
    sequence protocol (and anything catching IndexError) treats it as numpy's."""


def _as_t(x):
    return x if isinstance(x, Tensor) else Tensor(x)


# ---- shared checks and numpy helpers -------------------------------------------------

def _int_index(name, idx):
    if not idx.dtype.is_int:
        raise DTypeError(f"{name}: indices must be an integer tensor, got {idx.dtype}")


def _axis_of(name, t, axis):
    if not 0 <= axis < t.ndim:
        raise ShapeError(f"{name}: axis {axis} is out of range for shape {t.shape}")


def _check_range(name, idx, n, axis):
    """Refuse indices outside [-n, n) (numpy's wrap-around range) with the first bad one."""
    if idx.size == 0:
        return
    bad = idx[(idx < -n) | (idx >= n)]
    if bad.size:
        raise ShapeError(f"{name}: index {int(bad.flat[0])} is out of range for axis {axis} of size {n}")


def _grid(idx, axis):
    """numpy index tuple addressing x[..., idx[i], ...] along `axis`, i over idx's positions."""
    ix = list(np.indices(idx.shape, sparse=True))
    ix[axis] = idx
    return tuple(ix)


def _torch_wrap(torch, idx, n):
    """Negative indices wrapped (torch's gather/index_select do not wrap them)."""
    return torch.where(idx < 0, idx + n, idx)


def _zeros(shape, dtype):
    """Zeros of `shape` as lucid ops: a 0-d constant broadcast (also fine on tracers)."""
    from .shape import broadcast_to

    zero = Tensor._wrap(np.zeros((), dtype.np))
    return broadcast_to(zero, shape)


# ---- gather / scatter_add ---------------------------------------------------------------

def _same_but_axis(name, what, a, b, axis):
    if len(a) != len(b) or any(p != q for d, (p, q) in enumerate(zip(a, b)) if d != axis):
        raise ShapeError(f"{name}: {what} of shape {tuple(a)} must match shape {tuple(b)} "
                         f"on every axis but axis {axis}")


def _gather_infer(x, idx, axis):
    """out[..., i, ...] = x[..., idx[..., i, ...], ...] along `axis`; idx has x's rank and
    x's shape on every other axis (no broadcasting); the output has idx's shape."""
    _int_index("gather", idx)
    _axis_of("gather", x, axis)
    _same_but_axis("gather", "indices", idx.shape, x.shape, axis)
    return TensorType(idx.shape, x.dtype)


def _gather_ref(x, idx, axis):
    _check_range("gather", idx, x.shape[axis], axis)
    return np.take_along_axis(x, idx.astype(np.intp), axis)


def _gather_vjp(g, y, x, idx, axis):
    return _scatter_add(_zeros(x.shape, g.dtype), idx, g, axis=axis), None


def _gather_samples(rng):
    return [Sample([R.rng_float(rng, (3, 4)), rng.integers(-4, 4, (3, 5))], {"axis": 1}, nondiff=(1,)),
            Sample([R.rng_float(rng, (2, 3, 4)), rng.integers(0, 2, (4, 3, 4))], {"axis": 0}, nondiff=(1,)),
            Sample([R.rng_float(rng, (5,)), np.array([4, -1, 0, 0], dtype=np.int64)], {"axis": 0},
                   nondiff=(1,))]


_gather = defop(
    "gather", infer=_gather_infer, reference=_gather_ref, vjp=_gather_vjp, fusion=INJECTIVE,
    attrs={"axis": REQUIRED}, nondiff=(1,), samples=_gather_samples,
    torch=lambda torch, x, idx, axis: torch.gather(x, axis, _torch_wrap(torch, idx, x.shape[axis])),
    doc="numpy's take_along_axis with idx shaped like x except along axis")


def _scatter_add_infer(base, idx, src, axis):
    """base with src[..., i, ...] added at base[..., idx[..., i, ...], ...]; idx and src
    share one shape, which is base's on every axis but `axis` (torch's scatter_add)."""
    _int_index("scatter_add", idx)
    R.same_dtype("scatter_add", base, src)
    _axis_of("scatter_add", base, axis)
    if tuple(idx.shape) != tuple(src.shape):
        raise ShapeError(f"scatter_add: indices of shape {idx.shape} and src of shape {src.shape} "
                         f"must have one shape")
    _same_but_axis("scatter_add", "indices", idx.shape, base.shape, axis)
    return base


def _scatter_add_ref(base, idx, src, axis):
    _check_range("scatter_add", idx, base.shape[axis], axis)
    out = base.copy()
    np.add.at(out, _grid(idx, axis), src)
    return out


def _scatter_add_vjp(g, y, base, idx, src, axis):
    return g, None, (_gather(g, idx, axis=axis) if src.requires_grad else None)


def _scatter_add_samples(rng):
    return [Sample([R.rng_float(rng, (3, 4)), rng.integers(-4, 4, (3, 6)), R.rng_float(rng, (3, 6))],
                   {"axis": 1}, nondiff=(1,)),
            Sample([R.rng_float(rng, (2, 3)), rng.integers(0, 2, (5, 3)), R.rng_float(rng, (5, 3))],
                   {"axis": 0}, nondiff=(1,))]


_scatter_add = defop(
    "scatter_add", infer=_scatter_add_infer, reference=_scatter_add_ref, vjp=_scatter_add_vjp,
    fusion=OUT_FUSABLE, attrs={"axis": REQUIRED}, nondiff=(1,), samples=_scatter_add_samples,
    torch=lambda torch, b, idx, s, axis: b.scatter_add(axis, _torch_wrap(torch, idx, b.shape[axis]), s),
    doc="the adjoint of gather: src accumulated into base at the gathered positions")


# ---- take / take_add ------------------------------------------------------------------

def _take_infer(x, idx, axis):
    """x.shape[:axis] + idx.shape + x.shape[axis+1:]: each index selects a slice of x."""
    _int_index("take", idx)
    _axis_of("take", x, axis)
    return TensorType(x.shape[:axis] + tuple(idx.shape) + x.shape[axis + 1:], x.dtype)


def _take_ref(x, idx, axis):
    _check_range("take", idx, x.shape[axis], axis)
    return np.take(x, idx, axis=axis)


def _take_torch(torch, x, idx, axis):
    flat = _torch_wrap(torch, idx, x.shape[axis]).reshape(-1)
    return torch.index_select(x, axis, flat).reshape(x.shape[:axis] + idx.shape + x.shape[axis + 1:])


def _take_samples(rng):
    return [Sample([R.rng_float(rng, (4, 3)), rng.integers(-4, 4, (2, 3))], {"axis": 0}, nondiff=(1,)),
            Sample([R.rng_float(rng, (2, 5, 3)), np.array([4, 0, 0, -2], dtype=np.int64)], {"axis": 1},
                   nondiff=(1,)),
            Sample([R.rng_float(rng, (5,)), np.array(3, dtype=np.int64)], {"axis": 0}, nondiff=(1,))]


_take = defop(
    "take", infer=_take_infer, reference=_take_ref, fusion=INJECTIVE, attrs={"axis": REQUIRED},
    nondiff=(1,), samples=_take_samples, torch=_take_torch,
    vjp=lambda g, y, x, idx, axis: (_take_add(g, idx, axis=axis, size=x.shape[axis]), None),
    doc="index_select generalised to an index array of any rank")


def _take_add_infer(g, idx, axis, size):
    """The adjoint of take: g has take's output shape; the result has `size` along `axis`."""
    _int_index("take_add", idx)
    k = idx.ndim
    if not 0 <= axis <= g.ndim - k or tuple(g.shape[axis:axis + k]) != tuple(idx.shape):
        raise ShapeError(f"take_add: values of shape {g.shape} do not hold indices of shape {idx.shape} "
                         f"at axis {axis}")
    if size < 0:
        raise ShapeError(f"take_add: size must be non-negative, got {size}")
    return TensorType(g.shape[:axis] + (size,) + g.shape[axis + k:], g.dtype)


def _take_add_ref(g, idx, axis, size):
    _check_range("take_add", idx, size, axis)
    out = np.zeros(g.shape[:axis] + (size,) + g.shape[axis + idx.ndim:], dtype=g.dtype)
    np.add.at(out, (slice(None),) * axis + (idx,), g)
    return out


def _take_add_torch(torch, g, idx, axis, size):
    shape = g.shape[:axis] + (size,) + g.shape[axis + idx.ndim:]
    src = g.reshape(g.shape[:axis] + (-1,) + g.shape[axis + idx.ndim:])
    return torch.zeros(shape, dtype=g.dtype).index_add(axis, _torch_wrap(torch, idx, size).reshape(-1), src)


def _take_add_samples(rng):
    return [Sample([R.rng_float(rng, (2, 3, 3)), rng.integers(-4, 4, (2, 3))], {"axis": 0, "size": 4},
                   nondiff=(1,)),
            Sample([R.rng_float(rng, (2, 4, 3)), np.array([4, 0, 0, -2], dtype=np.int64)],
                   {"axis": 1, "size": 5}, nondiff=(1,)),
            Sample([R.rng_float(rng, ()), np.array(-1, dtype=np.int64)], {"axis": 0, "size": 3}, nondiff=(1,))]


_take_add = defop(
    "take_add", infer=_take_add_infer, reference=_take_add_ref, fusion=OUT_FUSABLE,
    attrs={"axis": REQUIRED, "size": REQUIRED}, nondiff=(1,), samples=_take_add_samples,
    torch=_take_add_torch, vjp=lambda g, y, x, idx, axis, size: (_take(g, idx, axis=axis), None),
    doc="zeros with `size` along axis, the values added at their indices: the adjoint of take")


# ---- argsort ----------------------------------------------------------------------------

def _argsort_infer(x, axis, descending):
    _axis_of("argsort", x, axis)
    return TensorType(x.shape, _dt.int64)


def _argsort_ref(x, axis, descending):
    if not descending:
        return np.argsort(x, axis=axis, kind="stable")
    # Stable descending without negating (which breaks on ints and bools): sort the
    # reversed array ascending, reverse the order back and map the positions.
    n = x.shape[axis]
    rev = np.argsort(np.flip(x, axis), axis=axis, kind="stable")
    return (n - 1) - np.flip(rev, axis)


def _argsort_samples(rng):
    ties = rng.integers(0, 3, (3, 5)).astype(np.float64)
    return [Sample([R.rng_float(rng, (3, 5))], {"axis": 1, "descending": False}, grad=False),
            Sample([ties], {"axis": 1, "descending": True}, grad=False),
            Sample([ties], {"axis": 0, "descending": False}, grad=False),
            Sample([rng.integers(-3, 3, (6,))], {"axis": 0, "descending": True}, grad=False)]


_argsort = defop(
    "argsort", infer=_argsort_infer, reference=_argsort_ref, fusion=OPAQUE,
    attrs={"axis": REQUIRED, "descending": False}, samples=_argsort_samples,
    torch=lambda torch, x, axis, descending: torch.argsort(x, dim=axis, descending=descending, stable=True),
    doc="stable sort order along an axis (ties keep their order), int64")


# ---- public functions ---------------------------------------------------------------------

def _index_tensor(name, idx):
    """Indices as an integer tensor (lists and arrays become int64)."""
    if isinstance(idx, Tensor):
        _int_index(name, idx)
        return idx
    arr = np.asarray(idx)
    if arr.dtype.kind in "iu" or (arr.size == 0 and arr.dtype.kind == "f"):
        return Tensor._wrap(arr.astype(np.int64))
    raise DTypeError(f"{name}: indices must be integers, got {arr.dtype}")


def gather(x, idx, axis):
    """Values of `x` at `idx` along `axis` (numpy's take_along_axis, torch's gather):
    `idx` has x's rank and x's shape on every other axis; the result has idx's shape."""
    x = _as_t(x)
    idx = _index_tensor("gather", idx)
    return _gather(x, idx, axis=R.norm_axis("gather", axis, x.ndim))


def take_along_axis(x, idx, axis):
    """numpy's name for `gather`."""
    return gather(x, idx, axis)


def take(x, indices, axis=None):
    """numpy's take: slices of `x` at `indices` along `axis` (None: of the flattened x).
    The result's shape is x.shape[:axis] + indices.shape + x.shape[axis+1:]."""
    from .shape import ravel

    x = _as_t(x)
    if axis is None:
        x, axis = ravel(x), 0
    idx = _index_tensor("take", indices)
    return _take(x, idx, axis=R.norm_axis("take", axis, x.ndim))


def index_select(x, axis, index):
    """torch's index_select (argument order included): `take` with a 1-D index."""
    idx = _index_tensor("index_select", index)
    if idx.ndim != 1:
        raise ShapeError(f"index_select: index must be 1-D, got shape {idx.shape}")
    return take(x, idx, axis)


def scatter_add(x, idx, src, axis):
    """A copy of `x` with `src` added at `idx` along `axis` (torch's scatter_add):
    out[..., idx[..., i, ...], ...] += src[..., i, ...]. `src` may be a number."""
    from .shape import broadcast_to

    x = _as_t(x)
    idx = _index_tensor("scatter_add", idx)
    if not isinstance(src, Tensor):
        src = Tensor._wrap(np.asarray(src, dtype=x.dtype.np))
    if src.ndim == 0 and idx.ndim:
        src = broadcast_to(src, idx.shape)
    return _scatter_add(x, idx, src, axis=R.norm_axis("scatter_add", axis, x.ndim))


def masked_fill(x, mask, value):
    """`x` with `value` where `mask` is true; the mask broadcasts to x's shape, and the
    result keeps x's dtype and shape."""
    from .elementwise import cast, where

    x = _as_t(x)
    mask = mask if isinstance(mask, Tensor) else Tensor(np.asarray(mask, dtype=bool))
    if mask.dtype is not _dt.bool_:
        raise DTypeError(f"masked_fill: the mask must be bool, got {mask.dtype}")
    if R.broadcast_shapes("masked_fill", mask.shape, x.shape) != tuple(x.shape):
        raise ShapeError(f"masked_fill: a mask of shape {mask.shape} does not broadcast to x's shape {x.shape}")
    value = cast(value, x.dtype) if isinstance(value, Tensor) else Tensor._wrap(np.asarray(value, x.dtype.np))
    if value.ndim > x.ndim or R.broadcast_shapes("masked_fill", value.shape, x.shape) != tuple(x.shape):
        raise ShapeError(f"masked_fill: a value of shape {value.shape} does not broadcast to x's shape {x.shape}")
    return where(mask, value, x)


def argsort(x, axis=-1, descending=False):
    """Indices that sort `x` along `axis` (None: the flattened x); stable, int64."""
    from .shape import ravel

    x = _as_t(x)
    if axis is None:
        x, axis = ravel(x), 0
    return _argsort(x, axis=R.norm_axis("argsort", axis, x.ndim), descending=bool(descending))


def sort(x, axis=-1, descending=False):
    """`x` sorted along `axis` (stable); gradients flow to the elements where they went."""
    from .shape import ravel

    x = _as_t(x)
    if axis is None:
        x, axis = ravel(x), 0
    return gather(x, argsort(x, axis, descending), axis)


def topk(x, k, axis=-1, largest=True, sorted=True):
    """(values, indices) of the `k` largest (or smallest) elements along `axis`, in order
    (the result is always sorted; `sorted=False` promises nothing more)."""
    from .shape import slice_axis

    x = _as_t(x)
    axis = R.norm_axis("topk", axis, x.ndim)
    n = x.shape[axis] if x.ndim else 1
    if not 0 <= int(k) <= n:
        raise ShapeError(f"topk: k={k} is out of range for axis {axis} of size {n} in shape {x.shape}")
    idx = slice_axis(argsort(x, axis, descending=largest), axis, 0, int(k))
    return gather(x, idx, axis), idx


def nonzero(x, as_tuple=False):
    """Indices of the non-zero elements: an int64 tensor of shape (count, ndim) (torch),
    or with `as_tuple=True` one 1-D tensor per axis (numpy). Eager only: the count
    depends on the values."""
    x = _as_t(x)
    if x.is_tracer:
        raise TraceError(f"nonzero: the shape of its result depends on the tensor's values, so it cannot "
                         f"be part of a static graph (at {user_location()}); use a mask with lucid.where")
    data = x._data
    if as_tuple:
        return tuple(Tensor._wrap(a.astype(np.int64)) for a in np.nonzero(np.atleast_1d(data)))
    return Tensor._wrap(np.argwhere(data).astype(np.int64))


def one_hot(idx, num_classes=-1):
    """float32 one-hot rows, a new last axis of `num_classes` (-1: the largest index + 1)."""
    from .elementwise import cast
    from .shape import unsqueeze

    idx = _index_tensor("one_hot", idx)
    if not idx.is_tracer:
        data = idx._data
        if num_classes < 0:
            num_classes = int(data.max()) + 1 if data.size else 0
        bad = data[(data < 0) | (data >= num_classes)]
        if bad.size:
            raise ShapeError(f"one_hot: class {int(bad.flat[0])} is out of range for num_classes={num_classes}")
    elif num_classes < 0:
        raise TraceError(f"one_hot: num_classes=-1 reads the indices' values; give num_classes when tracing "
                         f"(at {user_location()})")
    classes = Tensor._wrap(np.arange(num_classes, dtype=idx.dtype.np))
    if idx.is_tracer:
        # A traced index is checked where it is used: read through a take of the classes
        # (the identity in range), an out-of-range class raises -- in the interpreter, or
        # from native code's index checks -- instead of giving a row of zeros. Negative
        # classes, which take would wrap, are first moved out of its range.
        from .elementwise import where

        idx = take(classes, where(idx < 0, num_classes, idx), axis=0)
    return cast(unsqueeze(idx, -1) == classes, _dt.float32)


for _fn in (gather, take, index_select, take_along_axis, scatter_add, masked_fill, argsort, sort, topk,
            nonzero):
    tensor_method(_fn.__name__)(_fn)


# ---- x[key] ---------------------------------------------------------------------------------

_NEW = "newaxis"


def _mask_entries(x_shape, at, mask):
    """A boolean mask over x's axes at..at+mask.ndim: its np.nonzero arrays (eager only)."""
    dims = tuple(x_shape[at:at + mask.ndim])
    if dims != mask.shape:
        raise _IndexOutOfRange(f"x[key]: a boolean mask of shape {mask.shape} does not match the "
                               f"indexed axes {dims} of shape {tuple(x_shape)}")
    return [("array", Tensor._wrap(a.astype(np.int64))) for a in np.nonzero(mask)]


def _entry(k):
    """One key item as (kind, payload); kind is newaxis, ellipsis, int, slice, array or mask."""
    if k is None:
        return (_NEW, None)
    if k is Ellipsis:
        return ("ellipsis", None)
    if isinstance(k, slice):
        return ("slice", k)
    if isinstance(k, (bool, np.bool_)):
        if k:
            return (_NEW, None)
        raise _IndexOutOfRange("x[key]: indexing with the boolean False (an empty axis) is not supported")
    if isinstance(k, (int, np.integer)):
        return ("int", int(k))
    if isinstance(k, Tensor):
        if k.dtype is _dt.bool_:
            if k.ndim == 0 and not k.is_tracer:
                return _entry(bool(k._data))
            if k.is_tracer:
                raise TraceError(
                    f"x[mask]: indexing with a boolean mask gives a shape that depends on the mask's values, "
                    f"so it cannot be traced (at {user_location()}); use lucid.where(mask, x, 0) or masked_fill")
            return ("mask", k._data)
        if not k.dtype.is_int:
            raise DTypeError(f"x[key]: tensors used as indices must be integer or bool, got {k.dtype}")
        return ("array", k)
    arr = np.asarray(k)
    if arr.dtype == np.bool_:
        return _entry(bool(arr)) if arr.ndim == 0 else ("mask", arr)
    if arr.dtype.kind in "iu" or (arr.size == 0 and arr.dtype.kind == "f"):
        return ("array", Tensor._wrap(arr.astype(np.int64)))
    raise DTypeError(f"x[key]: only integers, slices, None, ..., and integer or bool arrays/tensors are "
                     f"valid indices, got {type(k).__name__}")


def _parse_key(shape, key):
    """Key items with Ellipsis expanded, missing trailing axes filled with `:`, masks
    turned into integer arrays; each item as (kind, payload, axis of x or None)."""
    raw = [_entry(k) for k in (key if isinstance(key, tuple) else (key,))]
    used = sum(p.ndim if kind == "mask" else 1 for kind, p in raw if kind not in (_NEW, "ellipsis"))
    n_ell = sum(kind == "ellipsis" for kind, _ in raw)
    if n_ell > 1:
        raise _IndexOutOfRange("x[key]: an index can only have a single ellipsis ('...')")
    if used > len(shape):
        raise _IndexOutOfRange(f"x[key]: too many indices for a tensor of shape {tuple(shape)}: "
                               f"{used} axes were indexed")
    fill = [("slice", slice(None))] * (len(shape) - used)
    if n_ell:
        at = [kind for kind, _ in raw].index("ellipsis")
        raw = raw[:at] + fill + raw[at + 1:]
    else:
        raw = raw + fill
    items, axis = [], 0
    for kind, p in raw:
        if kind == _NEW:
            items.append((_NEW, None, None))
            continue
        if kind == "mask":
            for kind2, p2 in _mask_entries(shape, axis, p):
                items.append((kind2, p2, axis))
                axis += 1
            continue
        if kind == "int":
            n = shape[axis]
            if not -n <= p < n:
                raise _IndexOutOfRange(f"x[key]: index {p} is out of range for axis {axis} with size {n}")
            p %= n
        items.append((kind, p, axis))
        axis += 1
    return items


def _normalised_index(idx, n, axis, block):
    """Indices in [0, n): eager ones checked now; traced ones wrapped with lucid ops, and
    an out-of-range one replaced by `block` (the size of the merged axes), which makes
    the flat index out of range, so running the graph fails instead of reading a
    neighbouring element."""
    from .elementwise import logical_and, where

    if idx.is_tracer:
        ok = logical_and(idx >= -n, idx < n)
        return where(ok, where(idx < 0, idx + n, idx), block)
    data = idx._data
    bad = data[(data < -n) | (data >= n)]
    if bad.size:
        raise _IndexOutOfRange(f"x[key]: index {int(bad.flat[0])} is out of range for axis {axis} with size {n}")
    return Tensor._wrap(np.where(data < 0, data + n, data).astype(np.int64))


def _flat_index(indices, sizes, shape):
    """Row-major position in a block of `sizes` of the (broadcast) index tuple."""
    from .shape import broadcast_to

    strides = [int(np.prod(sizes[k + 1:], dtype=np.int64)) for k in range(len(sizes))]
    if not any(i.is_tracer for i in indices):
        flat = sum(np.broadcast_to(i._data.astype(np.int64), shape) * s for i, s in zip(indices, strides))
        return Tensor._wrap(np.asarray(flat, dtype=np.int64))
    flat = None
    for i, s in zip(indices, strides):
        term = broadcast_to(i.astype(_dt.int64), shape) * s
        flat = term if flat is None else flat + term
    return flat


def _getitem(self, key):
    """numpy indexing with lucid ops; see the module docstring."""
    from .shape import _reshape, reshape, slice_nd, transpose

    items = _parse_key(self.shape, key)
    has_array = any(kind == "array" for kind, _, _ in items)
    slices = {}
    for kind, p, axis in items:
        if kind == "slice":
            if p.step == 0:
                raise ShapeError("x[key]: slice step cannot be zero")
            slices[axis] = p
        elif kind == "int" and not has_array:
            slices[axis] = slice(p, p + 1)
    y = slice_nd(self, slices)
    if not has_array:
        shape = tuple(1 if kind == _NEW else y.shape[axis] for kind, _, axis in items if kind != "int")
        if y is self and shape == tuple(self.shape):
            # x[:] or x[...]: a new tensor (so `y = x[:]; y[0] = v` leaves x alone), not x itself.
            return _reshape(self, shape=shape)
        return reshape(y, shape)

    # Advanced indexing: ints count as 0-d index arrays (numpy's rule).
    adv = [(pos, axis, p if kind == "array" else Tensor._wrap(np.asarray(p, np.int64)))
           for pos, (kind, p, axis) in enumerate(items) if kind in ("array", "int")]
    bshape = R.broadcast_shapes("x[key]", *[tuple(i.shape) for _, _, i in adv])
    positions = [pos for pos, _, _ in adv]
    adjacent = positions == list(range(positions[0], positions[0] + len(positions)))
    axes = [axis for _, axis, _ in adv]
    if len(adv) == 1:
        (_, a, i), = adv
        z = _take(y, i if i.is_tracer else _normalised_index(i, y.shape[a], a, 0), axis=a)
    else:
        sizes = [y.shape[a] for a in axes]
        block = int(np.prod(sizes, dtype=np.int64))
        flat = _flat_index([_normalised_index(i, y.shape[a], a, block) for (_, a, i) in adv], sizes, bshape)
        if adjacent:
            merged = reshape(y, y.shape[:axes[0]] + (block,) + y.shape[axes[-1] + 1:])
            z = _take(merged, flat, axis=axes[0])
        else:
            rest = [a for a in range(y.ndim) if a not in axes]
            moved = transpose(y, axes + rest)
            z = _take(reshape(moved, (block,) + tuple(y.shape[a] for a in rest)), flat, axis=0)
    shape = [] if adjacent else list(bshape)
    for pos, (kind, _, axis) in enumerate(items):
        if kind == _NEW:
            shape.append(1)
        elif kind == "slice":
            shape.append(y.shape[axis])
        elif adjacent and pos == positions[0]:
            shape.extend(bshape)
    return reshape(z, tuple(shape))


# ---- x[key] = value -------------------------------------------------------------------------

def _snapshot(t):
    """A new tensor object holding t's current value and history (t is about to be rebound)."""
    s = Tensor._wrap(t._data)
    s._node, s._builder, s._ctx, s.requires_grad = t._node, t._builder, t._ctx, t.requires_grad
    return s


def _fit_value(value, shape, dtype):
    """`value` as a tensor of `dtype` broadcast to the indexed `shape` (as numpy assigns)."""
    from .elementwise import cast
    from .shape import broadcast_to, reshape

    v = cast(value, dtype) if isinstance(value, Tensor) else Tensor._wrap(np.asarray(value, dtype.np))
    while v.ndim > len(shape) and v.shape[0] == 1:
        v = reshape(v, v.shape[1:])
    if v.ndim > len(shape) or any(a not in (1, b) for a, b in zip(v.shape[::-1], shape[::-1])):
        raise ShapeError(f"x[key] = v: a value of shape {v.shape} cannot be broadcast to the indexed "
                         f"shape {tuple(shape)}")
    return broadcast_to(v, tuple(shape))


def _slice_params(shape, slices):
    """(begin, end, step) attributes of the slice ops for a {axis: python slice} map."""
    begin, end, step = [], [], []
    for ax, n in enumerate(shape):
        b, e, s = slices.get(ax, slice(None)).indices(n)
        begin.append(b), end.append(-1 if s < 0 and e < 0 else e), step.append(s)
    return tuple(begin), tuple(end), tuple(step)


def _set_basic(old, items, value):
    """Update through slice_scatter: ints, slices, None and ... only."""
    from .elementwise import where
    from .shape import _slice_scatter, broadcast_to, reshape

    slices = {axis: (slice(p, p + 1) if kind == "int" else p)
              for kind, p, axis in items if kind in ("int", "slice")}
    for sl in slices.values():
        if sl.step == 0:
            raise ShapeError("x[key] = v: slice step cannot be zero")
    begin, end, step = _slice_params(old.shape, slices)
    region = tuple(len(range(b, e, s)) for b, e, s in zip(begin, end, step))
    sel = tuple(1 if kind == _NEW else region[axis] for kind, _, axis in items if kind != "int")
    v = reshape(_fit_value(value, sel, old.dtype), region)
    attrs = dict(shape=tuple(old.shape), begin=begin, end=end, step=step)
    hit = _slice_scatter(broadcast_to(Tensor._wrap(np.asarray(True)), region), **attrs)
    return where(hit, _slice_scatter(v, **attrs), old)


def _numpy_key(key):
    """The key with eager tensors replaced by their arrays (None if a tracer is in it)."""
    parts = key if isinstance(key, tuple) else (key,)
    out = []
    for k in parts:
        if isinstance(k, Tensor):
            if k.is_tracer:
                return None
            k = k._data
        out.append(k)
    return tuple(out)


def _set_advanced(old, key, items, value):
    """Update through take_add at the flat positions the key selects."""
    from .elementwise import where
    from .shape import broadcast_to, reshape

    n, shape = old.size, tuple(old.shape)
    for kind, p, axis in items:
        if kind == "array" and not p.is_tracer:
            _normalised_index(p, shape[axis], axis, 0)  # x[key]'s own out-of-range message
    np_key = _numpy_key(key)
    if np_key is not None:
        try:
            pos = np.arange(n, dtype=np.int64).reshape(shape)[np_key]
        except IndexError as err:
            raise _IndexOutOfRange(f"x[key] = v: {err}") from None
        flat = pos.reshape(-1)
        v = reshape(_fit_value(value, pos.shape, old.dtype), (-1,))
        # numpy assigns repeated positions in order, so the last value wins.
        uniq, first = np.unique(flat[::-1], return_index=True)
        if uniq.size < flat.size:
            keep = np.sort(flat.size - 1 - first)
            v, flat = take(v, keep), flat[keep]
        hit = np.zeros(n, dtype=bool)
        hit[flat] = True
        scattered = _take_add(v, Tensor._wrap(flat), axis=0, size=n)
        return where(Tensor._wrap(hit.reshape(shape)), reshape(scattered, shape), old)
    # A traced index: positions come from indexing an arange; repeated positions add up
    # (undefined, as in torch's index_put without accumulate).
    pos = _getitem(Tensor._wrap(np.arange(n, dtype=np.int64).reshape(shape)), key)
    flat = reshape(pos, (-1,))
    v = reshape(_fit_value(value, pos.shape, old.dtype), (-1,))
    ones = broadcast_to(Tensor._wrap(np.ones((), np.int64)), flat.shape)
    hit = reshape(_take_add(ones, flat, axis=0, size=n), shape) > 0
    return where(hit, reshape(_take_add(v, flat, axis=0, size=n), shape), old)


def _setitem(self, key, value):
    """`x[key] = value` as a functional update: x is rebound to the updated value, whose
    history holds x's old value and `value`, so gradients reach both."""
    grad_on = is_grad_enabled()
    if grad_on and self.requires_grad and self._ctx is None:
        raise LucidError("x[key] = v: a leaf tensor that requires grad is used in an in-place operation; "
                         "update it under lucid.no_grad() or assign to a copy")
    old = _snapshot(self)
    items = _parse_key(self.shape, key)
    if any(kind == "array" for kind, _, _ in items):
        out = _set_advanced(old, key, items, value)
    else:
        out = _set_basic(old, items, value)
    self._data, self._node, self._builder = out._data, out._node, out._builder
    if grad_on:
        self._ctx, self.requires_grad = out._ctx, out.requires_grad
    elif self._ctx is not None:  # an update outside grad mode cuts a non-leaf's history
        self._ctx, self.requires_grad = None, False


def _iter(self):
    if self.ndim == 0:
        raise TypeError("iteration over a 0-d tensor")
    return (self[i] for i in range(self.shape[0]))


Tensor.__getitem__ = _getitem
Tensor.__setitem__ = _setitem
Tensor.__iter__ = _iter
