"""Check that a graph is well formed before anything trusts it.

Passes, the parser and the compiler all assume the same invariants; `verify` states them
in one place and names the offending node as it prints (`%7 = add`), with the user's
`file:line` when the node has one:

- every node appears once and uses only values defined before it (SSA, topological
  order); `graph.inputs` are exactly the graph's `input` nodes in order; every output is
  a node of the graph;
- names print and parse back: named values use letters, digits, `_` and `.`, are not
  plain numbers (those are the numbered values), and no two values print alike;
- `input`/`param` nodes have no operands or attributes; a param's array in
  `graph.params` has the node's shape and dtype; a `constant` is one number its dtype
  holds, with shape ();
- every other op is registered, its attributes are exactly the schema's (defaults filled,
  in schema order, each with a text form), and its type is what the op's shape rule
  gives for its input types.
"""
import re

import numpy as np

from ..errors import LucidError
from .graph import CALL, Attrs, Graph, Node
from .printer import format_value, value_names
from .types import TensorType

GRAPH_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*\Z")
VALUE_NAME = re.compile(r"[A-Za-z0-9_.]+\Z")


class VerifyError(LucidError):
    """A malformed graph. `node` is the offending node (None for graph-wide faults)."""

    def __init__(self, message, node=None):
        super().__init__(message)
        self.node = node


def verify(graph):
    """Raise `VerifyError` if `graph` breaks an IR invariant; return `graph` otherwise."""
    if not isinstance(graph, Graph):
        raise VerifyError(f"verify: expected a Graph, got {type(graph).__name__}")
    gname = graph.name
    if not isinstance(gname, str) or not GRAPH_NAME.match(gname):
        raise VerifyError(f"verify: graph name {gname!r} has no text form "
                          "(use letters, digits, '_' and '.', not starting with a digit)")
    for fname, fn in graph.functions.items():
        if fn.functions or fn.param_nodes or fn.meta.get("updates") or fn.name != fname or len(fn.outputs) != 1:
            raise VerifyError(f"verify: graph {gname}: function {fname} must be named {fname}, have one "
                              "output, and hold no params, updates or functions of its own")
        verify(fn)
    _check_node_list(graph)
    names = value_names(graph)
    _check_names(graph, names)

    def where(node):
        loc = f" (at {node.loc})" if node.loc else ""
        return f"verify: graph {gname}: %{names[node]} = {node.op}{loc}"

    defined, members = set(), set(graph.nodes)
    for node in graph.nodes:
        _check_operands(node, defined, members, names, where)
        _check_node(graph, node, where)
        defined.add(node)

    expected_inputs = [n for n in graph.nodes if n.op == "input"]
    given = list(graph.inputs)
    if len(given) != len(expected_inputs) or any(a is not b for a, b in zip(given, expected_inputs)):
        shown = ", ".join(_label(n, names) for n in given)
        want = ", ".join(_label(n, names) for n in expected_inputs)
        raise VerifyError(f"verify: graph {gname}: graph.inputs are ({shown}) but the graph's "
                          f"input nodes, in order, are ({want})")
    for k, out in enumerate(graph.outputs):
        if not isinstance(out, Node) or out not in members:
            raise VerifyError(f"verify: graph {gname}: output {k} ({_label(out, names)}) "
                              "is not a node of the graph")
    return graph


def _label(node, names):
    if not isinstance(node, Node):
        return f"a {type(node).__name__}"
    if node in names:
        return f"%{names[node]}"
    return f"{node!r}, not in graph.nodes"


def _check_node_list(graph):
    seen = {}
    for k, node in enumerate(graph.nodes):
        if not isinstance(node, Node):
            raise VerifyError(f"verify: graph {graph.name}: graph.nodes[{k}] is a "
                              f"{type(node).__name__}, not a Node")
        if node in seen:
            raise VerifyError(f"verify: graph {graph.name}: {node!r} appears twice in graph.nodes "
                              f"(at positions {seen[node]} and {k})", node=node)
        seen[node] = k


def _check_names(graph, names):
    printed = {}
    for node in graph.nodes:
        if node.name is not None:
            if not isinstance(node.name, str) or not VALUE_NAME.match(node.name):
                raise VerifyError(f"verify: graph {graph.name}: the {node.op} named {node.name!r} has "
                                  "no text form (names use letters, digits, '_' and '.')", node=node)
            if node.name.isdigit():
                raise VerifyError(f"verify: graph {graph.name}: the {node.op} named %{node.name} has a "
                                  "plain number as its name; those are reserved for numbered values",
                                  node=node)
        elif node.op in ("input", "param"):
            raise VerifyError(f"verify: graph {graph.name}: an {node.op} node has no name", node=node)
        name = names[node]
        if name in printed:
            raise VerifyError(f"verify: graph {graph.name}: two values print as %{name} "
                              f"(a {printed[name].op} and a {node.op})", node=node)
        printed[name] = node


