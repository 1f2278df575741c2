"""Tracing: run Python code on tracer tensors and record a static `Graph`.

`lucid.trace(fn_or_module, *example_inputs)` gives every example tensor a tracer; each op
applied to a tracer appends a node (see `GraphBuilder.emit`). Eager tensors the code
touches are captured: a module's parameters and buffers become `param` nodes under their
`state_dict` names (their arrays kept in `graph.params`), other arrays become `_cN`
params, and 0-d values become `constant` nodes. Python control flow simply unrolls;
anything that needs a concrete value (`.item()`, `bool(t)`, `.numpy()`) raises
`TraceError` with the user's file and line.
"""
import inspect

import numpy as np

from .._source import user_location
from ..errors import LucidError, TraceError
from ..tensor import Tensor
from .graph import Attrs, Graph, Node
from .types import TensorType


class GraphBuilder:
    """Collects nodes while tracing; `finish` turns them into a `Graph`."""

    def __init__(self, name="main", param_names=None):
        self.name = name
        self.nodes = []
        self.inputs = []
        self.params = {}
        self.param_names = dict(param_names or {})  # id(tensor) -> state_dict name
        self._captured = {}  # id(eager tensor) -> (tensor, node); the tensor is kept alive
        self._used_names = set()
        self.updates = {}  # param name -> tracer assigned to that tensor's .data

    # ---- values entering the graph -------------------------------------------
    def input(self, name, type_):
        name = self._unique(name)
        node = Node("input", (), Attrs(), type_, name=name)
        self.nodes.append(node)
        self.inputs.append(node)
        return Tensor._tracer(node, self)

    def _unique(self, name):
        base, k = name, 1
        while name in self._used_names:
            name = f"{base}_{k}"
            k += 1
        self._used_names.add(name)
        return name

    def capture(self, t):
        """The node standing for tensor `t` in this graph (capturing eager tensors)."""
        if t._builder is self:
            return t._node
        if t._builder is not None:
            raise TraceError(f"a tracer from another trace was used here (at {user_location()})")
        hit = self._captured.get(id(t))
        if hit is not None:
            return hit[1]
        data = t._data
        name = self.param_names.get(id(t))
        if name is None and data.ndim == 0:
            node = Node("constant", (), Attrs({"value": data.item()}), t.type)
        else:
            name = self._unique(name or f"_c{len(self.params)}")
            node = Node("param", (), Attrs(), t.type, name=name)
            self.params[name] = data
        self.nodes.append(node)
        self._captured[id(t)] = (t, node)
        return node

    def constant(self, value, type_):
        """A tracer for `value` broadcast to `type_` (a constant node, broadcast if needed)."""
        from ..ops.shape import broadcast_to

        node = Node("constant", (), Attrs({"value": value}), TensorType((), type_.dtype))
        self.nodes.append(node)
        return broadcast_to(Tensor._tracer(node, self), type_.shape)

    # ---- ops ------------------------------------------------------------------
    def emit(self, op, tensors, attrs, out_type):
        inputs = tuple(self.capture(t) for t in tensors)
        node = Node(op.name, inputs, attrs, out_type, loc=user_location())
        self.nodes.append(node)
        return Tensor._tracer(node, self)

    def common(self, other):
        raise TraceError(f"tracers from two different traces met in one op (at {user_location()})")

    def assign(self, target, value):
        """Record `target.data = value` (an optimiser step, a running-stat update)."""
        if target._builder is not None:
            raise TraceError("only eager tensors (parameters, buffers) can be assigned while tracing")
        node = self.capture(target)
        if node.op != "param":
            raise TraceError("only named tensors can be assigned while tracing")
        if tuple(value.shape) != tuple(target.shape) or value.dtype != target.dtype:
            raise TraceError(f"assignment to {node.name} changes its type from {node.type} to {value.type}")
        self.updates[node.name] = value

    # ---- result ---------------------------------------------------------------
    def finish(self, outputs):
        out_nodes = [self.capture(t) for t in outputs]
        update_names = list(self.updates)
        out_nodes += [self.capture(self.updates[n]) for n in update_names]
        meta = {"updates": update_names} if update_names else {}
        # The tensors behind the params, for whoever runs the graph with live values.
        meta["tensors"] = {node.name: t for t, node in self._captured.values() if node.op == "param"}
        # Keep only nodes that are used, in recording order (dead tracer work is dropped).
        live = set()
        stack = list(out_nodes)
        while stack:
            n = stack.pop()
            if n in live:
                continue
            live.add(n)
            stack.extend(n.inputs)
        nodes = [n for n in self.nodes if n in live or n.op == "input"]
        params = {n.name: self.params[n.name] for n in nodes if n.op == "param"}
        return Graph(self.name, list(self.inputs), nodes, out_nodes, params, meta)


