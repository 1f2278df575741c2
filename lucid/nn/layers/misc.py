"""Shape and lookup layers: Flatten, Upsample, Embedding."""
import numpy as np

from ...errors import LucidError
from ...ops.elementwise import where
from ...tensor import Tensor
from ...ops.shape import flatten
from .. import functional as F
from .. import init
from ..module import Module
from .linear import new_parameter


class Flatten(Module):
    """Joins axes start_axis..end_axis into one (default: all but the batch axis).
    `start_dim`/`end_dim` are accepted as PyTorch's spellings."""

    def __init__(self, start_axis=1, end_axis=-1, *, start_dim=None, end_dim=None):
        super().__init__()
        self.start_axis = int(start_axis if start_dim is None else start_dim)
        self.end_axis = int(end_axis if end_dim is None else end_dim)

    def forward(self, x):
        return flatten(x, self.start_axis, self.end_axis)

    def extra_repr(self):
        return f"start_axis={self.start_axis}, end_axis={self.end_axis}"


class Upsample(Module):
    """Resizes (N, C, H, W) inputs to `size` or by `scale_factor` (see F.interpolate)."""

    def __init__(self, size=None, scale_factor=None, mode="nearest", align_corners=None):
        super().__init__()
        if (size is None) == (scale_factor is None):
            raise LucidError("Upsample: give exactly one of size and scale_factor")
        self.size = size
        self.scale_factor = scale_factor
        self.mode = mode
        self.align_corners = align_corners

    def forward(self, x):
        return F.interpolate(x, size=self.size, scale_factor=self.scale_factor, mode=self.mode,
                             align_corners=self.align_corners)

    def extra_repr(self):
        what = f"size={self.size}" if self.size is not None else f"scale_factor={self.scale_factor}"
        return f"{what}, mode={self.mode!r}"


class Embedding(Module):
    """A lookup table: row i of `weight` (num_embeddings, embedding_dim) for index i.

    Rows start N(0, 1); the `padding_idx` row starts at zero."""

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, dtype=None):
        super().__init__()
        self.num_embeddings = int(num_embeddings)
        self.embedding_dim = int(embedding_dim)
        if padding_idx is not None:
            padding_idx = int(padding_idx)
            if not -self.num_embeddings <= padding_idx < self.num_embeddings:
                raise LucidError(f"Embedding: padding_idx {padding_idx} is out of range for "
                                 f"{self.num_embeddings} embeddings")
            padding_idx %= self.num_embeddings
        self.padding_idx = padding_idx
        self.weight = new_parameter(self.num_embeddings, self.embedding_dim, dtype=dtype)
        self.reset_parameters()

    def reset_parameters(self):
        init.normal_(self.weight)
        if self.padding_idx is not None:
            data = self.weight.data.copy()
            data[self.padding_idx] = 0
            self.weight.data = data

    @classmethod
    def from_pretrained(cls, embeddings, freeze=True, padding_idx=None):
        """An Embedding whose weight is `embeddings` (2-d), frozen unless `freeze=False`."""
        shape = tuple(embeddings.shape)
        if len(shape) != 2:
            raise LucidError(f"Embedding.from_pretrained: embeddings must be 2-d, got shape {shape}")
        layer = cls(shape[0], shape[1], padding_idx=padding_idx)
        layer.load_state_dict({"weight": embeddings})
        layer.weight.requires_grad_(not freeze)
        return layer

    def forward(self, indices):
        weight = self.weight
        if self.padding_idx is not None:
            # The padding row keeps its value but gets no gradient (as in PyTorch).
            rows = np.ones((self.num_embeddings, 1), dtype=bool)
            rows[self.padding_idx] = False
            weight = where(Tensor(rows), weight, weight.detach())
        return F.embedding(indices, weight)

    def extra_repr(self):
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        if self.padding_idx is not None:
            s += f", padding_idx={self.padding_idx}"
        return s
