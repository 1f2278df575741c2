"""The optimisation pipeline on traced models: the optimised graph computes what the traced
one does (the reference interpreter on random inputs, float32 tolerance), every graph in
between verifies and computes the same, and batch norm in eval mode folds away into the
convolution and linear layers before it."""
import numpy as np
import pytest

import lucid
import lucid.nn as nn
import lucid.nn.functional as F
from lucid.ir import interpret, verify
from lucid.ir.passes import PassManager, TimingInstrument, VerifyInstrument, cse, dce, fixpoint
from lucid.ir.passes import fold_constants, fold_scale, simplify
from lucid.ir.passes.manager import Pass

PASSES = [fold_constants, simplify, fold_scale, fold_constants, cse, dce]
BN_ARITHMETIC = {"sub", "div", "sqrt", "mul", "neg"}


def _checked(p, trail, inputs, reference):
    """`p`, verifying its result and checking it still computes `reference` on `inputs`."""

    def run(graph):
        out = p(graph)
        verify(out)
        _assert_close(interpret(out, *inputs), reference)
        trail.append((p.name, out))
        return out

    return Pass(p.name, run)


def _assert_close(got, want):
    if isinstance(want, (tuple, list)):
        assert len(got) == len(want)
        for g, w in zip(got, want):
            _assert_close(g, w)
        return
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5)


def optimise(graph, inputs):
    """Run the pipeline; every intermediate graph is verified and compared on `inputs`."""
    reference = interpret(graph, *inputs)
    trail = []
    pipeline = [fixpoint("opt", [_checked(p, trail, inputs, reference) for p in PASSES])]
    timing = TimingInstrument()
    out = PassManager(pipeline, [VerifyInstrument(), timing]).run(graph)
    assert len(trail) >= len(PASSES)
    assert timing.records[-1][2] == len(out.compute_nodes)
    # a fixpoint: one more round changes nothing
    again = out
    for p in PASSES:
        again = p(again)
    assert str(again) == str(out)
    return out


def _assert_equivalent(original, optimised, rng, make_inputs, trials=3):
    for _ in range(trials):
        xs = make_inputs(rng)
        _assert_close(interpret(optimised, *xs), interpret(original, *xs))


def _randomise_batch_norms(model, rng):
    """Running statistics and affine params away from their identity defaults."""
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            c = m.num_features
            m.running_mean.data = rng.normal(0, 0.5, c).astype(np.float32)
            m.running_var.data = rng.uniform(0.5, 2.0, c).astype(np.float32)
            m.weight.data = rng.uniform(0.5, 1.5, c).astype(np.float32) * rng.choice([-1, 1], c).astype(np.float32)
            m.bias.data = rng.normal(0, 0.5, c).astype(np.float32)


def _ops(graph):
    return [n.op for n in graph.compute_nodes]


def _between_conv_and_relu(graph):
    """For each conv2d, the ops on the single-user path from it to the relu it feeds."""
    users = graph.users()
    paths = []
    for n in graph.compute_nodes:
        if n.op != "conv2d":
            continue
        path, cur = [], n
        while True:
            assert len(users[cur]) == 1, f"{cur} has {len(users[cur])} users"
            cur = users[cur][0]
            if cur.op == "relu":
                break
            path.append(cur)
        paths.append(path)
    return paths


# ---- models -------------------------------------------------------------------------------------

class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(6, 16)
        self.bn = nn.BatchNorm1d(16)
        self.fc2 = nn.Linear(16, 16)
        self.fc3 = nn.Linear(16, 3)

    def forward(self, x):
        h = F.relu(self.bn(self.fc1(x)))
        h = F.relu(self.fc2(h))
        return self.fc3(h)


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(8 * 2 * 2, 5)

    def forward(self, x):
        h = self.pool(F.relu(self.bn1(self.conv1(x))))
        h = self.pool(F.relu(self.bn2(self.conv2(h))))
        return self.fc(lucid.flatten(h, 1))


class BasicBlock(nn.Module):
    """ResNet's basic block with a strided, projected shortcut, then pooling and a head."""

    def __init__(self, cin=4, cout=8):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = nn.Conv2d(cin, cout, 1, stride=2, bias=False)
        self.down_bn = nn.BatchNorm2d(cout)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cout, 3)

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        h = F.relu(h + self.down_bn(self.down(x)))
        return self.fc(lucid.flatten(self.pool(h), 1))


