"""Graph passes: pure `Graph -> Graph` functions, and the pipelines that chain them."""
from .manager import Instrument, Pass, PassManager, TimingInstrument, VerifyInstrument, fixpoint, graph_pass
from .basic import cse, dce, fold_constants
from .fusion import fuse, fusion_groups
from .memory import Buffer, MemoryPlan, can_write_over, memory_plan, plan_memory
from .pipelines import pipeline
from .simplify import SIMPLIFY_RULES, FOLD_SCALE_RULES, Rule, fold_scale, rewrite_pass, simplify

__all__ = ["Instrument", "Pass", "PassManager", "TimingInstrument", "VerifyInstrument", "fixpoint",
           "graph_pass", "cse", "dce", "fold_constants", "simplify", "fold_scale", "rewrite_pass", "Rule",
           "SIMPLIFY_RULES", "FOLD_SCALE_RULES", "fuse", "fusion_groups", "Buffer", "MemoryPlan",
           "can_write_over", "memory_plan", "plan_memory", "pipeline"]
