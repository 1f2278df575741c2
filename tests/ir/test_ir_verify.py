"""The verifier: well-formed graphs pass (and come back for chaining); graphs corrupted by
hand are refused with a `VerifyError` that names the node as it prints, the op, the
user's line when known, and what was expected."""
import numpy as np
import pytest

import lucid
from lucid.errors import LucidError, ShapeError
from lucid.ir import Attrs, Graph, Node, TensorType, grad_graph, verify
from lucid.ir.verify import VerifyError

F32_23 = TensorType((2, 3), lucid.float32)


def _input(name="x", type_=F32_23):
    return Node("input", (), Attrs(), type_, name=name)


def _node(op, inputs, type_=F32_23, attrs=(), **kw):
    return Node(op, tuple(inputs), Attrs(attrs), type_, **kw)


def _refuse(graph, *words):
    with pytest.raises(VerifyError) as info:
        verify(graph)
    assert isinstance(info.value, LucidError)
    msg = str(info.value)
    for w in words:
        assert w in msg, msg
    return info.value


def test_good_graphs_pass_and_come_back(rng):
    w = lucid.Tensor(rng.normal(size=(3, 4)).astype(np.float32))
    g = lucid.trace(lambda x: lucid.sum(lucid.relu(lucid.matmul(x, w)) * 2.0, axis=1),
                    np.ones((2, 3), np.float32))
    assert verify(g) is g
    assert verify(grad_graph(lucid.trace(lambda x: lucid.sum(lucid.tanh(x)), np.ones(3, np.float32))))
    x = _input()
    assert verify(Graph("g", [x], [x, _node("relu", [x])], [x]))


def test_a_node_whose_type_lies():
    x = _input()
    r = _node("relu", [x], TensorType((3, 2), lucid.float32), loc="model.py:7")
    _refuse(Graph("g", [x], [x, r], [r]),
            "%0 = relu (at model.py:7)", "expected type f32[2,3]", "got f32[3,2]")
    bad_dtype = _node("exp", [x], TensorType((2, 3), lucid.float64))
    _refuse(Graph("g", [x], [x, bad_dtype], [bad_dtype]),
            "%0 = exp", "expected type f32[2,3]", "got f64[2,3]")


def test_out_of_order_and_foreign_operands():
    x = _input()
    a = _node("neg", [x])
    b = _node("exp", [a])
    err = _refuse(Graph("g", [x], [x, b, a], [b]), "%0 = exp", "operand 0 (%1)", "before it is defined")
    assert err.node is b
    stranger = _node("neg", [_input("y")])
    c = _node("add", [x, stranger])
    _refuse(Graph("g", [x], [x, c], [c]), "%0 = add", "operand 1", "not a node of the graph")
    _refuse(Graph("g", [x], [x, _node("neg", ["x"])], []), "operand 0 is a str")


def test_a_node_that_appears_twice():
    x = _input()
    a = _node("neg", [x])
    _refuse(Graph("g", [x], [x, a, a], [a]), "appears twice", "positions 1 and 2")
    _refuse(Graph("g", [x], [x, "neg"], []), "graph.nodes[1] is a str")


def test_inputs_must_be_the_input_nodes_in_order():
    x, y = _input("x"), _input("y")
    s = _node("add", [x, y])
    assert verify(Graph("g", [x, y], [x, y, s], [s]))
    _refuse(Graph("g", [y, x], [x, y, s], [s]), "graph.inputs are (%y, %x)", "are (%x, %y)")
    _refuse(Graph("g", [x], [x, y, s], [s]), "graph.inputs are (%x)")
    _refuse(Graph("g", [x, y, _input("z")], [x, y, s], [s]), "not in graph.nodes")


def test_outputs_must_be_nodes_of_the_graph():
    x = _input()
    lost = _node("neg", [x])
    _refuse(Graph("g", [x], [x], [x, lost]), "output 1", "not a node of the graph")


def test_unknown_op():
    x = _input()
    _refuse(Graph("g", [x], [x, _node("frobnicate", [x])], []), "%0 = frobnicate", "unknown op 'frobnicate'")