def _traced(model, shape, seed):
    rng = np.random.default_rng(seed)
    _randomise_batch_norms(model, rng)
    model.eval()
    x = rng.standard_normal(shape).astype(np.float32)
    graph = lucid.trace(model, x)
    verify(graph)
    # the traced graph computes what the model computes eagerly
    _assert_close(interpret(graph, x), model(lucid.Tensor(x)).numpy())
    return graph, x, rng


def _inputs_like(x):
    return lambda rng: [rng.standard_normal(x.shape).astype(np.float32)]


# ---- eval-mode inference ------------------------------------------------------------------------

def test_mlp_with_batch_norm():
    graph, x, rng = _traced(MLP(), (5, 6), seed=0)
    out = optimise(graph, [x])
    _assert_equivalent(graph, out, rng, _inputs_like(x))
    # bn folds into fc1: three matmuls, each with one bias add, and the relus
    assert sorted(_ops(out)) == sorted(["matmul", "add", "relu"] * 2 + ["matmul", "add"])
    assert not BN_ARITHMETIC & set(_ops(out))
    assert not any(n.op == "transpose" for n in out.compute_nodes)  # weight transposes folded


def test_small_cnn_batch_norm_folds_into_the_convolutions():
    graph, x, rng = _traced(SmallCNN(), (2, 3, 8, 8), seed=1)
    out = optimise(graph, [x])
    _assert_equivalent(graph, out, rng, _inputs_like(x))
    paths = _between_conv_and_relu(out)
    assert len(paths) == 2
    for path in paths:
        assert [n.op for n in path] == ["add"]  # the folded bias, nothing of batch norm
        assert path[0].inputs[1].op == "param" or path[0].inputs[0].op == "param"
    assert not BN_ARITHMETIC & set(_ops(out))
    assert _ops(out) == ["conv2d", "add", "relu", "max_pool2d", "conv2d", "add", "relu", "max_pool2d",
                         "reshape", "matmul", "add"]
    assert len(out.compute_nodes) < len(graph.compute_nodes) // 2


def test_basic_block_with_residual_and_projection():
    graph, x, rng = _traced(BasicBlock(), (2, 4, 8, 8), seed=2)
    out = optimise(graph, [x])
    _assert_equivalent(graph, out, rng, _inputs_like(x))
    ops = _ops(out)
    assert ops.count("conv2d") == 3
    # bias adds: conv1's, one for the residual join of conv2's and the projection's, fc's
    assert ops.count("add") == 4 and ops.count("relu") == 2
    assert not {"sub", "div", "sqrt", "neg"} & set(ops)
    # the only mul left is the average pool's 1/(h*w); conv outputs feed adds and relus only
    muls = [n for n in out.compute_nodes if n.op == "mul"]
    assert len(muls) == 1 and any(i.op == "constant" for i in muls[0].inputs)
    users = out.users()
    for n in out.compute_nodes:
        if n.op == "conv2d":
            assert [u.op for u in users[n]] == ["add"]
    conv2, down = [n for n in out.compute_nodes if n.op == "conv2d"][1:]
    assert users[conv2] == users[down]  # conv2 + projection, joined before any bias
    # the first conv: its folded bias, then the relu
    assert _between_conv_and_relu_first(out) == ["add"]


def _between_conv_and_relu_first(graph):
    users = graph.users()
    conv = next(n for n in graph.compute_nodes if n.op == "conv2d")
    path, cur = [], users[conv][0]
    while cur.op != "relu":
        path.append(cur.op)
        cur = users[cur][0]
    return path


def test_batch_norm_in_training_mode_is_not_folded():
    # Training-mode batch norm uses batch statistics and updates the running ones: the
    # running statistics are not constants, and the update lines must survive.
    model = SmallCNN()
    rng = np.random.default_rng(3)
    _randomise_batch_norms(model, rng)
    model.train()
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    graph = lucid.trace(model, x)
    assert graph.meta.get("updates")
    out = optimise(graph, [x])
    assert out.meta["updates"] == graph.meta["updates"]
    assert {n.name for n in out.param_nodes} >= set(graph.meta["updates"])
    _assert_equivalent(graph, out, rng, _inputs_like(x), trials=1)
    from lucid.ir.interpreter import Interpreter
    xs = [rng.standard_normal(x.shape).astype(np.float32)]
    for a, b in zip(Interpreter(out).run(*xs), Interpreter(graph).run(*xs)):  # updates included
        _assert_close(a, b)
    assert "sqrt" in _ops(out)  # batch statistics are still computed


