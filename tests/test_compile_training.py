"""Compiled training steps behave as eager ones: native from the first call (optimiser
state made up front), `.grad` filled in as `backward()` leaves it (zeroed or accumulated),
lr schedules followed without rebuilding, over many steps and every optimiser."""
import copy

import numpy as np
import pytest

import lucid
import lucid.nn as nn
import lucid.nn.functional as F
from lucid.errors import CompileError
from lucid.optim.lr_scheduler import CosineAnnealingLR, StepLR


def mlp():
    return nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 3))


@pytest.fixture
def batches(rng):
    xs = [lucid.tensor(rng.normal(size=(8, 6)).astype(np.float32)) for _ in range(3)]
    ys = [lucid.tensor(rng.integers(0, 3, 8)) for _ in range(3)]
    return xs, ys


def make_step(model, make_opt, order="zero-first"):
    opt = make_opt(model)

    def step(x, y):
        loss = F.cross_entropy(model(x), y)
        if order == "zero-first":
            opt.zero_grad()
        elif order == "zero-keep":
            opt.zero_grad(set_to_none=False)
        loss.backward()
        opt.step()
        if order == "zero-last":
            opt.zero_grad()
        return loss

    return step, opt


def assert_same_model(model, twin, rtol=1e-5, atol=1e-6, grads=True):
    for (name, a), b in zip(model.named_parameters(), twin.parameters()):
        np.testing.assert_allclose(a.data, b.data, rtol=rtol, atol=atol, err_msg=name)
        if grads:
            assert (a.grad is None) == (b.grad is None), name
            if a.grad is not None:
                assert isinstance(a.grad, lucid.Tensor) and a.grad.dtype == lucid.float32
                np.testing.assert_allclose(a.grad.data, b.grad.data, rtol=rtol, atol=atol, err_msg=name)


OPTIMIZERS = {
    "sgd-momentum-wd": lambda m: lucid.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3),
    "sgd-nesterov": lambda m: lucid.optim.SGD(m.parameters(), lr=0.05, momentum=0.8, nesterov=True),
    "sgd-dampening": lambda m: lucid.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, dampening=0.3),
    "adam-wd": lambda m: lucid.optim.Adam(m.parameters(), lr=0.01, weight_decay=1e-2),
    "adam-amsgrad": lambda m: lucid.optim.Adam(m.parameters(), lr=0.01, amsgrad=True),
    "adamw": lambda m: lucid.optim.AdamW(m.parameters(), lr=0.01, weight_decay=0.1),
    "rmsprop-centered-momentum-wd": lambda m: lucid.optim.RMSprop(
        m.parameters(), lr=0.01, momentum=0.5, centered=True, weight_decay=1e-3),
    "groups-with-their-own-lrs": lambda m: lucid.optim.SGD(
        [{"params": m[0].parameters()}, {"params": m[2].parameters(), "lr": 0.2}], lr=0.02, momentum=0.9),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_twenty_steps_match_eager_from_the_first_call(name, batches):
    xs, ys = batches
    lucid.random.seed(3)
    model = mlp()
    twin = copy.deepcopy(model)
    eager, eager_opt = make_step(twin, OPTIMIZERS[name])
    step, opt = make_step(model, OPTIMIZERS[name])
    compiled = lucid.compile(step, backend="interpreter")
    for k in range(20):
        loss_c = compiled(xs[k % 3], ys[k % 3])
        loss_e = eager(xs[k % 3], ys[k % 3])
        np.testing.assert_allclose(loss_c.data, loss_e.data, rtol=1e-5, err_msg=f"step {k}")
    assert len(compiled.builds) == 1 and compiled.builds[0].reason == "first call"
    assert_same_model(model, twin, rtol=1e-4, atol=1e-6)
    for p, q in zip(model.parameters(), twin.parameters()):  # the optimiser state too
        for key, v in eager_opt.state[q].items():
            np.testing.assert_allclose(np.asarray(opt.state[p][key].data), np.asarray(v.data),
                                       rtol=1e-4, atol=1e-7, err_msg=key)


