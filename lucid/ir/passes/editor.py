"""GraphEditor: how a pass builds its output graph from its input graph.

Nodes are immutable, so a pass walks the old graph in order and, for each node, either
keeps it (re-linked to the new versions of its inputs) or emits replacement nodes.
`transform(graph, visit)` does the walk; `visit(editor, node, inputs)` returns the node
that stands for `node` from now on, or None to keep it. Unused nodes are dropped when
the editor finishes, so a rewrite never has to clean up after itself.
"""
import numpy as np

from ...ops.registry import get_op
from ..graph import CALL, SOURCE_OPS, Attrs, Graph, Node
from ..types import TensorType


class GraphEditor:
    def __init__(self, graph):
        self.graph = graph
        self.nodes = []
        self.params = dict(graph.params)
        self._names = {n.name for n in graph.nodes if n.name}
        self._fold_count = 0
        self.loc = None  # the user line new nodes are credited with (the node being rewritten's)

    # ---- making nodes -------------------------------------------------------------
    def add(self, node):
        self.nodes.append(node)
        return node

    def emit(self, op, inputs, attrs=None, loc=None):
        """A new node of `op` on `inputs`; its type comes from the op's shape rule."""
        opdef = get_op(op)
        bound = opdef.bind_attrs(dict(attrs or {}))
        type_ = opdef.infer_type([i.type for i in inputs], bound)
        return self.add(Node(op, tuple(inputs), bound, type_, loc=self.loc if loc is None else loc))

    def keep(self, node, inputs):
        """`node` on new `inputs` (the very same node when nothing changed)."""
        inputs = tuple(inputs)
        if all(a is b for a, b in zip(inputs, node.inputs)):
            return self.add(node)
        return self.add(Node(node.op, inputs, node.attrs, node.type, node.name, node.loc))

    def constant(self, value, dtype):
        return self.add(Node("constant", (), Attrs({"value": value}), TensorType((), dtype)))

    def param(self, array, hint="_fold"):
        """A new named param holding `array` (a 0-d array becomes a constant node)."""
        array = np.asarray(array)
        from ...dtypes import as_dtype

        dtype = as_dtype(array.dtype)
        if array.ndim == 0:
            return self.constant(array.item(), dtype)
        while True:
            name = f"{hint}{self._fold_count}"
            self._fold_count += 1
            if name not in self._names:
                break
        self._names.add(name)
        self.params[name] = array
        return self.add(Node("param", (), Attrs(), TensorType(array.shape, dtype), name=name))

    # ---- result -------------------------------------------------------------------
    def finish(self, outputs, name=None):
        """The new graph: the nodes `outputs` depend on, in the order they were added.

        Inputs always stay (they are the graph's signature), and so do the params the
        graph updates (an `update %w = ...` line names them even when nothing reads
        them). Params without a value (a parsed golden test) stay valueless; the
        functions that surviving `call` nodes run are carried over."""
        updated = set(self.graph.meta.get("updates", ()))
        live, stack = set(), list(outputs)
        stack += [n for n in self.nodes if n.op == "param" and n.name in updated]
        while stack:
            n = stack.pop()
            if n in live:
                continue
            live.add(n)
            stack.extend(n.inputs)
        seen, nodes = set(), []
        for n in self.nodes:
            if (n in live or n.op == "input") and n not in seen:
                seen.add(n)
                nodes.append(n)
        inputs = [n for n in nodes if n.op == "input"]
        params = {n.name: self.params[n.name] for n in nodes if n.op == "param" and n.name in self.params}
        called = {n.attrs["callee"] for n in nodes if n.op == CALL}
        functions = {k: f for k, f in self.graph.functions.items() if k in called}
        return Graph(name or self.graph.name, inputs, nodes, list(outputs), params, dict(self.graph.meta),
                     functions)


def transform(graph, visit):
    """Rebuild `graph`, letting `visit(editor, node, new_inputs)` replace compute nodes."""
    ed = GraphEditor(graph)
    env = {}
    for node in graph.nodes:
        if node.op in SOURCE_OPS:
            env[node] = ed.add(node)
            continue
        inputs = [env[i] for i in node.inputs]
        out = visit(ed, node, inputs)
        env[node] = out if out is not None else ed.keep(node, inputs)
    return ed.finish([env[o] for o in graph.outputs])


def constant_value(node, graph_params):
    """The array behind a param or constant node (None for anything else)."""
    if node.op == "constant":
        return np.asarray(node.attrs["value"], dtype=node.type.dtype.np)
    if node.op == "param":
        return graph_params.get(node.name)
    return None
