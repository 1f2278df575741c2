"""Where a compiled program's time goes, kernel by kernel, measured inside the native call.

`lucid.compile(model).profile(x, runs=20)` builds the latest graph again with a counting
entry (NativeProgram(profile=True): two time-stamp-counter reads around each kernel call,
no Python between kernels, so the figures are the kernels' own), runs it, and returns a
`Profile`: one row per step of the graph, with what the kernel computes (its ops, and for
a convolution or matmul its geometry), its mean time per call and its share of the whole
native call. Identical steps (a ResNet's repeated blocks) can be summed with `by_kernel()`.

Why counters in the native entry rather than timing kernels one by one from Python: a
kernel timed alone runs with warm caches and an idle thread pool, so it hides the costs a
real run pays (its input just written by another core, the pool's hand-over between
kernels), and a Python call costs as much as a small kernel.
"""
from dataclasses import dataclass

from ..errors import LucidError
from . import anchors


def describe(fn):
    """What a kernel computes, in one line: `conv 3x3/1 256->256 @14x14 [conv2d+relu]`,
    `matmul (1, 2048)x(2048, 1000) [matmul+add]`, or its ops for other kernels."""
    ops = "+".join(n.op for n in fn.compute_nodes)
    head = anchors.anchor_of(fn)
    if head is None:
        return ops
    if head.op == "conv2d":
        w = head.inputs[1].type.shape
        s = head.attrs["stride"][0]
        return f"conv {w[2]}x{w[3]}/{s} {w[1]}->{w[0]} @{head.type.shape[2]}x{head.type.shape[3]} [{ops}]"
    return f"{head.op} {head.inputs[0].type.shape}x{head.inputs[1].type.shape} [{ops}]"


@dataclass(frozen=True)
class Row:
    step: int          # position in the graph's order of kernels (-1: summed over steps)
    kernel: str        # describe(fn)
    shape: tuple       # the step's output shape
    calls: int         # steps summed into this row (1 per step)
    ms: float          # mean time per run of the program, milliseconds
    share: float       # of the whole native call


class Profile:
    """Per-step times of a profiled program over `runs` runs (see the module docstring)."""

    def __init__(self, rows, total_ms, runs, threads):
        self.rows, self.total_ms, self.runs, self.threads = list(rows), total_ms, runs, threads

    @property
    def kernel_ms(self):
        """The kernels' time: the whole call less the entry's own work between them."""
        return sum(r.ms for r in self.rows)

    def by_kernel(self):
        """Rows summed over steps that compute the same thing, most expensive first."""
        merged = {}
        for r in self.rows:
            m = merged.get((r.kernel, r.shape))
            merged[r.kernel, r.shape] = r if m is None else Row(-1, r.kernel, r.shape, m.calls + 1,
                                                                  m.ms + r.ms, m.share + r.share)
        return sorted(merged.values(), key=lambda r: -r.ms)

    def table(self, top=None, merged=True):
        rows = self.by_kernel() if merged else sorted(self.rows, key=lambda r: -r.ms)
        lines = [f"{self.total_ms:.3f} ms per run (mean of {self.runs}, {self.threads} threads), "
                 f"kernels {self.kernel_ms:.3f} ms in {len(self.rows)} steps",
                 f"{'ms':>9} {'share':>6} {'calls':>5}  kernel -> output shape"]
        for r in rows[:top]:
            lines.append(f"{r.ms:9.3f} {100 * r.share:5.1f}% {r.calls:5d}  {r.kernel} -> {r.shape}")
        if top is not None and len(rows) > top:
            rest = rows[top:]
            lines.append(f"{sum(r.ms for r in rest):9.3f} {100 * sum(r.share for r in rest):5.1f}% "
                         f"{sum(r.calls for r in rest):5d}  ({len(rest)} more)")
        return "\n".join(lines)

    def __str__(self):
        return self.table(top=20)

    def __repr__(self):
        return f"<Profile: {self.total_ms:.3f} ms per run, {len(self.rows)} steps>"


def check_runs(runs):
    """Refuse a `runs` that is not a positive integer (before anything runs)."""
    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 1:
        raise LucidError(f"profile: runs must be a positive integer, got {runs!r}")


def profile_program(program, run, runs, threads):
    """Run `run()` (which calls `program`, a NativeProgram built with profile=True, on
    `threads` threads) `runs` times after one warm-up call; the Profile of those runs."""
    from .program import kernels_of
    from .runtime import cycles_per_second

    check_runs(runs)
    run()
    before = program.cycles()
    for _ in range(runs):
        run()
    cycles = (program.cycles() - before) / runs
    to_ms = 1e3 / cycles_per_second()
    total = float(cycles[-1]) * to_ms
    rows = []
    for k, (node, fn, _) in enumerate(kernels_of(program.graph)):
        ms = float(cycles[k]) * to_ms
        rows.append(Row(k, describe(fn), node.type.shape, 1, ms, ms / total if total > 0 else 0.0))
    return Profile(rows, total, runs, threads)