def test_first_call_is_native_and_fills_grads(batches):
    xs, ys = batches
    lucid.random.seed(4)
    model = mlp()
    twin = copy.deepcopy(model)
    make = OPTIMIZERS["adam-wd"]
    eager, _ = make_step(twin, make)
    step, opt = make_step(model, make)
    compiled = lucid.compile(step)
    assert not opt.state
    compiled(xs[0], ys[0])  # no eager warm-up: the state exists and the call ran native code
    assert compiled.builds[0].program is not None and len(compiled.builds) == 1
    assert "model.0.weight.grad" in compiled.graph.meta["updates"]
    assert any(n.endswith(".lr") for n in compiled.graph.meta["mutable"])
    eager(xs[0], ys[0])
    assert_same_model(model, twin, rtol=1e-4, atol=1e-6)
    for k in range(1, 6):
        compiled(xs[k % 3], ys[k % 3])
        eager(xs[k % 3], ys[k % 3])
        assert_same_model(model, twin, rtol=2e-4, atol=1e-6)
    # the second call had .grads to read: traced again, found the same graph, kept its code
    assert len(compiled.builds) == 1 and compiled.builds[0].shared


@pytest.mark.parametrize("order", ["accumulate", "zero-last", "zero-keep"])
def test_grad_semantics_follow_the_users_zero_grad(order, batches):
    xs, ys = batches
    lucid.random.seed(5)
    model = mlp()
    twin = copy.deepcopy(model)
    make = OPTIMIZERS["sgd-momentum-wd"]
    eager, _ = make_step(twin, make, order)
    step, _ = make_step(model, make, order)
    compiled = lucid.compile(step, backend="interpreter")
    for k in range(4):
        compiled(xs[k % 3], ys[k % 3])
        eager(xs[k % 3], ys[k % 3])
        assert_same_model(model, twin, rtol=1e-4, atol=1e-6)
    if order == "accumulate":  # steps after the first read the gradients they add to
        assert len(compiled.builds) == 2 and "have a .grad" in compiled.builds[1].reason
        assert "model.0.weight.grad" in compiled.graph.meta["mutable"]
    elif order == "zero-last":
        assert model[0].weight.grad is None and len(compiled.builds) == 1


def test_grads_set_outside_are_read_live(batches):
    xs, ys = batches
    model = mlp()
    twin = copy.deepcopy(model)
    make = OPTIMIZERS["sgd-momentum-wd"]
    eager, _ = make_step(twin, make, "accumulate")
    step, _ = make_step(model, make, "accumulate")
    compiled = lucid.compile(step, backend="interpreter")
    for k in range(3):
        for m in (model, twin):  # the user replaces the gradients between steps
            for p in m.parameters():
                p.grad = lucid.full(p.shape, 0.01 * k)
        compiled(xs[k], ys[k])
        eager(xs[k], ys[k])
        assert_same_model(model, twin, rtol=1e-4, atol=1e-6)


