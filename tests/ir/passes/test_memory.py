"""The memory-planning pass: golden arenas for small graphs, the in-place rule and the
cases it must refuse, the checker, an arena simulation against the interpreter, and the
figures on a ResNet-style network."""
import dataclasses

import numpy as np
import pytest

import lucid
import lucid.nn as nn
from lucid.errors import CompileError
from lucid.ir import parse
from lucid.ir.graph import Attrs, Graph, Node
from lucid.ir.interpreter import Interpreter
from lucid.ir.passes import PassManager, VerifyInstrument, cse, dce, fold_constants, simplify
from lucid.ir.passes.memory import ALIGNMENT, Buffer, MemoryPlan, can_write_over, memory_plan, plan_memory
from lucid.ir.types import TensorType
from lucid.ops.registry import get_op


def planned(text):
    """Parse, plan, check: (graph, plan, values), values[k] being the node printed %k."""
    graph = parse(text)
    plan = plan_memory(graph).meta["memory"]
    plan.check()
    return graph, plan, graph.compute_nodes


def layout(plan, values):
    """{k: (offset, size, first_step, last_step, index of shares_with or None)}."""
    index = {n: k for k, n in enumerate(values)}
    return {index[n]: (b.offset, b.size, b.first_step, b.last_step,
                       None if b.shares_with is None else index[b.shares_with])
            for n, b in plan.buffers.items()}


# ---- golden plans -------------------------------------------------------------------------
CHAIN = """
graph chain(%x: f32[4,16], %w: f32[16,16]) {
  %0 = matmul(%x, %w) : f32[4,16]
  %1 = matmul(%0, %w) : f32[4,16]
  %2 = matmul(%1, %w) : f32[4,16]
  %3 = matmul(%2, %w) : f32[4,16]
  %4 = matmul(%3, %w) : f32[4,16]
  %5 = matmul(%4, %w) : f32[4,16]
  return %5
}
"""


def test_chain_alternates_between_two_slots():
    graph, plan, v = planned(CHAIN)
    assert layout(plan, v) == {0: (0, 256, 0, 1, None), 1: (256, 256, 1, 2, None), 2: (0, 256, 2, 3, None),
                               3: (256, 256, 3, 4, None), 4: (0, 256, 4, 5, None)}
    assert (plan.arena_size, plan.lower_bound, plan.naive_size) == (512, 512, 1280)
    assert plan.buffer_of(v[3]) == (256, 256)
    assert plan.buffer_of(v[5]) is None and plan.buffer_of(graph.inputs[0]) is None


def test_offsets_are_aligned_to_64_bytes():
    _, plan, v = planned("""
graph chain(%x: f32[3,5], %w: f32[5,5]) {
  %0 = matmul(%x, %w) : f32[3,5]
  %1 = matmul(%0, %w) : f32[3,5]
  %2 = matmul(%1, %w) : f32[3,5]
  %3 = matmul(%2, %w) : f32[3,5]
  return %3
}""")
    assert layout(plan, v) == {0: (0, 60, 0, 1, None), 1: (64, 60, 1, 2, None), 2: (0, 60, 2, 3, None)}
    assert (plan.arena_size, plan.lower_bound, plan.naive_size) == (124, 120, 180)
    assert ALIGNMENT == 64


def test_big_buffers_placed_first_small_ones_fill_the_gaps():
    # %0 (1 KiB) lives over everything; %1 and %3 (256 B) and %2 (1 KiB) come and go.
    _, plan, v = planned("""
graph g(%x: f32[16,16], %a: f32[4,16], %w: f32[16,16]) {
  %0 = exp(%x) : f32[16,16]
  %1 = matmul(%a, %w) : f32[4,16]
  %2 = matmul(%0, %w) : f32[16,16]
  %3 = matmul(%1, %w) : f32[4,16]
  %4 = add(%2, %0) : f32[16,16]
  %5 = matmul(%3, %w) : f32[4,16]
  return %4, %5
}""")
    assert layout(plan, v) == {0: (0, 1024, 0, 4, None), 1: (2048, 256, 1, 3, None),
                               2: (1024, 1024, 2, 4, None), 3: (2304, 256, 3, 5, None)}
    assert (plan.arena_size, plan.lower_bound, plan.naive_size) == (2560, 2560, 2560)


