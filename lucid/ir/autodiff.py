"""Reverse-mode autodiff: one transformation for eager tensors, tracers and graphs.

Every differentiable op applied while grad mode is on leaves `_ctx = (op, attrs,
inputs)` on its result, for eager tensors and tracers alike: that recorded graph is what
`backprop` transforms. It walks it in reverse topological order and calls each op's
`vjp` rule, which builds the gradient out of ordinary lucid ops. On eager tensors those
ops compute at once (`loss.backward()`); on tracers they append the backward graph to the
trace (`lucid.grad` under `lucid.trace`, `grad_graph`). There is no second engine.

Broadcasting is undone here, once, for every op: a gradient whose shape differs from
its input's is summed over the broadcast axes.
"""
import functools

import numpy as np

from ..autograd_mode import enable_grad, is_grad_enabled, set_grad_enabled
from ..errors import LucidError
from ..tensor import FREED, Tensor

_ALIAS = "alias"  # marks a tensor that stands for another one (see `_alias`)


def _alias(t):
    """A new leaf-like view of `t` for `lucid.grad` to differentiate against.

    It shares `t`'s value (or node) and passes gradients straight through to `t`, so a
    gradient taken against the alias can itself be differentiated against `t`."""
    a = Tensor._wrap(t._data)
    a._node, a._builder = t._node, t._builder
    a.requires_grad = True
    if t.requires_grad:
        a._ctx = (_ALIAS, None, (t,))
    return a


def reduce_to_shape(g, shape):
    """Sum `g` over the axes along which a tensor of `shape` was broadcast to g's shape."""
    from ..ops.reduce import sum as _sum
    from ..ops.shape import reshape

    shape = tuple(shape)
    if tuple(g.shape) == shape:
        return g
    lead = g.ndim - len(shape)
    if lead < 0:
        raise LucidError(f"internal: gradient of shape {g.shape} for an input of shape {shape}")
    axes = tuple(range(lead)) + tuple(
        lead + i for i, s in enumerate(shape) if s == 1 and g.shape[lead + i] != 1)
    if axes:
        g = _sum(g, axis=axes, keepdims=False)
    if tuple(g.shape) != shape:
        g = reshape(g, shape)
    return g


def _topo_order(outputs):
    """Tensors reachable from `outputs` through recorded history, inputs first."""
    order, seen = [], set()
    for root in outputs:
        if id(root) in seen:
            continue
        stack = [(root, False)]
        while stack:
            t, expanded = stack.pop()
            if expanded:
                order.append(t)
                continue
            if id(t) in seen:
                continue
            seen.add(id(t))
            stack.append((t, True))
            ctx = t._ctx
            if ctx is FREED:
                raise LucidError("backward through a graph whose history was already freed; "
                                 "pass retain_graph=True to the first backward()")
            if ctx is not None:
                for i in ctx[2]:
                    if i.requires_grad and id(i) not in seen:
                        stack.append((i, False))
    return order


def backprop(outputs, seeds, wrt=None, retain_graph=True):
    """Propagate `seeds` (d out / d out) back through recorded history.

    Returns a dict id(tensor) -> gradient for every tensor reached (leaves included).
    With `wrt`, propagation is limited to paths that reach those tensors, and stops at
    them. Gradient ops are recorded (for higher-order gradients) iff grad mode is on."""
    order = _topo_order(outputs)
    stop = None
    if wrt is not None:
        stop = {id(t) for t in wrt}
        needed = set(stop)
        for t in order:
            ctx = t._ctx
            if id(t) not in stop and ctx is not None and any(id(i) in needed for i in ctx[2]):
                needed.add(id(t))
    grads = {}
    for out, seed in zip(outputs, seeds):
        _accumulate(grads, out, seed)
    for t in reversed(order):
        g = grads.get(id(t))
        ctx = t._ctx
        if g is None or ctx is None or (stop is not None and id(t) in stop):
            continue
        op, attrs, inputs = ctx
        if op == _ALIAS:
            in_grads = (g,)
        else:
            in_grads = op.vjp(g, t, *inputs, **dict(attrs))
            if len(in_grads) != len(inputs):
                raise LucidError(f"internal: vjp of {op.name} gave {len(in_grads)} gradients "
                                 f"for {len(inputs)} inputs")
        for k, (inp, gi) in enumerate(zip(inputs, in_grads)):
            if gi is None or not inp.requires_grad:
                continue
            if op != _ALIAS and k in op.nondiff:
                continue
            if wrt is not None and id(inp) not in needed:
                continue
            _accumulate(grads, inp, gi)
    if not retain_graph:
        for t in order:
            if t._ctx is not None:
                t._ctx = FREED
    return grads


def _accumulate(grads, t, g):
    if not isinstance(g, Tensor):
        g = Tensor(np.asarray(g, dtype=t.dtype.np))
    g = reduce_to_shape(g, t.shape)
    if g.dtype != t.dtype:
        g = g.astype(t.dtype)
    prev = grads.get(id(t))
    grads[id(t)] = g if prev is None else prev + g


def _ones_like(t):
    """A seed of ones; for a tracer, a graph constant (not a captured array)."""
    if t._builder is not None:
        return t._builder.constant(1.0, t.type)
    return Tensor._wrap(np.ones(t.shape, dtype=t.dtype.np))


