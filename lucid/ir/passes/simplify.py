"""Algebraic simplification and batch-norm folding: rewrite rules kept as data.

Each `Rule` is a pattern (see `patterns.py`) and a rewrite `(editor, binds, node) -> Node`
(or None when it does not apply after all). `rewrite_pass` turns a rule list into a pass:
one walk in graph order, where each node is tried against the rules and a replacement is
tried again. Constant arithmetic the rules leave behind (`1 / c`, `s1 * s2`) is computed by
`fold_constants`, so the pipeline runs these passes to a fixpoint.
"""
from dataclasses import dataclass

import numpy as np

from ..graph import SOURCE_OPS
from .basic import mutable_params
from .editor import GraphEditor
from .manager import Pass
from .patterns import As, C, K, Matcher


@dataclass(frozen=True)
class Rule:
    name: str
    pattern: tuple
    rewrite: object
    when: object = None  # optional (binds, node, ctx) -> bool


class _Ctx:
    """What rules may ask about the graph: compile-time values and use counts."""

    def __init__(self, matcher, uses, origin):
        self.matcher = matcher
        self._uses = uses
        self._origin = origin

    def value(self, node):
        return self.matcher.known(node)

    def single_use(self, node):
        old = self._origin.get(node)
        return old is not None and self._uses.get(old, 0) == 1


def _fit(ed, new, node):
    """`new` adjusted to `node`'s type (broadcast if it lost dims), or None if it cannot be."""
    if new.type == node.type:
        return new
    if new.type.dtype != node.type.dtype:
        return None
    try:
        return ed.emit("broadcast_to", [new], {"shape": node.type.shape})
    except Exception:
        return None


def rewrite_pass(name, rules, max_depth=4):
    """A pass applying `rules` everywhere (each replacement is itself tried again).

    Rules are indexed by the op at their pattern's root, so a node is matched only against
    the rules that can apply to it (in their list order), not the whole list."""
    roots = [(_root_op(rule.pattern), rule) for rule in rules]
    by_op = {}

    def candidates(op):
        hit = by_op.get(op)
        if hit is None:
            hit = by_op[op] = [rule for root, rule in roots if root is None or root == op]
        return hit

    def run(graph):
        ed = GraphEditor(graph)
        matcher = Matcher(ed.params, mutable_params(graph))
        uses = {}
        for n in graph.nodes:
            for i in n.inputs:
                uses[i] = uses.get(i, 0) + 1
        for o in graph.outputs:
            uses[o] = uses.get(o, 0) + 1
        origin = {}
        ctx = _Ctx(matcher, uses, origin)
        env = {}
        for node in graph.nodes:
            if node.op in SOURCE_OPS:
                env[node] = ed.add(node)
                continue
            current = ed.keep(node, [env[i] for i in node.inputs])
            origin[current] = node
            ed.loc = node.loc  # what replaces a node keeps its user line for error messages
            for _ in range(max_depth):
                tried = candidates(current.op)
                if not tried:
                    break
                replaced = _apply_first(ed, tried, current, matcher, ctx)
                if replaced is None or replaced is current:
                    break
                current = replaced
            env[node] = current
        return ed.finish([env[o] for o in graph.outputs])

    return Pass(name, run, doc=f"rewrite rules: {', '.join(r.name for r in rules)}")


def _root_op(pattern):
    """The op a pattern's root must have (None: a variable, which matches any node)."""
    while isinstance(pattern, As):
        pattern = pattern.pattern
    return pattern[0] if isinstance(pattern, tuple) else None


def _apply_first(ed, rules, node, matcher, ctx):
    for rule in rules:
        binds = {}
        if not matcher.match(rule.pattern, node, binds):
            continue
        if rule.when is not None and not rule.when(binds, node, ctx):
            continue
        new = rule.rewrite(ed, binds, node)
        if new is None:
            continue
        new = _fit(ed, new, node)
        if new is not None:
            return new
    return None


# ---- helpers used by the rules --------------------------------------------------------------