# ---- in place -------------------------------------------------------------------------------
def test_relu_after_add_writes_in_place():
    graph, plan, v = planned("""
graph g(%x: f32[8,8], %y: f32[8,8], %w: f32[8,8]) {
  %0 = add(%x, %y) : f32[8,8]
  %1 = relu(%0) : f32[8,8]
  %2 = matmul(%1, %w) : f32[8,8]
  return %2
}""")
    assert can_write_over(graph, v[1], 0)
    assert layout(plan, v) == {0: (0, 256, 0, 1, None), 1: (0, 256, 1, 2, 0)}
    assert (plan.arena_size, plan.lower_bound, plan.naive_size) == (256, 256, 512)
    assert plan.in_place_count == 1


def test_in_place_chain_shares_one_slot_with_the_union_of_live_ranges():
    _, plan, v = planned("""
graph g(%x: f32[8,8], %y: f32[8,8], %w: f32[8,8]) {
  %0 = add(%x, %y) : f32[8,8]
  %1 = relu(%0) : f32[8,8]
  %2 = matmul(%x, %w) : f32[8,8]
  %3 = mul(%1, %2) : f32[8,8]
  %4 = exp(%3) : f32[8,8]
  %5 = matmul(%4, %w) : f32[8,8]
  return %5
}""")
    # %0 -> %1 -> %3 -> %4 is one slot live over steps 0..5; %2 needs its own while it lives.
    assert layout(plan, v) == {0: (0, 256, 0, 1, None), 1: (0, 256, 1, 3, 0), 2: (256, 256, 2, 3, None),
                               3: (0, 256, 3, 4, 1), 4: (0, 256, 4, 5, 3)}
    slots = plan.slots()
    assert sorted((s[0], s[2], s[3], len(s[4])) for s in slots.values()) == [(0, 0, 5, 4), (256, 2, 3, 1)]
    assert (plan.arena_size, plan.lower_bound, plan.naive_size) == (512, 512, 1280)


def test_no_in_place_while_the_input_is_read_later():
    graph, plan, v = planned("""
graph g(%x: f32[8,8], %y: f32[8,8], %w: f32[8,8]) {
  %0 = add(%x, %y) : f32[8,8]
  %1 = relu(%0) : f32[8,8]
  %2 = add(%1, %0) : f32[8,8]
  %3 = matmul(%2, %w) : f32[8,8]
  return %3
}""")
    assert not can_write_over(graph, v[1], 0)
    assert can_write_over(graph, v[2], 0) and can_write_over(graph, v[2], 1)
    # %2 takes the first input that dies there.
    assert layout(plan, v) == {0: (0, 256, 0, 2, None), 1: (256, 256, 1, 2, None), 2: (256, 256, 2, 3, 1)}
    assert (plan.arena_size, plan.lower_bound, plan.naive_size) == (512, 512, 768)


@pytest.mark.parametrize("body, node, index", [
    ("%0 = relu(%x) : f32[8,8]", 0, 0),                             # a graph input
    ("%0 = relu(%p) : f32[8,8]", 0, 0),                             # a param
    ("%0 = exp(%x) : f32[8,8]\n %1 = exp(%0) : f32[8,8]", 1, 0),     # writes a graph output
])
def test_no_in_place_over_inputs_params_or_into_outputs(body, node, index):
    k = body.count("=")
    graph, plan, v = planned(f"""
graph g(%x: f32[8,8]) {{
  %p = param : f32[8,8]
  {body}
  %{k} = matmul(%{k - 1}, %p) : f32[8,8]
  return %{k - 1}, %{k}
}}""")
    assert not can_write_over(graph, v[node], index)
    assert all(b.shares_with is None for b in plan.buffers.values())


def test_no_in_place_over_a_broadcast_input():
    graph, plan, v = planned("""
graph g(%x: f32[8,8], %b: f32[1,8], %w: f32[8,8]) {
  %0 = exp(%b) : f32[1,8]
  %1 = exp(%x) : f32[8,8]
  %2 = add(%0, %1) : f32[8,8]
  %3 = matmul(%2, %w) : f32[8,8]
  return %3
}""")
    assert not can_write_over(graph, v[2], 0)
    assert can_write_over(graph, v[2], 1)
    assert layout(plan, v)[2] == (0, 256, 2, 3, 1)