def _check_operands(node, defined, members, names, where):
    if not isinstance(node.inputs, tuple):
        raise VerifyError(f"{where(node)}: its inputs are a {type(node.inputs).__name__}, not a tuple",
                          node=node)
    for k, src in enumerate(node.inputs):
        if not isinstance(src, Node):
            raise VerifyError(f"{where(node)}: operand {k} is a {type(src).__name__}, not a Node",
                              node=node)
        if src not in members:
            raise VerifyError(f"{where(node)}: operand {k} ({src!r}) is not a node of the graph",
                              node=node)
        if src not in defined:
            raise VerifyError(f"{where(node)}: operand {k} (%{names[src]}) is used before it is "
                              "defined (graph.nodes must be in topological order)", node=node)


def _check_node(graph, node, where):
    if not isinstance(node.type, TensorType):
        raise VerifyError(f"{where(node)}: its type is a {type(node.type).__name__}, not a TensorType",
                          node=node)
    if not isinstance(node.attrs, Attrs):
        raise VerifyError(f"{where(node)}: its attributes are a {type(node.attrs).__name__}, "
                          "not Attrs", node=node)
    for key, value in node.attrs:
        try:
            format_value(value)
        except TypeError as err:
            raise VerifyError(f"{where(node)}: attribute {key}: {err}", node=node) from None
    if node.op in ("input", "param"):
        if node.inputs or node.attrs:
            raise VerifyError(f"{where(node)}: an {node.op} takes no operands or attributes", node=node)
        if node.op == "param" and node.name in graph.params:
            _check_param_value(node, graph.params[node.name], where)
    elif node.op == "constant":
        _check_constant(node, where)
    elif node.op == CALL:
        _check_call(graph, node, where)
    else:
        _check_op(node, where)


def _check_call(graph, node, where):
    keys = [k for k, _ in node.attrs]
    if keys != ["callee"]:
        raise VerifyError(f"{where(node)}: a call has exactly one attribute, callee; got {keys}", node=node)
    fn = graph.functions.get(node.attrs["callee"])
    if fn is None:
        raise VerifyError(f"{where(node)}: calls {node.attrs['callee']!r}, which is not a function of "
                          f"graph {graph.name}", node=node)
    want = [i.type for i in fn.inputs]
    got = [i.type for i in node.inputs]
    if want != got:
        raise VerifyError(f"{where(node)}: {fn.name} takes ({', '.join(map(str, want))}), "
                          f"got ({', '.join(map(str, got))})", node=node)
    if fn.outputs[0].type != node.type:
        raise VerifyError(f"{where(node)}: {fn.name} returns {fn.outputs[0].type}, the call says {node.type}",
                          node=node)


def _check_param_value(node, value, where):
    arr = np.asarray(value)
    if tuple(arr.shape) != node.type.shape or arr.dtype != node.type.dtype.np:
        held = f"{arr.dtype}[{','.join(map(str, arr.shape))}]"
        raise VerifyError(f"{where(node)}: graph.params[{node.name!r}] is {held} but the param's "
                          f"type is {node.type}", node=node)


def _check_constant(node, where):
    if node.inputs:
        raise VerifyError(f"{where(node)}: a constant takes no operands", node=node)
    keys = [k for k, _ in node.attrs]
    if keys != ["value"]:
        raise VerifyError(f"{where(node)}: a constant has exactly one attribute, value; got {keys}",
                          node=node)
    value = node.attrs["value"]
    if not isinstance(value, (bool, int, float)):
        raise VerifyError(f"{where(node)}: the value {value!r} is not a number", node=node)
    if not _fits(value, node.type.dtype):
        raise VerifyError(f"{where(node)}: the value {format_value(value)} is not a {node.type.dtype}",
                          node=node)
    if node.type.shape != ():
        raise VerifyError(f"{where(node)}: a constant is a scalar (shape ()), its type says {node.type}",
                          node=node)


def _fits(value, dtype):
    """Whether a constant's number is one its dtype holds (no silent truncation)."""
    if dtype.np.kind == "b":
        return value in (0, 1)
    if isinstance(value, bool):
        return False
    if dtype.is_int:
        return not isinstance(value, float) or value.is_integer()
    return True


def _check_op(node, where):
    from ..ops.registry import get_op  # the registry imports the IR: import it when first used

    try:
        op = get_op(node.op)
    except LucidError as err:
        raise VerifyError(f"{where(node)}: {err}", node=node) from None
    try:
        bound = op.bind_attrs(dict(node.attrs))
    except LucidError as err:
        raise VerifyError(f"{where(node)}: {err}", node=node) from None
    have, want = [k for k, _ in node.attrs], [k for k, _ in bound]
    if have != want:
        raise VerifyError(f"{where(node)}: has attributes {have}, but {op.name} takes exactly {want} "
                          "(in that order, defaults included)", node=node)
    in_types = ", ".join(str(i.type) for i in node.inputs)
    try:
        expected = op.infer_type([i.type for i in node.inputs], node.attrs)
    except Exception as err:  # a corrupt node can break a shape rule in any way
        raise VerifyError(f"{where(node)}: the shape rule rejects inputs ({in_types}): "
                          f"{type(err).__name__}: {err}", node=node) from err
    if expected != node.type:
        raise VerifyError(f"{where(node)}: expected type {expected} (the shape rule of {op.name} "
                          f"for inputs ({in_types})), got {node.type}", node=node)