def _is_float(b, node, ctx):
    return node.type.dtype.is_float


def _same_shape_as(var):
    return lambda b, node, ctx: b[var].type.shape == node.type.shape


def _bind(var):
    return lambda ed, b, node: b[var]


def _zeros(ed, b, node):
    return ed.constant(0.0, node.type.dtype)


def _merge_reshape(ed, b, node):
    return ed.emit("reshape", [b["x"]], {"shape": node.type.shape})


def _merge_transpose(ed, b, node):
    inner = b["t"].attrs["perm"]
    outer = node.attrs["perm"]
    perm = tuple(inner[p] for p in outer)
    if perm == tuple(range(len(perm))):
        return b["x"]
    return ed.emit("transpose", [b["x"]], {"perm": perm})


def _identity_slice(b, node, ctx):
    return node.type.shape == b["x"].type.shape and all(s == 1 for s in node.attrs["step"])


def _sum_of_broadcast(b, node, ctx):
    x, axes = b["x"], node.attrs["axes"]
    out_shape = node.inputs[0].type.shape
    lead = len(out_shape) - x.type.ndim
    for a in range(len(out_shape)):
        xd = x.type.shape[a - lead] if a >= lead else 1
        if a in axes and xd != 1:
            return False
        if a not in axes and xd != out_shape[a]:
            return False
    return True


def _sum_broadcast_rewrite(ed, b, node):
    x, axes = b["x"], node.attrs["axes"]
    bshape = node.inputs[0].type.shape
    n = int(np.prod([bshape[a] for a in axes], dtype=np.int64))
    shaped = ed.emit("reshape", [x], {"shape": node.type.shape}) if x.type.shape != node.type.shape else x
    return ed.emit("mul", [shaped, ed.constant(float(n) if node.type.dtype.is_float else n, node.type.dtype)])


def _fold_scalars(op):
    def rewrite(ed, b, node):
        inner = ed.emit(op, [b["c1"], b["c2"]])
        return ed.emit(node.op, [b["x"], inner])

    return rewrite


def _div_to_mul(ed, b, node):
    one = ed.constant(1.0, node.type.dtype)
    return ed.emit("mul", [b["x"], ed.emit("div", [one, b["c"]])])


def _sub_to_add(ed, b, node):
    return ed.emit("add", [b["x"], ed.emit("neg", [b["c"]])])


def _distribute(ed, b, node):
    return ed.emit("add", [ed.emit("mul", [b["x"], b["c2"]]), ed.emit("mul", [b["c1"], b["c2"]])])


def _gather_constants(ed, b, node):
    return ed.emit("add", [ed.emit("add", [b["x"], b["y"]]), ed.emit("add", [b["c1"], b["c2"]])])


def _single_use(*names):
    return lambda b, node, ctx: all(ctx.single_use(b[n]) for n in names)


def _square(ed, b, node):
    return ed.emit("mul", [b["x"], b["x"]])


# ---- batch-norm folding: a per-output-channel scale moves into the weights -------------------

def _channel_vector(ctx, s, channels, axis, ndim):
    """The value of `s` as a vector over `channels`, if it varies along `axis` only."""
    v = ctx.value(s)
    if v is None or v.ndim > ndim:
        return None
    v = v.reshape((1,) * (ndim - v.ndim) + v.shape)
    if any(d != 1 for k, d in enumerate(v.shape) if k != axis) or v.shape[axis] not in (1, channels):
        return None
    return np.broadcast_to(v.reshape(-1), (channels,))


def _scale_when(out, axis_of):
    """Guard for folding `mul(out(x, w), s)`: w a frozen param, `out` used once, s per-channel."""

    def when(b, node, ctx):
        producer, w = b[out], b["w"]
        if not (node.type.dtype.is_float and w.op == "param" and ctx.value(w) is not None
                and ctx.single_use(producer)):
            return False
        axis, channels = axis_of(producer, w)
        scale = _channel_vector(ctx, b["s"], channels, axis, producer.type.ndim)
        b["scale"] = scale
        return scale is not None

    return when


