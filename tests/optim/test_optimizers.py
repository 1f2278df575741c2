"""Optimizers: updates equal their formulas (numpy by hand, and torch.optim), groups,
zero_grad, state dicts (resuming gives the uninterrupted run), argument checks, tracing."""
import copy

import numpy as np
import pytest

import lucid
from lucid.ir.interpreter import Interpreter
from lucid.optim import SGD, Adam, AdamW, RMSprop

STEPS = 3


def start_values():
    rng = np.random.default_rng(7)
    return [rng.normal(size=(3,)), rng.normal(size=(2, 2))]


def grad_fn(k, values):
    """A gradient that depends on the step and the parameter (so momentum terms matter)."""
    return [np.sin(v) * (1.0 + 0.5 * k) + 0.1 * v ** 2 - 0.3 for v in values]


def run_lucid(cls, kwargs, steps=STEPS, params=None, opt=None, first=0):
    params = params or [lucid.Tensor(v.copy(), requires_grad=True) for v in start_values()]
    opt = opt or cls(params, **kwargs)
    for k in range(first, first + steps):
        for p, g in zip(params, grad_fn(k, [p.data for p in params])):
            p.grad = lucid.Tensor(g)
        opt.step()
    return params, opt


# ---- numpy formulas (zero-initialised buffers, as the algorithms are written) ---------------

def ref_sgd(lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
    ps = start_values()
    bufs = [None] * len(ps)
    for k in range(STEPS):
        gs = grad_fn(k, ps)
        for i, (p, g) in enumerate(zip(ps, gs)):
            g = g + weight_decay * p
            if momentum:
                bufs[i] = g if bufs[i] is None else momentum * bufs[i] + (1 - dampening) * g
                g = g + momentum * bufs[i] if nesterov else bufs[i]
            ps[i] = p - lr * g
    return ps


def ref_adam(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, decoupled=False):
    b1, b2 = betas
    ps = start_values()
    m = [np.zeros_like(p) for p in ps]
    v = [np.zeros_like(p) for p in ps]
    vmax = [np.zeros_like(p) for p in ps]
    for k in range(STEPS):
        t = k + 1
        gs = grad_fn(k, ps)
        for i, (p, g) in enumerate(zip(ps, gs)):
            if decoupled:
                p = p * (1 - lr * weight_decay)
            else:
                g = g + weight_decay * p
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            m_hat = m[i] / (1 - b1 ** t)
            if amsgrad:
                vmax[i] = np.maximum(vmax[i], v[i])
                v_hat = vmax[i] / (1 - b2 ** t)
            else:
                v_hat = v[i] / (1 - b2 ** t)
            ps[i] = p - lr * m_hat / (np.sqrt(v_hat) + eps)
    return ps


def ref_rmsprop(lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False):
    ps = start_values()
    sq = [np.zeros_like(p) for p in ps]
    ga = [np.zeros_like(p) for p in ps]
    buf = [np.zeros_like(p) for p in ps]
    for k in range(STEPS):
        gs = grad_fn(k, ps)
        for i, (p, g) in enumerate(zip(ps, gs)):
            g = g + weight_decay * p
            sq[i] = alpha * sq[i] + (1 - alpha) * g * g
            var = sq[i]
            if centered:
                ga[i] = alpha * ga[i] + (1 - alpha) * g
                var = sq[i] - ga[i] ** 2
            d = np.sqrt(var) + eps
            if momentum:
                buf[i] = momentum * buf[i] + g / d
                ps[i] = p - lr * buf[i]
            else:
                ps[i] = p - lr * g / d
    return ps


CASES = [
    (SGD, dict(lr=0.1), lambda kw: ref_sgd(**kw)),
    (SGD, dict(lr=0.1, momentum=0.9), lambda kw: ref_sgd(**kw)),
    (SGD, dict(lr=0.1, momentum=0.9, dampening=0.3, weight_decay=0.05), lambda kw: ref_sgd(**kw)),
    (SGD, dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.01), lambda kw: ref_sgd(**kw)),
    (Adam, dict(lr=0.1), lambda kw: ref_adam(**kw)),
    (Adam, dict(lr=0.05, betas=(0.8, 0.9), eps=1e-6, weight_decay=0.1), lambda kw: ref_adam(**kw)),
    (Adam, dict(lr=0.1, betas=(0.5, 0.6), amsgrad=True), lambda kw: ref_adam(**kw)),
    (AdamW, dict(lr=0.1), lambda kw: ref_adam(weight_decay=1e-2, decoupled=True, **kw)),
    (AdamW, dict(lr=0.1, weight_decay=0.3, amsgrad=True, betas=(0.5, 0.6)),
     lambda kw: ref_adam(decoupled=True, **kw)),
    (RMSprop, dict(lr=0.01), lambda kw: ref_rmsprop(**kw)),
    (RMSprop, dict(lr=0.01, alpha=0.9, weight_decay=0.1, momentum=0.5), lambda kw: ref_rmsprop(**kw)),
    (RMSprop, dict(lr=0.01, alpha=0.8, centered=True), lambda kw: ref_rmsprop(**kw)),
    (RMSprop, dict(lr=0.02, alpha=0.8, centered=True, momentum=0.9, eps=1e-4), lambda kw: ref_rmsprop(**kw)),
]
IDS = [f"{c.__name__}-" + ",".join(f"{k}={v}" for k, v in kw.items()) for c, kw, _ in CASES]