def test_lr_schedules_are_followed_without_rebuilding(batches):
    xs, ys = batches
    lucid.random.seed(6)
    model = mlp()
    twin = copy.deepcopy(model)
    make = OPTIMIZERS["groups-with-their-own-lrs"]
    eager, eager_opt = make_step(twin, make)
    step, opt = make_step(model, make)
    compiled = lucid.compile(step, backend="interpreter")
    schedules = [(CosineAnnealingLR(opt, T_max=10), CosineAnnealingLR(eager_opt, T_max=10)),
                 (StepLR(opt, step_size=3, gamma=0.5), StepLR(eager_opt, step_size=3, gamma=0.5))]
    for k in range(12):
        compiled(xs[k % 3], ys[k % 3])
        eager(xs[k % 3], ys[k % 3])
        for mine, theirs in schedules[k // 6:k // 6 + 1]:
            mine.step()
            theirs.step()
    assert opt.param_groups[0]["lr"] != 0.02  # the schedules moved it
    assert_same_model(model, twin, rtol=1e-4, atol=1e-6)
    assert len(compiled.builds) == 1


def test_an_lr_that_cannot_be_read_at_run_time_rebuilds(batches):
    xs, ys = batches
    w32 = lucid.tensor(np.ones((6, 3), np.float32), requires_grad=True)
    b64 = lucid.tensor(np.zeros(3), requires_grad=True)  # one group of two dtypes
    opt = lucid.optim.SGD([w32, b64], lr=0.1)

    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(x @ w32 + b64.astype(lucid.float32), y)
        loss.backward()
        opt.step()
        return loss

    compiled = lucid.compile(step, backend="interpreter")
    compiled(xs[0], ys[0])
    compiled(xs[0], ys[0])
    w_before = w32.data.copy()
    opt.param_groups[0]["lr"] = 0.0
    compiled(xs[0], ys[0])
    np.testing.assert_array_equal(w32.data, w_before)
    assert "lr of parameter group 0 of optimizer opt changed" in compiled.builds[-1].reason
    assert w32.grad is not None and b64.grad.dtype == lucid.float64


def test_a_scheduler_stepping_inside_the_function_is_refused(batches):
    xs, ys = batches
    model = mlp()
    opt = lucid.optim.SGD(model.parameters(), lr=0.1)
    sched = StepLR(opt, step_size=1, gamma=0.5)

    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        sched.step()
        return loss

    with pytest.raises(CompileError, match="lr scheduler"):
        lucid.compile(step, backend="interpreter")(xs[0], ys[0])
    assert opt.param_groups[0]["lr"] in (0.1, 0.05)


class LazyMomentum(lucid.optim.Optimizer):
    """An optimiser that makes its state at the first step and says nothing up front."""

    def __init__(self, params, lr=0.1):
        super().__init__(params, dict(lr=lr))

    def _update(self, p, grad, state, group):
        buf = state.get("buf")
        buf = grad if buf is None else buf * 0.5 + grad
        state["buf"] = buf
        return p - buf * group["lr"]


def test_an_optimizer_without_initial_state_runs_its_first_step_eagerly(batches):
    xs, ys = batches
    model = mlp()
    twin = copy.deepcopy(model)
    make = lambda m: LazyMomentum(m.parameters())  # noqa: E731
    eager, _ = make_step(twin, make)
    step, _ = make_step(model, make)
    compiled = lucid.compile(step, backend="interpreter")
    for k in range(4):
        compiled(xs[k % 3], ys[k % 3])
        eager(xs[k % 3], ys[k % 3])
    assert_same_model(model, twin, rtol=1e-4, atol=1e-6)
    assert len(compiled.builds) == 1 and "opt.state.0.buf" in compiled.graph.meta["updates"]


def test_tensors_no_module_owns_get_their_updates_and_grads(batches):
    xs, ys = batches
    w = lucid.tensor(np.full((6, 3), 0.1, np.float32), requires_grad=True)
    w_twin = lucid.tensor(w.data.copy(), requires_grad=True)

    def make(weight):
        opt = lucid.optim.Adam([weight], lr=0.05)

        def step(x, y):
            opt.zero_grad()
            loss = F.cross_entropy(x @ weight, y)
            loss.backward()
            opt.step()
            return loss

        return step

    compiled = lucid.compile(make(w), backend="interpreter")
    eager = make(w_twin)
    for k in range(5):
        compiled(xs[k % 3], ys[k % 3])
        eager(xs[k % 3], ys[k % 3])
    np.testing.assert_allclose(w.data, w_twin.data, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(w.grad.data, w_twin.grad.data, rtol=1e-5, atol=1e-7)
    assert "opt.param.0" in compiled.graph.meta["updates"]


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_initial_state_gives_the_lazy_first_step(name, rng):
    """Eagerly too: a step from `_init_state`'s state equals the first step on none."""
    lucid.random.seed(7)
    model = mlp()
    twin = copy.deepcopy(model)
    opt, opt_twin = OPTIMIZERS[name](model), OPTIMIZERS[name](twin)
    opt._init_state()
    assert all(opt.state[p] for p in model.parameters())
    x = lucid.tensor(rng.normal(size=(5, 6)).astype(np.float32))
    y = lucid.tensor(rng.integers(0, 3, 5))
    for k in range(3):
        for m, o in ((model, opt), (twin, opt_twin)):
            o.zero_grad()
            F.cross_entropy(m(x), y).backward()
            o.step()
        assert_same_model(model, twin, rtol=0, atol=0)


def test_compiling_after_eager_steps_carries_on(batches):
    """Eager SGD's first momentum buffer is the gradient tensor itself: the compiled steps
    that follow must keep the two apart."""
    xs, ys = batches
    model = mlp()
    twin = copy.deepcopy(model)
    make = OPTIMIZERS["sgd-nesterov"]
    eager, _ = make_step(twin, make)
    step, _ = make_step(model, make)
    for k in range(2):
        step(xs[k], ys[k])
        eager(xs[k], ys[k])
    compiled = lucid.compile(step, backend="interpreter")
    for k in range(2, 6):
        compiled(xs[k % 3], ys[k % 3])
        eager(xs[k % 3], ys[k % 3])
        assert_same_model(model, twin, rtol=1e-4, atol=1e-6)
