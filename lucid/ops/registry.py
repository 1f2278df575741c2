"""The op registry: every primitive op defined once, and the one dispatch path.

An `OpDef` carries everything the rest of lucid needs to know about an op:

- `name` and `attrs` (the attribute schema: name -> default, `REQUIRED` for none);
- `infer(*input_types, **attrs) -> TensorType`: the shape/dtype rule, raising
  `ShapeError`/`DTypeError` that name the op and the shapes;
- `reference(*arrays, **attrs) -> ndarray`: a plain numpy implementation, the ground
  truth for eager mode, the interpreter, constant folding and tests;
- `vjp(g, out, *inputs, **attrs) -> tuple`: the gradient of each input as lucid ops on
  tensors (so it builds graph nodes when the tensors are tracers), `None` per input that
  has no gradient; `vjp=None` for ops without gradients (comparisons, argmax, ...);
- `fusion`: the op's pattern for the fusion pass (TVM's kinds);
- `samples(rng) -> [Sample]`: sample inputs from which the test suite is generated;
- `torch(torch, *tensors, **attrs)`: the same op written with PyTorch, an independent
  oracle the tests compare with when torch is installed (never used at run time).

`apply` is the only way an op runs: eager inputs get the numpy reference, tracers get a
graph node, and either way the autodiff history is recorded the same way.
"""
import sys
from dataclasses import dataclass, field

import numpy as np

from ..autograd_mode import is_grad_enabled
from ..errors import LucidError
from ..ir.graph import Attrs
from ..ir.trace import _active as _active_traces
from ..tensor import Tensor

ELEMENTWISE = "elementwise"  # same shape in and out, one element from one element
BROADCAST = "broadcast"  # elementwise with numpy broadcasting of its inputs
INJECTIVE = "injective"  # each output element reads one input element (reshape, transpose, slice)
REDUCE = "reduce"  # reduces one or more axes
OUT_FUSABLE = "out_fusable"  # computes each output element on its own (matmul, conv, pooling):
#                               elementwise epilogues can be fused after it
OPAQUE = "opaque"  # everything else (sort): a kernel of its own, nothing fused into it
FUSION_KINDS = (ELEMENTWISE, BROADCAST, INJECTIVE, REDUCE, OUT_FUSABLE, OPAQUE)


class _Required:
    def __repr__(self):
        return "REQUIRED"


REQUIRED = _Required()


@dataclass
class Sample:
    """One set of sample inputs (numpy arrays) and attributes for an op's tests.

    `grad` says whether the finite-difference gradient check applies (False for samples
    at kinks or for inputs that are indices); `nondiff` lists input positions whose
    gradient is not checked."""

    inputs: list
    attrs: dict = field(default_factory=dict)
    grad: bool = True
    nondiff: tuple = ()
    note: str = ""


class OpDef:
    """One primitive op; see the module docstring. Calling it applies it to tensors."""

    def __init__(self, name, *, infer, reference, vjp=None, fusion=OPAQUE, attrs=None,
                 samples=None, nondiff=(), variadic=False, torch=None, doc=""):
        if fusion not in FUSION_KINDS:
            raise ValueError(f"unknown fusion kind {fusion!r}")
        self.name = name
        self.infer = infer
        self.reference = reference
        self.vjp = vjp
        self.fusion = fusion
        self.attr_schema = dict(attrs or {})
        self.samples = samples
        self.nondiff = tuple(nondiff)  # input positions that never get a gradient
        self.variadic = variadic
        self.torch = torch
        self.__doc__ = doc

    def __repr__(self):
        return f"<op {self.name}>"

    def __call__(self, *inputs, **attrs):
        return apply(self, *inputs, **attrs)

    @property
    def differentiable(self):
        return self.vjp is not None

    def bind_attrs(self, attrs):
        """Check attribute names, fill defaults, freeze values: the node's `Attrs`."""
        unknown = set(attrs) - set(self.attr_schema)
        if unknown:
            raise LucidError(f"{self.name}: unknown attribute(s) {sorted(unknown)}; "
                             f"it takes {sorted(self.attr_schema)}")
        out = []
        for key, default in self.attr_schema.items():
            if key in attrs:
                value = attrs[key]
            elif default is REQUIRED:
                raise LucidError(f"{self.name}: missing required attribute {key!r}")
            else:
                value = default
            out.append((key, value))
        return Attrs(out)

    def infer_type(self, types, attrs):
        """Run the shape rule with the attributes bound (what the verifier calls)."""
        return self.infer(*types, **dict(attrs))

    def run_reference(self, arrays, attrs):
        out = self.reference(*arrays, **dict(attrs))
        return np.asarray(out)


OPS = {}


def defop(name, **kwargs):
    """Define and register a primitive op (see `OpDef`)."""
    if name in OPS:
        raise ValueError(f"op {name!r} is defined twice")
    op = OpDef(name, **kwargs)
    op.family = sys._getframe(1).f_globals.get("__name__", "").rsplit(".", 1)[-1]
    OPS[name] = op
    return op


def get_op(name):
    try:
        return OPS[name]
    except KeyError:
        raise LucidError(f"unknown op {name!r}") from None


def _named(err, op_name):
    """The same error with the op's name in front, where the shape rule left it out."""
    msg = str(err.args[0]) if err.args else ""
    return err if msg.startswith(op_name) else type(err)(f"{op_name}: {msg}")


def apply(op, *inputs, **attrs):
    """Run `op` on tensors: the one dispatch path for eager mode and tracing."""
    if not isinstance(op, OpDef):
        op = get_op(op)
    tensors = []
    for x in inputs:
        if not isinstance(x, Tensor):
            raise LucidError(f"{op.name}: expected tensors, got {type(x).__name__}")
        tensors.append(x)
    bound = op.bind_attrs(attrs)
    try:
        out_type = op.infer(*[t.type for t in tensors], **dict(bound))
    except LucidError as err:
        raise _named(err, op.name) from None

    builder = None
    for t in tensors:
        if t._builder is not None:
            if builder is not None and t._builder is not builder:
                builder = builder.common(t._builder)
            else:
                builder = t._builder
    if builder is None and _active_traces:
        # Named tensors (a traced module's parameters and buffers) and leaves that require
        # gradients stay symbolic: their ops go into the graph, where autodiff and the
        # compiler see them (and a compiled training step reads their current values).
        innermost = _active_traces[-1]
        if any(id(t) in innermost.param_names or (t.requires_grad and t._ctx is None) for t in tensors):
            builder = innermost
    if builder is not None:
        out = builder.emit(op, tensors, bound, out_type)
    else:
        data = op.reference(*[t._data for t in tensors], **dict(bound))
        data = np.asarray(data)
        if data.dtype != out_type.dtype.np:
            data = data.astype(out_type.dtype.np)
        if data.shape != out_type.shape:
            raise LucidError(f"internal: {op.name} reference gave shape {data.shape}, "
                             f"its shape rule says {out_type.shape}")
        out = Tensor._wrap(data)

    if op.vjp is not None and is_grad_enabled():
        for i, t in enumerate(tensors):
            if t.requires_grad and i not in op.nondiff:
                out.requires_grad = True
                out._ctx = (op, bound, tuple(tensors))
                break
    return out
