"""The kernel profiler (lucid.codegen.profile, CompiledFunction.profile): its rows are the
graph's steps, its times are the native call's own (the counter's rate is measured right),
the counting build computes what the plain one does, and misuse raises lucid errors."""
import time

import numpy as np
import pytest

import lucid
import lucid.nn as nn
from lucid.codegen import program as P
from lucid.codegen import runtime
from lucid.codegen.profile import describe
from lucid.errors import CompileError, LucidError


class _Net(nn.Module):
    """Two identical conv blocks (one kernel, two steps), then a big and a tiny op."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(8, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 24 * 24, 512)

    def forward(self, x):
        x = self.c1(x).relu()
        x = self.c2(x).relu()
        return self.fc(x.reshape(x.shape[0], -1))


def _setup():
    lucid.random.seed(0)
    net = _Net().eval()
    x = np.random.default_rng(1).standard_normal((2, 8, 24, 24)).astype(np.float32)
    return net, x


def test_rows_are_the_graph_steps():
    net, x = _setup()
    cm = lucid.compile(net)
    prof = cm.profile(x, runs=3)
    steps = P.kernels_of(cm.graph)
    assert [r.step for r in prof.rows] == list(range(len(steps)))
    assert [r.kernel for r in prof.rows] == [describe(fn) for _, fn, _ in steps]
    assert [r.shape for r in prof.rows] == [node.type.shape for node, _, _ in steps]
    convs = [r for r in prof.rows if r.kernel.startswith("conv 3x3/1 8->8 @24x24")]
    assert len(convs) == 2
    assert all(r.ms > 0 for r in convs)
    assert all(r.ms >= 0 and r.calls == 1 for r in prof.rows)
    # the kernels run inside the entry call: their sum cannot exceed it
    assert 0 < prof.kernel_ms <= prof.total_ms * (1 + 1e-9)
    assert abs(sum(r.share for r in prof.rows) - prof.kernel_ms / prof.total_ms) < 1e-9
    assert prof.runs == 3 and prof.threads == runtime.get_num_threads()


def test_by_kernel_merges_identical_steps():
    net, x = _setup()
    prof = lucid.compile(net).profile(x, runs=2)
    merged = prof.by_kernel()
    conv = [r for r in merged if r.kernel.startswith("conv 3x3/1 8->8 @24x24")]
    assert len(conv) == 1 and conv[0].calls == 2
    per_step = [r.ms for r in prof.rows if r.kernel == conv[0].kernel]
    assert conv[0].ms == pytest.approx(sum(per_step))
    assert [r.ms for r in merged] == sorted((r.ms for r in merged), reverse=True)
    assert sum(r.calls for r in merged) == len(prof.rows)
    text = prof.table(top=2)
    assert text.splitlines()[2].split()[0] == f"{merged[0].ms:.3f}"
    assert f"({len(merged) - 2} more)" in text


def test_times_match_the_wall_clock():
    """The counter's rate is right: the profiled total agrees with time.perf_counter
    around the same calls (Python's own overhead is a small part of a ~ms call)."""
    net, x = _setup()
    cm = lucid.compile(net, threads=1)
    prof = cm.profile(x, runs=5)
    walls = []
    for _ in range(7):
        t0 = time.perf_counter()
        cm(x)
        walls.append(time.perf_counter() - t0)
    wall_ms = 1e3 * min(walls)
    assert 0.3 * wall_ms < prof.total_ms < 3 * wall_ms
    assert 1e8 < runtime.cycles_per_second() < 1e11
    assert prof.threads == 1


def test_counting_build_computes_the_same():
    net, x = _setup()
    cm = lucid.compile(net)
    want = cm(x).numpy()
    cm.profile(x, runs=1)
    counted = cm.builds[-1].counted
    assert counted is not None and counted.profile
    got = counted.run([x], dict(cm.graph.params))[0]
    np.testing.assert_array_equal(got, want)
    # the plain program is back in place, and counts nothing
    assert cm.builds[-1].program is not counted
    np.testing.assert_array_equal(cm(x).numpy(), want)
    with pytest.raises(CompileError, match="profile=True"):
        cm.builds[-1].program.cycles()


def test_cycles_accumulate_per_step():
    net, x = _setup()
    cm = lucid.compile(net)
    cm(x)
    prog = P.NativeProgram(cm.graph, profile=True, use_cache=False)
    assert prog.key != cm.builds[-1].program.key
    # programs of one key share their module, and so its counts: compare differences
    base = prog.cycles()
    prog.run([x], dict(cm.graph.params))
    one = prog.cycles() - base
    prog.run([x], dict(cm.graph.params))
    two = prog.cycles() - base
    assert one.shape == (len(cm.graph.compute_nodes) + 1,)
    assert (two >= one).all() and two[-1] > one[-1] > 0
    assert one[:-1].sum() <= one[-1]


def test_bad_use_raises():
    net, x = _setup()
    cm = lucid.compile(net)
    with pytest.raises(LucidError, match="runs must be a positive integer"):
        cm.profile(x, runs=0)
    assert cm.builds == []  # refused before any call
    with pytest.raises(LucidError, match="runs must be a positive integer"):
        lucid.compile(net).profile(x, runs=True)
    with pytest.raises(LucidError, match="native backend"):
        lucid.compile(net, backend="interpreter").profile(x)
    with pytest.raises(lucid.errors.ShapeError):
        lucid.compile(net).profile(x[:, :4])
