"""`Parameter`: a tensor that a `Module` owns and an optimiser updates.

A Parameter is a plain `Tensor` with two differences that make model code short: it
requires gradients unless told otherwise, and floating data becomes float32 (lucid's
default float) unless a dtype is given, so a model built from float64 numpy arrays does
not silently run in double precision. Assigning one to a module attribute registers it
(see `Module.__setattr__`).
"""
import numpy as np

from .. import dtypes as _dt
from ..tensor import Tensor


def _as_array(data):
    if isinstance(data, Tensor):
        return data._eager_data("nn.Parameter(tensor)")
    return data if isinstance(data, np.ndarray) else np.asarray(data)


class Parameter(Tensor):
    """A learnable tensor: `Parameter(data, requires_grad=True, dtype=None)`."""

    __slots__ = ()

    def __init__(self, data, requires_grad=True, dtype=None):
        arr = _as_array(data)
        if dtype is None and arr.dtype.kind == "f":
            dtype = _dt.DEFAULT_FLOAT
        super().__init__(arr, requires_grad=requires_grad, dtype=dtype)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()