# ---- a training step: value and gradients ------------------------------------------------------

def _loss(w1, b1, g, beta, w2, b2, x, y):
    h = F.conv2d(x, w1, b1, padding=1)
    h = F.relu(F.batch_norm(h, None, None, weight=g, bias=beta, training=True))
    h = lucid.flatten(F.max_pool2d(h, 2), 1)
    return F.cross_entropy(F.linear(h, w2, b2), y)


def test_training_step_value_and_gradients():
    rng = np.random.default_rng(4)
    params = [rng.normal(0, 0.3, (4, 2, 3, 3)).astype(np.float32), np.zeros(4, np.float32),
              np.ones(4, np.float32), np.zeros(4, np.float32),
              rng.normal(0, 0.3, (3, 16)).astype(np.float32), np.zeros(3, np.float32)]

    def make_inputs(rng):
        ps = [p + rng.normal(0, 0.1, p.shape).astype(np.float32) for p in params]
        return ps + [rng.standard_normal((3, 2, 4, 4)).astype(np.float32), rng.integers(0, 3, 3)]

    args = make_inputs(rng)
    step = lucid.value_and_grad(_loss, argnums=(0, 1, 2, 3, 4, 5))
    graph = lucid.trace(step, *[lucid.Tensor(a) for a in args])
    verify(graph)
    loss, grads = interpret(graph, *args)
    eager_loss, eager_grads = step(*[lucid.Tensor(a) for a in args])
    _assert_close(loss, eager_loss.numpy())
    _assert_close(grads, tuple(g.numpy() for g in eager_grads))

    out = optimise(graph, args)
    assert len(out.compute_nodes) <= len(graph.compute_nodes)
    for _ in range(3):
        xs = make_inputs(rng)
        got_loss, got_grads = interpret(out, *xs)
        want_loss, want_grads = interpret(graph, *xs)
        _assert_close(got_loss, want_loss)
        _assert_close(got_grads, want_grads)
        assert len(got_grads) == 6 and all(gr.shape == p.shape for gr, p in zip(got_grads, params))


def test_training_step_of_an_mlp_with_parameters_as_arguments():
    # Parameters passed as arguments are graph inputs: nothing about them is constant.
    rng = np.random.default_rng(5)

    def loss_fn(w1, b1, w2, b2, x, y):
        h = F.relu(F.linear(x, w1, b1))
        return F.cross_entropy(F.linear(h, w2, b2), y)

    def make_inputs(rng):
        return [rng.normal(0, 0.5, (8, 4)).astype(np.float32), rng.normal(0, 0.1, 8).astype(np.float32),
                rng.normal(0, 0.5, (3, 8)).astype(np.float32), rng.normal(0, 0.1, 3).astype(np.float32),
                rng.standard_normal((5, 4)).astype(np.float32), rng.integers(0, 3, 5)]

    args = make_inputs(rng)
    graph = lucid.trace(lucid.value_and_grad(loss_fn, argnums=(0, 1, 2, 3)), *[lucid.Tensor(a) for a in args])
    out = optimise(graph, args)
    assert [n.name for n in out.inputs] == [n.name for n in graph.inputs]
    assert set(out.params) == set(graph.params) == {"_c0"}  # the class indices, left as they were
    _assert_equivalent(graph, out, rng, make_inputs)


@pytest.mark.parametrize("model_cls,shape", [(SmallCNN, (1, 3, 8, 8)), (BasicBlock, (1, 4, 8, 8))])
def test_optimised_graph_text_parses_back(model_cls, shape):
    graph, x, _ = _traced(model_cls(), shape, seed=6)
    out = optimise(graph, [x])
    again = lucid.ir.parse(str(out), params=out.params)
    assert str(again) == str(out)
    _assert_close(interpret(again, x), interpret(graph, x))
