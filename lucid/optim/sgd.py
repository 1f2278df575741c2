"""Stochastic gradient descent with momentum, dampening, Nesterov and weight decay.

The update is PyTorch's, term for term (Sutskever et al.'s momentum form, in which the
learning rate multiplies the whole buffer), so that models and schedules tuned there
carry over:

    g = grad + weight_decay * p
    buf = g                                    on the first step
    buf = momentum * buf + (1 - dampening) * g afterwards
    g = g + momentum * buf  (nesterov)  or  g = buf
    p = p - lr * g

`_init_state` (a compiled step's) makes a zero buffer up front: `momentum * 0 + g` is the
first step's `buf = g`, except with dampening, for which it also makes a step count so
that the first step still takes the whole gradient.
"""
from ..errors import LucidError
from ..ops.elementwise import cast, minimum
from .optimizer import Optimizer, check_number, count_state, required, zeros_state


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
            dampening = group["dampening"]
            if buf is None:
                buf = grad
            elif dampening and "step" in state:
                # A buffer created before the first step (`_initial_state`): that step
                # must take the whole gradient, later ones 1 - dampening of it.
                steps = state["step"]
                scale = cast(1.0 - minimum(steps, 1.0) * dampening, grad.dtype)
                buf = buf * momentum + grad * scale
                state["step"] = steps + 1.0
            else:
                buf = buf * momentum + (grad if dampening == 0 else grad * (1.0 - dampening))
            state["momentum_buffer"] = buf
            grad = grad + buf * momentum if group["nesterov"] else buf
        return p - grad * lr

    def _initial_state(self, p, group):
        if not group["momentum"]:
            return {}
        state = {"momentum_buffer": zeros_state(p)}
        if group["dampening"]:
            state["step"] = count_state()  # tells the first step from later ones
        return state

