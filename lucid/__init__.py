"""lucid: a deep-learning framework whose models trace into a typed graph and compile.

This module is the public API and nothing else: tensors, creation and math functions,
grad mode, tracing and autodiff, and the subpackages `nn`, `optim`, `models`, `random`
and `ir`.
"""
from .errors import ArtifactError, CompileError, DTypeError, LucidError, ShapeError, TraceError
from .dtypes import DType, bool_, float32, float64, int32, int64
from . import ir  # noqa: F401  (imported before tensor: the IR types come first)
from .tensor import Tensor
from .autograd_mode import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from . import ops  # noqa: F401  (registers every op)
from .creation import (arange, empty, empty_like, eye, full, full_like, linspace, ones, ones_like,
                       tensor, zeros, zeros_like)
from .ops.elementwise import (abs, add, ceil, clamp, clip, cos, cast, div, divide, equal, erf, exp, floor,
                              floor_divide, greater, greater_equal, isnan, less, less_equal, log, log10,
                              log2, logical_and, logical_not, logical_or, logical_xor, maximum, minimum,
                              mod, mul, multiply, neg, not_equal, power, reciprocal, relu, round,
                              sigmoid, sign, sin, sqrt, square, sub, subtract, tanh, where)
from .ops.reduce import (amax, amin, argmax, argmin, cumsum, logsumexp, max, mean, min, prod, std,
                         sum, var)
from .ops.linalg import dot, inner, matmul, outer
from .ops.shape import (broadcast_to, chunk, concat, concatenate, expand, expand_dims, flatten, flip,
                        pad, permute, ravel, repeat, reshape, split, squeeze, stack, swapaxes, tile,
                        transpose, unsqueeze)
from .ops.indexing import *  # noqa: F401,F403
from . import random
from .random import rand, randint, randn
from .ir.trace import trace
from .ir.autodiff import grad, value_and_grad
from .serialization import load, save
from .compiler import compile  # noqa: A001  (lucid.compile, as torch.compile)
from .artifact import export, load_artifact
from . import nn, optim, models

__version__ = "0.1.0"
float = float32  # noqa: A001  (lucid.float is float32, as torch.float is)
double = float64
long = int64