def test_attributes_must_be_exactly_the_schema():
    x = _input()
    full = _node("sum", [x], TensorType((3,), lucid.float32), [("axes", (0,)), ("keepdims", False)])
    assert verify(Graph("g", [x], [x, full], [full]))
    missing = _node("sum", [x], TensorType((3,), lucid.float32), [("axes", (0,))])
    _refuse(Graph("g", [x], [x, missing], []), "%0 = sum", "['axes']", "['axes', 'keepdims']")
    swapped = _node("sum", [x], TensorType((3,), lucid.float32), [("keepdims", False), ("axes", (0,))])
    _refuse(Graph("g", [x], [x, swapped], []), "in that order")
    unknown = _node("sum", [x], TensorType((3,), lucid.float32),
                    [("axes", (0,)), ("keepdims", False), ("axis", 0)])
    _refuse(Graph("g", [x], [x, unknown], []), "%0 = sum", "unknown attribute", "axis")
    no_text = _node("reshape", [x], TensorType((6,), lucid.float32), [("shape", np.array([6, 1]))])
    _refuse(Graph("g", [x], [x, no_text], []), "attribute shape", "no text form")
    _refuse(Graph("g", [x], [x, Node("neg", (x,), {"a": 1}, F32_23)], []), "not Attrs")


def test_a_shape_rule_that_raises_is_wrapped_with_the_node():
    x, y = _input("x"), _input("y", TensorType((4,), lucid.float32))
    s = _node("add", [x, y], loc="net.py:3")
    err = _refuse(Graph("g", [x, y], [x, y, s], [s]), "%0 = add (at net.py:3)",
                  "shape rule rejects inputs (f32[2,3], f32[4])")
    assert isinstance(err.__cause__, ShapeError)
    arity = _node("relu", [x, x])
    err = _refuse(Graph("g", [x], [x, arity], []), "%0 = relu", "TypeError")
    assert isinstance(err.__cause__, TypeError)


def test_param_values_must_match_their_type():
    x = _input()
    w = Node("param", (), Attrs(), F32_23, name="layer1.0.weight")
    s = _node("add", [x, w])
    good = Graph("g", [x], [x, w, s], [s], params={"layer1.0.weight": np.zeros((2, 3), np.float32)})
    assert verify(good)
    assert verify(Graph("g", [x], [x, w, s], [s]))  # a graph without weights (golden tests)
    _refuse(Graph("g", [x], [x, w, s], [s], params={"layer1.0.weight": np.zeros((3, 2), np.float32)}),
            "%layer1.0.weight = param", "float32[3,2]", "f32[2,3]")
    _refuse(Graph("g", [x], [x, w, s], [s], params={"layer1.0.weight": np.zeros((2, 3))}),
            "float64[2,3]")
    unnamed = Node("param", (), Attrs(), F32_23)
    _refuse(Graph("g", [x], [x, unnamed], []), "param node has no name")
    with_operand = Node("param", (x,), Attrs(), F32_23, name="w")
    _refuse(Graph("g", [x], [x, with_operand], []), "%w = param", "no operands or attributes")


@pytest.mark.parametrize("value, dtype, shape, words", [
    ("1.5", lucid.float32, (), "is not a number"),
    (None, lucid.float32, (), "is not a number"),
    ((1.0,), lucid.float32, (), "is not a number"),
    (2.5, lucid.int32, (), "2.5 is not a int32"),
    (float("inf"), lucid.int64, (), "inf is not a int64"),
    (2, lucid.bool_, (), "2 is not a bool"),
    (True, lucid.float32, (), "true is not a float32"),
    (1.0, lucid.float32, (2,), "a constant is a scalar"),
])
def test_constants_hold_one_number_of_their_dtype(value, dtype, shape, words):
    c = Node("constant", (), Attrs({"value": value}), TensorType(shape, dtype))
    _refuse(Graph("g", [], [c], [c]), "%0 = constant", words)


def test_good_constants():
    cs = [Node("constant", (), Attrs({"value": v}), TensorType((), d)) for v, d in
          [(float("nan"), lucid.float32), (float("-inf"), lucid.float64), (3, lucid.float32),
           (3, lucid.int32), (4.0, lucid.int64), (True, lucid.bool_), (0, lucid.bool_)]]
    assert verify(Graph("g", [], cs, cs))
    x = _input()
    _refuse(Graph("g", [x], [x, Node("constant", (x,), Attrs({"value": 1.0}), TensorType((), lucid.float32))],
                  []), "takes no operands")
    _refuse(Graph("g", [], [Node("constant", (), Attrs(), TensorType((), lucid.float32))], []),
            "exactly one attribute")


def test_names_must_print_and_parse_back():
    a, b = _input("x"), _input("x")
    _refuse(Graph("g", [a, b], [a, b], []), "two values print as %x")
    x = _input()
    named_like_a_number = _node("neg", [x], name="0")
    _refuse(Graph("g", [x], [x, named_like_a_number], []), "plain number")
    spaced = _input("a b")
    _refuse(Graph("g", [spaced], [spaced], []), "no text form")
    _refuse(Graph("my-graph", [], [], []), "graph name 'my-graph'")
    _refuse("not a graph", "expected a Graph")


def test_verify_error_is_a_lucid_error():
    assert issubclass(VerifyError, LucidError)