@pytest.mark.parametrize("cls,kwargs,ref", CASES, ids=IDS)
def test_update_matches_formula(cls, kwargs, ref):
    params, _ = run_lucid(cls, kwargs)
    for p, expected in zip(params, ref(kwargs)):
        assert p.dtype == lucid.float64
        np.testing.assert_allclose(p.data, expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("cls,kwargs,ref", CASES, ids=IDS)
def test_update_matches_torch(cls, kwargs, ref):
    torch = pytest.importorskip("torch")
    params, _ = run_lucid(cls, kwargs)
    tparams = [torch.tensor(v, requires_grad=True) for v in start_values()]
    topt = getattr(torch.optim, cls.__name__)(tparams, **kwargs)
    for k in range(STEPS):
        for p, g in zip(tparams, grad_fn(k, [p.detach().numpy() for p in tparams])):
            p.grad = torch.tensor(g)
        topt.step()
    for p, tp in zip(params, tparams):
        np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-10, atol=1e-12)


def test_float32_params_stay_float32():
    p = lucid.Tensor(np.ones(4, np.float32), requires_grad=True)
    for cls in (SGD, Adam, AdamW, RMSprop):
        opt = cls([p], lr=0.1)
        p.grad = lucid.Tensor(np.full(4, 0.5, np.float32))
        opt.step()
        assert p.dtype == lucid.float32
        state = opt.state[p]
        assert all(v.dtype == lucid.float32 for k, v in state.items() if isinstance(v, lucid.Tensor) and k != "step")
        # Adam's step count is a float64 0-d tensor, so the bias corrections stay exact.
        assert "step" not in state or (state["step"].dtype == lucid.float64 and state["step"].shape == ())


def test_step_with_backward_gradients():
    w = lucid.Tensor(np.array([1.0, -2.0, 3.0]), requires_grad=True)
    opt = SGD([w], lr=0.1)
    loss = (w * w).sum()
    loss.backward()
    opt.step()
    np.testing.assert_allclose(w.data, [0.8, -1.6, 2.4])
    assert w.requires_grad and w.is_leaf


