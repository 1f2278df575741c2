"""Linear and Identity layers."""
import math

from ... import dtypes as _dt
from ...creation import empty
from .. import functional as F
from .. import init
from ..module import Module
from ..parameter import Parameter


def reset_weight_and_bias(weight, bias, fan_in):
    """PyTorch's default for linear and convolution layers: weights from
    kaiming_uniform(a=sqrt(5)) (i.e. U(+-1/sqrt(fan_in))) and biases from
    U(+-1/sqrt(fan_in))."""
    init.kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        init.uniform_(bias, -bound, bound)


def new_parameter(*shape, dtype=None):
    """An uninitialised float parameter (reset_parameters fills it)."""
    return Parameter(empty(*shape, dtype=dtype if dtype is not None else _dt.DEFAULT_FLOAT),
                     dtype=dtype)


class Identity(Module):
    """Returns its input; constructor arguments are accepted and ignored, so it can
    stand in for any layer."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, x):
        return x


class Linear(Module):
    """y = x @ weight.T + bias, with weight of shape (out_features, in_features)."""

    def __init__(self, in_features, out_features, bias=True, dtype=None):
        super().__init__()
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.weight = new_parameter(self.out_features, self.in_features, dtype=dtype)
        if bias:
            self.bias = new_parameter(self.out_features, dtype=dtype)
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        reset_weight_and_bias(self.weight, self.bias, self.in_features)

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
