"""Shape ops: reshape, transpose, broadcast_to, slice (and its adjoint), concatenate,
pad, flip; composed from them: ravel, flatten, squeeze, unsqueeze/expand_dims, swapaxes,
stack, split, chunk, tile, repeat."""
import numpy as np

from ..errors import ShapeError
from ..ir.types import TensorType
from ..tensor import Tensor, tensor_method
from . import _rules as R
from .registry import INJECTIVE, REQUIRED, Sample, defop


def _as_t(x):
    return x if isinstance(x, Tensor) else Tensor(x)


# ---- reshape -----------------------------------------------------------------------

def _reshape_infer(t, shape):
    if int(np.prod(shape, dtype=np.int64)) != t.size or any(s < 0 for s in shape):
        raise ShapeError(f"reshape: cannot reshape a tensor of shape {t.shape} into {tuple(shape)}")
    return TensorType(shape, t.dtype)


_reshape = defop("reshape", infer=_reshape_infer, fusion=INJECTIVE, attrs={"shape": REQUIRED},
                 reference=lambda x, shape: np.reshape(x, shape),
                 vjp=lambda g, y, x, shape: (_reshape(g, shape=tuple(x.shape)),),
                 torch=lambda torch, x, shape: torch.reshape(x, shape),
                 samples=lambda rng: [Sample([R.rng_float(rng, (2, 3, 4))], {"shape": (6, 4)}),
                                      Sample([R.rng_float(rng, (6,))], {"shape": (1, 2, 3)}),
                                      Sample([R.rng_float(rng, ())], {"shape": (1, 1)})])


