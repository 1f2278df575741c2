"""The op registry and its families. Importing this package registers every op."""
from . import registry
from . import elementwise, reduce, linalg, shape, indexing, nn, detection, random  # noqa: F401  (registers ops)
from .registry import OPS, OpDef, Sample, apply, defop, get_op

__all__ = ["OPS", "OpDef", "Sample", "apply", "defop", "get_op", "registry"]
