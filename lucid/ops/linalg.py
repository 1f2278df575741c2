"""matmul (numpy semantics with batch broadcasting) and what composes from it: dot, outer."""
import numpy as np

from ..errors import ShapeError
from ..ir.types import TensorType
from ..tensor import Tensor, tensor_method
from . import _rules as R
from .registry import OUT_FUSABLE, Sample, defop


def _matmul_infer(a, b):
    d = R.same_dtype("matmul", a, b)
    if a.ndim < 2 or b.ndim < 2 or a.shape[-1] != b.shape[-2]:
        raise ShapeError(f"matmul: shapes {a.shape} and {b.shape} are not aligned "
                         f"(inner dimensions {a.shape[-1:]} and {b.shape[-2:-1]})")
    try:
        batch = R.broadcast_shapes("matmul", a.shape[:-2], b.shape[:-2])
    except ShapeError:
        raise ShapeError(f"matmul: the batch dimensions of shapes {a.shape} and {b.shape} "
                         f"cannot be broadcast together") from None
    return TensorType(batch + (a.shape[-2], b.shape[-1]), d)


def _matmul_vjp(g, y, a, b):
    from .shape import swapaxes

    ga = _matmul(g, swapaxes(b, -1, -2)) if a.requires_grad else None
    gb = _matmul(swapaxes(a, -1, -2), g) if b.requires_grad else None
    return ga, gb


_matmul = defop("matmul", infer=_matmul_infer, reference=np.matmul, vjp=_matmul_vjp, fusion=OUT_FUSABLE,
                torch=lambda torch, a, b: torch.matmul(a, b),
                samples=lambda rng: [Sample([R.rng_float(rng, (3, 4)), R.rng_float(rng, (4, 5))]),
                                     Sample([R.rng_float(rng, (2, 3, 4)), R.rng_float(rng, (4, 2))]),
                                     Sample([R.rng_float(rng, (3, 4)), R.rng_float(rng, (2, 4, 2))]),
                                     Sample([R.rng_float(rng, (2, 1, 3, 4)), R.rng_float(rng, (3, 4, 2))]),
                                     Sample([R.rng_float(rng, (1, 3)), R.rng_float(rng, (3, 1))])])


def matmul(a, b):
    """numpy's matmul: 1-D operands are promoted to matrices and the extra axis dropped."""
    from .shape import reshape

    a, b = R.to_tensor_pair(a, b)
    if a.ndim == 0 or b.ndim == 0:
        raise ShapeError(f"matmul: operands must have at least one dimension, got {a.shape} and {b.shape}")
    a2 = reshape(a, (1,) + tuple(a.shape)) if a.ndim == 1 else a
    b2 = reshape(b, tuple(b.shape) + (1,)) if b.ndim == 1 else b
    if a2.shape[-1] != b2.shape[-2]:
        raise ShapeError(f"matmul: shapes {a.shape} and {b.shape} are not aligned "
                         f"(inner dimensions {a.shape[-1]} and {b.shape[-2] if b.ndim > 1 else b.shape[0]})")
    out = _matmul(a2, b2)
    if a.ndim == 1:
        out = reshape(out, out.shape[:-2] + out.shape[-1:])
    if b.ndim == 1:
        out = reshape(out, out.shape[:-1])
    return out


def dot(a, b):
    """numpy's dot for 1-D and 2-D operands (inner product, matrix product)."""
    a, b = R.to_tensor_pair(a, b)
    if a.ndim > 2 or b.ndim > 2:
        raise ShapeError(f"dot: supports 1-D and 2-D operands, got {a.shape} and {b.shape}; use matmul")
    if a.ndim == 0 or b.ndim == 0:
        return a * b
    return matmul(a, b)


def inner(a, b):
    from .reduce import sum as _sum

    return _sum(a * b, axis=-1)


def outer(a, b):
    from .shape import reshape

    a, b = R.to_tensor_pair(a, b)
    return reshape(a, (-1, 1)) * reshape(b, (1, -1))


Tensor.__matmul__ = lambda self, other: matmul(self, other)
Tensor.__rmatmul__ = lambda self, other: matmul(other, self)
tensor_method("matmul")(matmul)
tensor_method("dot")(dot)
