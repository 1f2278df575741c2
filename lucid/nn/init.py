"""`lucid.nn.init`: fill a tensor with initial values, in place, as PyTorch's `nn.init`.

Each function overwrites `tensor.data` (keeping the tensor's identity and dtype) with
values drawn from `lucid.random.get_rng()`, so `lucid.random.seed(n)` makes model
construction reproducible, and returns the tensor. The fan rules follow PyTorch: for a
weight of shape (out, in, *kernel), fan_in = in * prod(kernel) and fan_out = out *
prod(kernel); the layers' default initialisation relies on exactly these numbers.
"""
import math

import numpy as np

from .. import random as _random
from ..errors import LucidError, ShapeError
from ..tensor import Tensor

_LINEAR_LIKE = ("linear", "identity", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
                "conv_transpose2d", "conv_transpose3d", "sigmoid")


def calculate_gain(nonlinearity, param=None):
    """The factor that keeps activations' variance stable through `nonlinearity`
    (1 for linear layers and sigmoid, 5/3 for tanh, sqrt(2) for relu,
    sqrt(2 / (1 + slope**2)) for leaky_relu with `param` the slope, 3/4 for selu)."""
    if nonlinearity in _LINEAR_LIKE:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3.0
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, (int, float)) and not isinstance(param, bool):
            slope = float(param)
        else:
            raise LucidError(f"calculate_gain: negative slope {param!r} is not a number")
        return math.sqrt(2.0 / (1.0 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4.0
    raise LucidError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}")


def calculate_fan_in_and_fan_out(tensor):
    """(fan_in, fan_out) of a weight shaped (out, in, *kernel)."""
    shape = tuple(tensor.shape)
    if len(shape) < 2:
        raise ShapeError(f"init: fan in and fan out need a tensor with at least 2 dims, "
                         f"got shape {shape}")
    receptive = int(np.prod(shape[2:], dtype=np.int64)) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


_calculate_fan_in_and_fan_out = calculate_fan_in_and_fan_out  # PyTorch's spelling


def _fan(tensor, mode):
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    if mode == "fan_in":
        return fan_in
    if mode == "fan_out":
        return fan_out
    raise LucidError(f"init: mode must be 'fan_in' or 'fan_out', got {mode!r}")


def _fill(tensor, values):
    """Write `values` into `tensor` in place (its dtype kept) and return it."""
    if not isinstance(tensor, Tensor):
        raise LucidError(f"init functions take a lucid Tensor, got {type(tensor).__name__}")
    current = tensor._eager_data("nn.init")
    tensor.data = np.asarray(np.broadcast_to(values, current.shape), dtype=current.dtype).copy()
    return tensor


def uniform_(tensor, a=0.0, b=1.0):
    """Values from U(a, b)."""
    return _fill(tensor, _random.get_rng().uniform(a, b, tuple(tensor.shape)))


def normal_(tensor, mean=0.0, std=1.0):
    """Values from N(mean, std**2)."""
    return _fill(tensor, _random.get_rng().normal(mean, std, tuple(tensor.shape)))


def trunc_normal_(tensor, mean=0.0, std=1.0, a=-2.0, b=2.0):
    """Values from N(mean, std**2) restricted to [a, b] (redrawn until inside)."""
    if not a < b:
        raise LucidError(f"trunc_normal_: need a < b, got a={a}, b={b}")
    rng = _random.get_rng()
    out = rng.normal(mean, std, tuple(tensor.shape))
    bad = (out < a) | (out > b)
    for _ in range(1000):
        if not bad.any():
            break
        out[bad] = rng.normal(mean, std, int(bad.sum()))
        bad = (out < a) | (out > b)
    return _fill(tensor, np.clip(out, a, b))


def constant_(tensor, val):
    return _fill(tensor, val)


def zeros_(tensor):
    return _fill(tensor, 0)


def ones_(tensor):
    return _fill(tensor, 1)


def xavier_uniform_(tensor, gain=1.0):
    """U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio, 2010)."""
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -bound, bound)


def xavier_normal_(tensor, gain=1.0):
    """N(0, std**2) with std = gain * sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)))


def _kaiming_std(tensor, a, mode, nonlinearity):
    fan = _fan(tensor, mode)
    if fan == 0:
        raise ShapeError(f"init: cannot initialise a tensor of shape {tuple(tensor.shape)} "
                         f"with {mode} = 0")
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def kaiming_uniform_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu"):
    """U(-b, b) with b = gain * sqrt(3 / fan) (He et al., 2015); `a` is the
    leaky_relu slope used for the gain."""
    bound = math.sqrt(3.0) * _kaiming_std(tensor, a, mode, nonlinearity)
    return uniform_(tensor, -bound, bound)


def kaiming_normal_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu"):
    """N(0, std**2) with std = gain / sqrt(fan)."""
    return normal_(tensor, 0.0, _kaiming_std(tensor, a, mode, nonlinearity))


__all__ = ["calculate_gain", "calculate_fan_in_and_fan_out", "uniform_", "normal_",
           "trunc_normal_", "constant_", "zeros_", "ones_", "xavier_uniform_", "xavier_normal_",
           "kaiming_uniform_", "kaiming_normal_"]
