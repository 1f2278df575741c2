"""Tensor: an eager value over a numpy array, or a tracer standing for a graph node.

One class serves both modes. An eager tensor holds `_data` (a numpy array); a tracer
holds `_node` (a `lucid.ir.Node`) and the `_builder` recording the graph. Ops never look
at which one they got: they call `lucid.ops.registry.apply`, which computes the numpy
reference for eager inputs and emits a node for tracers.

Autodiff history is the same in both modes: a tensor produced by a differentiable op
while grad mode is on keeps `_ctx = (op, attrs, inputs)`. `lucid.ir.autodiff.backprop`
walks that recorded graph with the ops' vjp rules, whether the tensors are eager values
(`loss.backward()`) or tracers (`lucid.grad` inside `lucid.trace`).

Methods such as `exp`, `sum` or `reshape` are attached by the op families in
`lucid/ops/` (see `tensor_method`), so the list of ops lives in one place only.
"""
import numpy as np

from . import dtypes as _dt
from ._source import user_location
from .errors import LucidError, TraceError
from .ir.types import TensorType


class _Freed:
    """Marks history released by a backward pass that did not retain the graph."""

    def __repr__(self):
        return "<freed>"


FREED = _Freed()


def _to_array(data, dtype=None):
    if isinstance(data, Tensor):
        data = data._eager_data("lucid.tensor(tensor)")
    if dtype is not None:
        dtype = _dt.as_dtype(dtype)
    if isinstance(data, (np.ndarray, np.generic)):  # numpy arrays and scalars keep their dtype
        arr = np.asarray(data)
        if dtype is None:
            dtype = _dt.as_dtype(arr.dtype)
    else:
        arr = np.asarray(data)
        if dtype is None:
            if arr.dtype.kind == "f":
                dtype = _dt.DEFAULT_FLOAT
            elif arr.dtype.kind in "iu":
                dtype = _dt.DEFAULT_INT
            elif arr.dtype.kind == "b":
                dtype = _dt.bool_
            else:
                raise _dt.DTypeError(f"cannot make a tensor from {type(data).__name__} data of dtype {arr.dtype}")
    if arr.dtype != dtype.np:
        arr = arr.astype(dtype.np)
    return arr


