"""The IR's text form: graphs print and parse back equal (every op of the registry
included), hand-written text parses, and bad text is refused with a `ParseError` that
gives the line, the column and what was expected."""
import math

import numpy as np
import pytest

import lucid
from _ir_helpers import same as _same
from lucid.errors import LucidError
from lucid.ir import grad_graph, interpret, parse
from lucid.ir.parser import ParseError, parse_value
from lucid.ir.verify import VerifyError
from lucid.ops.registry import OPS, apply
from lucid.ops.shape import slice_axis
from lucid.tensor import Tensor


def _f32(rng, *shape):
    return rng.normal(size=shape).astype(np.float32)


def _assert_round_trip(g):
    text = str(g)
    h = parse(text, params=g.params)
    assert h == g
    assert str(h) == text
    assert [n.op for n in h.nodes] == [n.op for n in g.nodes]
    for a, b in zip(g.nodes, h.nodes):
        assert a.type == b.type
        assert [k for k, _ in a.attrs] == [k for k, _ in b.attrs]
        assert all(_same(x, y) for (_, x), (_, y) in zip(a.attrs, b.attrs)), (a, a.attrs, b.attrs)
    with_locs = g.format(locs=True)
    h2 = parse(with_locs)
    assert h2.format(locs=True) == with_locs
    assert [n.loc for n in h2.nodes] == [n.loc for n in g.nodes]
    return h


# ---- traced graphs round trip ------------------------------------------------------------

def _elementwise(x):
    return lucid.sigmoid(x) * 2.0 - lucid.exp(-x) / (x * x + 1.0) + lucid.relu(x) ** 3


def _reductions(x):
    return (lucid.sum(x, axis=(0, 2), keepdims=True), lucid.max(x, axis=1), lucid.argmax(x, axis=-1),
            lucid.mean(x), lucid.prod(x, axis=(1,)))


def _shapes(x):
    y = lucid.transpose(lucid.reshape(x, (4, 6)), (1, 0))
    return slice_axis(slice_axis(y, 0, None, None, -2), 1, 3, 0, -1)


def _concat_matmul_cast(x, w):
    y = lucid.matmul(lucid.reshape(x, (4, 6)), w)
    z = lucid.concatenate([y, y * 0.5], axis=1)
    return lucid.cast(z, lucid.int32), lucid.cast(z > 0.0, lucid.float64)


def _pad_and_special_constants(x):
    p = lucid.pad(x, ((1, 0), (0, 2), (2, 2)), value=-1.5)
    q = lucid.maximum(p, float("-inf")) * float("nan")
    return lucid.where(p > 0.0, p, float("inf")), lucid.minimum(q, float("inf"))


@pytest.mark.parametrize("fn, n_args", [(_elementwise, 1), (_reductions, 1), (_shapes, 1),
                                        (_concat_matmul_cast, 2), (_pad_and_special_constants, 1)])
def test_traced_graphs_parse_back_equal(rng, fn, n_args):
    args = [_f32(rng, 2, 3, 4), _f32(rng, 6, 5)][:n_args]
    g = lucid.trace(fn, *args)
    h = _assert_round_trip(g)
    np.testing.assert_equal(interpret(h, *args), interpret(g, *args))


def test_attribute_values_keep_their_python_types(rng):
    g = lucid.trace(_pad_and_special_constants, _f32(rng, 2, 3, 4))
    h = parse(str(g))
    pad = next(n for n in h.nodes if n.op == "pad")
    assert _same(pad.attrs["pad_width"], ((1, 0), (0, 2), (2, 2)))
    assert _same(pad.attrs["value"], -1.5)
    values = [n.attrs["value"] for n in h.nodes if n.op == "constant"]
    assert any(v == -math.inf for v in values) and any(v == math.inf for v in values)
    assert any(isinstance(v, float) and math.isnan(v) for v in values)
    c = parse(str(lucid.trace(_concat_matmul_cast, _f32(rng, 2, 3, 4), _f32(rng, 6, 5))))
    dtypes = [n.attrs["dtype"] for n in c.nodes if n.op == "cast"]
    assert dtypes == [lucid.int32, lucid.float64] and dtypes[0] is lucid.int32
    assert any(n.attrs.get("axis") == 1 and type(n.attrs["axis"]) is int for n in c.nodes)


