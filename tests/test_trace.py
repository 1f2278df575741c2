"""Tracing: what becomes a graph, what refuses to, and where errors point."""
import numpy as np
import pytest

import lucid
from lucid.errors import ShapeError, TraceError


def _line_of(marker):
    with open(__file__) as f:
        for k, line in enumerate(f, 1):
            if marker in line and "_line_of" not in line:
                return k
    raise AssertionError(marker)


def test_item_inside_a_trace_names_the_users_line():
    def f(x):
        return x * x.sum().item()  # MARK-item

    with pytest.raises(TraceError) as info:
        lucid.trace(f, np.ones(3, np.float32))
    assert f"{__file__}:{_line_of('MARK-item')}" in str(info.value)


def test_python_if_on_a_tensor_value_refuses():
    def f(x):
        if x.sum() > 0:  # MARK-if
            return x
        return -x

    with pytest.raises(TraceError) as info:
        lucid.trace(f, np.ones(3, np.float32))
    assert f"test_trace.py:{_line_of('MARK-if')}" in str(info.value)


@pytest.mark.parametrize("leak", [lambda t: t.numpy(), lambda t: t.tolist(), lambda t: np.asarray(t),
                                  lambda t: t.data, lambda t: float(t.sum())])
def test_concrete_values_refuse_while_tracing(leak):
    with pytest.raises(TraceError):
        lucid.trace(lambda x: leak(x), np.ones(2, np.float32))


def test_python_control_flow_unrolls():
    def f(x, n):
        for _ in range(n):
            x = x * 2.0
        return x

    g = lucid.trace(f, np.ones(2, np.float32), 3)
    assert [n.op for n in g.compute_nodes].count("mul") == 3
    np.testing.assert_allclose(lucid.ir.interpret(g, np.ones(2, np.float32)), [8.0, 8.0])


def test_output_structure_is_kept():
    g = lucid.trace(lambda x: {"a": x + 1.0, "b": (x * 2.0, x)}, np.ones(2, np.float32))
    out = lucid.ir.interpret(g, np.full(2, 3.0, np.float32))
    assert set(out) == {"a", "b"}
    np.testing.assert_allclose(out["a"], [4, 4])
    np.testing.assert_allclose(out["b"][0], [6, 6])
    np.testing.assert_allclose(out["b"][1], [3, 3])


def test_nodes_remember_the_user_line():
    def f(x):
        return lucid.exp(x)  # MARK-loc

    g = lucid.trace(f, np.ones(2, np.float32))
    (node,) = g.compute_nodes
    assert node.loc == f"{__file__}:{_line_of('MARK-loc')}"
    assert f"# {__file__}" in g.format(locs=True)


def test_shape_errors_while_tracing_name_op_shapes_and_line():
    def f(x):
        return x @ lucid.ones(5, 2)  # MARK-mm

    with pytest.raises(ShapeError) as info:
        lucid.trace(f, np.ones((3, 4), np.float32))
    msg = str(info.value)
    assert msg.startswith("matmul") and "(3, 4)" in msg and "(5, 2)" in msg
    assert f"test_trace.py:{_line_of('MARK-mm')}" in msg


def test_captured_arrays_and_scalars():
    table = lucid.tensor(np.arange(6, dtype=np.float32).reshape(2, 3))
    g = lucid.trace(lambda x: x * 0.5 + table, np.ones((2, 3), np.float32))
    kinds = sorted(n.op for n in g.nodes if n.op in ("param", "constant"))
    assert kinds == ["constant", "param"]
    np.testing.assert_allclose(lucid.ir.interpret(g, np.ones((2, 3), np.float32)), table.data + 0.5)


def test_interpreter_checks_inputs():
    g = lucid.trace(lambda x: x * 2.0, np.ones((2, 3), np.float32))
    with pytest.raises(ShapeError, match="expects shape"):
        lucid.ir.interpret(g, np.ones((3, 2), np.float32))
    with pytest.raises(lucid.DTypeError, match="expects dtype"):
        lucid.ir.interpret(g, np.ones((2, 3), np.float64))
    with pytest.raises(ShapeError, match="takes 1 inputs"):
        lucid.ir.interpret(g)


def test_mixing_two_traces_refuses():
    leaked = []
    lucid.trace(lambda x: leaked.append(x) or x, np.ones(2, np.float32))
    with pytest.raises(TraceError):
        lucid.trace(lambda y: y + leaked[0], np.ones(2, np.float32))
