"""DumpInstrument: the graph before and after every pass, and a summary, in a debug folder.

    debug/00_input.txt  00_input.dot  00_input.html
    debug/01_dce.before.txt  01_dce.after.txt  ...  (every format, for every pass)
    debug/summary.txt  summary.json

Before and after files of one pass sit side by side, so `diff 03_fuse.before.txt
03_fuse.after.txt` shows what that pass did. The summary lists each pass's wall time and
the op count before and after it (main graph ops plus the ops inside its functions), any
phases the caller timed itself (`add_phase("trace", s)`), the total, and, when the final
graph carries a memory plan (`meta["memory"]`), its arena size against the naive size and
the lower bound.
"""
import json
import re
import shutil
from pathlib import Path

from ..dump import dot_layout_cost, dump_graph
from .manager import Instrument

# No automatic .svg above this `dot_layout_cost`: Graphviz needs about 2 s there, and minutes to
# hours on a training graph (its backward edges span hundreds of ranks).
SVG_AUTO_MAX_COST = 5000


def op_count(graph):
    """Ops of the main graph plus the ops inside its functions."""
    return len(graph.compute_nodes) + sum(len(f.compute_nodes) for f in graph.functions.values())


def _safe(name):
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "pass"


class DumpInstrument(Instrument):
    """Writes every format in `formats` before and after each pass into `debug_dir`.

    "svg" is added when Graphviz's `dot` is installed, for graphs it lays out in a few
    seconds (`dot_layout_cost` at most SVG_AUTO_MAX_COST); ask for "svg" explicitly to get
    it whatever it costs. The .html page needs no Graphviz and is quick at any size."""

    def __init__(self, debug_dir, formats=("txt", "dot", "html")):
        self.debug_dir = Path(debug_dir)
        self.formats = [f.lstrip(".").lower() for f in formats]
        self.auto_svg = "svg" not in self.formats and shutil.which("dot") is not None
        self.phases = []  # (name, seconds) timed by the caller
        self.passes = []  # dicts: index, name, ms, ops_before, ops_after
        self.files = []
        self.notes = []
        self.input_ops = None
        self.final = None
        self._before = None

    def add_phase(self, name, seconds):
        """Record a step timed outside the pass manager (tracing, code generation, ...)."""
        self.phases.append((str(name), float(seconds)))
        if self.final is not None:
            self.write_summary()

    # ---- instrument hooks ----------------------------------------------------------------
    def before_pipeline(self, graph):
        self.debug_dir.mkdir(parents=True, exist_ok=True)
        self.passes, self.final, self.notes = [], None, []
        self.input_ops = op_count(graph)
        self._dump(graph, "00_input")

    def before_pass(self, index, pass_, graph):
        self._before = op_count(graph)
        self._dump(graph, f"{index + 1:02d}_{_safe(pass_.name)}.before")

    def after_pass(self, index, pass_, graph, seconds):
        self.passes.append({"index": index + 1, "name": pass_.name, "ms": seconds * 1000.0,
                            "ops_before": self._before, "ops_after": op_count(graph)})
        self._dump(graph, f"{index + 1:02d}_{_safe(pass_.name)}.after")

    def after_pipeline(self, graph):
        self.final = graph
        self.write_summary()

    # ---- output --------------------------------------------------------------------------
    def _dump(self, graph, stem):
        formats = list(self.formats)
        if self.auto_svg:
            cost = dot_layout_cost(graph)
            if cost <= SVG_AUTO_MAX_COST:
                formats.append("svg")
            else:
                self.notes.append(f"{stem}: no .svg (Graphviz layout cost {cost} > {SVG_AUTO_MAX_COST}; "
                                  "open the .html, or ask for formats=(..., 'svg'))")
        for ext in formats:
            self.files.append(dump_graph(graph, self.debug_dir / f"{stem}.{ext}").name)

    def summary(self):
        """The summary as a dict (what summary.json holds)."""
        pass_ms = sum(p["ms"] for p in self.passes)
        phase_ms = sum(s * 1000.0 for _, s in self.phases)
        out = {"graph": self.final.name if self.final is not None else None,
               "phases": [{"name": n, "ms": s * 1000.0} for n, s in self.phases],
               "passes": list(self.passes),
               "ops_input": self.input_ops,
               "ops_output": op_count(self.final) if self.final is not None else None,
               "passes_ms": pass_ms, "total_ms": pass_ms + phase_ms, "memory": None,
               "notes": list(self.notes)}
        plan = self.final.meta.get("memory") if self.final is not None else None
        if plan is not None:
            out["memory"] = {"arena_size": int(plan.arena_size), "naive_size": int(plan.naive_size),
                             "lower_bound": int(plan.lower_bound), "summary": str(plan.summary())}
        return out

    def summary_text(self, s=None):
        s = s or self.summary()
        width = max([len(p["name"]) for p in s["passes"]] + [len(p["name"]) for p in s["phases"]] + [8])
        lines = [f"graph {s['graph']}: {s['ops_input']} ops in, {s['ops_output']} ops out", ""]
        if s["phases"]:
            lines.append(f"{'phase':<{width}}  {'ms':>10}")
            lines += [f"{p['name']:<{width}}  {p['ms']:>10.2f}" for p in s["phases"]]
            lines.append("")
        lines.append(f"{'#':>2}  {'pass':<{width}}  {'ms':>10}  {'ops before':>10}  {'ops after':>10}")
        for p in s["passes"]:
            lines.append(f"{p['index']:>2}  {p['name']:<{width}}  {p['ms']:>10.2f}  {p['ops_before']:>10}  "
                         f"{p['ops_after']:>10}")
        lines += ["", f"passes total: {s['passes_ms']:.2f} ms", f"total: {s['total_ms']:.2f} ms"]
        mem = s["memory"]
        if mem is not None:
            lines += ["", f"memory: arena {mem['arena_size']} bytes, naive {mem['naive_size']} bytes, "
                          f"lower bound {mem['lower_bound']} bytes", mem["summary"]]
        if s["notes"]:
            lines += [""] + s["notes"]
        return "\n".join(lines) + "\n"

    def write_summary(self):
        s = self.summary()
        (self.debug_dir / "summary.txt").write_text(self.summary_text(s), encoding="utf-8")
        (self.debug_dir / "summary.json").write_text(json.dumps(s, indent=2) + "\n", encoding="utf-8")
