"""lucid.compile: same numbers as eager, builds once per signature, says why it rebuilt,
and compiles whole training steps whose updates land in the model."""
import copy

import numpy as np
import pytest

import lucid
import lucid.nn as nn
import lucid.nn.functional as F
from lucid.errors import CompileError


class Block(nn.Module):
    def __init__(self, c=8):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + x)


def small_resnet(classes=5):
    # No bias before batch norm: its gradient is zero up to rounding, which Adam would
    # normalise into full-size steps of noise (and eager and compiled rounding differ).
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(), Block(), nn.MaxPool2d(2),
                         Block(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, classes))


def randomise_bn(model, rng):
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.data = rng.normal(size=m.running_mean.shape).astype(np.float32)
            m.running_var.data = rng.uniform(0.5, 2, size=m.running_var.shape).astype(np.float32)
            m.weight.data = rng.uniform(0.5, 1.5, size=m.weight.shape).astype(np.float32)


@pytest.mark.parametrize("make, shape", [
    (lambda: nn.Sequential(nn.Linear(6, 16), nn.GELU(), nn.Linear(16, 3), nn.Softmax(axis=-1)), (4, 6)),
    (small_resnet, (2, 3, 12, 12)),
])
@pytest.mark.parametrize("opt_level", [0, 1, 2])
def test_compiled_model_equals_eager(make, shape, opt_level, rng):
    lucid.random.seed(0)
    model = make().eval()
    randomise_bn(model, rng)
    compiled = lucid.compile(model, opt_level=opt_level)
    x = lucid.tensor(rng.normal(size=shape).astype(np.float32))
    np.testing.assert_allclose(compiled(x).data, model(x).data, rtol=1e-4, atol=1e-5)


def test_batch_norm_is_folded_away_at_opt_level_2(rng):
    model = small_resnet().eval()
    randomise_bn(model, rng)
    compiled = lucid.compile(model)
    compiled(lucid.random.randn(1, 3, 12, 12))
    ops = [n.op for f in compiled.graph.functions.values() for n in f.compute_nodes]
    ops += [n.op for n in compiled.graph.compute_nodes if n.op != "call"]
    assert "sqrt" not in ops and "sub" not in ops and "div" not in ops
    assert ops.count("conv2d") == 5


def test_builds_once_per_signature_and_explains_rebuilds():
    model = small_resnet().eval()
    compiled = lucid.compile(model)
    x = lucid.random.randn(2, 3, 12, 12)
    compiled(x)
    compiled(lucid.random.randn(2, 3, 12, 12))
    assert len(compiled.builds) == 1
    compiled(lucid.random.randn(4, 3, 12, 12))
    assert len(compiled.builds) == 2
    assert "shape (2, 3, 12, 12) -> (4, 3, 12, 12)" in compiled.builds[-1].reason
    model.train()
    compiled(x)
    assert "train mode" in compiled.builds[-1].reason
    model.eval()
    compiled(x)  # the eval build for this shape is cached, but training moved the running stats
    assert len(compiled.builds) == 4 and "running_mean was reassigned" in compiled.builds[-1].reason
    compiled(x)
    assert len(compiled.builds) == 4
    text = compiled.explain()
    assert "first call" in text and "optimize" in text and "fuse" in text and "arena" in text


def test_reassigned_weights_trigger_a_rebuild():
    model = nn.Linear(3, 2)
    compiled = lucid.compile(model)
    x = lucid.random.randn(1, 3)
    compiled(x)
    model.weight.data = np.zeros((2, 3), np.float32)
    np.testing.assert_allclose(compiled(x).data, model.bias.data[None, :], atol=1e-7)
    assert "weight was reassigned" in compiled.builds[-1].reason


def test_outputs_keep_their_structure():
    f = lucid.compile(lambda a, b: {"sum": a + b, "pair": (a * b, a - b)})
    out = f(lucid.ones(2), lucid.full((2,), 3.0))
    assert set(out) == {"sum", "pair"}
    np.testing.assert_allclose(out["pair"][1].data, [-2, -2])


def test_bad_arguments_and_inputs():
    with pytest.raises(CompileError, match="opt_level"):
        lucid.compile(lambda x: x, opt_level=7)
    with pytest.raises(CompileError):
        lucid.compile(42)


