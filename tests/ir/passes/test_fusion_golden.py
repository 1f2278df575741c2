"""Golden tests of the fusion pass: graph text in, fused graph text out."""
import numpy as np

import lucid
from lucid.ir.passes import fuse


def run(text, params=None):
    g = lucid.ir.parse(text, params=params)
    out = fuse(g)
    lucid.ir.verify(out)
    assert lucid.ir.parse(str(out), params=out.params) == out
    return out


def test_elementwise_chain_becomes_one_function():
    out = run("""graph f(%x: f32[4,8], %b: f32[8]) {
  %0 = add(%x, %b) : f32[4,8]
  %1 = relu(%0) : f32[4,8]
  %2 = mul(%1, %1) : f32[4,8]
  return %2
}""")
    assert str(out) == """graph fused_add_relu_mul_0(%p0: f32[4,8], %p1: f32[8]) {
  %0 = add(%p0, %p1) : f32[4,8]
  %1 = relu(%0) : f32[4,8]
  %2 = mul(%1, %1) : f32[4,8]
  return %2
}

graph f(%x: f32[4,8], %b: f32[8]) {
  %0 = call(%x, %b) {callee="fused_add_relu_mul_0"} : f32[4,8]
  return %0
}"""


def test_matmul_takes_its_bias_and_activation_epilogue():
    out = run("""graph f(%x: f32[2,3], %w: f32[3,5], %b: f32[5]) {
  %0 = matmul(%x, %w) : f32[2,5]
  %1 = add(%0, %b) : f32[2,5]
  %2 = relu(%1) : f32[2,5]
  return %2
}""")
    assert str(out) == """graph fused_matmul_add_relu_0(%p0: f32[2,3], %p1: f32[3,5], %p2: f32[5]) {
  %0 = matmul(%p0, %p1) : f32[2,5]
  %1 = add(%0, %p2) : f32[2,5]
  %2 = relu(%1) : f32[2,5]
  return %2
}

graph f(%x: f32[2,3], %w: f32[3,5], %b: f32[5]) {
  %0 = call(%x, %w, %b) {callee="fused_matmul_add_relu_0"} : f32[2,5]
  return %0
}"""


def test_reduction_with_prologue_and_epilogue():
    out = run("""graph f(%x: f32[4,8]) {
  %0 = mul(%x, %x) : f32[4,8]
  %1 = sum(%0) {axes=(1,), keepdims=false} : f32[4]
  %2 = constant() {value=0.125} : f32[]
  %3 = mul(%1, %2) : f32[4]
  return %3
}""")
    assert str(out) == """graph fused_mul_sum_0(%p0: f32[4,8]) {
  %0 = constant() {value=0.125} : f32[]
  %1 = mul(%p0, %p0) : f32[4,8]
  %2 = sum(%1) {axes=(1,), keepdims=false} : f32[4]
  %3 = mul(%2, %0) : f32[4]
  return %3
}

graph f(%x: f32[4,8]) {
  %0 = call(%x) {callee="fused_mul_sum_0"} : f32[4]
  return %0
}"""


def test_no_fusion_across_a_value_used_outside_the_group():
    # %0 is needed by both %1 and the output %2: it must stay a value of its own.
    out = run("""graph f(%x: f32[4]) {
  %0 = exp(%x) : f32[4]
  %1 = neg(%0) : f32[4]
  %2 = add(%1, %0) : f32[4]
  return %2, %0
}""")
    assert str(out) == """graph fused_neg_add_0(%p0: f32[4]) {
  %0 = neg(%p0) : f32[4]
  %1 = add(%0, %p0) : f32[4]
  return %1
}

graph f(%x: f32[4]) {
  %0 = exp(%x) : f32[4]
  %1 = call(%0) {callee="fused_neg_add_0"} : f32[4]
  return %1, %0
}"""


def test_two_reductions_and_two_anchors_never_share_a_kernel():
    out = run("""graph f(%x: f32[4,8], %w: f32[8,8]) {
  %0 = matmul(%x, %w) : f32[4,8]
  %1 = matmul(%0, %w) : f32[4,8]
  %2 = sum(%1) {axes=(1,), keepdims=true} : f32[4,1]
  %3 = max(%2) {axes=(0,), keepdims=false} : f32[1]
  return %3
}""")
    ops = [[n.op for n in f.compute_nodes] for f in out.functions.values()]
    main = [n.op for n in out.compute_nodes]
    assert main.count("matmul") + sum(o.count("matmul") for o in ops) == 2
    assert all(o.count("matmul") <= 1 and o.count("sum") + o.count("max") <= 1 for o in ops)
    assert all(not (("matmul" in o) and ("sum" in o)) for o in ops)


def test_sealed_ops_take_no_epilogue():
    out = run("""graph f(%x: f32[6]) {
  %0 = argsort(%x) {axis=0, descending=false} : i64[6]
  %1 = cast(%0) {dtype=f32} : f32[6]
  %2 = add(%1, %x) : f32[6]
  return %2
}""")
    assert [n.op for n in out.compute_nodes] == ["argsort", "call"]


def test_fused_graph_computes_the_same(rng):
    lucid.random.seed(0)
    model = lucid.nn.Sequential(lucid.nn.Conv2d(3, 4, 3, padding=1), lucid.nn.BatchNorm2d(4), lucid.nn.ReLU(),
                                lucid.nn.MaxPool2d(2), lucid.nn.Flatten(), lucid.nn.Linear(16, 2)).eval()
    x = rng.normal(size=(2, 3, 4, 4)).astype(np.float32)
    g = lucid.trace(model, x)
    fused = fuse(g)
    assert len(fused.compute_nodes) < len(g.compute_nodes)
    np.testing.assert_allclose(lucid.ir.interpret(fused, x), lucid.ir.interpret(g, x), rtol=1e-6)