def test_param_groups_have_their_own_options():
    a = lucid.Tensor(np.zeros(2), requires_grad=True)
    b = lucid.Tensor(np.zeros(3), requires_grad=True)
    opt = SGD([{"params": [a], "lr": 0.5}, {"params": b, "momentum": 0.9}], lr=0.1)
    assert [g["lr"] for g in opt.param_groups] == [0.5, 0.1]
    assert [g["momentum"] for g in opt.param_groups] == [0.0, 0.9]
    for _ in range(2):
        a.grad = lucid.Tensor(np.ones(2))
        b.grad = lucid.Tensor(np.ones(3))
        opt.step()
    np.testing.assert_allclose(a.data, -1.0)  # two plain steps of 0.5
    np.testing.assert_allclose(b.data, -0.1 - 0.1 * 1.9)  # momentum: buf 1, then 1.9


def test_add_param_group_and_backbone_lr():
    backbone = lucid.Tensor(np.ones(2), requires_grad=True)
    head = lucid.Tensor(np.ones(2), requires_grad=True)
    opt = Adam([backbone], lr=1e-2)
    opt.add_param_group({"params": [head], "lr": 1e-1})
    assert opt.param_groups[1]["betas"] == (0.9, 0.999)
    backbone.grad = lucid.Tensor(np.ones(2))
    head.grad = lucid.Tensor(np.ones(2))
    opt.step()
    # Adam's first step moves every coordinate by about lr.
    np.testing.assert_allclose(1.0 - backbone.data, 1e-2, rtol=1e-5)
    np.testing.assert_allclose(1.0 - head.data, 1e-1, rtol=1e-5)
    with pytest.raises(lucid.LucidError, match="more than one place"):
        opt.add_param_group({"params": [head]})


def test_zero_grad_and_params_without_grad_are_skipped():
    a = lucid.Tensor(np.ones(2), requires_grad=True)
    b = lucid.Tensor(np.ones(2), requires_grad=True)
    opt = Adam([a, b], lr=0.1)
    a.grad = lucid.Tensor(np.ones(2))
    opt.step()
    np.testing.assert_array_equal(b.data, 1.0)
    assert b not in opt.state and opt.state[a]["step"] == 1
    opt.zero_grad()
    assert a.grad is None and b.grad is None
    a.grad = lucid.Tensor(np.ones(2))
    opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(a.grad.data, 0.0)
    assert b.grad is None
    before = a.data.copy()
    opt.step()  # a zero gradient still advances Adam's moments but not b
    assert opt.state[a]["step"] == 2 and b not in opt.state
    assert not np.array_equal(before, a.data)  # the momentum from step 1 carries on


STATEFUL = [(SGD, dict(lr=0.1, momentum=0.9, nesterov=True)),
            (Adam, dict(lr=0.05, amsgrad=True, weight_decay=0.1)),
            (AdamW, dict(lr=0.05)),
            (RMSprop, dict(lr=0.01, centered=True, momentum=0.5))]


@pytest.mark.parametrize("cls,kwargs", STATEFUL, ids=[c.__name__ for c, _ in STATEFUL])
def test_state_dict_resume_equals_uninterrupted(cls, kwargs, tmp_path):
    full, _ = run_lucid(cls, kwargs, steps=6)
    half, opt = run_lucid(cls, kwargs, steps=3)
    sd = opt.state_dict()
    lucid.save({"params": [p.data for p in half], "optim": sd}, tmp_path / "ckpt.lucid")
    # Training on after state_dict() must not change what it returned.
    snapshot = copy.deepcopy(sd)
    run_lucid(cls, kwargs, steps=1, params=half, opt=opt, first=3)
    for k, entry in sd["state"].items():
        for name, value in entry.items():
            np.testing.assert_array_equal(value, snapshot["state"][k][name])

    ckpt = lucid.load(tmp_path / "ckpt.lucid")
    params = [lucid.Tensor(v, requires_grad=True) for v in ckpt["params"]]
    opt2 = cls(params, lr=123.0)  # the loaded groups bring the real options back
    opt2.load_state_dict(ckpt["optim"])
    assert opt2.param_groups[0]["lr"] == kwargs["lr"]
    resumed, _ = run_lucid(cls, kwargs, steps=3, params=params, opt=opt2, first=3)
    for a, b in zip(resumed, full):
        np.testing.assert_array_equal(a.data, b.data)


