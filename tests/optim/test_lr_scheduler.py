"""Learning-rate schedules: closed forms per parameter group, torch's values, state dicts."""
import math

import numpy as np
import pytest

import lucid
from lucid.optim import SGD
from lucid.optim.lr_scheduler import (CosineAnnealingLR, ExponentialLR, LambdaLR, MultiStepLR,
                                      StepLR)

BASE = [0.1, 0.03]
EPOCHS = 25


def make_opt():
    a = lucid.Tensor(np.zeros(2), requires_grad=True)
    b = lucid.Tensor(np.zeros(3), requires_grad=True)
    return SGD([{"params": [a]}, {"params": [b], "lr": BASE[1]}], lr=BASE[0], momentum=0.9)


SCHEDULES = [
    (StepLR, dict(step_size=4, gamma=0.5), lambda b, e: b * 0.5 ** (e // 4)),
    (MultiStepLR, dict(milestones=[12, 3, 7], gamma=0.2),
     lambda b, e: b * 0.2 ** sum(e >= m for m in (3, 7, 12))),
    (ExponentialLR, dict(gamma=0.9), lambda b, e: b * 0.9 ** e),
    (CosineAnnealingLR, dict(T_max=10, eta_min=0.001),
     lambda b, e: 0.001 + (b - 0.001) * (1 + math.cos(math.pi * e / 10)) / 2),
    (LambdaLR, dict(lr_lambda=lambda e: 1.0 / (1 + e)), lambda b, e: b / (1 + e)),
]
IDS = [c.__name__ for c, _, _ in SCHEDULES]


def lr_history(cls, kwargs):
    opt = make_opt()
    sched = cls(opt, **kwargs)
    history = [sched.get_last_lr()]
    for _ in range(EPOCHS):
        opt.step()
        sched.step()
        history.append(sched.get_last_lr())
        assert [g["lr"] for g in opt.param_groups] == history[-1]
    return opt, sched, history


@pytest.mark.parametrize("cls,kwargs,form", SCHEDULES, ids=IDS)
def test_schedule_follows_closed_form(cls, kwargs, form):
    opt, sched, history = lr_history(cls, kwargs)
    expected = [[form(b, e) for b in BASE] for e in range(EPOCHS + 1)]
    np.testing.assert_allclose(history, expected, rtol=1e-15)
    assert [g["initial_lr"] for g in opt.param_groups] == BASE
    assert sched.last_epoch == EPOCHS


@pytest.mark.parametrize("cls,kwargs,form", SCHEDULES, ids=IDS)
def test_schedule_matches_torch(cls, kwargs, form):
    torch = pytest.importorskip("torch")
    _, _, history = lr_history(cls, kwargs)
    a, b = torch.zeros(2, requires_grad=True), torch.zeros(3, requires_grad=True)
    opt = torch.optim.SGD([{"params": [a]}, {"params": [b], "lr": BASE[1]}], lr=BASE[0], momentum=0.9)
    sched = getattr(torch.optim.lr_scheduler, cls.__name__)(opt, **kwargs)
    expected = [sched.get_last_lr()]
    for _ in range(EPOCHS):
        opt.step()
        sched.step()
        expected.append(sched.get_last_lr())
    np.testing.assert_allclose(history, expected, rtol=1e-12, atol=1e-15)


def test_lambda_per_group_and_step_to_epoch():
    opt = make_opt()
    sched = LambdaLR(opt, [lambda e: 1.0, lambda e: 0.5 ** e])
    assert sched.get_last_lr() == [0.1, 0.03]
    sched.step(3)
    assert sched.get_last_lr() == [0.1, 0.03 * 0.125]
    with pytest.raises(lucid.LucidError, match="2 parameter groups"):
        LambdaLR(make_opt(), [lambda e: 1.0])
    with pytest.raises(lucid.LucidError, match="callable"):
        LambdaLR(make_opt(), 0.5)


def test_state_dict_resume(tmp_path):
    opt, sched, history = lr_history(CosineAnnealingLR, dict(T_max=10))
    _, short, _ = lr_history(CosineAnnealingLR, dict(T_max=10))
    sd = sched.state_dict()
    assert "optimizer" not in sd and sd["last_epoch"] == EPOCHS and sd["T_max"] == 10
    lucid.save({"sched": sd, "optim": opt.state_dict()}, tmp_path / "s.lucid")
    ckpt = lucid.load(tmp_path / "s.lucid")

    fresh = make_opt()
    fresh.load_state_dict(ckpt["optim"])  # brings initial_lr and the current lr
    resumed = CosineAnnealingLR(fresh, T_max=10, last_epoch=EPOCHS - 1)
    resumed.load_state_dict(ckpt["sched"])
    assert resumed.get_last_lr() == history[-1]
    for _ in range(3):
        sched.step()
        resumed.step()
        assert resumed.get_last_lr() == sched.get_last_lr()


def test_lambda_state_dict_leaves_out_functions():
    sched = LambdaLR(make_opt(), lambda e: 0.9 ** e)
    sd = sched.state_dict()
    assert "lr_lambdas" not in sd and sd["last_epoch"] == 0


def test_invalid_arguments():
    with pytest.raises(lucid.LucidError, match="step_size"):
        StepLR(make_opt(), step_size=0)
    with pytest.raises(lucid.LucidError, match="gamma"):
        ExponentialLR(make_opt(), gamma=-0.5)
    with pytest.raises(lucid.LucidError, match="T_max"):
        CosineAnnealingLR(make_opt(), T_max=0)
    with pytest.raises(lucid.LucidError, match="milestone"):
        MultiStepLR(make_opt(), milestones=[3, -1])
    with pytest.raises(lucid.LucidError, match="initial_lr"):
        StepLR(make_opt(), step_size=2, last_epoch=5)
    with pytest.raises(lucid.LucidError, match="expected an optimizer"):
        StepLR([1, 2], step_size=2)
