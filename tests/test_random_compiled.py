"""`lucid.random` inside traced and compiled functions: the global key is graph state, so
compiled draws are fresh on every call, reproducible after `seed`, and the same as the
eager draws; dropout in a compiled training step gets a new mask every step."""
import copy

import numpy as np
import pytest

import lucid
import lucid.nn as nn
import lucid.nn.functional as F
from lucid.errors import TraceError

BACKENDS = ["native", "interpreter"]


def draws(x):
    """A bit of everything lucid.random offers, shaped after x."""
    n = x.shape[0]
    return (lucid.random.rand(n, 3) + x[:, None] * 0.0, lucid.random.randn(n, dtype=lucid.float64),
            lucid.random.uniform(-2.0, 3.0, (n,)), lucid.random.normal(1.0, 0.5, (2, n)),
            lucid.random.randint(3, 10, (n,)), lucid.random.bernoulli(0.25, size=(n,)),
            lucid.random.permutation(n))


def _run(fn, x, calls):
    return [[t.numpy() for t in fn(x)] for _ in range(calls)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_compiled_draws_are_fresh_reproducible_and_equal_to_eager(backend):
    x = lucid.zeros(64)
    lucid.random.seed(11)
    eager = _run(draws, x, 3)
    compiled_fn = lucid.compile(draws, backend=backend)
    lucid.random.seed(11)
    compiled = _run(compiled_fn, x, 3)
    lucid.random.seed(11)
    again = _run(compiled_fn, x, 3)
    assert len(compiled_fn.builds) == 1
    for call in range(3):
        for k, (e, c, a) in enumerate(zip(eager[call], compiled[call], again[call])):
            np.testing.assert_array_equal(c, a, err_msg=f"draw {k}: not reproducible after seed")
            assert c.dtype == e.dtype and c.shape == e.shape
            if k in (1, 3):  # normals: log/cos in native code round differently
                np.testing.assert_allclose(c, e, rtol=1e-5, atol=1e-5, err_msg=f"draw {k}")
            elif k == 2:  # u * (high - low) + low: native code contracts it into one FMA
                np.testing.assert_allclose(c, e, rtol=0, atol=4e-7, err_msg=f"draw {k}")
            else:  # uniforms and everything derived from comparisons or floors: bit for bit
                np.testing.assert_array_equal(c, e, err_msg=f"draw {k}")
    for k in range(len(compiled[0])):  # successive calls draw new numbers
        assert not np.array_equal(compiled[0][k], compiled[1][k]), f"draw {k} repeated"
    assert sorted(compiled[0][6].tolist()) == list(range(64))


def test_tracing_leaves_the_key_alone_and_records_its_update():
    lucid.random.seed(3)
    before = lucid.random.key_tensor().numpy().copy()
    graph = lucid.trace(lambda x: x + lucid.random.rand(4) + lucid.random.rand(4), lucid.zeros(4))
    np.testing.assert_array_equal(lucid.random.key_tensor().numpy(), before)
    assert graph.meta["updates"] == [lucid.random.KEY_NAME]
    assert [n.op for n in graph.nodes].count("random_uniform") == 2
    # run by hand: output, then the next key (two draws later)
    interp = lucid.compiler._ParamInterpreter(graph, {**graph.params, lucid.random.KEY_NAME: before})
    y, new_key = interp.run(np.zeros(4, np.float32))
    np.testing.assert_array_equal(new_key, before + [0, 2])
    lucid.random.seed(3)
    np.testing.assert_array_equal(y, (lucid.random.rand(4) + lucid.random.rand(4)).numpy())


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(8, 32)
        self.drop = nn.Dropout(0.5)
        self.fc2 = nn.Linear(32, 3)

    def forward(self, x):
        h = self.drop(F.relu(self.fc1(x)) + 1.0)  # + 1: a zero means dropped, nothing else
        return self.fc2(h), h == 0


def _step_for(model):
    opt = lucid.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

    def step(x, y):
        logits, dropped = model(x)
        loss = F.cross_entropy(logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss, dropped

    return step


def test_dropout_in_a_compiled_training_step_draws_a_new_mask_each_step(rng):
    lucid.random.seed(0)
    model = _Net().train()
    twin = copy.deepcopy(model)
    x = lucid.tensor(rng.normal(size=(16, 8)).astype(np.float32))
    y = lucid.tensor(rng.integers(0, 3, 16))

    lucid.random.seed(42)
    eager_step = _step_for(twin)
    eager = [eager_step(x, y) for _ in range(5)]
    lucid.random.seed(42)
    compiled_step = lucid.compile(_step_for(model))
    compiled = [compiled_step(x, y) for _ in range(5)]

    assert len(compiled_step.builds) == 1
    assert lucid.random.KEY_NAME in compiled_step.graph.meta["updates"]
    masks = [m.numpy() for _, m in compiled]
    for a, b in zip(masks, masks[1:]):
        assert not np.array_equal(a, b), "a compiled step reused the previous dropout mask"
    for k, ((le, me), (lc, mc)) in enumerate(zip(eager, compiled)):
        np.testing.assert_array_equal(mc.numpy(), me.numpy(), err_msg=f"step {k}: masks differ from eager")
        np.testing.assert_allclose(lc.numpy(), le.numpy(), rtol=1e-4, atol=1e-5)
    assert 0.4 < np.mean(masks) < 0.6


def test_eval_mode_draws_nothing():
    model = _Net().eval()
    compiled = lucid.compile(model)
    before = lucid.random.key_tensor().numpy().copy()
    compiled(lucid.ones(2, 8))
    assert lucid.random.KEY_NAME not in compiled.graph.meta.get("updates", [])
    np.testing.assert_array_equal(lucid.random.key_tensor().numpy(), before)


def test_eager_seed_reproducibility_and_ranges():
    lucid.random.seed(5)
    a = [lucid.random.rand(10).numpy(), lucid.random.randint(0, 4, (1000,)).numpy()]
    lucid.random.seed(5)
    b = [lucid.random.rand(10).numpy(), lucid.random.randint(0, 4, (1000,)).numpy()]
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[1].dtype == np.int64 and set(np.unique(a[1])) == {0, 1, 2, 3}
    assert lucid.random.randint(7, size=3, dtype=lucid.int32).dtype == lucid.int32
    p = lucid.tensor(np.array([0.0, 1.0, 0.5] * 20000))
    got = lucid.random.bernoulli(p).numpy().reshape(-1, 3)
    assert got[:, 0].sum() == 0 and got[:, 1].all() and abs(got[:, 2].mean() - 0.5) < 0.02
    t = lucid.tensor(np.arange(12).reshape(6, 2))
    assert sorted(lucid.random.permutation(t).numpy()[:, 0].tolist()) == [0, 2, 4, 6, 8, 10]
    assert lucid.random.rand(2, 3, requires_grad=True).requires_grad
    with pytest.raises(lucid.errors.LucidError, match="randint: high"):
        lucid.random.randint(3, 3)


def test_choice_refuses_to_freeze_inside_a_trace():
    assert lucid.random.choice(5, size=3).shape == (3,)
    with pytest.raises(TraceError, match="choice"):
        lucid.trace(lambda x: x + lucid.random.choice(5, size=3).astype(lucid.float32), lucid.zeros(3))