def reshape(x, *shape):
    """Reshape; one dimension may be -1 (inferred). `reshape(x, 2, 3)` or `reshape(x, (2, 3))`."""
    x = _as_t(x)
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    shape = tuple(int(s) for s in shape)
    if shape.count(-1) > 1:
        raise ShapeError(f"reshape: only one dimension can be -1, got {shape}")
    if -1 in shape:
        known = int(np.prod([s for s in shape if s != -1], dtype=np.int64))
        if known == 0 or x.size % known:
            raise ShapeError(f"reshape: cannot reshape a tensor of shape {x.shape} into {shape}")
        shape = tuple(x.size // known if s == -1 else s for s in shape)
    if shape == tuple(x.shape):
        return x
    return _reshape(x, shape=shape)


# ---- transpose -----------------------------------------------------------------------

def _transpose_infer(t, perm):
    if sorted(perm) != list(range(t.ndim)):
        raise ShapeError(f"transpose: {tuple(perm)} is not a permutation of the axes of shape {t.shape}")
    return TensorType(tuple(t.shape[p] for p in perm), t.dtype)


_transpose = defop("transpose", infer=_transpose_infer, fusion=INJECTIVE, attrs={"perm": REQUIRED},
                   reference=lambda x, perm: np.transpose(x, perm),
                   vjp=lambda g, y, x, perm: (_transpose(g, perm=tuple(int(i) for i in np.argsort(perm))),),
                   torch=lambda torch, x, perm: torch.permute(x, perm),
                   samples=lambda rng: [Sample([R.rng_float(rng, (2, 3, 4))], {"perm": (2, 0, 1)}),
                                        Sample([R.rng_float(rng, (3, 4))], {"perm": (1, 0)})])


def transpose(x, axes=None):
    """Permute axes (reverse them when `axes` is None)."""
    x = _as_t(x)
    perm = tuple(reversed(range(x.ndim))) if axes is None else tuple(
        R.norm_axis("transpose", a, x.ndim) for a in axes)
    if perm == tuple(range(x.ndim)):
        return x
    return _transpose(x, perm=perm)


def swapaxes(x, axis1, axis2):
    x = _as_t(x)
    perm = list(range(x.ndim))
    a, b = R.norm_axis("swapaxes", axis1, x.ndim), R.norm_axis("swapaxes", axis2, x.ndim)
    perm[a], perm[b] = perm[b], perm[a]
    return transpose(x, perm)


def permute(x, *axes):
    if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
        axes = tuple(axes[0])
    return transpose(x, axes)


# ---- broadcast_to -----------------------------------------------------------------------

def _broadcast_infer(t, shape):
    if R.broadcast_shapes("broadcast_to", t.shape, shape) != tuple(shape):
        raise ShapeError(f"broadcast_to: cannot broadcast shape {t.shape} to {tuple(shape)}")
    return TensorType(shape, t.dtype)


def _broadcast_vjp(g, y, x, shape):
    from ..ir.autodiff import reduce_to_shape

    return (reduce_to_shape(g, x.shape),)


_broadcast_to = defop("broadcast_to", infer=_broadcast_infer, fusion=INJECTIVE, attrs={"shape": REQUIRED},
                      reference=lambda x, shape: np.broadcast_to(x, shape).copy(), vjp=_broadcast_vjp,
                      torch=lambda torch, x, shape: torch.broadcast_to(x, shape),
                      samples=lambda rng: [Sample([R.rng_float(rng, (3, 1))], {"shape": (2, 3, 4)}),
                                           Sample([R.rng_float(rng, ())], {"shape": (2, 2)}),
                                           Sample([R.rng_float(rng, (4,))], {"shape": (3, 4)})])


def broadcast_to(x, shape):
    x = _as_t(x)
    shape = tuple(int(s) for s in shape)
    return x if shape == tuple(x.shape) else _broadcast_to(x, shape=shape)


# ---- slice and its adjoint ---------------------------------------------------------------

# The attributes (begin, end, step) of an axis mean Python's `range(begin, end, step)` of
# indices, never negative-index wrap-around: a reversed range down to index 0 ends at -1.

def _py_slice(b, e, s):
    """The basic Python slice selecting exactly the indices `range(b, e, s)`."""
    r = range(b, e, s)
    if not r:
        return slice(0, 0)
    stop = r[-1] + (1 if s > 0 else -1)
    return slice(r[0], None if stop < 0 else stop, s)


def _slice_len(b, e, s):
    return len(range(b, e, s))


def _check_slice(name, shape, begin, end, step):
    if not len(begin) == len(end) == len(step) == len(shape):
        raise ShapeError(f"{name}: needs begin/end/step for each of the {len(shape)} axes of {tuple(shape)}")
    for n, b, e, s in zip(shape, begin, end, step):
        r = range(b, e, s) if s else None
        if r is None or (r and not (0 <= r[0] < n and 0 <= r[-1] < n)):
            raise ShapeError(f"{name}: begin/end/step {(b, e, s)} do not select indices of an axis of "
                             f"length {n} in shape {tuple(shape)}")


def _slice_infer(t, begin, end, step):
    _check_slice("slice", t.shape, begin, end, step)
    return TensorType(tuple(_slice_len(b, e, s) for b, e, s in zip(begin, end, step)), t.dtype)


def _torch_index(torch, begin, end, step):
    """Broadcasting index tensors for `x[...]` (torch slicing has no negative steps)."""
    n = len(begin)
    return tuple(torch.arange(b, e, s).reshape((-1,) + (1,) * (n - 1 - i))
                 for i, (b, e, s) in enumerate(zip(begin, end, step)))


def _slice_ref(x, begin, end, step):
    return x[tuple(_py_slice(b, e, s) for b, e, s in zip(begin, end, step))].copy()


def _slice_vjp(g, y, x, begin, end, step):
    return (_slice_scatter(g, shape=tuple(x.shape), begin=begin, end=end, step=step),)


_SLICE_ATTRS = {"begin": REQUIRED, "end": REQUIRED, "step": REQUIRED}
_slice = defop("slice", infer=_slice_infer, reference=_slice_ref, vjp=_slice_vjp, fusion=INJECTIVE,
               attrs=_SLICE_ATTRS,
               torch=lambda torch, x, begin, end, step: x[_torch_index(torch, begin, end, step)],
               samples=lambda rng: [Sample([R.rng_float(rng, (4, 6))], {"begin": (1, 0), "end": (3, 6), "step": (1, 2)}),
                                    Sample([R.rng_float(rng, (5,))], {"begin": (4,), "end": (-1,), "step": (-2,)}),
                                    Sample([R.rng_float(rng, (3, 4, 2))],
                                           {"begin": (2, 1, 0), "end": (-1, 4, 2), "step": (-1, 2, 1)}),
                                    Sample([R.rng_float(rng, (4,))], {"begin": (-1,), "end": (-1,), "step": (-1,)})])


def _slice_scatter_infer(g, shape, begin, end, step):
    _check_slice("slice_scatter", shape, begin, end, step)
    expect = tuple(_slice_len(b, e, s) for b, e, s in zip(begin, end, step))
    if tuple(g.shape) != expect:
        raise ShapeError(f"slice_scatter: a slice of {tuple(shape)} has shape {expect}, got {g.shape}")
    return TensorType(shape, g.dtype)


def _slice_scatter_ref(g, shape, begin, end, step):
    out = np.zeros(shape, dtype=g.dtype)
    out[tuple(_py_slice(b, e, s) for b, e, s in zip(begin, end, step))] = g
    return out


_slice_scatter = defop(
    "slice_scatter", infer=_slice_scatter_infer, reference=_slice_scatter_ref, fusion=INJECTIVE,
    attrs={"shape": REQUIRED, **_SLICE_ATTRS},
    vjp=lambda g, y, x, shape, begin, end, step: (_slice(g, begin=begin, end=end, step=step),),
    doc="zeros of `shape` with a slice set to the input: the adjoint of `slice`",
    torch=lambda torch, g, shape, begin, end, step: torch.zeros(shape, dtype=g.dtype).index_put(
        _torch_index(torch, begin, end, step), g),
    samples=lambda rng: [Sample([R.rng_float(rng, (2, 3))],
                                {"shape": (4, 6), "begin": (1, 0), "end": (3, 6), "step": (1, 2)}),
                         Sample([R.rng_float(rng, (2, 2))],
                                {"shape": (3, 5), "begin": (2, 3), "end": (-1, 0), "step": (-2, -2)})])


def slice_axis(x, axis, start=None, stop=None, step=1):
    """`x` sliced along one axis with Python slice semantics."""
    x = _as_t(x)
    axis = R.norm_axis("slice", axis, x.ndim)
    return slice_nd(x, {axis: slice(start, stop, step)})


def slice_nd(x, slices):
    """Apply a {axis: python slice} map with Python semantics (negative steps too)."""
    begin, end, step = [], [], []
    for ax, n in enumerate(x.shape):
        sl = slices.get(ax, slice(None))
        if sl.step == 0:
            raise ShapeError("slice: step cannot be zero")
        b, e, s = sl.indices(n)
        if s < 0 and e < 0:
            e = -1
        begin.append(b), end.append(e), step.append(s)
    if all(b == 0 and e == n and s == 1 for b, e, s, n in zip(begin, end, step, x.shape)):
        return x
    return _slice(x, begin=tuple(begin), end=tuple(end), step=tuple(step))


# ---- concatenate ----------------------------------------------------------------------------

def _concat_infer(*types, axis):
    if not types:
        raise ShapeError("concatenate: needs at least one tensor")
    first = types[0]
    R.same_dtype("concatenate", *types)
    if not 0 <= axis < max(first.ndim, 1) or first.ndim == 0:
        raise ShapeError(f"concatenate: axis {axis} is out of range for shape {first.shape}")
    total = 0
    for t in types:
        if t.ndim != first.ndim or any(a != b for i, (a, b) in enumerate(zip(t.shape, first.shape)) if i != axis):
            shown = ", ".join(str(t.shape) for t in types)
            raise ShapeError(f"concatenate: shapes {shown} differ outside axis {axis}")
        total += t.shape[axis]
    shape = list(first.shape)
    shape[axis] = total
    return TensorType(tuple(shape), first.dtype)


def _concat_vjp(g, y, *xs, axis):
    out, start = [], 0
    for x in xs:
        n = x.shape[axis]
        out.append(slice_axis(g, axis, start, start + n))
        start += n
    return tuple(out)


_concatenate = defop("concatenate", infer=_concat_infer, fusion=INJECTIVE, attrs={"axis": 0}, variadic=True,
                     reference=lambda *xs, axis: np.concatenate(xs, axis=axis), vjp=_concat_vjp,
                     torch=lambda torch, *xs, axis: torch.cat(xs, dim=axis),
                     samples=lambda rng: [Sample([R.rng_float(rng, (2, 3)), R.rng_float(rng, (4, 3))], {"axis": 0}),
                                          Sample([R.rng_float(rng, (2, 1)), R.rng_float(rng, (2, 2)),
                                                  R.rng_float(rng, (2, 3))], {"axis": 1})])


def concatenate(tensors, axis=0):
    from .elementwise import cast
    from ..dtypes import promote

    tensors = [_as_t(t) for t in tensors]
    if not tensors:
        raise ShapeError("concatenate: needs at least one tensor")
    d = promote(*[t.dtype for t in tensors])
    tensors = [cast(t, d) for t in tensors]
    if tensors[0].ndim == 0:
        raise ShapeError("concatenate: zero-dimensional tensors cannot be concatenated")
    axis = R.norm_axis("concatenate", axis, tensors[0].ndim)
    if len(tensors) == 1:
        return tensors[0]
    return _concatenate(*tensors, axis=axis)


concat = cat = concatenate


def stack(tensors, axis=0):
    tensors = [_as_t(t) for t in tensors]
    if not tensors:
        raise ShapeError("stack: needs at least one tensor")
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) > 1:
        raise ShapeError(f"stack: all tensors need one shape, got {', '.join(map(str, shapes))}")
    axis = R.norm_axis("stack", axis, tensors[0].ndim + 1)
    return concatenate([unsqueeze(t, axis) for t in tensors], axis=axis)


