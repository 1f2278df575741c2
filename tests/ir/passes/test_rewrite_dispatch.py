"""Golden tests of how `rewrite_pass` picks rules (indexed by their pattern's root op) and
of what a `fixpoint` pass reports about its last run (rounds, time per inner pass)."""
from textwrap import dedent

import numpy as np

from lucid.ir import interpret, parse, verify
from lucid.ir.passes import Rule, dce, fixpoint, rewrite_pass, simplify
from lucid.ir.passes.patterns import As


def _text(s):
    return dedent(s).strip("\n")


def run_golden(pass_, src, expected, check_values=True):
    """Parse `src`, run `pass_`, compare the text with `expected` (and the values)."""
    graph = parse(_text(src))
    assert str(graph) == _text(src)
    out = pass_(graph)
    verify(out)
    assert str(out) == _text(expected)
    if check_values:
        rng = np.random.default_rng(0)
        xs = [rng.standard_normal(n.type.shape).astype(np.float32) for n in graph.inputs]
        np.testing.assert_allclose(interpret(out, *xs), interpret(graph, *xs), rtol=1e-6)
    return out


def _emit(op):
    return lambda ed, b, node: ed.emit(op, [b["x"], b["y"]])


def _exp_to_neg(ed, b, node):
    return ed.emit("neg", [node.inputs[0]])


def test_a_rule_whose_root_is_a_variable_is_tried_on_every_op():
    # exp(neg(x)) -> neg(neg(x)) by the catch-all rule; the replacement, a neg, is tried
    # again against the rules rooted at neg: neg-neg leaves x.
    rules = [Rule("exp-to-neg", "n", _exp_to_neg, when=lambda b, node, ctx: node.op == "exp"),
             Rule("neg-neg", ("neg", ("neg", "x")), lambda ed, b, node: b["x"])]
    run_golden(rewrite_pass("test", rules), """
        graph g(%x: f32[3]) {
          %0 = neg(%x) : f32[3]
          %1 = exp(%0) : f32[3]
          %2 = relu(%1) : f32[3]
          return %2
        }""", """
        graph g(%x: f32[3]) {
          %0 = relu(%x) : f32[3]
          return %0
        }""", check_values=False)


SRC = """
    graph g(%x: f32[3], %y: f32[3]) {
      %0 = add(%x, %y) : f32[3]
      %1 = exp(%0) : f32[3]
      return %1
    }"""


def test_rules_on_the_same_op_keep_their_list_order():
    to_sub = Rule("add-to-sub", As("a", ("add", "x", "y")), _emit("sub"))  # root seen through As
    to_mul = Rule("add-to-mul", ("add", "x", "y"), _emit("mul"))
    any_op = Rule("never", "n", _emit("div"), when=lambda b, node, ctx: False)
    run_golden(rewrite_pass("t1", [any_op, to_sub, to_mul]), SRC, """
        graph g(%x: f32[3], %y: f32[3]) {
          %0 = sub(%x, %y) : f32[3]
          %1 = exp(%0) : f32[3]
          return %1
        }""", check_values=False)
    run_golden(rewrite_pass("t2", [to_mul, any_op, to_sub]), SRC, """
        graph g(%x: f32[3], %y: f32[3]) {
          %0 = mul(%x, %y) : f32[3]
          %1 = exp(%0) : f32[3]
          return %1
        }""", check_values=False)


def test_rules_rooted_at_other_ops_leave_a_graph_alone():
    rules = [Rule("relu-relu", ("relu", ("relu", "x")), lambda ed, b, node: ed.emit("relu", [b["x"]]))]
    run_golden(rewrite_pass("t", rules), SRC, SRC)


def test_fixpoint_reports_its_rounds_and_the_time_of_each_inner_pass():
    opt = fixpoint("opt", [simplify, dce])
    assert opt.last_rounds == 0 and opt.last_times == {}
    out = run_golden(opt, """
        graph g(%x: f32[3]) {
          %0 = constant() {value=0.0} : f32[]
          %1 = add(%x, %0) : f32[3]
          %2 = exp(%1) : f32[3]
          return %2
        }""", """
        graph g(%x: f32[3]) {
          %0 = exp(%x) : f32[3]
          return %0
        }""")
    # round 1 rewrites, round 2 finds nothing left to do
    assert opt.last_rounds == 2
    assert list(opt.last_times) == ["simplify", "dce"] and all(t >= 0 for t in opt.last_times.values())
    opt(out)
    assert opt.last_rounds == 1


def test_fixpoint_stops_at_max_rounds():
    grows = Rule("exp-exp", ("exp", "x"), lambda ed, b, node: ed.emit("exp", [ed.emit("exp", [b["x"]])]))
    opt = fixpoint("opt", [rewrite_pass("grow", [grows], max_depth=1)], max_rounds=3)
    out = opt(parse(_text("""
        graph g(%x: f32[3]) {
          %0 = exp(%x) : f32[3]
          return %0
        }""")))
    assert opt.last_rounds == 3
    assert sum(1 for n in out.nodes if n.op == "exp") == 8  # doubled in each of the 3 rounds