@pytest.mark.parametrize("line", [
    "%1 = transpose(%0) {perm=(1, 0)} : f32[8,8]",
    "%1 = reshape(%0) {shape=(8, 8)} : f32[8,8]",
    "%1 = matmul(%0, %0) : f32[8,8]",
    "%1 = flip(%0) {axes=(0,)} : f32[8,8]",
    "%1 = cast(%0) {dtype=i32} : i32[8,8]",                          # same bytes, other dtype
    "%1 = gt(%0, %x) : bool[8,8]",
])
def test_no_in_place_for_non_elementwise_ops_or_another_type(line):
    graph, plan, v = planned(f"""
graph g(%x: f32[8,8]) {{
  %0 = exp(%x) : f32[8,8]
  {line}
  %2 = cast(%1) {{dtype=f64}} : f64[8,8]
  return %2
}}""")
    assert not can_write_over(graph, v[1], 0)
    assert plan.buffers[v[1]].shares_with is None
    assert plan.buffers[v[0]].offset != plan.buffers[v[1]].offset or plan.buffers[v[0]].size == 0


CALLS = """
graph pointwise(%p0: f32[8,8], %p1: f32[1,8]) {
  %0 = add(%p0, %p1) : f32[8,8]
  %1 = relu(%0) : f32[8,8]
  %2 = cast(%1) {dtype=f64} : f64[8,8]
  %3 = cast(%2) {dtype=f32} : f32[8,8]
  return %3
}

graph transposes(%p0: f32[8,8], %p1: f32[8,8]) {
  %0 = transpose(%p0) {perm=(1, 0)} : f32[8,8]
  %1 = add(%0, %p1) : f32[8,8]
  return %1
}

graph broadcasts(%p0: f32[1,8], %p1: f32[8,8]) {
  %0 = add(%p0, %p1) : f32[8,8]
  %1 = sum(%0) {axes=(0,), keepdims=true} : f32[1,8]
  return %1
}

graph softmax(%p0: f32[8,8]) {
  %0 = max(%p0) {axes=(1,), keepdims=true} : f32[8,1]
  %1 = sub(%p0, %0) : f32[8,8]
  %2 = exp(%1) : f32[8,8]
  return %2
}

graph main(%x: f32[8,8], %b: f32[1,8], %w: f32[8,8]) {
  %0 = exp(%x) : f32[8,8]
  %1 = exp(%b) : f32[1,8]
  %2 = call(%0, %1) {callee="pointwise"} : f32[8,8]
  %3 = matmul(%2, %w) : f32[8,8]
  %4 = matmul(%2, %3) : f32[8,8]
  %5 = call(%4, %3) {callee="transposes"} : f32[8,8]
  %6 = exp(%b) : f32[1,8]
  %7 = call(%6, %5) {callee="broadcasts"} : f32[1,8]
  %8 = call(%5) {callee="softmax"} : f32[8,8]
  %9 = neg(%8) : f32[8,8]
  return %9
}
"""


def test_call_in_place_only_when_its_function_is_pointwise_in_that_input():
    graph, plan, v = planned(CALLS)
    assert can_write_over(graph, v[2], 0)          # add (not broadcast in p0), relu, casts
    assert not can_write_over(graph, v[2], 1)      # p1 is broadcast (and of another type)
    assert not can_write_over(graph, v[5], 0)      # transposed inside
    assert can_write_over(graph, v[5], 1)          # only added
    assert not can_write_over(graph, v[7], 0)      # broadcast, then reduced inside
    assert not can_write_over(graph, v[8], 0)      # reduced, then broadcast back
    shares = {k: b[4] for k, b in layout(plan, v).items()}
    assert shares == {0: None, 1: None, 2: 0, 3: None, 4: None, 5: 3, 6: None, 7: None, 8: None}


def test_same_value_passed_twice_must_be_pointwise_in_both_parameters():
    graph, _, v = planned("""
graph both(%p0: f32[8,8], %p1: f32[8,8]) {
  %0 = transpose(%p1) {perm=(1, 0)} : f32[8,8]
  %1 = add(%p0, %0) : f32[8,8]
  return %1
}

graph main(%x: f32[8,8], %w: f32[8,8]) {
  %0 = exp(%x) : f32[8,8]
  %1 = call(%0, %0) {callee="both"} : f32[8,8]
  %2 = matmul(%1, %w) : f32[8,8]
  return %2
}""")
    assert not can_write_over(graph, v[1], 0)
    assert not can_write_over(graph, v[1], 1)