def test_state_dict_layout():
    _, opt = run_lucid(Adam, dict(lr=0.1))
    sd = opt.state_dict()
    assert sorted(sd["state"]) == [0, 1]
    assert sd["state"][1]["step"] == STEPS
    assert isinstance(sd["state"][1]["exp_avg"], np.ndarray) and sd["state"][1]["exp_avg"].shape == (2, 2)
    assert sd["param_groups"] == [{"lr": 0.1, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0,
                                   "amsgrad": False, "params": [0, 1]}]


def test_load_state_dict_refuses_mismatches():
    _, opt = run_lucid(Adam, dict(lr=0.1))
    sd = opt.state_dict()
    one = Adam([lucid.Tensor(np.zeros(3), requires_grad=True)])
    with pytest.raises(lucid.LucidError, match="group 0 has 2 parameters in the state dict but 1"):
        one.load_state_dict(sd)
    a, b = (lucid.Tensor(np.zeros(3), requires_grad=True), lucid.Tensor(np.zeros((2, 2)), requires_grad=True))
    two_groups = Adam([{"params": [a]}, {"params": [b]}])
    with pytest.raises(lucid.LucidError, match="1 parameter groups, this optimizer has 2"):
        two_groups.load_state_dict(sd)
    swapped = Adam([b, a])
    with pytest.raises(lucid.LucidError, match="has shape"):
        swapped.load_state_dict(sd)
    with pytest.raises(lucid.LucidError, match="optimizer state_dict"):
        swapped.load_state_dict({"params": []})
    bad = copy.deepcopy(sd)
    bad["state"][5] = {"step": 1}
    with pytest.raises(lucid.LucidError, match="in no parameter group"):
        opt.load_state_dict(bad)
    bad = copy.deepcopy(sd)
    bad["param_groups"][0]["lr"] = -1.0
    with pytest.raises(lucid.LucidError, match="lr"):
        opt.load_state_dict(bad)
    assert opt.param_groups[0]["lr"] == 0.1  # a refused load changes nothing


BAD = [
    (SGD, dict(lr=-0.1), "lr"),
    (SGD, dict(), "required option 'lr'"),
    (SGD, dict(lr=0.1, momentum=-1), "momentum"),
    (SGD, dict(lr=0.1, weight_decay=-1e-4), "weight_decay"),
    (SGD, dict(lr=0.1, nesterov=True), "nesterov"),
    (SGD, dict(lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), "nesterov"),
    (Adam, dict(lr=float("nan")), "lr"),
    (Adam, dict(betas=(1.0, 0.999)), r"betas\[0\]"),
    (Adam, dict(betas=(0.9, -0.1)), r"betas\[1\]"),
    (Adam, dict(betas=0.9), "betas"),
    (Adam, dict(eps=-1e-8), "eps"),
    (AdamW, dict(weight_decay=-0.01), "weight_decay"),
    (AdamW, dict(lr="0.1"), "lr"),
    (RMSprop, dict(alpha=1.5), "alpha"),
    (RMSprop, dict(momentum=-0.5), "momentum"),
    (RMSprop, dict(eps=-1.0), "eps"),
]


@pytest.mark.parametrize("cls,kwargs,name", BAD, ids=[f"{c.__name__}-{n}" for c, _, n in BAD])
def test_invalid_hyper_parameters_are_named(cls, kwargs, name):
    p = lucid.Tensor(np.zeros(2), requires_grad=True)
    with pytest.raises(lucid.LucidError, match=name):
        cls([p], **kwargs)


