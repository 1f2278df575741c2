"""Learning-rate schedules: each sets every parameter group's `lr` from its epoch count.

A scheduler records each group's starting rate as `group["initial_lr"]` (so a schedule
resumed with `last_epoch=k` knows where it began) and `step()` advances `last_epoch` and
writes `lr = f(initial_lr, last_epoch)`. Every schedule here is a closed form of the
epoch, the values PyTorch's `_get_closed_form_lr` gives: no rounding accumulates over
long runs, and `step(epoch)` may jump. (Two schedulers on one optimizer therefore do not
compose multiplicatively; the last one to step sets the rate.)

`state_dict()` holds numbers and lists only (never the user's lambdas), so `lucid.save`
can write it.
"""
import bisect
import math
import numbers

from ..errors import LucidError


class LRScheduler:
    """Base class: subclasses define `lr_at(base_lr, epoch, group_index)`."""

    def __init__(self, optimizer, last_epoch=-1):
        name = type(self).__name__
        if not hasattr(optimizer, "param_groups"):
            raise LucidError(f"{name}: expected an optimizer, got {type(optimizer).__name__}")
        if not isinstance(last_epoch, numbers.Integral) or last_epoch < -1:
            raise LucidError(f"{name}: invalid last_epoch {last_epoch!r}: it must be an int >= -1")
        self.optimizer = optimizer
        groups = optimizer.param_groups
        if last_epoch == -1:
            for g in groups:
                g.setdefault("initial_lr", g["lr"])
        else:
            for i, g in enumerate(groups):
                if "initial_lr" not in g:
                    raise LucidError(f"{name}: last_epoch={last_epoch} resumes a schedule, but "
                                     f"parameter group {i} has no 'initial_lr' (start with "
                                     "last_epoch=-1, or load the optimizer's saved state first)")
        self.base_lrs = [g["initial_lr"] for g in groups]
        self.last_epoch = int(last_epoch)
        self._last_lr = [g["lr"] for g in groups]
        self.step()

    def lr_at(self, base_lr, epoch, index):
        raise NotImplementedError(f"{type(self).__name__} does not define its schedule")

    def get_lr(self):
        """The rates for `last_epoch`, one per parameter group."""
        return [self.lr_at(base, self.last_epoch, i) for i, base in enumerate(self.base_lrs)]

    def get_last_lr(self):
        """The rates the last `step()` set."""
        return list(self._last_lr)

    def step(self, epoch=None):
        """Advance one epoch (or jump to `epoch`) and set every group's lr."""
        if epoch is None:
            self.last_epoch += 1
        else:
            if not isinstance(epoch, numbers.Integral) or epoch < 0:
                raise LucidError(f"{type(self).__name__}.step: invalid epoch {epoch!r}")
            self.last_epoch = int(epoch)
        lrs = self.get_lr()
        for g, lr in zip(self.optimizer.param_groups, lrs):
            g["lr"] = lr
        self._last_lr = lrs

    def state_dict(self):
        """Everything but the optimizer and callables (numbers and lists only)."""
        return {k: (list(v) if isinstance(v, list) else v) for k, v in self.__dict__.items()
                if k != "optimizer" and not callable(v) and k != "lr_lambdas"}

    def load_state_dict(self, state_dict):
        if not isinstance(state_dict, dict):
            raise LucidError(f"{type(self).__name__}.load_state_dict: expected a dict, "
                             f"got {type(state_dict).__name__}")
        self.__dict__.update({k: v for k, v in state_dict.items() if k != "optimizer"})


def _positive_int(sched, name, value):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise LucidError(f"{sched}: invalid {name} {value!r}: it must be a positive int")
    return int(value)


def _number(sched, name, value, positive=False):
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or value != value or (
            positive and value <= 0) or value < 0:
        need = "> 0" if positive else ">= 0"
        raise LucidError(f"{sched}: invalid {name} {value!r}: it must be a number {need}")
    return value


class StepLR(LRScheduler):
    """lr = initial_lr * gamma ** (epoch // step_size)."""

    def __init__(self, optimizer, step_size, gamma=0.1, last_epoch=-1):
        self.step_size = _positive_int("StepLR", "step_size", step_size)
        self.gamma = _number("StepLR", "gamma", gamma)
        super().__init__(optimizer, last_epoch)

    def lr_at(self, base_lr, epoch, index):
        return base_lr * self.gamma ** (epoch // self.step_size)


class MultiStepLR(LRScheduler):
    """lr = initial_lr * gamma ** (number of milestones <= epoch)."""

    def __init__(self, optimizer, milestones, gamma=0.1, last_epoch=-1):
        try:
            self.milestones = sorted(_positive_int("MultiStepLR", "milestone", m) for m in milestones)
        except TypeError:
            raise LucidError(f"MultiStepLR: milestones must be a list of ints, got {milestones!r}") from None
        self.gamma = _number("MultiStepLR", "gamma", gamma)
        super().__init__(optimizer, last_epoch)

    def lr_at(self, base_lr, epoch, index):
        return base_lr * self.gamma ** bisect.bisect_right(self.milestones, epoch)


class ExponentialLR(LRScheduler):
    """lr = initial_lr * gamma ** epoch."""

    def __init__(self, optimizer, gamma, last_epoch=-1):
        self.gamma = _number("ExponentialLR", "gamma", gamma)
        super().__init__(optimizer, last_epoch)

    def lr_at(self, base_lr, epoch, index):
        return base_lr * self.gamma ** epoch


class CosineAnnealingLR(LRScheduler):
    """lr = eta_min + (initial_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2 (SGDR, no restarts)."""

    def __init__(self, optimizer, T_max, eta_min=0.0, last_epoch=-1):
        self.T_max = _positive_int("CosineAnnealingLR", "T_max", T_max)
        self.eta_min = _number("CosineAnnealingLR", "eta_min", eta_min)
        super().__init__(optimizer, last_epoch)

    def lr_at(self, base_lr, epoch, index):
        return self.eta_min + (base_lr - self.eta_min) * (1 + math.cos(math.pi * epoch / self.T_max)) / 2


class LambdaLR(LRScheduler):
    """lr = initial_lr * lr_lambda(epoch); one function, or one per parameter group."""

    def __init__(self, optimizer, lr_lambda, last_epoch=-1):
        groups = getattr(optimizer, "param_groups", None)
        if isinstance(lr_lambda, (list, tuple)):
            if groups is not None and len(lr_lambda) != len(groups):
                raise LucidError(f"LambdaLR: got {len(lr_lambda)} lr_lambdas for {len(groups)} "
                                 "parameter groups")
            self.lr_lambdas = list(lr_lambda)
        else:
            self.lr_lambdas = [lr_lambda] * (len(groups) if groups is not None else 1)
        for f in self.lr_lambdas:
            if not callable(f):
                raise LucidError(f"LambdaLR: lr_lambda must be callable, got {type(f).__name__}")
        super().__init__(optimizer, last_epoch)

    def lr_at(self, base_lr, epoch, index):
        return base_lr * self.lr_lambdas[index](epoch)


__all__ = ["LRScheduler", "StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR", "LambdaLR"]