def split(x, indices_or_sections, axis=0):
    """numpy's split: a section count (equal parts) or a list of split points."""
    x = _as_t(x)
    axis = R.norm_axis("split", axis, x.ndim)
    n = x.shape[axis]
    if isinstance(indices_or_sections, (int, np.integer)):
        k = int(indices_or_sections)
        if k <= 0 or n % k:
            raise ShapeError(f"split: axis {axis} of length {n} cannot be split into {k} equal parts")
        points = [n // k * i for i in range(1, k)]
    else:
        points = [int(p) for p in indices_or_sections]
    bounds = [0] + points + [n]
    return [slice_axis(x, axis, a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def chunk(x, chunks, axis=0):
    """torch's chunk: `chunks` parts of ceil(n / chunks) (the last may be shorter)."""
    x = _as_t(x)
    axis = R.norm_axis("chunk", axis, x.ndim)
    n = x.shape[axis]
    size = -(-n // int(chunks))
    return [slice_axis(x, axis, a, min(a + size, n)) for a in range(0, n, size)]


# ---- pad, flip -----------------------------------------------------------------------------

def _pad_infer(t, pad_width, value):
    if len(pad_width) != t.ndim or any(lo < 0 or hi < 0 for lo, hi in pad_width):
        raise ShapeError(f"pad: needs a non-negative (before, after) pair for each of the {t.ndim} axes, "
                         f"got {pad_width}")
    return TensorType(tuple(s + lo + hi for s, (lo, hi) in zip(t.shape, pad_width)), t.dtype)


def _pad_vjp(g, y, x, pad_width, value):
    return (slice_nd(g, {i: slice(lo, lo + n) for i, ((lo, hi), n) in enumerate(zip(pad_width, x.shape))}),)


_pad = defop("pad", infer=_pad_infer, fusion=INJECTIVE, attrs={"pad_width": REQUIRED, "value": 0.0},
             reference=lambda x, pad_width, value: np.pad(x, pad_width, constant_values=value),
             vjp=_pad_vjp, torch=lambda torch, x, pad_width, value: torch.nn.functional.pad(
                 x, [p for pair in reversed(pad_width) for p in pair], value=value),
             samples=lambda rng: [Sample([R.rng_float(rng, (2, 3))], {"pad_width": ((1, 0), (2, 1)), "value": 0.0}),
                                  Sample([R.rng_float(rng, (2, 2, 2))],
                                         {"pad_width": ((0, 0), (1, 1), (0, 2)), "value": -1.5})])


def pad(x, pad_width, value=0.0):
    """Constant padding; `pad_width` as numpy: an int, one (before, after) pair, or a pair per axis."""
    x = _as_t(x)
    pw = np.broadcast_to(np.asarray(pad_width, dtype=np.int64), (x.ndim, 2)) if x.ndim else np.zeros((0, 2), int)
    pw = tuple((int(a), int(b)) for a, b in pw)
    return x if all(a == 0 and b == 0 for a, b in pw) else _pad(x, pad_width=pw, value=float(value))


def _flip_infer(t, axes):
    for a in axes:
        if not 0 <= a < t.ndim:
            raise ShapeError(f"flip: axis {a} is out of range for shape {t.shape}")
    return t


_flip = defop("flip", infer=_flip_infer, fusion=INJECTIVE, attrs={"axes": REQUIRED},
              reference=lambda x, axes: np.flip(x, axes).copy(),
              vjp=lambda g, y, x, axes: (_flip(g, axes=axes),),
              torch=lambda torch, x, axes: torch.flip(x, dims=axes),
              samples=lambda rng: [Sample([R.rng_float(rng, (3, 4))], {"axes": (1,)}),
                                   Sample([R.rng_float(rng, (2, 3, 2))], {"axes": (0, 2)})])


def flip(x, axis=None):
    x = _as_t(x)
    axes = R.norm_axes("flip", axis, x.ndim)
    return _flip(x, axes=axes) if axes else x


# ---- composed shape functions --------------------------------------------------------------

def ravel(x):
    return reshape(x, (-1,))


def flatten(x, start_axis=0, end_axis=-1):
    x = _as_t(x)
    if x.ndim == 0:
        return reshape(x, (1,))
    s = R.norm_axis("flatten", start_axis, x.ndim)
    e = R.norm_axis("flatten", end_axis, x.ndim)
    shape = x.shape[:s] + (int(np.prod(x.shape[s:e + 1], dtype=np.int64)),) + x.shape[e + 1:]
    return reshape(x, shape)


def squeeze(x, axis=None):
    x = _as_t(x)
    if axis is None:
        axes = [i for i, s in enumerate(x.shape) if s == 1]
    else:
        axes = R.norm_axes("squeeze", axis, x.ndim)
        for a in axes:
            if x.shape[a] != 1:
                raise ShapeError(f"squeeze: axis {a} of shape {x.shape} has length {x.shape[a]}, not 1")
    return reshape(x, tuple(s for i, s in enumerate(x.shape) if i not in axes))


def unsqueeze(x, axis):
    x = _as_t(x)
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    ndim = x.ndim + len(axes)
    axes = sorted(R.norm_axis("unsqueeze", a, ndim) for a in axes)
    shape = list(x.shape)
    for a in axes:
        shape.insert(a, 1)
    return reshape(x, tuple(shape))


expand_dims = unsqueeze


def tile(x, reps):
    """numpy's tile: repeat the whole tensor `reps` times along each axis."""
    x = _as_t(x)
    reps = (int(reps),) if isinstance(reps, (int, np.integer)) else tuple(int(r) for r in reps)
    nd = max(len(reps), x.ndim)
    reps = (1,) * (nd - len(reps)) + reps
    x = reshape(x, (1,) * (nd - x.ndim) + tuple(x.shape))
    inter = tuple(v for r, s in zip(reps, x.shape) for v in (1, s))
    big = tuple(v for r, s in zip(reps, x.shape) for v in (r, s))
    return reshape(broadcast_to(reshape(x, inter), big), tuple(r * s for r, s in zip(reps, x.shape)))


def repeat(x, repeats, axis=None):
    """numpy's repeat: each element `repeats` times along `axis` (flattened when None)."""
    x = _as_t(x)
    if axis is None:
        x, axis = ravel(x), 0
    axis = R.norm_axis("repeat", axis, x.ndim)
    if not isinstance(repeats, (int, np.integer)):
        from .indexing import take

        idx = np.repeat(np.arange(x.shape[axis]), np.asarray(repeats, dtype=np.int64))
        return take(x, Tensor(idx), axis=axis)
    r = int(repeats)
    shape = tuple(x.shape)
    inter = shape[:axis + 1] + (1,) + shape[axis + 1:]
    big = shape[:axis + 1] + (r,) + shape[axis + 1:]
    out = shape[:axis] + (shape[axis] * r,) + shape[axis + 1:]
    return reshape(broadcast_to(reshape(x, inter), big), out)


def expand(x, *shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    x = _as_t(x)
    lead = len(shape) - x.ndim
    shape = tuple(x.shape[i - lead] if s == -1 else s for i, s in enumerate(shape))
    return broadcast_to(x, shape)


@tensor_method("transpose")
def _transpose_method(self, *axes):
    if len(axes) == 1 and (axes[0] is None or isinstance(axes[0], (tuple, list))):
        axes = axes[0]
    return transpose(self, axes if axes != () else None)


for _fn in (reshape, swapaxes, permute, broadcast_to, ravel, flatten, squeeze, unsqueeze,
            expand_dims, tile, repeat, flip, split, chunk, expand, pad):
    tensor_method(_fn.__name__)(_fn)
tensor_method("view")(reshape)