def test_outputs_are_never_in_the_arena():
    graph, plan, v = planned("""
graph g(%x: f32[8,8], %y: f32[8,8]) {
  %0 = add(%x, %y) : f32[8,8]
  %1 = relu(%0) : f32[8,8]
  %2 = exp(%1) : f32[8,8]
  %3 = neg(%2) : f32[8,8]
  return %1, %3
}""")
    assert set(plan.buffers) == {v[0], v[2]}
    for out in graph.outputs:
        assert plan.buffer_of(out) is None
    assert not can_write_over(graph, v[1], 0)      # %1 is an output: it has its own memory
    assert not can_write_over(graph, v[2], 0)      # %1 is not an arena buffer
    assert (plan.arena_size, plan.lower_bound, plan.naive_size) == (256, 256, 512)


def test_dead_values_and_empty_tensors_get_buffers_for_their_own_step():
    _, plan, v = planned("""
graph g(%x: f32[8,8], %e: f32[0,8]) {
  %0 = exp(%x) : f32[8,8]
  %1 = neg(%e) : f32[0,8]
  %2 = neg(%x) : f32[8,8]
  %3 = sum(%2) {axes=(0, 1)} : f32[]
  return %3
}""")
    assert layout(plan, v) == {0: (0, 256, 0, 0, None), 1: (0, 0, 1, 1, None), 2: (0, 256, 2, 3, None)}


# ---- the pass and the plan object -----------------------------------------------------------
def test_the_pass_returns_a_new_graph_with_the_plan_in_meta():
    graph = parse(CALLS)
    out = PassManager([plan_memory], instruments=[VerifyInstrument()]).run(graph)
    assert plan_memory.name == "plan_memory"
    assert out is not graph and "memory" not in graph.meta
    assert out.nodes == graph.nodes and out.outputs == graph.outputs and out.inputs == graph.inputs
    assert out.functions == graph.functions and out.params == graph.params
    assert out == graph  # the text form is unchanged
    plan = out.meta["memory"]
    assert isinstance(plan, MemoryPlan)
    assert plan.schedule == tuple(graph.compute_nodes)
    plan.check()


def test_summary_gives_the_three_figures_and_the_ratios():
    _, plan, _ = planned(CHAIN)
    text = plan.summary()
    assert "arena        512 B" in text
    assert "lower bound  512 B   arena/lower bound = 1.000" in text
    assert "naive        1.25 KiB   arena/naive = 0.400" in text
    assert len(text.splitlines()) == 4


def broken(plan, node, **changes):
    buffers = dict(plan.buffers)
    if changes.get("drop"):
        del buffers[node]
    else:
        buffers[node] = dataclasses.replace(buffers[node], **changes)
    return dataclasses.replace(plan, buffers=buffers)


@pytest.mark.parametrize("change, message", [
    (dict(offset=0), "overlap while both live"),
    (dict(offset=288), "not a non-negative multiple of 64"),
    (dict(offset=512), "outside the arena"),
    (dict(last_step=1), "is read at step 2"),
    (dict(first_step=0), "computed at step 1"),
    (dict(size=128), "computed at step 1 with 256 bytes"),
    (dict(shares_with="%0"), "is written over"),
    (dict(drop=True), "has no buffer"),
])
def test_check_catches_a_broken_plan(change, message):
    _, plan, v = planned(CHAIN)
    if change.get("shares_with") == "%0":
        change = dict(shares_with=v[0])
    bad = broken(plan, v[1], **change)
    with pytest.raises(CompileError, match=message):
        bad.check()


