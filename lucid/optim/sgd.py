"""Stochastic gradient descent with momentum, dampening, Nesterov and weight decay.

The update is PyTorch's, term for term (Sutskever et al.'s momentum form, in which the
learning rate multiplies the whole buffer), so that models and schedules tuned there
carry over:

    g = grad + weight_decay * p
    buf = g                                    on the first step
    buf = momentum * buf + (1 - dampening) * g afterwards
    g = g + momentum * buf  (nesterov)  or  g = buf
    p = p - lr * g
"""
from ..errors import LucidError
from .optimizer import Optimizer, check_number, required


class SGD(Optimizer):
    """SGD(params, lr, momentum=0, dampening=0, weight_decay=0, nesterov=False)."""

    def __init__(self, params, lr=required, momentum=0.0, dampening=0.0, weight_decay=0.0,
                 nesterov=False):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))

    def check_group(self, group):
        check_number("SGD", "lr", group["lr"])
        check_number("SGD", "momentum", group["momentum"])
        check_number("SGD", "dampening", group["dampening"], low=None)
        check_number("SGD", "weight_decay", group["weight_decay"])
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise LucidError("SGD: nesterov=True needs momentum > 0 and dampening = 0, got "
                             f"momentum={group['momentum']!r}, dampening={group['dampening']!r}")

    def _update(self, p, grad, state, group):
        lr, momentum, wd = group["lr"], group["momentum"], group["weight_decay"]
        if wd:
            grad = grad + p * wd
        if momentum:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = grad
            else:
                damp = 1.0 - group["dampening"]
                buf = buf * momentum + (grad if damp == 1.0 else grad * damp)
            state["momentum_buffer"] = buf
            grad = grad + buf * momentum if group["nesterov"] else buf
        return p - grad * lr

