"""Dead-code elimination, common-subexpression elimination and constant folding."""
import numpy as np

from ...ops.registry import get_op
from ..graph import CALL, SOURCE_OPS
from .editor import GraphEditor, constant_value, transform
from .manager import graph_pass


@graph_pass("dce")
def dce(graph):
    """Drop every node the outputs do not depend on (inputs always stay)."""
    return transform(graph, lambda ed, node, inputs: None)


def _key(node, inputs):
    # Attributes by their repr: `==` would call 1, 1.0 and True equal, and 0.0 and -0.0.
    return (node.op, tuple(id(i) for i in inputs), repr(node.attrs), node.type)


def _constant_key(node):
    """Constants merge when they are the same value once stored in their dtype (what the
    interpreter and codegen use): `1` and `1.0` in f32 do, `0.0` and `-0.0` do not."""
    try:
        with np.errstate(all="ignore"):
            stored = np.asarray(node.attrs["value"], dtype=node.type.dtype.np).tobytes()
    except (OverflowError, TypeError, ValueError):  # a value the dtype cannot hold: merge by text
        stored = repr(node.attrs["value"])
    return ("constant", stored, node.type)


@graph_pass("cse")
def cse(graph):
    """Replace a node by an earlier identical one (same op, inputs, attributes and type).

    Constants with the same value and type merge too; distinct params never do (two
    weights that happen to be equal are still two weights)."""
    seen = {}

    def visit(ed, node, inputs):
        key = _key(node, inputs)
        hit = seen.get(key)
        if hit is not None:
            return hit
        out = ed.keep(node, inputs)
        seen[key] = out
        return out

    ed = GraphEditor(graph)
    env = {}
    for node in graph.nodes:
        if node.op == "constant":
            key = _constant_key(node)
            hit = seen.get(key)
            env[node] = hit if hit is not None else seen.setdefault(key, ed.add(node))
        elif node.op in SOURCE_OPS:
            env[node] = ed.add(node)
        else:
            env[node] = visit(ed, node, [env[i] for i in node.inputs])
    return ed.finish([env[o] for o in graph.outputs])


FOLD_GROWTH_LIMIT = 4096  # fold a result bigger than its inputs only below this many elements


def mutable_params(graph):
    """Names of params a graph updates (optimiser state, running statistics): not constants."""
    return set(graph.meta.get("updates", ())) | set(graph.meta.get("mutable", ()))


@graph_pass("fold_constants")
def fold_constants(graph):
    """Evaluate at compile time every node whose inputs are all constants or frozen params.

    Weight transposes, folded batch-norm scales, shape arithmetic and anchor grids become
    params computed once. A node is not folded when it would only make a bigger array out
    of smaller ones (a broadcast of a scalar stays a cheap broadcast, not a new buffer)
    unless the result is small. `call` nodes (fusion groups) are left alone: folding runs
    before fusion.

    A folded value is a fresh C-contiguous array (a folded transpose or reshape must not
    be a strided view into another param's memory), and the same op on the same inputs
    folds once (a weight transposed for the forward and the backward pass is one param)."""
    mutable = mutable_params(graph)
    done = {}

    def visit(ed, node, inputs):
        if node.op == CALL:
            return None
        key = _key(node, inputs)
        if key in done:
            return done[key]
        values = []
        for i in inputs:
            if i.op == "param" and i.name in mutable:
                return None
            v = constant_value(i, ed.params)
            if v is None:
                return None
            values.append(v)
        if not values:
            return None
        biggest = max(v.size for v in values)
        if node.type.size > max(biggest, FOLD_GROWTH_LIMIT):
            return None
        with np.errstate(all="ignore"):  # 1/0 folds to inf, as it would compute at run time
            out = np.asarray(get_op(node.op).reference(*values, **dict(node.attrs)))
        out = np.array(out, dtype=node.type.dtype.np, order="C", copy=True)
        done[key] = ed.param(out)
        return done[key]

    return transform(graph, visit)