def _train(step_fn, steps, xs, ys):
    return [float(step_fn(xs[k % len(xs)], ys[k % len(ys)]).data) for k in range(steps)]


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_compiled_training_step_matches_eager(optimizer, rng):
    lucid.random.seed(1)
    model = small_resnet(3).train()
    twin = copy.deepcopy(model)
    xs = [lucid.tensor(rng.normal(size=(4, 3, 12, 12)).astype(np.float32)) for _ in range(3)]
    ys = [lucid.tensor(rng.integers(0, 3, 4)) for _ in range(3)]

    def make_step(m):
        if optimizer == "sgd":
            opt = lucid.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
        else:
            opt = lucid.optim.Adam(m.parameters(), lr=0.01)

        def step(x, y):
            loss = F.cross_entropy(m(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            return loss

        return step

    eager = _train(make_step(twin), 8, xs, ys)
    compiled_step = lucid.compile(make_step(model))
    compiled = _train(compiled_step, 8, xs, ys)
    np.testing.assert_allclose(compiled, eager, rtol=2e-4, atol=2e-5)
    assert len(compiled_step.builds) == 1  # one trace served every step after the first
    for (name, a), (_, b) in zip(model.state_dict().items(), twin.state_dict().items()):
        np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-5, err_msg=name)
    graph = compiled_step.graph
    updated = set(graph.meta["updates"])
    assert "m.0.weight" in updated and any(".state." in n for n in updated)
    assert any(n.endswith("running_mean") for n in updated)


def test_functional_training_step_with_value_and_grad(rng):
    w = lucid.tensor(rng.normal(size=(4, 2)).astype(np.float32))
    x = lucid.tensor(rng.normal(size=(16, 4)).astype(np.float32))
    y = lucid.tensor(rng.integers(0, 2, 16))

    def loss_fn(w_, x_, y_):
        return F.cross_entropy(x_ @ w_, y_)

    def step(w_, x_, y_):
        loss, g = lucid.value_and_grad(loss_fn)(w_, x_, y_)
        return loss, w_ - g * 0.5

    compiled = lucid.compile(step)
    w_c, w_e = w, w
    for _ in range(5):
        loss_c, w_c = compiled(w_c, x, y)
        loss_e, w_e = step(w_e, x, y)
        np.testing.assert_allclose(loss_c.data, loss_e.data, rtol=1e-5)
    np.testing.assert_allclose(w_c.data, w_e.data, rtol=1e-5, atol=1e-6)
    assert len(compiled.builds) == 1


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_results_do_not_depend_on_the_thread_count(threads, rng):
    model = small_resnet().eval()
    randomise_bn(model, rng)
    x = lucid.tensor(rng.normal(size=(2, 3, 16, 16)).astype(np.float32))
    one = lucid.compile(model, threads=1)(x).data
    np.testing.assert_allclose(lucid.compile(model, threads=threads)(x).data, one, rtol=1e-5, atol=1e-6)


def test_bad_thread_counts_are_refused():
    with pytest.raises(lucid.LucidError, match="threads"):
        lucid.compile(lambda x: x, threads=0)


def test_debug_dir_gets_per_pass_dumps_and_a_summary(tmp_path):
    model = small_resnet().eval()
    compiled = lucid.compile(model, debug_dir=str(tmp_path))
    compiled(lucid.random.randn(1, 3, 8, 8))
    build_dir = tmp_path / "build_01"
    names = sorted(p.name for p in build_dir.iterdir())
    assert "00_input.txt" in names and "00_input.html" in names
    assert any(n.endswith("fuse.after.txt") for n in names)
    assert any(n.endswith("plan_memory.after.html") for n in names)
    summary = (build_dir / "summary.txt").read_text()
    for word in ("optimize", "fuse", "plan_memory", "trace", "build", "arena", "lower bound", "naive"):
        assert word in summary, word
    fused = (build_dir / [n for n in names if n.endswith("fuse.after.txt")][0]).read_text()
    assert "call(" in fused


def test_lucid_dump_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("LUCID_DUMP", str(tmp_path))
    compiled = lucid.compile(lambda x: lucid.relu(x) * 2.0)
    compiled(lucid.random.randn(3))
    assert (tmp_path / "build_01" / "summary.json").exists()
