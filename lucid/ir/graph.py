"""Nodes and graphs: lucid's typed SSA dataflow IR.

A `Node` is one value: the op that produces it, its input nodes, frozen attributes and
its output type. Graph inputs are nodes of op `input` and named constants (parameters,
buffers, captured arrays) are nodes of op `param`; `constant` nodes carry a scalar in
their attributes. Nodes never change: a pass builds new nodes and a new `Graph`.

Every op has exactly one output. Ops that conceptually return several things are split
into several ops (`sort` is `argsort` then `gather`), which keeps the IR, the
interpreter, autodiff and codegen free of tuple plumbing.

A graph may hold functions (`graph.functions`, name -> Graph without params) that `call`
nodes run: the fusion pass moves each fusion group into one, so every kernel the code
generator will emit is a function you can read in the text form (as XLA's fusion
computations and TVM's primitive functions are).
"""
from dataclasses import dataclass, field

from .types import TensorType

SOURCE_OPS = ("input", "param", "constant")
CALL = "call"  # `%5 = call(%a, %b) {callee="fused_3"}` runs the function graph.functions["fused_3"]


class Attrs(tuple):
    """Frozen, hashable, ordered attributes: a tuple of (name, value) pairs."""

    def __new__(cls, items=()):
        if isinstance(items, dict):
            items = items.items()
        return super().__new__(cls, tuple((k, _freeze(v)) for k, v in items))

    def __getitem__(self, key):
        if isinstance(key, str):
            for k, v in self:
                if k == key:
                    return v
            raise KeyError(key)
        return tuple.__getitem__(self, key)

    def get(self, key, default=None):
        for k, v in self:
            if k == key:
                return v
        return default

    def as_dict(self):
        return dict(self)


def _freeze(v):
    if isinstance(v, list):
        return tuple(_freeze(x) for x in v)
    if isinstance(v, tuple):
        return tuple(_freeze(x) for x in v)
    if hasattr(v, "item") and getattr(v, "ndim", None) == 0:
        return v.item()
    return v


@dataclass(frozen=True, eq=False)
class Node:
    """One SSA value. Compared by identity; `Graph.__eq__` compares structure."""

    op: str
    inputs: tuple
    attrs: Attrs
    type: TensorType
    name: str = None  # set for inputs and params; others print as %0, %1, ...
    loc: str = None  # 'file:line' of the user code that created it (not part of equality)

    @property
    def shape(self):
        return self.type.shape

    @property
    def dtype(self):
        return self.type.dtype

    def __repr__(self):
        label = self.name or hex(id(self))[-6:]
        return f"<Node %{label} = {self.op} : {self.type}>"


@dataclass(eq=False)
class Graph:
    """A dataflow graph: `nodes` in topological order (inputs and params included),
    `inputs` (the `input` nodes in call order), `outputs`, and the arrays behind the
    `param` nodes in `params` (name -> numpy array)."""

    name: str
    inputs: list
    nodes: list
    outputs: list
    params: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    functions: dict = field(default_factory=dict)

    @property
    def param_nodes(self):
        return [n for n in self.nodes if n.op == "param"]

    @property
    def compute_nodes(self):
        return [n for n in self.nodes if n.op not in SOURCE_OPS]

    def __str__(self):
        from .printer import format_graph

        return format_graph(self)

    def format(self, locs=False):
        from .printer import format_graph

        return format_graph(self, locs=locs)

    def dump(self, path, **kw):
        """Write the graph for people to read: .txt, .dot, .svg or .html (see lucid.ir.dump)."""
        from .dump import dump_graph

        return dump_graph(self, path, **kw)

    def __repr__(self):
        return f"<Graph {self.name}: {len(self.inputs)} inputs, {len(self.compute_nodes)} ops>"

    def __eq__(self, other):
        if not isinstance(other, Graph):
            return NotImplemented
        return str(self) == str(other)

    __hash__ = None

    def users(self):
        """Map each node to the list of nodes that use it (outputs not counted)."""
        out = {n: [] for n in self.nodes}
        for n in self.nodes:
            for i in n.inputs:
                out[i].append(n)
        return out

    def to_networkx(self):
        """The graph as a networkx.DiGraph (an edge from each input to its user)."""
        import networkx as nx

        g = nx.DiGraph()
        index = {n: k for k, n in enumerate(self.nodes)}
        for n in self.nodes:
            g.add_node(index[n], op=n.op, type=str(n.type), name=n.name, attrs=dict(n.attrs))
            for i in n.inputs:
                g.add_edge(index[i], index[n])
        return g
