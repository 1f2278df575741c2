"""TensorType: the static type of every value in a graph (shape and dtype)."""
from dataclasses import dataclass

from ..dtypes import DType, as_dtype


@dataclass(frozen=True)
class TensorType:
    shape: tuple
    dtype: DType

    def __post_init__(self):
        shape = self.shape
        if type(shape) is not tuple or not all(type(s) is int for s in shape):
            object.__setattr__(self, "shape", tuple(int(s) for s in shape))
        if not isinstance(self.dtype, DType):
            object.__setattr__(self, "dtype", as_dtype(self.dtype))

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def size(self):
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def nbytes(self):
        return self.size * self.dtype.itemsize

    def __str__(self):
        return f"{self.dtype.short}[{','.join(map(str, self.shape))}]"

    __repr__ = __str__
