"""A small pattern language for rewrite rules that are data, not if-chains.

A pattern is a nested tuple `(op, arg, ...)` matching a node of that op whose inputs match
the args; a string binds a variable (the same name twice must bind the same node); `K(v)`
matches a node that is `v` everywhere (a constant node, a broadcast or reshape of one, or
a frozen param every element of which is `v`: constant folding turns a small
`broadcast_to(0.0)` into such a param, and `x + 0` must still simplify); `C("c")`
binds a node whose value is known at compile time (a constant, or a frozen param);
`As("n", pattern)` matches `pattern` and binds the node itself to `n`. Inputs of commutative
ops are tried in both orders.
"""
import numpy as np

from .editor import constant_value

COMMUTATIVE = {"add", "mul", "maximum", "minimum", "eq", "ne", "logical_and", "logical_or"}


class K:
    """Matches a node that is `value` in every element (see the module docstring)."""

    def __init__(self, value):
        self.value = value

    def __repr__(self):
        return f"K({self.value})"


class C:
    """Binds `name` to a node whose value is known at compile time."""

    def __init__(self, name):
        self.name = name


class As:
    """Matches `pattern` and also binds the matched node to `name`."""

    def __init__(self, name, pattern):
        self.name = name
        self.pattern = pattern


def _unwrap(node):
    while node.op == "broadcast_to" or node.op == "reshape":
        node = node.inputs[0]
    return node


def scalar_of(node):
    """The Python number a node is everywhere, when it is a (broadcast) constant."""
    node = _unwrap(node)
    if node.op == "constant":
        return node.attrs["value"]
    return None


class Matcher:
    def __init__(self, params, mutable):
        self.params = params
        self.mutable = mutable

    def known(self, node):
        if node.op == "param" and node.name in self.mutable:
            return None
        return constant_value(node, self.params)

    def is_everywhere(self, node, value):
        """Whether `node` is `value` in every element (a constant, or a uniform frozen param;
        the first element is looked at before the whole array is)."""
        v = scalar_of(node)
        if v is not None:
            return v == value
        v = self.known(_unwrap(node))
        return v is not None and v.size > 0 and v.flat[0] == value and bool(np.all(v == value))

    def match(self, pattern, node, binds):
        if isinstance(pattern, str):
            prev = binds.get(pattern)
            if prev is None:
                binds[pattern] = node
                return True
            return prev is node
        if isinstance(pattern, K):
            return self.is_everywhere(node, pattern.value)
        if isinstance(pattern, As):
            return self.match(pattern.pattern, node, binds) and self.match(pattern.name, node, binds)
        if isinstance(pattern, C):
            if self.known(node) is None:
                return False
            return self.match(pattern.name, node, binds)
        op, *args = pattern
        if node.op != op or len(node.inputs) != len(args):
            return False
        orders = [node.inputs]
        if op in COMMUTATIVE and len(args) == 2:
            orders.append(node.inputs[::-1])
        for inputs in orders:
            trial = dict(binds)
            if all(self.match(a, i, trial) for a, i in zip(args, inputs)):
                binds.clear()
                binds.update(trial)
                return True
        return False
