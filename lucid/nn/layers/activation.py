"""Activation layers: thin modules over `lucid.nn.functional`.

`inplace=` is accepted where PyTorch has it so that code written for PyTorch runs;
lucid never mutates its inputs, so the result is the same either way."""
from ...errors import LucidError
from .. import functional as F
from ..module import Module


class ReLU(Module):
    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = bool(inplace)

    def forward(self, x):
        return F.relu(x)

    def extra_repr(self):
        return "inplace=True" if self.inplace else ""


class LeakyReLU(Module):
    def __init__(self, negative_slope=0.01, inplace=False):
        super().__init__()
        self.negative_slope = float(negative_slope)
        self.inplace = bool(inplace)

    def forward(self, x):
        return F.leaky_relu(x, self.negative_slope)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}" + (", inplace=True" if self.inplace else "")


class GELU(Module):
    """GELU, exact (`approximate="none"`) or with the tanh approximation ("tanh")."""

    def __init__(self, approximate="none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise LucidError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, x):
        return F.gelu(x, approximate=self.approximate)

    def extra_repr(self):
        return f"approximate={self.approximate!r}"


class SiLU(Module):
    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = bool(inplace)

    def forward(self, x):
        return F.silu(x)

    def extra_repr(self):
        return "inplace=True" if self.inplace else ""


class Sigmoid(Module):
    def forward(self, x):
        return F.sigmoid(x)


class Tanh(Module):
    def forward(self, x):
        return F.tanh(x)


def _axis(axis, dim, layer):
    if dim is not None:
        if axis is not None and axis != dim:
            raise LucidError(f"{layer}: pass axis or dim (an alias), not both")
        return dim
    return -1 if axis is None else axis


class Softmax(Module):
    """Softmax along `axis` (default the last; `dim=` is accepted as an alias)."""

    def __init__(self, axis=None, dim=None):
        super().__init__()
        self.axis = _axis(axis, dim, "Softmax")

    def forward(self, x):
        return F.softmax(x, self.axis)

    def extra_repr(self):
        return f"axis={self.axis}"


class LogSoftmax(Module):
    """log(softmax(x)) along `axis`, computed stably (`dim=` is an alias)."""

    def __init__(self, axis=None, dim=None):
        super().__init__()
        self.axis = _axis(axis, dim, "LogSoftmax")

    def forward(self, x):
        return F.log_softmax(x, self.axis)

    def extra_repr(self):
        return f"axis={self.axis}"