def test_check_catches_wrong_figures_and_a_broken_in_place_chain():
    _, plan, v = planned("""
graph g(%x: f32[8,8], %y: f32[8,8], %w: f32[8,8]) {
  %0 = add(%x, %y) : f32[8,8]
  %1 = relu(%0) : f32[8,8]
  %2 = matmul(%1, %w) : f32[8,8]
  return %2
}""")
    with pytest.raises(CompileError, match="is written over"):
        broken(plan, v[1], offset=256).check()
    with pytest.raises(CompileError, match="lower_bound"):
        dataclasses.replace(plan, lower_bound=512).check()
    with pytest.raises(CompileError, match="naive_size"):
        dataclasses.replace(plan, naive_size=256).check()
    with pytest.raises(CompileError, match="arena_size"):
        dataclasses.replace(plan, arena_size=1024).check()
    # Without its schedule the checker still sees overlaps between live slots.
    bare = MemoryPlan({v[0]: Buffer(0, 256, 0, 2, None), v[2]: Buffer(128, 256, 1, 3, None)}, 384, 512, 512)
    with pytest.raises(CompileError, match="overlap"):
        bare.check()


# ---- the plan run for real: values kept in one arena ----------------------------------------
class ArenaInterpreter(Interpreter):
    """The interpreter with every planned value stored in one byte arena at its offset, so a
    value clobbered by another before its last read gives wrong results."""

    def __init__(self, graph, plan):
        super().__init__(graph)
        self.plan = plan
        self.arena = np.full(plan.arena_size, 0xFF, dtype=np.uint8)  # NaN-ish garbage

    def run_node(self, node, args):
        args = [np.array(a, copy=True) for a in args]
        if node.op == "call":  # a kernel: its inner values are not in the arena
            out = Interpreter(self.graph.functions[node.attrs["callee"]]).run(*args)[0]
        else:
            out = super().run_node(node, args)
        hit = self.plan.buffer_of(node)
        if hit is None:
            return out
        offset, size = hit
        view = self.arena[offset:offset + size].view(node.type.dtype.np).reshape(node.type.shape)
        view[...] = out
        return view


def check_against_interpreter(graph, plan, inputs):
    """Same results from the arena (up to BLAS rounding on contiguous copies); a clobbered
    value would read another value's numbers or the arena's NaN filling."""
    expected = Interpreter(graph).run(*inputs)
    got = ArenaInterpreter(graph, plan).run(*inputs)
    for e, g in zip(expected, got):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)


def random_graph(rng, n_ops, n=6):
    """A random DAG of elementwise, broadcast, injective and opaque ops over two shapes."""
    x = Node("input", (), Attrs(), TensorType((n, n), lucid.float32), name="x")
    b = Node("input", (), Attrs(), TensorType((1, n), lucid.float32), name="b")
    values, nodes = [x], [x, b]

    def emit(op, inputs, **attrs):
        opdef = get_op(op)
        bound = opdef.bind_attrs(attrs)
        n = Node(op, tuple(inputs), bound, opdef.infer_type([i.type for i in inputs], bound))
        nodes.append(n)
        return n

    for _ in range(n_ops):
        # Mostly recent values, sometimes old ones: varied live ranges.
        pick = lambda: values[-1 - min(int(rng.exponential(2.0)), len(values) - 1)]
        kind = rng.integers(7)
        if kind == 0:
            n = emit(rng.choice(["exp", "neg", "relu", "tanh"]), [pick()])
        elif kind == 1:
            n = emit(rng.choice(["add", "mul", "maximum"]), [pick(), pick()])
        elif kind == 2:
            n = emit("add", [b, pick()] if rng.random() < 0.5 else [pick(), b])
        elif kind == 3:
            n = emit("transpose", [pick()], perm=(1, 0))
        elif kind == 4:
            n = emit("matmul", [pick(), pick()])
        elif kind == 5:
            s = emit("sum", [pick()], axes=(0,), keepdims=True)
            n = emit("sub", [pick(), s])
        else:
            n = emit("tanh", [emit("mul", [pick(), pick()])])
        values.append(n)
    outputs = [values[-1]] + [v for v in values[1:-1] if rng.random() < 0.1]
    return Graph("random", [x, b], nodes, outputs)


@pytest.mark.parametrize("seed", range(12))
def test_random_graphs_run_correctly_from_the_arena(seed):
    rng = np.random.default_rng(seed)
    graph = random_graph(rng, 40)
    lucid.ir.verify(graph)
    plan = memory_plan(graph).check()
    assert plan.lower_bound <= plan.arena_size <= plan.naive_size + ALIGNMENT * len(plan.buffers)
    assert plan.in_place_count > 0
    inputs = [rng.standard_normal((6, 6)).astype(np.float32) * 0.5,
              rng.standard_normal((1, 6)).astype(np.float32)]
    check_against_interpreter(graph, plan, inputs)


