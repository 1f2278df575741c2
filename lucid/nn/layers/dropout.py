"""Dropout: zeroes elements with probability p in training mode (scaling the rest by
1/(1-p)) and is the identity in eval mode."""
from ...errors import LucidError
from .. import functional as F
from ..module import Module


class Dropout(Module):
    def __init__(self, p=0.5, inplace=False):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise LucidError(f"Dropout: probability p must be in [0, 1], got {p}")
        self.p = float(p)
        self.inplace = bool(inplace)

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}, inplace={self.inplace}"