def _conv_scale(ed, b, node):
    w = b["w"]
    new_w = ed.param(ed.params[w.name] * b["scale"].reshape(-1, 1, 1, 1).astype(w.type.dtype.np))
    return ed.emit("conv2d", [b["x"], new_w], dict(b["conv"].attrs))


def _matmul_scale(ed, b, node):
    w = b["w"]  # [..., K, N]: output column n is scaled by scaling w[..., :, n]
    new_w = ed.param(ed.params[w.name] * b["scale"].astype(w.type.dtype.np))
    return ed.emit("matmul", [b["x"], new_w])


SIMPLIFY_RULES = [
    Rule("add-zero", ("add", "x", K(0.0)), _bind("x")),
    Rule("sub-zero", ("sub", "x", K(0.0)), _bind("x")),
    Rule("mul-one", ("mul", "x", K(1.0)), _bind("x")),
    Rule("div-one", ("div", "x", K(1.0)), _bind("x")),
    Rule("pow-one", ("pow", "x", K(1.0)), _bind("x")),
    Rule("pow-two", ("pow", "x", K(2.0)), _square),
    Rule("sub-self", ("sub", "x", "x"), _zeros, when=_is_float),
    Rule("neg-neg", ("neg", ("neg", "x")), _bind("x")),
    Rule("reshape-noop", ("reshape", "x"), _bind("x"), when=_same_shape_as("x")),
    Rule("reshape-reshape", ("reshape", ("reshape", "x")), _merge_reshape),
    Rule("transpose-transpose", ("transpose", As("t", ("transpose", "x"))), _merge_transpose),
    Rule("broadcast-noop", ("broadcast_to", "x"), _bind("x"), when=_same_shape_as("x")),
    Rule("cast-noop", ("cast", "x"), _bind("x"), when=lambda b, n, c: b["x"].type == n.type),
    Rule("slice-noop", ("slice", "x"), _bind("x"), when=_identity_slice),
    Rule("sum-of-broadcast", ("sum", ("broadcast_to", "x")), _sum_broadcast_rewrite, when=_sum_of_broadcast),
    Rule("div-by-constant", ("div", "x", C("c")), _div_to_mul, when=_is_float),
    Rule("sub-constant", ("sub", "x", C("c")), _sub_to_add, when=_is_float),
    Rule("mul-mul-constants", ("mul", ("mul", "x", C("c1")), C("c2")), _fold_scalars("mul")),
    Rule("add-add-constants", ("add", ("add", "x", C("c1")), C("c2")), _fold_scalars("add")),
    Rule("mul-over-add-constant", ("mul", ("add", "x", C("c1")), C("c2")), _distribute, when=_is_float),
    # A residual join of two biased branches (two folded batch norms): one bias add, not two.
    Rule("add-constants-of-sum", ("add", As("l", ("add", "x", C("c1"))), As("r", ("add", "y", C("c2")))),
         _gather_constants, when=_single_use("l", "r")),
]

# Batch norm in eval mode is (x - mean) * rsqrt(var + eps) * gamma + beta. After the rules
# above it is mul-by-constant then add-constant; these move the scale into the weights of
# the convolution or linear layer before it, leaving its bias add for the fusion pass.
FOLD_SCALE_RULES = [
    Rule("conv-scale", ("mul", As("conv", ("conv2d", "x", "w")), "s"), _conv_scale,
         when=_scale_when("conv", lambda conv, w: (1, w.type.shape[0]))),
    Rule("matmul-scale", ("mul", As("mm", ("matmul", "x", "w")), "s"), _matmul_scale,
         when=_scale_when("mm", lambda mm, w: (mm.type.ndim - 1, w.type.shape[-1]))),
]

simplify = rewrite_pass("simplify", SIMPLIFY_RULES)
fold_scale = rewrite_pass("fold_batchnorm", FOLD_SCALE_RULES)
