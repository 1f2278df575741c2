"""Find where in the user's code an op was called from.

Error messages and graph nodes carry `file:line` of the first stack frame outside the
lucid package, so a shape error in a traced model points at the model's own line.
"""
import os
import sys

_PKG_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def user_location(skip_lucid=True):
    """Return 'file:line' of the innermost frame outside lucid (None if there is none)."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not (skip_lucid and os.path.abspath(filename).startswith(_PKG_DIR)):
            return f"{filename}:{frame.f_lineno}"
        frame = frame.f_back
    return None
