"""Adam (Kingma & Ba) and AdamW (Loshchilov & Hutter: decoupled weight decay).

PyTorch's update, term for term:

    g = grad + weight_decay * p                       (Adam; AdamW instead: p = p * (1 - lr * wd))
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    v_hat = max(v_hat, v)                             (amsgrad: the running maximum is used below)
    p = p - (lr / (1 - beta1**t)) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

The moments start at zero, so on the first step `m = (1 - beta1) * g` exactly; eagerly
the state is created then, and `_init_state` (for a compiled step) creates the zero
moments up front, whose first update gives the same numbers.
The step count `t` is a float64 0-d tensor (as torch keeps it), so a compiled training
step reads it from the optimizer state instead of baking one step's bias corrections in.
"""
import numpy as np


from ..ops.elementwise import cast, maximum, power, sqrt
from ..tensor import Tensor
from .optimizer import Optimizer, check_betas, check_number, count_state, zeros_state


class Adam(Optimizer):
    """Adam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False)."""

    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False):
        super().__init__(params, dict(lr=lr, betas=tuple(betas) if isinstance(betas, list) else betas,
                                      eps=eps, weight_decay=weight_decay, amsgrad=amsgrad))

    def check_group(self, group):
        name = type(self).__name__
        check_number(name, "lr", group["lr"])
        check_betas(name, group["betas"])
        check_number(name, "eps", group["eps"])
        check_number(name, "weight_decay", group["weight_decay"])

    def _update(self, p, grad, state, group):
        lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
        beta1, beta2 = group["betas"]
        step = state.get("step")
        step = Tensor(np.array(1.0)) if step is None else step + 1.0
        state["step"] = step
        base = p
        if wd:
            if self._decoupled:
                base = p * (1.0 - lr * wd)
            else:
                grad = grad + p * wd
        m, v = state.get("exp_avg"), state.get("exp_avg_sq")
        m = grad * (1.0 - beta1) if m is None else m * beta1 + grad * (1.0 - beta1)
        sq = grad * grad
        v = sq * (1.0 - beta2) if v is None else v * beta2 + sq * (1.0 - beta2)
        state["exp_avg"], state["exp_avg_sq"] = m, v
        if group["amsgrad"]:
            v_max = state.get("max_exp_avg_sq")
            v = v if v_max is None else maximum(v_max, v)
            state["max_exp_avg_sq"] = v
        correction1 = cast(1.0 - power(beta1, step), p.dtype)
        correction2 = cast(sqrt(1.0 - power(beta2, step)), p.dtype)
        denom = sqrt(v) / correction2 + eps
        return base - (m / denom) * (lr / correction1)

    def _initial_state(self, p, group):
        state = {"step": count_state(), "exp_avg": zeros_state(p), "exp_avg_sq": zeros_state(p)}
        if group["amsgrad"]:
            state["max_exp_avg_sq"] = zeros_state(p)
        return state


class AdamW(Adam):
    """AdamW(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False).

    Weight decay shrinks the parameter directly (`p *= 1 - lr * wd`) instead of being
    added to the gradient, so it is not rescaled by the adaptive denominator."""

    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad)
