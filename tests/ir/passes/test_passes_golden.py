"""Golden tests of the graph passes: graph text in, one pass, expected graph text out.

The expected texts are written from what each pass must do (not copied from its output).
Every result is also verified, printed text parses back to the same graph, and, where the
params have values, the result computes what the input graph computes."""
from textwrap import dedent

import numpy as np
import pytest

from lucid.ir import interpret, parse, verify
from lucid.ir.passes import (FOLD_SCALE_RULES, SIMPLIFY_RULES, cse, dce, fold_constants, fold_scale,
                             simplify)
from lucid.ir.passes.basic import FOLD_GROWTH_LIMIT

CONV = "{stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1}"


def _text(s):
    return dedent(s).strip("\n")


def _random_inputs(graph, rng):
    out = []
    for n in graph.inputs:
        if n.type.dtype.is_float:
            out.append(rng.standard_normal(n.type.shape).astype(n.type.dtype.np))
        else:
            out.append(rng.integers(0, 3, n.type.shape).astype(n.type.dtype.np))
    return out


def _same_values(a, b):
    if isinstance(a, tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _same_values(x, y)
        return
    assert a.shape == b.shape and a.dtype == b.dtype
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def run_golden(pass_, src, expected, params=None, check_values=True):
    """Parse `src`, run `pass_`, compare the text with `expected`; return the result."""
    graph = parse(_text(src), params=params)
    assert str(graph) == _text(src)  # test texts are written in the printer's exact form
    before = {k: v.copy() for k, v in graph.params.items()}
    out = pass_(graph)
    verify(out)
    assert str(out) == _text(expected)
    assert str(parse(str(out), params=out.params)) == str(out)
    assert str(graph) == _text(src)  # a pass builds a new graph and leaves its input alone
    assert graph.params.keys() == before.keys()
    assert all(np.array_equal(graph.params[k], v) for k, v in before.items())
    has_values = all(n.name in graph.params for n in graph.param_nodes)
    if check_values and has_values:
        rng = np.random.default_rng(0)
        for _ in range(2):
            xs = _random_inputs(graph, rng)
            _same_values(interpret(out, *xs), interpret(graph, *xs))
    return out


def _f32(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


# ---- dce --------------------------------------------------------------------------------------

def test_dce_drops_dead_chains_and_keeps_unused_inputs():
    run_golden(dce, """
        graph g(%x: f32[2,3], %unused: f32[4]) {
          %w = param : f32[2,3]
          %0 = add(%x, %w) : f32[2,3]
          %1 = relu(%x) : f32[2,3]
          %2 = neg(%1) : f32[2,3]
          %3 = exp(%0) : f32[2,3]
          %dead = param : f32[4]
          %4 = mul(%unused, %dead) : f32[4]
          %5 = sum(%4) {axes=(0,), keepdims=false} : f32[]
          return %3
        }""", """
        graph g(%x: f32[2,3], %unused: f32[4]) {
          %w = param : f32[2,3]
          %0 = add(%x, %w) : f32[2,3]
          %1 = exp(%0) : f32[2,3]
          return %1
        }""")


def test_dce_keeps_values_and_drops_params_without_use():
    rng = np.random.default_rng(1)
    out = run_golden(dce, """
        graph g(%x: f32[3]) {
          %a = param : f32[3]
          %b = param : f32[3]
          %0 = mul(%x, %a) : f32[3]
          %1 = mul(%x, %b) : f32[3]
          return %0, %x
        }""", """
        graph g(%x: f32[3]) {
          %a = param : f32[3]
          %0 = mul(%x, %a) : f32[3]
          return %0, %x
        }""", params={"a": _f32(rng, 3), "b": _f32(rng, 3)})
    assert set(out.params) == {"a"}


def test_dce_keeps_updates_and_the_params_they_assign():
    # %m is assigned but never read: its `update` line still names it.
    run_golden(dce, """
        graph g(%x: f32[3]) {
          %m = param : f32[3]
          %s = param : f32[3]
          %0 = mul(%x, %s) : f32[3]
          %1 = neg(%0) : f32[3]
          %2 = exp(%x) : f32[3]
          return %0
          update %m = %2
        }""", """
        graph g(%x: f32[3]) {
          %m = param : f32[3]
          %s = param : f32[3]
          %0 = mul(%x, %s) : f32[3]
          %1 = exp(%x) : f32[3]
          return %0
          update %m = %1
        }""")


def test_dce_keeps_called_functions_and_drops_uncalled_ones():
    src = """
        graph f(%a: f32[3], %b: f32[3]) {
          %0 = add(%a, %b) : f32[3]
          %1 = relu(%0) : f32[3]
          return %1
        }

        graph h(%a: f32[3]) {
          %0 = exp(%a) : f32[3]
          %1 = neg(%0) : f32[3]
          return %1
        }

        graph g(%x: f32[3], %y: f32[3]) {
          %0 = call(%x, %y) {callee="f"} : f32[3]
          %1 = call(%x) {callee="h"} : f32[3]
          return %0
        }"""
    run_golden(dce, src, """
        graph f(%a: f32[3], %b: f32[3]) {
          %0 = add(%a, %b) : f32[3]
          %1 = relu(%0) : f32[3]
          return %1
        }

        graph g(%x: f32[3], %y: f32[3]) {
          %0 = call(%x, %y) {callee="f"} : f32[3]
          return %0
        }""")


# ---- cse --------------------------------------------------------------------------------------

def test_cse_merges_duplicates_and_equal_constants_but_not_params_or_other_attrs():
    rng = np.random.default_rng(2)
    w = _f32(rng, 3, 3)
    out = run_golden(cse, """
        graph g(%x: f32[3,3]) {
          %w = param : f32[3,3]
          %v = param : f32[3,3]
          %0 = add(%x, %w) : f32[3,3]
          %1 = add(%x, %w) : f32[3,3]
          %2 = mul(%0, %1) : f32[3,3]
          %3 = constant() {value=2.0} : f32[]
          %4 = constant() {value=2.0} : f32[]
          %5 = constant() {value=2} : f32[]
          %6 = mul(%2, %3) : f32[3,3]
          %7 = mul(%2, %4) : f32[3,3]
          %8 = mul(%2, %5) : f32[3,3]
          %9 = add(%x, %v) : f32[3,3]
          %10 = sum(%x) {axes=(0,), keepdims=false} : f32[3]
          %11 = sum(%x) {axes=(1,), keepdims=false} : f32[3]
          %12 = constant() {value=2.0} : f64[]
          %13 = cast(%x) {dtype=f64} : f64[3,3]
          %14 = mul(%13, %12) : f64[3,3]
          return %6, %7, %8, %9, %10, %11, %14
        }""", """
        graph g(%x: f32[3,3]) {
          %w = param : f32[3,3]
          %v = param : f32[3,3]
          %0 = add(%x, %w) : f32[3,3]
          %1 = mul(%0, %0) : f32[3,3]
          %2 = constant() {value=2.0} : f32[]
          %3 = mul(%1, %2) : f32[3,3]
          %4 = add(%x, %v) : f32[3,3]
          %5 = sum(%x) {axes=(0,), keepdims=false} : f32[3]
          %6 = sum(%x) {axes=(1,), keepdims=false} : f32[3]
          %7 = constant() {value=2.0} : f64[]
          %8 = cast(%x) {dtype=f64} : f64[3,3]
          %9 = mul(%8, %7) : f64[3,3]
          return %3, %3, %3, %4, %5, %6, %9
        }""", params={"w": w, "v": w.copy()})
    assert set(out.params) == {"w", "v"}


def test_cse_keeps_minus_zero_apart_from_zero():
    src = """
        graph g(%x: f32[3]) {
          %0 = constant() {value=0.0} : f32[]
          %1 = constant() {value=-0.0} : f32[]
          %2 = constant() {value=0.0} : f32[]
          %3 = mul(%x, %0) : f32[3]
          %4 = mul(%x, %1) : f32[3]
          %5 = mul(%x, %2) : f32[3]
          return %3, %4, %5
        }"""
    run_golden(cse, src, """
        graph g(%x: f32[3]) {
          %0 = constant() {value=0.0} : f32[]
          %1 = constant() {value=-0.0} : f32[]
          %2 = mul(%x, %0) : f32[3]
          %3 = mul(%x, %1) : f32[3]
          return %2, %3, %2
        }""")


def test_cse_merges_chains_transitively():
    run_golden(cse, """
        graph g(%x: f32[4]) {
          %0 = exp(%x) : f32[4]
          %1 = neg(%0) : f32[4]
          %2 = exp(%x) : f32[4]
          %3 = neg(%2) : f32[4]
          %4 = add(%1, %3) : f32[4]
          return %4
        }""", """
        graph g(%x: f32[4]) {
          %0 = exp(%x) : f32[4]
          %1 = neg(%0) : f32[4]
          %2 = add(%1, %1) : f32[4]
          return %2
        }""")


# ---- fold_constants ----------------------------------------------------------------------------

def test_fold_constants_folds_a_chain_into_one_new_param():
    rng = np.random.default_rng(3)
    w = _f32(rng, 3, 2)
    out = run_golden(fold_constants, """
        graph g(%x: f32[2,3]) {
          %w = param : f32[3,2]
          %0 = transpose(%w) {perm=(1, 0)} : f32[2,3]
          %1 = constant() {value=2.0} : f32[]
          %2 = mul(%0, %1) : f32[2,3]
          %3 = exp(%2) : f32[2,3]
          %4 = add(%x, %3) : f32[2,3]
          return %4
        }""", """
        graph g(%x: f32[2,3]) {
          %_fold2 = param : f32[2,3]
          %0 = add(%x, %_fold2) : f32[2,3]
          return %0
        }""", params={"w": w})
    assert set(out.params) == {"_fold2"}
    assert out.params["_fold2"].dtype == np.float32
    np.testing.assert_allclose(out.params["_fold2"], np.exp(w.T * 2.0), rtol=1e-6)


def test_fold_constants_makes_a_scalar_result_a_constant():
    out = run_golden(fold_constants, """
        graph g(%x: f32[3]) {
          %w = param : f32[3]
          %0 = sum(%w) {axes=(0,), keepdims=false} : f32[]
          %1 = mul(%x, %0) : f32[3]
          return %1
        }""", """
        graph g(%x: f32[3]) {
          %0 = constant() {value=6.5} : f32[]
          %1 = mul(%x, %0) : f32[3]
          return %1
        }""", params={"w": np.array([1.0, 2.0, 3.5], np.float32)})
    assert out.params == {}


def test_fold_constants_leaves_ops_on_graph_inputs():
    src = """
        graph g(%x: f32[3], %y: f32[3]) {
          %w = param : f32[3]
          %0 = mul(%x, %w) : f32[3]
          %1 = constant() {value=1.0} : f32[]
          %2 = add(%y, %1) : f32[3]
          %3 = sub(%0, %2) : f32[3]
          return %3
        }"""
    run_golden(fold_constants, src, src, params={"w": np.arange(3, dtype=np.float32)})


def test_fold_constants_leaves_large_broadcasts_of_scalars():
    n = FOLD_GROWTH_LIMIT * 2
    src = f"""
        graph g(%x: f32[2,{n // 2}]) {{
          %0 = constant() {{value=1.5}} : f32[]
          %1 = broadcast_to(%0) {{shape=(2, {n // 2})}} : f32[2,{n // 2}]
          %2 = add(%x, %1) : f32[2,{n // 2}]
          %b = param : f32[{n // 2}]
          %3 = broadcast_to(%b) {{shape=(2, {n // 2})}} : f32[2,{n // 2}]
          %4 = mul(%2, %3) : f32[2,{n // 2}]
          return %4
        }}"""
    out = run_golden(fold_constants, src, src, params={"b": np.ones(n // 2, np.float32)})
    assert set(out.params) == {"b"}


def test_fold_constants_folds_small_broadcasts():
    out = run_golden(fold_constants, """
        graph g(%x: f32[2,3]) {
          %0 = constant() {value=1.5} : f32[]
          %1 = broadcast_to(%0) {shape=(2, 3)} : f32[2,3]
          %2 = add(%x, %1) : f32[2,3]
          return %2
        }""", """
        graph g(%x: f32[2,3]) {
          %_fold0 = param : f32[2,3]
          %0 = add(%x, %_fold0) : f32[2,3]
          return %0
        }""")
    np.testing.assert_array_equal(out.params["_fold0"], np.full((2, 3), 1.5, np.float32))


def test_fold_constants_leaves_updated_params():
    # %rm is a running statistic (assigned by the graph): not a constant. %s is frozen.
    rng = np.random.default_rng(4)
    s = _f32(rng, 3)
    out = run_golden(fold_constants, """
        graph g(%x: f32[3]) {
          %rm = param : f32[3]
          %s = param : f32[3]
          %0 = constant() {value=0.9} : f32[]
          %1 = mul(%rm, %0) : f32[3]
          %2 = neg(%s) : f32[3]
          %3 = add(%1, %2) : f32[3]
          %4 = add(%x, %3) : f32[3]
          return %4
          update %rm = %3
        }""", """
        graph g(%x: f32[3]) {
          %rm = param : f32[3]
          %0 = constant() {value=0.9} : f32[]
          %1 = mul(%rm, %0) : f32[3]
          %_fold0 = param : f32[3]
          %2 = add(%1, %_fold0) : f32[3]
          %3 = add(%x, %2) : f32[3]
          return %3
          update %rm = %2
        }""", params={"rm": _f32(rng, 3), "s": s})
    np.testing.assert_array_equal(out.params["_fold0"], -s)


def test_fold_constants_leaves_params_without_values():
    src = """
        graph g(%x: f32[3]) {
          %w = param : f32[3]
          %0 = neg(%w) : f32[3]
          %1 = add(%x, %0) : f32[3]
          return %1
        }"""
    run_golden(fold_constants, src, src)


def test_fold_constants_leaves_calls_alone():
    src = """
        graph f(%a: f32[3]) {
          %0 = exp(%a) : f32[3]
          %1 = neg(%0) : f32[3]
          return %1
        }

        graph g(%x: f32[3]) {
          %w = param : f32[3]
          %0 = call(%w) {callee="f"} : f32[3]
          %1 = add(%x, %0) : f32[3]
          return %1
        }"""
    run_golden(fold_constants, src, src, params={"w": np.ones(3, np.float32)})


def test_fold_constants_folds_integer_and_comparison_ops():
    out = run_golden(fold_constants, """
        graph g(%x: f32[4]) {
          %i = param : i64[4]
          %0 = constant() {value=2} : i64[]
          %1 = ge(%i, %0) : bool[4]
          %2 = constant() {value=0.0} : f32[]
          %3 = where(%1, %x, %2) : f32[4]
          return %3
        }""", """
        graph g(%x: f32[4]) {
          %_fold0 = param : bool[4]
          %0 = constant() {value=0.0} : f32[]
          %1 = where(%_fold0, %x, %0) : f32[4]
          return %1
        }""", params={"i": np.arange(4, dtype=np.int64)})
    np.testing.assert_array_equal(out.params["_fold0"], [False, False, True, True])


def test_fold_constants_makes_fresh_contiguous_params_and_folds_each_value_once():
    # A transpose folds to a strided view in numpy: the param must be its own C-order array.
    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    out = run_golden(fold_constants, """
        graph g(%x: f32[3,2]) {
          %w = param : f32[2,3]
          %0 = transpose(%w) {perm=(1, 0)} : f32[3,2]
          %1 = add(%x, %0) : f32[3,2]
          %2 = transpose(%w) {perm=(1, 0)} : f32[3,2]
          %3 = mul(%1, %2) : f32[3,2]
          return %3
        }""", """
        graph g(%x: f32[3,2]) {
          %_fold0 = param : f32[3,2]
          %0 = add(%x, %_fold0) : f32[3,2]
          %1 = mul(%0, %_fold0) : f32[3,2]
          return %1
        }""", params={"w": w})
    folded = out.params["_fold0"]
    assert folded.flags.c_contiguous and not np.shares_memory(folded, w)
    np.testing.assert_array_equal(folded, w.T)


# ---- simplify ----------------------------------------------------------------------------------

# (rule, input, expected): each rule of SIMPLIFY_RULES on a minimal graph.
SIMPLIFY_CASES = [
    ("add-zero", """
        graph g(%x: f32[2,3]) {
          %0 = constant() {value=0.0} : f32[]
          %1 = add(%0, %x) : f32[2,3]
          %2 = exp(%1) : f32[2,3]
          return %2
        }""", """
        graph g(%x: f32[2,3]) {
          %0 = exp(%x) : f32[2,3]
          return %0
        }"""),
    ("sub-zero", """
        graph g(%x: f32[2,3]) {
          %0 = constant() {value=0.0} : f32[]
          %1 = sub(%x, %0) : f32[2,3]
          return %1
        }""", """
        graph g(%x: f32[2,3]) {
          return %x
        }"""),
    ("mul-one", """
        graph g(%x: f32[3]) {
          %0 = constant() {value=1.0} : f32[]
          %1 = broadcast_to(%0) {shape=(2, 3)} : f32[2,3]
          %2 = mul(%x, %1) : f32[2,3]
          return %2
        }""", """
        graph g(%x: f32[3]) {
          %0 = broadcast_to(%x) {shape=(2, 3)} : f32[2,3]
          return %0
        }"""),
    ("div-one", """
        graph g(%x: f32[2,3]) {
          %0 = constant() {value=1.0} : f32[]
          %1 = div(%x, %0) : f32[2,3]
          %2 = neg(%1) : f32[2,3]
          return %2
        }""", """
        graph g(%x: f32[2,3]) {
          %0 = neg(%x) : f32[2,3]
          return %0
        }"""),
    ("pow-one", """
        graph g(%x: f32[2,3]) {
          %0 = constant() {value=1.0} : f32[]
          %1 = pow(%x, %0) : f32[2,3]
          return %1
        }""", """
        graph g(%x: f32[2,3]) {
          return %x
        }"""),
    ("pow-two", """
        graph g(%x: f32[2,3]) {
          %0 = constant() {value=2.0} : f32[]
          %1 = pow(%x, %0) : f32[2,3]
          return %1
        }""", """
        graph g(%x: f32[2,3]) {
          %0 = mul(%x, %x) : f32[2,3]
          return %0
        }"""),
    ("sub-self", """
        graph g(%x: f32[2,3]) {
          %0 = exp(%x) : f32[2,3]
          %1 = sub(%0, %0) : f32[2,3]
          return %1
        }""", """
        graph g(%x: f32[2,3]) {
          %0 = constant() {value=0.0} : f32[]
          %1 = broadcast_to(%0) {shape=(2, 3)} : f32[2,3]
          return %1
        }"""),
    ("neg-neg", """
        graph g(%x: f32[2,3]) {
          %0 = neg(%x) : f32[2,3]
          %1 = neg(%0) : f32[2,3]
          %2 = relu(%1) : f32[2,3]
          return %2
        }""", """
        graph g(%x: f32[2,3]) {
          %0 = relu(%x) : f32[2,3]
          return %0
        }"""),
    ("reshape-noop", """
        graph g(%x: f32[2,3]) {
          %0 = reshape(%x) {shape=(2, 3)} : f32[2,3]
          %1 = exp(%0) : f32[2,3]
          return %1
        }""", """
        graph g(%x: f32[2,3]) {
          %0 = exp(%x) : f32[2,3]
          return %0
        }"""),
    ("reshape-reshape", """
        graph g(%x: f32[2,3]) {
          %0 = reshape(%x) {shape=(6,)} : f32[6]
          %1 = reshape(%0) {shape=(3, 2)} : f32[3,2]
          return %1
        }""", """
        graph g(%x: f32[2,3]) {
          %0 = reshape(%x) {shape=(3, 2)} : f32[3,2]
          return %0
        }"""),
    ("transpose-transpose", """
        graph g(%x: f32[2,3,4]) {
          %0 = transpose(%x) {perm=(1, 2, 0)} : f32[3,4,2]
          %1 = transpose(%0) {perm=(1, 0, 2)} : f32[4,3,2]
          return %1
        }""", """
        graph g(%x: f32[2,3,4]) {
          %0 = transpose(%x) {perm=(2, 1, 0)} : f32[4,3,2]
          return %0
        }"""),
    ("broadcast-noop", """
        graph g(%x: f32[2,3]) {
          %0 = broadcast_to(%x) {shape=(2, 3)} : f32[2,3]
          %1 = exp(%0) : f32[2,3]
          return %1
        }""", """
        graph g(%x: f32[2,3]) {
          %0 = exp(%x) : f32[2,3]
          return %0
        }"""),
    ("cast-noop", """
        graph g(%x: f32[2,3]) {
          %0 = cast(%x) {dtype=f32} : f32[2,3]
          %1 = exp(%0) : f32[2,3]
          return %1
        }""", """
        graph g(%x: f32[2,3]) {
          %0 = exp(%x) : f32[2,3]
          return %0
        }"""),
    ("slice-noop", """
        graph g(%x: f32[2,3]) {
          %0 = slice(%x) {begin=(0, 0), end=(2, 3), step=(1, 1)} : f32[2,3]
          %1 = exp(%0) : f32[2,3]
          return %1
        }""", """
        graph g(%x: f32[2,3]) {
          %0 = exp(%x) : f32[2,3]
          return %0
        }"""),
    ("sum-of-broadcast", """
        graph g(%x: f32[1,3]) {
          %0 = broadcast_to(%x) {shape=(4, 3)} : f32[4,3]
          %1 = sum(%0) {axes=(0,), keepdims=false} : f32[3]
          return %1
        }""", """
        graph g(%x: f32[1,3]) {
          %0 = reshape(%x) {shape=(3,)} : f32[3]
          %1 = constant() {value=4.0} : f32[]
          %2 = mul(%0, %1) : f32[3]
          return %2
        }"""),
    ("div-by-constant", """
        graph g(%x: f32[2,3]) {
          %c = param : f32[3]
          %0 = div(%x, %c) : f32[2,3]
          return %0
        }""", """
        graph g(%x: f32[2,3]) {
          %c = param : f32[3]
          %0 = constant() {value=1.0} : f32[]
          %1 = div(%0, %c) : f32[3]
          %2 = mul(%x, %1) : f32[2,3]
          return %2
        }"""),
    ("sub-constant", """
        graph g(%x: f32[2,3]) {
          %c = param : f32[3]
          %0 = sub(%x, %c) : f32[2,3]
          return %0
        }""", """
        graph g(%x: f32[2,3]) {
          %c = param : f32[3]
          %0 = neg(%c) : f32[3]
          %1 = add(%x, %0) : f32[2,3]
          return %1
        }"""),
    ("mul-mul-constants", """
        graph g(%x: f32[2,3]) {
          %a = param : f32[3]
          %0 = mul(%a, %x) : f32[2,3]
          %1 = constant() {value=3.0} : f32[]
          %2 = mul(%1, %0) : f32[2,3]
          return %2
        }""", """
        graph g(%x: f32[2,3]) {
          %a = param : f32[3]
          %0 = constant() {value=3.0} : f32[]
          %1 = mul(%a, %0) : f32[3]
          %2 = mul(%x, %1) : f32[2,3]
          return %2
        }"""),
    ("add-add-constants", """
        graph g(%x: f32[2,3]) {
          %a = param : f32[3]
          %0 = add(%x, %a) : f32[2,3]
          %b = param : f32[2,1]
          %1 = add(%0, %b) : f32[2,3]
          return %1
        }""", """
        graph g(%x: f32[2,3]) {
          %a = param : f32[3]
          %b = param : f32[2,1]
          %0 = add(%a, %b) : f32[2,3]
          %1 = add(%x, %0) : f32[2,3]
          return %1
        }"""),
    ("mul-over-add-constant", """
        graph g(%x: f32[2,3]) {
          %a = param : f32[3]
          %0 = add(%x, %a) : f32[2,3]
          %s = param : f32[3]
          %1 = mul(%0, %s) : f32[2,3]
          return %1
        }""", """
        graph g(%x: f32[2,3]) {
          %a = param : f32[3]
          %s = param : f32[3]
          %0 = mul(%x, %s) : f32[2,3]
          %1 = mul(%a, %s) : f32[3]
          %2 = add(%0, %1) : f32[2,3]
          return %2
        }"""),
    ("add-constants-of-sum", """
        graph g(%x: f32[2,3], %y: f32[2,3]) {
          %a = param : f32[3]
          %0 = add(%x, %a) : f32[2,3]
          %b = param : f32[3]
          %1 = add(%b, %y) : f32[2,3]
          %2 = add(%0, %1) : f32[2,3]
          return %2
        }""", """
        graph g(%x: f32[2,3], %y: f32[2,3]) {
          %a = param : f32[3]
          %b = param : f32[3]
          %0 = add(%x, %y) : f32[2,3]
          %1 = add(%a, %b) : f32[3]
          %2 = add(%0, %1) : f32[2,3]
          return %2
        }"""),
]


def _params_for(src, rng):
    """Random values for the params of a test graph (positive, so divisions are safe)."""
    graph = parse(_text(src))
    return {n.name: rng.uniform(0.5, 2.0, n.type.shape).astype(n.type.dtype.np) for n in graph.param_nodes}


def test_every_simplify_rule_has_a_golden_case():
    assert [r.name for r in SIMPLIFY_RULES] == [name for name, _, _ in SIMPLIFY_CASES]


@pytest.mark.parametrize("rule,src,expected", SIMPLIFY_CASES, ids=[c[0] for c in SIMPLIFY_CASES])
def test_simplify_rule(rule, src, expected):
    run_golden(simplify, src, expected, params=_params_for(src, np.random.default_rng(5)))


NEAR_MISSES = {
    "mul-by-two": """
        graph g(%x: f32[2,3]) {
          %0 = constant() {value=2.0} : f32[]
          %1 = mul(%x, %0) : f32[2,3]
          return %1
        }""",
    "add-one": """
        graph g(%x: f32[2,3]) {
          %0 = constant() {value=1.0} : f32[]
          %1 = add(%x, %0) : f32[2,3]
          return %1
        }""",
    "pow-three": """
        graph g(%x: f32[2,3]) {
          %0 = constant() {value=3.0} : f32[]
          %1 = pow(%x, %0) : f32[2,3]
          return %1
        }""",
    "reshape-to-other-shape": """
        graph g(%x: f32[2,3]) {
          %0 = reshape(%x) {shape=(3, 2)} : f32[3,2]
          return %0
        }""",
    "sub-of-two-values": """
        graph g(%x: f32[2,3], %y: f32[2,3]) {
          %0 = sub(%x, %y) : f32[2,3]
          return %0
        }""",
    "sub-constant-minus-x": """
        graph g(%x: f32[2,3]) {
          %0 = constant() {value=0.0} : f32[]
          %1 = sub(%0, %x) : f32[2,3]
          return %1
        }""",
    "sum-over-unbroadcast-axis": """
        graph g(%x: f32[1,3]) {
          %0 = broadcast_to(%x) {shape=(4, 3)} : f32[4,3]
          %1 = sum(%0) {axes=(1,), keepdims=false} : f32[4]
          return %1
        }""",
    "sum-over-part-of-the-broadcast": """
        graph g(%x: f32[1,1,3]) {
          %0 = broadcast_to(%x) {shape=(2, 4, 3)} : f32[2,4,3]
          %1 = sum(%0) {axes=(0, 2), keepdims=false} : f32[4]
          return %1
        }""",
    "transpose-then-reshape": """
        graph g(%x: f32[2,3]) {
          %0 = transpose(%x) {perm=(1, 0)} : f32[3,2]
          %1 = reshape(%0) {shape=(2, 3)} : f32[2,3]
          return %1
        }""",
    "cast-to-other-dtype": """
        graph g(%x: f32[2,3]) {
          %0 = cast(%x) {dtype=f64} : f64[2,3]
          return %0
        }""",
    "slice-of-part": """
        graph g(%x: f32[2,3]) {
          %0 = slice(%x) {begin=(0, 1), end=(2, 3), step=(1, 1)} : f32[2,2]
          return %0
        }""",
    "sub-self-integer": """
        graph g(%x: i64[3]) {
          %0 = sub(%x, %x) : i64[3]
          return %0
        }""",
    "add-of-uniform-but-updated-param": """
        graph g(%x: f32[3]) {
          %z = param : f32[3]
          %0 = add(%x, %z) : f32[3]
          return %0
          update %z = %0
        }""",
    "sum-of-biased-values-one-used-twice": """
        graph g(%x: f32[3], %y: f32[3]) {
          %z = param : f32[3]
          %0 = add(%x, %z) : f32[3]
          %1 = add(%y, %z) : f32[3]
          %2 = add(%0, %1) : f32[3]
          return %2, %1
        }""",
    "mul-by-non-uniform-param": """
        graph g(%x: f32[3]) {
          %z = param : f32[3]
          %0 = mul(%x, %z) : f32[3]
          return %0
        }""",
}


@pytest.mark.parametrize("src", NEAR_MISSES.values(), ids=list(NEAR_MISSES))
def test_simplify_near_misses_do_not_fire(src):
    params = {"z": np.array([0.0, 0.0, 0.0] if "updated" in src else [1.0, 1.0, 2.0], np.float32)}
    graph = parse(_text(src))
    run_golden(simplify, src, src, params={k: v for k, v in params.items()
                                           if k in {n.name for n in graph.param_nodes}})


def test_simplify_sees_uniform_params_left_by_constant_folding():
    # fold_constants turns a small broadcast of 0.0 into a param of zeros; x + zeros is x.
    src = """
        graph g(%x: f32[2,3]) {
          %0 = constant() {value=0.0} : f32[]
          %1 = broadcast_to(%0) {shape=(2, 3)} : f32[2,3]
          %2 = add(%x, %1) : f32[2,3]
          %3 = constant() {value=1.0} : f32[]
          %4 = broadcast_to(%3) {shape=(3,)} : f32[3]
          %5 = mul(%4, %2) : f32[2,3]
          return %5
        }"""
    folded = fold_constants(parse(_text(src)))
    assert [n.op for n in folded.compute_nodes] == ["add", "mul"]
    out = simplify(folded)
    verify(out)
    assert str(out) == _text("""
        graph g(%x: f32[2,3]) {
          return %x
        }""")


def test_simplify_applies_rules_along_a_chain():
    # ((x - 0) * 1) ** 1: three rules, each on the result of the one before.
    run_golden(simplify, """
        graph g(%x: f32[3]) {
          %0 = constant() {value=0.0} : f32[]
          %1 = sub(%x, %0) : f32[3]
          %2 = constant() {value=1.0} : f32[]
          %3 = mul(%1, %2) : f32[3]
          %4 = pow(%3, %2) : f32[3]
          %5 = exp(%4) : f32[3]
          return %5
        }""", """
        graph g(%x: f32[3]) {
          %0 = exp(%x) : f32[3]
          return %0
        }""")


def test_simplify_credits_new_nodes_to_the_user_line_they_replace():
    src = _text("""
        graph g(%x: f32[2,3]) {
          %c = param : f32[3]
          %0 = div(%x, %c) : f32[2,3]  # model.py:7
          %1 = exp(%0) : f32[2,3]  # model.py:8
          return %1
        }""")
    out = simplify(parse(src, params={"c": np.ones(3, np.float32) * 2}))
    assert out.format(locs=True) == _text("""
        graph g(%x: f32[2,3]) {
          %c = param : f32[3]
          %0 = constant() {value=1.0} : f32[]
          %1 = div(%0, %c) : f32[3]  # model.py:7
          %2 = mul(%x, %1) : f32[2,3]  # model.py:7
          %3 = exp(%2) : f32[2,3]  # model.py:8
          return %3
        }""")


# ---- fold_scale (batch-norm folding) -----------------------------------------------------------

def _conv_src(scale_type="f32[1,3,1,1]", extra_use=False, weight_is_input=False):
    w_decl = "" if weight_is_input else "\n          %w = param : f32[3,2,3,3]"
    header = "%x: f32[1,2,5,5], %w: f32[3,2,3,3]" if weight_is_input else "%x: f32[1,2,5,5]"
    ret = "%1, %0" if extra_use else "%1"
    return f"""
        graph g({header}) {{{w_decl}
          %0 = conv2d(%x, %w) {CONV} : f32[1,3,5,5]
          %s = param : {scale_type}
          %1 = mul(%0, %s) : f32[1,3,5,5]
          return {ret}
        }}"""


def test_fold_scale_moves_a_channel_scale_into_the_conv_weights():
    rng = np.random.default_rng(6)
    w, s = _f32(rng, 3, 2, 3, 3), _f32(rng, 1, 3, 1, 1)
    out = run_golden(fold_scale, _conv_src(), f"""
        graph g(%x: f32[1,2,5,5]) {{
          %_fold0 = param : f32[3,2,3,3]
          %0 = conv2d(%x, %_fold0) {CONV} : f32[1,3,5,5]
          return %0
        }}""", params={"w": w, "s": s})
    np.testing.assert_allclose(out.params["_fold0"], w * s.reshape(3, 1, 1, 1), rtol=1e-6)


def test_fold_scale_takes_a_vector_scale_and_a_scalar_scale():
    rng = np.random.default_rng(7)
    w = _f32(rng, 3, 2, 3, 3)
    for shape, scale in (("[3,1,1]", _f32(rng, 3, 1, 1)), ("[1,1,1,1]", np.full((1, 1, 1, 1), 0.5, np.float32))):
        src = _conv_src(scale_type=f"f32{shape}")
        out = run_golden(fold_scale, src, f"""
            graph g(%x: f32[1,2,5,5]) {{
              %_fold0 = param : f32[3,2,3,3]
              %0 = conv2d(%x, %_fold0) {CONV} : f32[1,3,5,5]
              return %0
            }}""", params={"w": w, "s": scale})
        np.testing.assert_allclose(out.params["_fold0"], w * scale.reshape(-1, 1, 1, 1), rtol=1e-6)


@pytest.mark.parametrize("case", ["conv-has-another-user", "scale-varies-along-width",
                                  "scale-varies-along-everything", "weight-is-an-input",
                                  "scale-is-an-input", "weight-is-updated"])
def test_fold_scale_does_not_fire(case):
    rng = np.random.default_rng(8)
    params = {"w": _f32(rng, 3, 2, 3, 3), "s": _f32(rng, 1, 3, 1, 1)}
    src = _conv_src()
    if case == "conv-has-another-user":
        src = _conv_src(extra_use=True)
    elif case == "scale-varies-along-width":
        src, params["s"] = _conv_src(scale_type="f32[1,1,1,5]"), _f32(rng, 1, 1, 1, 5)
    elif case == "scale-varies-along-everything":
        src, params["s"] = _conv_src(scale_type="f32[1,3,5,5]"), _f32(rng, 1, 3, 5, 5)
    elif case == "weight-is-an-input":
        src = _conv_src(weight_is_input=True)
        del params["w"]
    elif case == "scale-is-an-input":
        src = src.replace("graph g(%x: f32[1,2,5,5]) {", "graph g(%x: f32[1,2,5,5], %s: f32[1,3,1,1]) {")
        src = src.replace("          %s = param : f32[1,3,1,1]\n", "")
        del params["s"]
    elif case == "weight-is-updated":
        src = src.replace("return %1\n", "return %1\n          update %w = %w\n")
    run_golden(fold_scale, src, src, params=params)


def test_fold_scale_moves_a_column_scale_into_matmul_weights():
    rng = np.random.default_rng(9)
    w, s = _f32(rng, 4, 3), _f32(rng, 3)
    out = run_golden(fold_scale, """
        graph g(%x: f32[2,4]) {
          %w = param : f32[4,3]
          %0 = matmul(%x, %w) : f32[2,3]
          %s = param : f32[3]
          %1 = mul(%s, %0) : f32[2,3]
          return %1
        }""", """
        graph g(%x: f32[2,4]) {
          %_fold0 = param : f32[4,3]
          %0 = matmul(%x, %_fold0) : f32[2,3]
          return %0
        }""", params={"w": w, "s": s})
    np.testing.assert_allclose(out.params["_fold0"], w * s, rtol=1e-6)


def test_fold_scale_with_batched_matmul_weights():
    # w is [batch, K, N] with K != N: the scale runs along N, the weights' last axis.
    rng = np.random.default_rng(10)
    w = _f32(rng, 2, 3, 5)
    for s_type, s in (("f32[5]", _f32(rng, 5)), ("f32[1,1,1]", np.full((1, 1, 1), 3.0, np.float32))):
        out = run_golden(fold_scale, f"""
            graph g(%x: f32[2,4,3]) {{
              %w = param : f32[2,3,5]
              %0 = matmul(%x, %w) : f32[2,4,5]
              %s = param : {s_type}
              %1 = mul(%0, %s) : f32[2,4,5]
              return %1
            }}""", """
            graph g(%x: f32[2,4,3]) {
              %_fold0 = param : f32[2,3,5]
              %0 = matmul(%x, %_fold0) : f32[2,4,5]
              return %0
            }""", params={"w": w, "s": s})
        np.testing.assert_allclose(out.params["_fold0"], w * s.reshape(-1), rtol=1e-6)


def test_fold_scale_leaves_a_row_scale_of_a_matmul():
    src = """
        graph g(%x: f32[2,4]) {
          %w = param : f32[4,3]
          %0 = matmul(%x, %w) : f32[2,3]
          %s = param : f32[2,1]
          %1 = mul(%0, %s) : f32[2,3]
          return %1
        }"""
    rng = np.random.default_rng(11)
    run_golden(fold_scale, src, src, params={"w": _f32(rng, 4, 3), "s": _f32(rng, 2, 1)})


def test_fold_scale_rules_are_the_conv_and_matmul_rules():
    assert [r.name for r in FOLD_SCALE_RULES] == ["conv-scale", "matmul-scale"]