def test_parsed_graph_with_params_runs_like_the_traced_one(rng):
    w = Tensor(_f32(rng, 4, 3))
    b = Tensor(_f32(rng, 3))

    def model(x):
        return lucid.tanh(lucid.matmul(x, w) + b) * 2.0

    names = {id(w): "layer1.0.conv1.weight", id(b): "layer1.0.bias"}
    g = lucid.trace(model, _f32(rng, 5, 4), param_names=names)
    assert "%layer1.0.conv1.weight = param : f32[4,3]" in str(g)
    h = parse(str(g), params=g.params)
    assert h == g and set(h.params) == {"layer1.0.conv1.weight", "layer1.0.bias"}
    assert "out_spec" not in h.meta
    x = _f32(rng, 5, 4)
    np.testing.assert_array_equal(interpret(h, x), interpret(g, x))


def _op_cases():
    cases = []
    for name in sorted(OPS):
        op = OPS[name]
        for i, s in enumerate(op.samples(np.random.default_rng(0)) if op.samples else ()):
            cases.append(pytest.param(name, s, id=f"{name}-{i}"))
    return cases


@pytest.mark.parametrize("name, sample", _op_cases())
def test_every_op_sample_round_trips(name, sample):
    op, inputs = OPS[name], [np.array(a) for a in sample.inputs]
    g = lucid.trace(lambda *xs: apply(op, *xs, **sample.attrs), *inputs, name=name)
    _assert_round_trip(g)
    floats = [i for i, a in enumerate(inputs) if a.dtype.kind == "f"]
    if op.differentiable and sample.grad and floats:
        loss = lucid.trace(lambda *xs: lucid.sum(apply(op, *xs, **sample.attrs)), *inputs, name=name)
        _assert_round_trip(grad_graph(loss, wrt=floats))


# ---- hand-written text ------------------------------------------------------------------

HAND = """\
# a model block, written by hand
graph block(%x: f32[2,3], %layer1.0.weight: f32[3,4]) {
  %b = param : f32[4]

  %0 = matmul(%x, %layer1.0.weight) : f32[2,4]   # model.py:12
  %7 = add(%0, %b) : f32[2,4]
  %h = relu(%7) : f32[2,4]
  %3 = sum(%h) {axes=(1,)} : f32[2]
  return %3, %h  # two outputs
}
"""

HAND_NORMALISED = """\
graph block(%x: f32[2,3], %layer1.0.weight: f32[3,4]) {
  %b = param : f32[4]
  %0 = matmul(%x, %layer1.0.weight) : f32[2,4]
  %1 = add(%0, %b) : f32[2,4]
  %h = relu(%1) : f32[2,4]
  %2 = sum(%h) {axes=(1,), keepdims=false} : f32[2]
  return %2, %h
}"""


def test_hand_written_text_parses(rng):
    g = parse(HAND)
    assert g.name == "block"
    assert [n.name for n in g.inputs] == ["x", "layer1.0.weight"]
    assert [n.op for n in g.nodes] == ["input", "input", "param", "matmul", "add", "relu", "sum"]
    assert g.nodes[3].loc == "model.py:12" and g.nodes[4].loc is None
    assert g.nodes[5].name == "h" and g.nodes[4].name is None
    assert g.outputs == [g.nodes[6], g.nodes[5]]
    assert g.meta == {} and g.params == {}
    assert str(g) == HAND_NORMALISED
    b = _f32(rng, 4)
    x, w = _f32(rng, 2, 3), _f32(rng, 3, 4)
    s, h = interpret(parse(HAND, params={"b": b}), x, w)
    np.testing.assert_allclose(h, np.maximum(x @ w + b, 0), rtol=1e-6)
    np.testing.assert_allclose(s, h.sum(axis=1), rtol=1e-6)