def _zeros_like(t):
    if t._builder is not None:
        return t._builder.constant(0.0, t.type)
    return Tensor._wrap(np.zeros(t.shape, dtype=t.dtype.np))


def backward(t, grad=None, retain_graph=None, create_graph=False):
    """`t.backward()`: accumulate gradients into the `.grad` of every leaf.

    The history is freed afterwards unless `retain_graph` (which defaults to
    `create_graph`: gradients that are themselves differentiable still need it)."""
    if retain_graph is None:
        retain_graph = create_graph
    if not t.requires_grad:
        raise LucidError("backward() on a tensor that does not require grad "
                         "(no input requires grad, or it was computed under lucid.no_grad())")
    if grad is None:
        if t.size != 1:
            raise LucidError(f"backward() without a gradient needs a one-element tensor, got shape {t.shape}")
        seed = _ones_like(t)
    else:
        seed = grad if isinstance(grad, Tensor) else Tensor(np.asarray(grad, dtype=t.dtype.np))
        if tuple(seed.shape) != tuple(t.shape):
            raise LucidError(f"backward(): gradient of shape {seed.shape} for a tensor of shape {t.shape}")
    reached = []
    with set_grad_enabled(create_graph):
        grads = backprop([t], [seed], retain_graph=True)
        for x in _topo_order([t]):
            g = grads.get(id(x))
            if g is None or not (x._ctx is None or x._retain):
                continue
            if not create_graph:
                g = g.detach()
            x.grad = g if x.grad is None else x.grad + g
            reached.append(x)
        if not retain_graph:
            for x in _topo_order([t]):
                if x._ctx is not None:
                    x._ctx = FREED


def _prepare(args, argnums):
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    args = list(args)
    wrt, nested = [], False
    for i in nums:
        if i >= len(args):
            raise LucidError(f"argnums={argnums} but the function got {len(args)} positional arguments")
        a = args[i] if isinstance(args[i], Tensor) else Tensor(args[i])
        if not a.dtype.is_float:
            raise LucidError(f"cannot differentiate with respect to argument {i} of dtype {a.dtype}")
        nested = nested or a.requires_grad
        args[i] = _alias(a)
        wrt.append(args[i])
    return args, wrt, nums, nested


def value_and_grad(fn, argnums=0, has_aux=False):
    """`fn`'s value and its gradient with respect to the arguments `argnums`.

    `fn` must return a one-element tensor (or `(value, aux)` with `has_aux=True`). Works
    on eager values, inside `lucid.trace` (the backward graph becomes part of the trace)
    and nested (`grad(grad(f))`)."""

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        args, wrt, nums, nested = _prepare(args, argnums)
        with enable_grad():
            out = fn(*args, **kwargs)
        value, aux = (out[0], out[1]) if has_aux else (out, None)
        if not isinstance(value, Tensor) or value.size != 1:
            shape = getattr(value, "shape", type(value).__name__)
            raise LucidError(f"grad needs a function returning a one-element tensor, got {shape}")
        differentiable = any(t.requires_grad for t in wrt) and value.requires_grad
        if differentiable:
            with set_grad_enabled(nested and is_grad_enabled()):
                grads = backprop([value], [_ones_like(value)], wrt=wrt)
        else:
            grads = {}
        result = []
        for t in wrt:
            g = grads.get(id(t))
            if g is None:
                g = _zeros_like(t)
            result.append(g if nested else g.detach())
        result = result[0] if isinstance(argnums, int) else tuple(result)
        if not nested:
            value = value.detach()
        return ((value, aux), result) if has_aux else (value, result)

    return wrapped


def grad(fn, argnums=0, has_aux=False):
    """The gradient of a scalar function with respect to the arguments `argnums`."""
    vg = value_and_grad(fn, argnums, has_aux)

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        (value_aux, g) = vg(*args, **kwargs)
        return (g, value_aux[1]) if has_aux else g

    return wrapped


def grad_graph(graph, wrt=None, params=False):
    """Graph -> Graph: the graph of (output 0, d output 0 / d wrt...).

    `wrt` lists input positions (default: every floating input); with `params=True` the
    gradients of every floating param follow, in the order of `graph.param_nodes`."""
    from .interpreter import Retracer
    from .trace import GraphBuilder

    if wrt is None:
        wrt = [i for i, n in enumerate(graph.inputs) if n.type.dtype.is_float]
    builder = GraphBuilder(f"{graph.name}_grad")
    tracers = [builder.input(n.name, n.type) for n in graph.inputs]
    for i in wrt:
        tracers[i].requires_grad = True
    retracer = Retracer(graph, builder)
    targets = [tracers[i] for i in wrt]
    if params:
        for n in graph.param_nodes:
            if n.type.dtype.is_float:
                p = retracer.param(n)
                p.requires_grad = True
                targets.append(p)
    with enable_grad():
        outs = retracer.run(*tracers)
    loss = outs[0]
    if loss.size != 1:
        raise LucidError(f"grad_graph needs a graph whose first output has one element, got {loss.shape}")
    with enable_grad():
        grads = backprop([loss], [_ones_like(loss)], wrt=targets)
    result = []
    for t in targets:
        g = grads.get(id(t))
        result.append(g if g is not None else _zeros_like(t))
    out = builder.finish([loss] + result)
    out.meta["out_spec"] = ("tuple", ["*"] * len(out.outputs))
    return out