_active = []  # the builders of the traces under way (innermost last)


def record_assignment(target, value):
    """`tensor.data = tracer`: route it to the trace that produced the tracer."""
    value._builder.assign(target, value)


def _flatten(obj, leaves):
    """Flatten nested tuples/lists/dicts of tensors; return a spec to rebuild them."""
    if isinstance(obj, Tensor):
        leaves.append(obj)
        return "*"
    if isinstance(obj, (tuple, list)):
        return (type(obj).__name__, [_flatten(o, leaves) for o in obj])
    if isinstance(obj, dict):
        return ("dict", [(k, _flatten(v, leaves)) for k, v in obj.items()])
    raise TraceError(f"a traced function must return tensors (or tuples, lists, dicts of them), "
                     f"got {type(obj).__name__}")


def unflatten(spec, leaves):
    """Rebuild the structure `_flatten` recorded from a flat sequence of values."""
    return _build(spec, iter(leaves))


def _build(s, it):
    # A module-level function, not a self-referencing closure: such a closure is a
    # reference cycle that would keep the leaves (a compiled function's output arrays,
    # which it reuses once nobody holds them) alive until the cyclic collector runs.
    if s == "*":
        return next(it)
    kind, items = s
    if kind == "dict":
        return {k: _build(v, it) for k, v in items}
    seq = [_build(v, it) for v in items]
    return tuple(seq) if kind == "tuple" else seq


def _input_names(fn, count):
    target = fn.forward if hasattr(fn, "forward") and hasattr(fn, "named_parameters") else fn
    try:
        params = [p for p in inspect.signature(target).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        names = [p.name for p in params]
    except (TypeError, ValueError):
        names = []
    if len(names) < count and any(
            p.kind == p.VAR_POSITIONAL for p in inspect.signature(target).parameters.values()):
        names = names + [f"arg{i}" for i in range(len(names), count)]
    return [names[i] if i < len(names) else f"arg{i}" for i in range(count)]


def _module_param_names(fn):
    names = {}
    mod = fn if hasattr(fn, "named_parameters") else getattr(fn, "__self__", None)
    if mod is None or not hasattr(mod, "named_parameters"):
        return names
    for name, p in mod.named_parameters():
        names.setdefault(id(p), name)
    for name, b in mod.named_buffers():
        names.setdefault(id(b), name)
    return names


def trace(fn, *example_inputs, name=None, param_names=None, on_exit=None):
    """Trace `fn` (a function or an `nn.Module`) on example inputs into a `Graph`.

    Tensor or ndarray arguments become graph inputs (named after `fn`'s parameters);
    other arguments (ints, tuples, ...) are static and baked into the graph.
    `param_names` (id(tensor) -> name) names captured tensors; `on_exit(builder)` runs
    after `fn` returns and before the graph is made (`lucid.compile` records optimiser
    state updates there)."""
    if name is None:
        name = type(fn).__name__ if hasattr(fn, "named_parameters") else getattr(fn, "__name__", "main")
        name = name if name.isidentifier() else "main"
    names = _module_param_names(fn)
    names.update(param_names or {})
    builder = GraphBuilder(name, names)
    arg_names = _input_names(fn, len(example_inputs))
    args = []
    for arg, arg_name in zip(example_inputs, arg_names):
        if isinstance(arg, (Tensor, np.ndarray)):
            t = arg if isinstance(arg, Tensor) else Tensor(arg)
            if t._node is not None:
                raise TraceError("lucid.trace was given a tracer as an example input")
            args.append(builder.input(arg_name, t.type))
        else:
            args.append(arg)
    _active.append(builder)
    try:
        result = fn(*args)
        if on_exit is not None:
            on_exit(builder)
    finally:
        _active.pop()
    leaves = []
    spec = _flatten(result, leaves)
    graph = builder.finish(leaves)
    graph.meta["out_spec"] = spec
    return graph


def input_type(x):
    if isinstance(x, Tensor):
        return x.type
    arr = np.asarray(x)
    return TensorType(arr.shape, arr.dtype)


__all__ = ["trace", "GraphBuilder", "unflatten", "LucidError"]
