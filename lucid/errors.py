"""The exception hierarchy every lucid failure goes through.

Users catch `lucid.LucidError` for anything lucid refuses; the subclasses say which
kind of refusal it was, and the messages name the op, the arguments and (for traced
code) the user's file and line.
"""


class LucidError(Exception):
    """Base class of every error lucid raises on purpose.

    The message gets ` (at file:line)` of the innermost user frame (outside lucid) when
    it does not carry a location yet, so a shape error inside a traced model points at the
    model's own line."""

    def __init__(self, *args):
        if args and isinstance(args[0], str) and " (at " not in args[0]:
            from ._source import user_location

            loc = user_location()
            if loc:
                args = (f"{args[0]} (at {loc})",) + args[1:]
        super().__init__(*args)


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
