"""The exception hierarchy every lucid failure goes through.

Users catch `lucid.LucidError` for anything lucid refuses; the subclasses say which
kind of refusal it was, and the messages name the op, the arguments and (for traced
code) the user's file and line.
"""


class LucidError(Exception):
    """Base class of every error lucid raises on purpose."""


class ShapeError(LucidError, ValueError):
    """Shapes that an op cannot accept (mismatched matmul, bad reshape, ...)."""


class DTypeError(LucidError, TypeError):
    """Dtypes that an op cannot accept, or an unknown dtype."""


class TraceError(LucidError):
    """Something that cannot become part of a static graph was used while tracing."""


class CompileError(LucidError):
    """The compiler could not build a graph (for example an op without a lowering)."""


class ArtifactError(LucidError):
    """An ahead-of-time artifact that cannot be loaded or trusted."""