class Tensor:
    """A multi-dimensional array with autodiff; see the module docstring."""

    __slots__ = ("_data", "_node", "_builder", "requires_grad", "grad", "_ctx", "_retain", "__weakref__")
    __array_priority__ = 1000  # numpy defers to our operators: ndarray + Tensor -> Tensor

    def __init__(self, data, requires_grad=False, dtype=None):
        self._data = _to_array(data, dtype)
        self._node = None
        self._builder = None
        self.grad = None
        self._ctx = None
        self._retain = False
        self.requires_grad = bool(requires_grad)
        if self.requires_grad and not self.dtype.is_float:
            raise _dt.DTypeError(f"only floating tensors can require gradients, got {self.dtype}")

    @classmethod
    def _wrap(cls, array):
        """A tensor over `array` as is (no copy, no dtype change): the fast path for ops."""
        t = object.__new__(Tensor)
        t._data = array
        t._node = None
        t._builder = None
        t.grad = None
        t._ctx = None
        t._retain = False
        t.requires_grad = False
        return t

    @classmethod
    def _tracer(cls, node, builder):
        t = cls._wrap(None)
        t._node = node
        t._builder = builder
        return t

    # ---- what kind of tensor -------------------------------------------------
    @property
    def is_tracer(self):
        return self._node is not None

    def _eager_data(self, what):
        if self._node is not None:
            raise TraceError(
                f"{what} needs a concrete value, but this tensor is a tracer in a static graph "
                f"(at {user_location()}); keep tensor values inside lucid ops while tracing"
            )
        return self._data

    # ---- type ----------------------------------------------------------------
    @property
    def type(self):
        if self._node is not None:
            return self._node.type
        return TensorType(self._data.shape, _dt.as_dtype(self._data.dtype))

    @property
    def shape(self):
        return self._node.type.shape if self._node is not None else self._data.shape

    @property
    def dtype(self):
        return self._node.type.dtype if self._node is not None else _dt.as_dtype(self._data.dtype)

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def size(self):
        return int(np.prod(self.shape, dtype=np.int64))

    def __len__(self):
        if not self.shape:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    # ---- values --------------------------------------------------------------
    @property
    def data(self):
        return self._eager_data("Tensor.data")

    @data.setter
    def data(self, value):
        if isinstance(value, Tensor):
            if value._node is not None:
                # Writing a traced value into a tensor: a state update that tracing records.
                from .ir.trace import record_assignment

                record_assignment(self, value)
                return
            value = value._data
        self._eager_data("Tensor.data =")
        self._data = np.asarray(value)

    def numpy(self):
        return self._eager_data("Tensor.numpy()")

    def item(self):
        data = self._eager_data("Tensor.item()")
        if data.size != 1:
            raise LucidError(f"item() needs a tensor with one element, got shape {data.shape}")
        return data.item()

    def tolist(self):
        return self._eager_data("Tensor.tolist()").tolist()

    def __array__(self, dtype=None, copy=None):
        data = self._eager_data("numpy.asarray(tensor)")
        return data if dtype is None else data.astype(dtype)

    def __bool__(self):
        data = self._eager_data("Python control flow on a tensor's value (bool(tensor))")
        if data.size != 1:
            raise LucidError(f"the truth value of a tensor with {data.size} elements is ambiguous")
        return bool(data)

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __index__(self):
        data = self._eager_data("using a tensor as a Python index")
        if data.dtype.kind not in "iu" or data.size != 1:
            raise TypeError("only integer tensors with one element can be used as an index")
        return int(data)

    # ---- autodiff ------------------------------------------------------------
    @property
    def is_leaf(self):
        return self._ctx is None

    def backward(self, grad=None, retain_graph=None, create_graph=False):
        """Accumulate d(self)/d(leaf) into every leaf's `.grad` (see lucid.ir.autodiff)."""
        from .ir.autodiff import backward

        backward(self, grad, retain_graph=retain_graph, create_graph=create_graph)

    def retain_grad(self):
        self._retain = True
        return self

    def detach(self):
        """The same value, cut from autodiff history."""
        if self._node is not None:
            return Tensor._tracer(self._node, self._builder)
        return Tensor._wrap(self._data)

    def requires_grad_(self, flag=True):
        self.requires_grad = bool(flag)
        return self

    def zero_grad(self):
        self.grad = None

    # ---- conversion ----------------------------------------------------------
    def astype(self, dtype):
        from .ops.elementwise import cast

        return cast(self, dtype)

    def float(self):
        return self.astype(_dt.float32)

    def double(self):
        return self.astype(_dt.float64)

    def long(self):
        return self.astype(_dt.int64)

    def int(self):
        return self.astype(_dt.int32)

    def bool(self):
        return self.astype(_dt.bool_)

    @property
    def T(self):
        from .ops.shape import transpose

        return transpose(self)

    @property
    def mT(self):
        from .ops.shape import swapaxes

        return swapaxes(self, -1, -2)

    def __repr__(self):
        extra = ", requires_grad=True" if self.requires_grad else ""
        if self._node is not None:
            return f"Tensor(<tracer {self.type}>{extra})"
        body = np.array2string(self._data, separator=", ", prefix="Tensor(")
        return f"Tensor({body}, dtype={self.dtype.name}{extra})"

    def __hash__(self):
        return id(self)

    def __copy__(self):
        t = Tensor._wrap(self._data)
        t._node, t._builder = self._node, self._builder
        return t

    def __deepcopy__(self, memo):
        if self._node is not None:
            raise TraceError("cannot deep-copy a tracer")
        t = type(self).__new__(type(self))
        Tensor.__init__(t, self._data.copy(), requires_grad=self.requires_grad)
        memo[id(self)] = t
        return t


def tensor_method(*names):
    """Attach a function to Tensor under `names` (the op families use this)."""

    def deco(fn):
        for name in names or (fn.__name__,):
            setattr(Tensor, name, fn)
        return fn

    return deco


def as_tensor(x, dtype=None):
    """`x` if it is already a tensor (of `dtype`, when given), else a new eager tensor."""
    if isinstance(x, Tensor):
        if dtype is not None and x.dtype != _dt.as_dtype(dtype):
            return x.astype(dtype)
        return x
    return Tensor(x, dtype=dtype)