# ---- the key figure: a ResNet-style network -------------------------------------------------
class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + (x if self.down is None else self.down(x)))


class SmallResNet(nn.Module):
    """ResNet-18's layout (stem, 4 stages of 2 basic blocks, pool, linear) at small widths."""

    def __init__(self, widths=(16, 32, 64, 128), classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 7, stride=2, padding=3, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU(), nn.MaxPool2d(3, stride=2, padding=1))
        blocks, cin = [], widths[0]
        for i, w in enumerate(widths):
            for j in range(2):
                blocks.append(BasicBlock(cin, w, 2 if i > 0 and j == 0 else 1))
                cin = w
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = self.pool(self.blocks(self.stem(x)))
        return self.fc(x.reshape(x.shape[0], -1))


@pytest.fixture(scope="module")
def resnet_graph():
    lucid.random.seed(0)
    model = SmallResNet()
    model.eval()
    return lucid.trace(model, lucid.random.randn(1, 3, 64, 64))


def assert_good_plan(graph, label):
    plan = plan_memory(graph).meta["memory"]
    plan.check()
    print(f"\n{label}: {len(graph.compute_nodes)} ops\n{plan.summary()}")
    assert plan.arena_size <= 1.1 * plan.lower_bound
    assert plan.arena_size < 0.5 * plan.naive_size
    return plan


def test_resnet_arena_is_near_its_lower_bound(resnet_graph):
    assert sum(n.op == "conv2d" for n in resnet_graph.nodes) >= 16
    plan = assert_good_plan(resnet_graph, "flat ResNet")
    # The biggest activation (after the stem conv, 16x32x32 f32 = 64 KiB) bounds it from below.
    assert plan.lower_bound >= 16 * 32 * 32 * 4
    assert plan.in_place_count > 0
    x = np.random.default_rng(1).standard_normal((1, 3, 64, 64)).astype(np.float32)
    check_against_interpreter(resnet_graph, plan, [x])


def test_resnet_after_the_cleanup_passes(resnet_graph):
    graph = resnet_graph
    for p in (fold_constants, simplify, cse, dce):
        graph = p(graph)
    assert len(graph.compute_nodes) < len(resnet_graph.compute_nodes)
    plan = assert_good_plan(graph, "ResNet after fold_constants, simplify, cse, dce")
    x = np.random.default_rng(2).standard_normal((1, 3, 64, 64)).astype(np.float32)
    check_against_interpreter(graph, plan, [x])


def test_resnet_after_fusion(resnet_graph):
    fusion = pytest.importorskip("lucid.ir.passes.fusion")
    graph = resnet_graph
    for p in (fold_constants, simplify, cse, dce, fusion.fuse):
        graph = p(graph)
    assert graph.functions and any(n.op == "call" for n in graph.nodes)
    plan = plan_memory(graph).meta["memory"].check()
    print(f"\nResNet after fusion: {len(graph.compute_nodes)} kernels\n{plan.summary()}")
    assert plan.arena_size <= 1.1 * plan.lower_bound
    x = np.random.default_rng(3).standard_normal((1, 3, 64, 64)).astype(np.float32)
    check_against_interpreter(graph, plan, [x])


def test_resnet_training_graph_keeps_activations_for_the_backward_pass():
    """Gradients of a training-mode loss: activations live across the whole backward pass,
    the case where reuse is hardest; the plan must stay near the bound and run right."""
    lucid.random.seed(1)
    model = SmallResNet(widths=(8, 16, 32, 64))
    model.train()
    graph = lucid.trace(lambda x: (model(x) ** 2).sum(), lucid.random.randn(2, 3, 32, 32), name="loss")
    graph = lucid.ir.grad_graph(graph, params=True)
    for p in (fold_constants, simplify, cse, dce):
        graph = p(graph)
    plan = plan_memory(graph).meta["memory"].check()
    print(f"\nResNet loss and gradients: {len(graph.compute_nodes)} ops\n{plan.summary()}")
    assert plan.arena_size <= 1.1 * plan.lower_bound
    assert plan.arena_size < 0.5 * plan.naive_size
    x = np.random.default_rng(4).standard_normal((2, 3, 32, 32)).astype(np.float32)
    check_against_interpreter(graph, plan, [x])
