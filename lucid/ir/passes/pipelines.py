"""The pass pipelines, one plain list per optimisation level.

- 0: nothing but dead-code elimination (the traced graph as it is);
- 1: algebraic simplification, constant folding, CSE and DCE to a fixpoint;
- 2: level 1 plus batch-norm folding, operator fusion and memory planning.
"""
from .basic import cse, dce, fold_constants
from .fusion import fuse
from .manager import fixpoint
from .simplify import fold_scale, simplify


def pipeline(opt_level=2):
    """The list of passes for `opt_level` (0, 1 or 2)."""
    from .memory import plan_memory

    if opt_level not in (0, 1, 2):
        from ...errors import CompileError

        raise CompileError(f"opt_level must be 0, 1 or 2, got {opt_level!r}")
    if opt_level == 0:
        return [dce]
    simplify_all = fixpoint("optimize", [fold_constants, simplify, cse, dce]) if opt_level == 1 else \
        fixpoint("optimize", [fold_constants, simplify, fold_scale, fold_constants, cse, dce])
    if opt_level == 1:
        return [simplify_all]
    return [simplify_all, fuse, plan_memory]
