"""RMSprop (Hinton's lecture 6e), with PyTorch's centered and momentum variants.

    g = grad + weight_decay * p
    s = alpha * s + (1 - alpha) * g * g
    a = alpha * a + (1 - alpha) * g                   (centered)
    d = sqrt(s - a * a) + eps   (centered)   or   sqrt(s) + eps
    buf = momentum * buf + g / d ;  p = p - lr * buf  (momentum > 0)
    p = p - lr * g / d                                (otherwise)

The averages and the buffer start at zero; as in Adam the first step sets them to their
exact first values instead of updating zero arrays, or (after `_init_state`, for a
compiled step) updates zero arrays, which gives the same numbers.
"""
import numpy as np

from ..ops.elementwise import sqrt
from ..tensor import Tensor
from .optimizer import Optimizer, check_number, count_state, zeros_state


class RMSprop(Optimizer):
    """RMSprop(params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False)."""

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                 centered=False):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, centered=centered))

    def check_group(self, group):
        check_number("RMSprop", "lr", group["lr"])
        check_number("RMSprop", "alpha", group["alpha"], 0.0, 1.0, high_open=False)
        check_number("RMSprop", "eps", group["eps"])
        check_number("RMSprop", "weight_decay", group["weight_decay"])
        check_number("RMSprop", "momentum", group["momentum"])

    def _update(self, p, grad, state, group):
        lr, alpha, eps, wd, momentum = (group["lr"], group["alpha"], group["eps"],
                                        group["weight_decay"], group["momentum"])
        step = state.get("step")  # counted as torch does; a float64 0-d tensor, as Adam's
        state["step"] = Tensor(np.array(1.0)) if step is None else step + 1.0
        if wd:
            grad = grad + p * wd
        s = state.get("square_avg")
        sq = grad * grad
        s = sq * (1.0 - alpha) if s is None else s * alpha + sq * (1.0 - alpha)
        state["square_avg"] = s
        if group["centered"]:
            a = state.get("grad_avg")
            a = grad * (1.0 - alpha) if a is None else a * alpha + grad * (1.0 - alpha)
            state["grad_avg"] = a
            denom = sqrt(s - a * a) + eps
        else:
            denom = sqrt(s) + eps
        step = grad / denom
        if momentum:
            buf = state.get("momentum_buffer")
            buf = step if buf is None else buf * momentum + step
            state["momentum_buffer"] = buf
            step = buf
        return p - step * lr

    def _initial_state(self, p, group):
        state = {"step": count_state(), "square_avg": zeros_state(p)}
        if group["centered"]:
            state["grad_avg"] = zeros_state(p)
        if group["momentum"]:
            state["momentum_buffer"] = zeros_state(p)
        return state