GOLDEN = """\
graph golden(%x: f32[2,3], %i: i64[4]) {
  %_c0 = param : f32[3]
  %0 = constant() {value=inf} : f32[]
  %1 = constant() {value=-inf} : f32[]
  %2 = constant() {value=nan} : f32[]
  %3 = constant() {value=-0.0} : f32[]
  %4 = constant() {value=1e-05} : f32[]
  %5 = constant() {value=3} : i64[]
  %6 = constant() {value=true} : bool[]
  %7 = add(%x, %_c0) : f32[2,3]
  %8 = maximum(%7, %1) : f32[2,3]
  %9 = minimum(%8, %0) : f32[2,3]
  %10 = mul(%9, %4) : f32[2,3]
  %11 = add(%10, %3) : f32[2,3]
  %12 = pad(%11) {pad_width=((1, 0), (0, 2)), value=-1.5} : f32[3,5]
  %13 = slice(%12) {begin=(2, 4), end=(-1, 0), step=(-1, -2)} : f32[3,2]
  %14 = transpose(%13) {perm=(1, 0)} : f32[2,3]
  %15 = reshape(%14) {shape=(3, 2)} : f32[3,2]
  %16 = reshape(%15) {shape=(6,)} : f32[6]
  %17 = concatenate(%16, %16, %16) {axis=0} : f32[18]
  %18 = sum(%17) {axes=(0,), keepdims=true} : f32[1]
  %19 = cast(%18) {dtype=f64} : f64[1]
  %20 = cast(%i) {dtype=bool} : bool[4]
  %21 = logical_and(%20, %6) : bool[4]
  %22 = mul(%i, %5) : i64[4]
  %23 = sum(%22) {axes=(), keepdims=false} : i64[4]
  %24 = eq(%2, %2) : bool[]
  return %19, %21, %23, %24
}"""


def test_golden_text_prints_back_unchanged():
    g = parse(GOLDEN)
    assert str(g) == GOLDEN
    assert [n.op for n in g.compute_nodes][-1] == "eq"
    assert _same(g.nodes[6].attrs["value"], -0.0) and _same(g.nodes[8].attrs["value"], 3)
    assert _same(g.nodes[9].attrs["value"], True) and _same(g.nodes[7].attrs["value"], 1e-05)


def test_numbered_values_are_renumbered_in_order():
    g = parse("graph f(%x: f32[2]) {\n  %9 = neg(%x) : f32[2]\n  %4 = exp(%9) : f32[2]\n  return %4\n}")
    assert str(g) == "graph f(%x: f32[2]) {\n  %0 = neg(%x) : f32[2]\n  %1 = exp(%0) : f32[2]\n  return %1\n}"


def test_graph_without_inputs_or_outputs():
    text = "graph empty() {\n  return \n}"
    g = parse(text)
    assert g.inputs == [] and g.outputs == [] and str(g) == text


def test_attributes_left_out_take_the_defaults():
    g = parse("graph f(%x: f32[2,3]) {\n  %0 = sum(%x) {axes=(0, 1)} : f32[]\n  %1 = cast(%0) : f32[]\n"
              "  return %1\n}")
    assert dict(g.nodes[1].attrs) == {"axes": (0, 1), "keepdims": False}
    assert g.nodes[2].attrs["dtype"] is lucid.float32


# ---- attribute values -------------------------------------------------------------------

@pytest.mark.parametrize("text, value", [
    ("2", 2), ("2.0", 2.0), ("-3", -3), ("1e-05", 1e-05), ("2.5E+3", 2500.0), ("-0.0", -0.0),
    ("inf", math.inf), ("-inf", -math.inf), ("true", True), ("false", False), ("none", None),
    ('"a\\"b\\\\c"', 'a"b\\c'), ('"tab\\tnew\\nline"', "tab\tnew\nline"), ('""', ""),
    ("()", ()), ("(3,)", (3,)), ("(1, 2,)", (1, 2)), ("((1, 0), (0, -2))", ((1, 0), (0, -2))),
    ("((),)", ((),)), ("(2.0, -inf, none)", (2.0, -math.inf, None)),
    ("f32", lucid.float32), ("f64", lucid.float64), ("i32", lucid.int32), ("i64", lucid.int64),
    ("bool", lucid.bool_), ("(f32, bool)", (lucid.float32, lucid.bool_)),
])
def test_attribute_values_parse_with_their_types(text, value):
    assert _same(parse_value(text), value)