def test_invalid_params_are_refused():
    p = lucid.Tensor(np.zeros(2), requires_grad=True)
    with pytest.raises(lucid.LucidError, match="empty parameter list"):
        SGD([], lr=0.1)
    with pytest.raises(lucid.LucidError, match="single Tensor"):
        SGD(p, lr=0.1)
    with pytest.raises(lucid.LucidError, match="not a Tensor"):
        SGD([p, np.zeros(2)], lr=0.1)
    with pytest.raises(lucid.LucidError, match="only floating"):
        SGD([lucid.Tensor(np.zeros(2, np.int64))], lr=0.1)
    with pytest.raises(lucid.LucidError, match="more than one place"):
        SGD([p, p], lr=0.1)
    with pytest.raises(lucid.LucidError, match="not a set"):
        SGD([{"params": {p}}], lr=0.1)
    opt = SGD([p], lr=0.1)
    p.grad = lucid.Tensor(np.zeros(3))
    with pytest.raises(lucid.LucidError, match="gradient of shape"):
        opt.step()


def test_step_calls_the_closure_with_grad_enabled():
    w = lucid.Tensor(np.array([2.0]), requires_grad=True)
    opt = SGD([w], lr=0.25)

    def closure():
        opt.zero_grad()
        loss = (w * w).sum()
        loss.backward()
        return loss

    with lucid.no_grad():
        loss = opt.step(closure)
    assert loss.item() == 4.0
    np.testing.assert_allclose(w.data, [1.0])


# ---- tracing: a whole training step becomes one graph ----------------------------------

def _traced_step(w, opt, x):
    def train_step(x):
        opt.zero_grad()
        loss = (w * x).sum() ** 2
        loss.backward()
        opt.step()
        return loss

    return lucid.trace(train_step, x, param_names={id(w): "w"})


def test_traced_step_reads_the_current_parameter():
    """Weight decay (p * wd) must be a graph node reading %w, not a frozen constant."""
    w = lucid.Tensor(np.array([1.0, -1.0]), requires_grad=True)
    x = lucid.Tensor(np.array([0.5, 2.0]))
    graph = _traced_step(w, SGD([w], lr=0.1, weight_decay=0.5), x)
    assert graph.meta["updates"] == ["w"]
    new_w = np.array([3.0, 4.0])
    graph.params["w"] = new_w
    loss, updated = Interpreter(graph).run(x.data)
    g = 2 * (new_w @ x.data) * x.data
    np.testing.assert_allclose(updated, new_w - 0.1 * (g + 0.5 * new_w))
    np.testing.assert_allclose(loss, (new_w @ x.data) ** 2)


@pytest.mark.parametrize("cls,kwargs", STATEFUL, ids=[c.__name__ for c, _ in STATEFUL])
def test_traced_step_equals_eager_step(cls, kwargs):
    x = lucid.Tensor(np.array([0.5, 2.0]))
    eager_w = lucid.Tensor(np.array([1.0, -1.0]), requires_grad=True)
    traced_w = lucid.Tensor(np.array([1.0, -1.0]), requires_grad=True)
    eager_opt, traced_opt = cls([eager_w], **kwargs), cls([traced_w], **kwargs)
    for w, opt in ((eager_w, eager_opt), (traced_w, traced_opt)):  # one eager step each
        (w * x).sum().__pow__(2).backward()
        opt.step()
        opt.zero_grad()
    (eager_w * x).sum().__pow__(2).backward()
    eager_opt.step()
    state_arrays = [v.data for v in traced_opt.state[traced_w].values() if isinstance(v, lucid.Tensor)]
    graph = _traced_step(traced_w, traced_opt, x)
    # Every captured array is the parameter or optimizer state as it was, never an eager
    # partial result (m * beta1) frozen into the graph.
    for name, arr in graph.params.items():
        assert name == "w" or any(arr is s for s in state_arrays), name
    _, updated = Interpreter(graph).run(x.data)
    np.testing.assert_allclose(updated, eager_w.data, rtol=1e-12)
