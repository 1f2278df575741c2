"""Operator fusion: group ops into kernels, each kernel a function the graph calls.

Groups grow greedily in graph order, producer to consumer, by the ops' fusion kinds (the
patterns TVM uses):

- an elementwise or broadcast op joins the group of an input it consumes: a chain of
  elementwise ops, a reduction's epilogue (`sum * (1/n)`), or a convolution's / matmul's
  epilogue (bias add, activation, residual add);
- an injective op (reshape, transpose, slice, pad, ...) joins only groups that are still
  purely elementwise/injective, whose kernels compute every output element by indexing;
- a reduction joins an elementwise group as its prologue (`sum(x * x)`);
- an out-fusable op (matmul, conv2d, pooling, ...) starts a group that takes epilogues;
- an opaque op (argsort) is a group of its own that nothing joins.

A value can only become internal to a group when nothing else uses it: fusing across a
value used outside the group would compute it twice or lose it. So every group has one
output, and groups never form cycles (a group's inner values have no outside users).

Each group of two or more ops becomes a function in `graph.functions`, named after its
ops, and a `call` node in the main graph where the group's output was. Single ops stay as
they are; the code generator treats them as one-op kernels.
"""
from ...ops.registry import BROADCAST, ELEMENTWISE, INJECTIVE, OPAQUE, OUT_FUSABLE, REDUCE, get_op
from ..graph import CALL, SOURCE_OPS, Attrs, Graph, Node
from .editor import GraphEditor
from .manager import graph_pass

_GROUP_KIND = {ELEMENTWISE: "elemwise", BROADCAST: "elemwise", INJECTIVE: "elemwise",
               REDUCE: "reduce", OUT_FUSABLE: "anchored", OPAQUE: "sealed"}


class _Group:
    def __init__(self, node, kind):
        self.nodes = [node]
        self.kind = kind

    @property
    def output(self):
        return self.nodes[-1]


def _can_append(group, fusion):
    if group.kind == "sealed":
        return False
    if fusion in (ELEMENTWISE, BROADCAST):
        return True
    if fusion in (INJECTIVE, REDUCE):
        return group.kind == "elemwise"
    return False


def fusion_groups(graph):
    """The fusion groups of a flat graph: a list of node lists in graph order."""
    order = {n: k for k, n in enumerate(graph.nodes)}
    users = {n: 0 for n in graph.nodes}
    for n in graph.nodes:
        for i in set(n.inputs):
            users[i] += 1
    for o in graph.outputs:
        users[o] += 1

    group_of = {}
    for node in graph.nodes:
        if node.op in SOURCE_OPS or node.op == CALL:
            continue
        fusion = get_op(node.op).fusion
        # Producers whose value only this node uses, and which are their group's output.
        producers = []
        for p in dict.fromkeys(node.inputs):
            g = group_of.get(p)
            if g is not None and g.output is p and users[p] == 1 and g not in producers:
                producers.append(g)
        target = next((g for g in producers if _can_append(g, fusion)), None)
        if target is None:
            target = _Group(node, _GROUP_KIND[fusion])
        else:
            target.nodes.append(node)
            if fusion == REDUCE:
                target.kind = "reduce"
        # Other purely elementwise producer groups fold into an elementwise group too.
        if target.kind == "elemwise":
            for g in producers:
                if g is not target and g.kind == "elemwise":
                    target.nodes = sorted(target.nodes[:-1] + g.nodes, key=order.get) + [node]
                    for n in g.nodes:
                        group_of[n] = target
        group_of[node] = target
    seen, groups = set(), []
    for node in graph.nodes:
        g = group_of.get(node)
        if g is not None and id(g) not in seen:
            seen.add(id(g))
            groups.append(g.nodes)
    return groups


def _function_name(nodes, index):
    ops = []
    for n in nodes:
        if n.op not in ops and n.op not in ("reshape", "broadcast_to"):
            ops.append(n.op)
    return "fused_" + "_".join(ops[:4]) + f"_{index}"


def _make_function(name, nodes):
    """The group as a function graph; returns it and the call's operands (outer nodes)."""
    members = set(nodes)
    operands, env, fn_nodes = [], {}, []
    for n in nodes:
        for i in n.inputs:
            if i in members or i in env:
                continue
            if i.op == "constant":
                env[i] = i
                fn_nodes.append(i)
            else:
                p = Node("input", (), Attrs(), i.type, name=f"p{len(operands)}")
                env[i] = p
                operands.append(i)
                fn_nodes.append(p)
    inputs = [n for n in fn_nodes if n.op == "input"]
    body = []
    for n in nodes:
        new = Node(n.op, tuple(env[i] for i in n.inputs), n.attrs, n.type, loc=n.loc)
        env[n] = new
        body.append(new)
    consts = [n for n in fn_nodes if n.op == "constant"]
    return Graph(name, inputs, inputs + consts + body, [env[nodes[-1]]]), operands


@graph_pass("fuse")
def fuse(graph):
    """Group ops into kernels (see the module docstring)."""
    groups = [g for g in fusion_groups(graph) if len(g) > 1]
    ed = GraphEditor(graph)
    functions = dict(graph.functions)
    env = {}
    group_at = {}
    for k, nodes in enumerate(groups):
        for n in nodes:
            group_at[n] = (k, nodes)
    made = {}
    for node in graph.nodes:
        hit = group_at.get(node)
        if hit is None:
            env[node] = ed.add(node) if node.op in SOURCE_OPS else ed.keep(node, [env[i] for i in node.inputs])
            continue
        k, nodes = hit
        if node is not nodes[-1]:
            continue
        name = _function_name(nodes, k)
        fn, operands = _make_function(name, nodes)
        functions[name] = fn
        call = ed.add(Node(CALL, tuple(env[o] for o in operands), Attrs({"callee": name}), node.type,
                           loc=node.loc))
        made[name] = call
        env[node] = call
    out = ed.finish([env[o] for o in graph.outputs])
    out.functions = {name: fn for name, fn in functions.items() if name in made or name in graph.functions}
    return out