def test_nan_parses_as_a_float_nan():
    v = parse_value("nan")
    assert isinstance(v, float) and math.isnan(v)


# ---- errors -------------------------------------------------------------------------------

def _at(text, line, token, nth=0):
    """'line L, column C' of the nth occurrence of `token` on line `line` (1-based)."""
    src = text.split("\n")[line - 1]
    col = -1
    for _ in range(nth + 1):
        col = src.index(token, col + 1)
    return f"line {line}, column {col + 1}"


def _refuse(text, **kw):
    with pytest.raises(ParseError) as info:
        parse(text, **kw)
    assert isinstance(info.value, LucidError)
    return str(info.value)


HEADER = "graph f(%x: f32[2]) {\n"


def test_undefined_value():
    text = HEADER + "  %0 = add(%x, %y) : f32[2]\n  return %0\n}"
    msg = _refuse(text)
    assert _at(text, 2, "%y") in msg and "%y is not defined" in msg


def test_value_used_before_its_definition():
    text = HEADER + "  %0 = neg(%1) : f32[2]\n  %1 = neg(%x) : f32[2]\n  return %0\n}"
    assert _at(text, 2, "%1") in _refuse(text)


def test_duplicate_name():
    text = HEADER + "  %0 = neg(%x) : f32[2]\n  %0 = exp(%x) : f32[2]\n  return %0\n}"
    msg = _refuse(text)
    assert _at(text, 3, "%0") in msg and "already defined (on line 2)" in msg
    msg = _refuse("graph f(%x: f32[2], %x: f32[3]) {\n  return %x\n}")
    assert "line 1, column 21" in msg and "%x is already defined" in msg


def test_wrong_type_annotation_is_refused_by_the_verifier():
    text = HEADER + "  %0 = neg(%x) : f32[2]\n  %1 = exp(%0) : f32[3]  # m.py:4\n  return %1\n}"
    with pytest.raises(ParseError) as info:
        parse(text)
    msg = str(info.value)
    assert _at(text, 3, "%1") in msg
    assert "%1 = exp (at m.py:4)" in msg and "expected type f32[2]" in msg and "got f32[3]" in msg
    assert isinstance(info.value.__cause__, VerifyError)
    text = HEADER + "  %0 = neg(%x) : i32[2]\n  return %0\n}"
    assert "expected type f32[2]" in _refuse(text)


def test_shape_rule_failure_is_refused():
    text = "graph f(%x: f32[2], %y: f32[3]) {\n  %0 = add(%x, %y) : f32[2]\n  return %0\n}"
    msg = _refuse(text)
    assert "line 2, column 3" in msg and "shape rule rejects inputs (f32[2], f32[3])" in msg


def test_unknown_op():
    text = HEADER + "  %0 = frobnicate(%x) : f32[2]\n  return %0\n}"
    msg = _refuse(text)
    assert _at(text, 2, "frobnicate") in msg and "unknown op 'frobnicate'" in msg


def test_unknown_attribute():
    text = HEADER + "  %0 = sum(%x) {axis=(0,)} : f32[]\n  return %0\n}"
    msg = _refuse(text)
    assert _at(text, 2, "axis") in msg and "sum has no attribute 'axis' (it takes axes, keepdims)" in msg


def test_attribute_given_twice_or_missing():
    text = HEADER + "  %0 = sum(%x) {axes=(0,), axes=(0,)} : f32[]\n  return %0\n}"
    assert _at(text, 2, "axes", nth=1) in _refuse(text)
    text = HEADER + "  %0 = reshape(%x) : f32[1,2]\n  return %0\n}"
    msg = _refuse(text)
    assert _at(text, 2, "reshape") in msg and "reshape needs attribute(s) shape" in msg


def test_bad_token_gives_line_and_column():
    text = HEADER + "  %0 = neg(%x) : f32[2]\n  %1 = exp(%0) $ : f32[2]\n  return %1\n}"
    msg = _refuse(text)
    assert _at(text, 3, "$") in msg and "bad token '$'" in msg
    text = HEADER + "  %0 = pad(%x) {pad_width=((1, 0),), value=1.5.0} : f32[3]\n  return %0\n}"
    assert _at(text, 2, "1.5.0") in _refuse(text)


@pytest.mark.parametrize("text, line, token, words", [
    (HEADER + "  %0 = reshape(%x) {shape=(2)} : f32[2]\n  return %0\n}", 2, ")}", "(x,)"),
    (HEADER + "  %0 = neg(%x) f32[2]\n  return %0\n}", 2, "f32", "expected ':' and the type of %0"),
    (HEADER + "  %0 neg(%x) : f32[2]\n  return %0\n}", 2, "neg", "expected '=' after %0"),
    (HEADER + "  %0 = neg(%x : f32[2]\n  return %0\n}", 2, ":", "expected ',' or ')'"),
    (HEADER + "  %0 = neg(%x) : f16[2]\n  return %0\n}", 2, "f16", "unknown dtype 'f16'"),
    (HEADER + "  %0 = neg(%x) : f32[2.0]\n  return %0\n}", 2, "2.0", "a dimension is a non-negative"),
    (HEADER + "  %0 = reshape(%x) {shape=(2,) : f32[2]\n  return %0\n}", 2, ":", "',' or '}'"),
    (HEADER + '  %0 = reshape(%x) {shape="2} : f32[2]\n  return %0\n}', 2, '"', "unterminated string"),
    (HEADER + '  %0 = reshape(%x) {shape="\\q"} : f32[2]\n  return %0\n}', 2, "\\q", "unknown escape"),
    (HEADER + "  %0 = reshape(%x) {shape=- 2} : f32[2]\n  return %0\n}", 2, "2}", "right after '-'"),
    (HEADER + "  %0 = reshape(%x) {shape=wide} : f32[2]\n  return %0\n}", 2, "wide", "an attribute value"),
    (HEADER + "  %y = input() : f32[2]\n  return %x\n}", 2, "input", "declared in the graph's header"),
    (HEADER + "  %3 = param : f32[2]\n  return %x\n}", 2, "%3", "not a plain number"),
    (HEADER + "  %0 = neg(%x) : f32[2] %z\n  return %0\n}", 2, "%z", "the end of the line"),
    (HEADER + "  return %x %y\n}", 2, "%y", "',' or the end of the line"),
    (HEADER + "  neg(%x)\n}", 2, "neg", "expected a definition"),
    (HEADER + "  return %x\n", 3, "", "'}' closing the graph"),
    (HEADER + "  return %x\n}\ngraph g() {", 4, "", "or 'return', got the end of the text"),
    (HEADER + "  return %x\n}\nextra", 4, "extra", "'graph' at the start"),
    ("grph f() {\n}", 1, "grph", "'graph' at the start"),
    ("graph f(%x f32[2]) {\n  return %x\n}", 1, "f32", "':' and the type of input %x"),
])
def test_syntax_errors_say_where_and_what_was_expected(text, line, token, words):
    msg = _refuse(text)
    assert _at(text, line, token) in msg, msg
    assert words in msg, msg


def test_params_for_unknown_names_are_refused():
    text = "graph f(%x: f32[2]) {\n  %w = param : f32[2]\n  %0 = add(%x, %w) : f32[2]\n  return %0\n}"
    assert "['v']" in _refuse(text, params={"v": np.zeros(2, np.float32)})
    msg = _refuse(text, params={"w": np.zeros(3, np.float32)})
    assert "line 2, column 3" in msg and "float32[3]" in msg and "f32[2]" in msg


def test_non_text_is_refused():
    with pytest.raises(ParseError):
        parse(b"graph f() {\n  return \n}")
