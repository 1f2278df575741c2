"""Passes and the pass manager.

A pass is a named, pure `Graph -> Graph` function (`@graph_pass("name")`). A pipeline is a
plain list of passes. `PassManager` runs one with instruments, objects that watch every
pass without the pass knowing: verify after each pass, time each pass, dump the graph
before and after each pass (TVM's pass instruments)."""
import time


class Pass:
    def __init__(self, name, fn, doc=""):
        self.name = name
        self.fn = fn
        self.__doc__ = doc or fn.__doc__

    def __call__(self, graph):
        return self.fn(graph)

    def __repr__(self):
        return f"<pass {self.name}>"


def graph_pass(name):
    """Decorator: make a `Graph -> Graph` function a named pass."""

    def deco(fn):
        return Pass(name, fn)

    return deco


def fixpoint(name, passes, max_rounds=8):
    """A pass that runs `passes` in turn until the graph stops changing.

    After each run, the pass's `last_rounds` says how many rounds it took and
    `last_times` how long each inner pass took over all of them (name -> seconds), for
    benchmarks and `explain()`."""

    def run(graph):
        times = {p.name: 0.0 for p in passes}
        before = str(graph)
        for rounds in range(1, max_rounds + 1):
            for p in passes:
                t0 = time.perf_counter()
                graph = p(graph)
                times[p.name] += time.perf_counter() - t0
            after = str(graph)
            if after == before:
                break
            before = after
        fix.last_rounds, fix.last_times = rounds, times
        return graph

    fix = Pass(name, run, doc=f"{', '.join(p.name for p in passes)} to a fixpoint")
    fix.last_rounds, fix.last_times = 0, {}
    return fix


class Instrument:
    """Hooks around each pass; override what you need."""

    def before_pipeline(self, graph):
        pass

    def before_pass(self, index, pass_, graph):
        pass

    def after_pass(self, index, pass_, graph, seconds):
        pass

    def after_pipeline(self, graph):
        pass


class VerifyInstrument(Instrument):
    """Verify the graph after every pass, naming the pass that broke it."""

    def before_pipeline(self, graph):
        from ..verify import verify

        verify(graph)

    def after_pass(self, index, pass_, graph, seconds):
        from ...errors import CompileError
        from ..verify import VerifyError, verify

        try:
            verify(graph)
        except VerifyError as err:
            raise CompileError(f"pass {pass_.name} produced an invalid graph: {err}") from err


class TimingInstrument(Instrument):
    """Records, per pass, its wall time and the op count after it."""

    def __init__(self):
        self.records = []

    def before_pipeline(self, graph):
        self.records = [("input", 0.0, len(graph.compute_nodes))]

    def after_pass(self, index, pass_, graph, seconds):
        self.records.append((pass_.name, seconds, len(graph.compute_nodes)))


class PassManager:
    def __init__(self, passes, instruments=()):
        self.passes = list(passes)
        self.instruments = list(instruments)

    def run(self, graph):
        for inst in self.instruments:
            inst.before_pipeline(graph)
        for k, p in enumerate(self.passes):
            for inst in self.instruments:
                inst.before_pass(k, p, graph)
            t0 = time.perf_counter()
            graph = p(graph)
            dt = time.perf_counter() - t0
            for inst in self.instruments:
                inst.after_pass(k, p, graph, dt)
        for inst in self.instruments:
            inst.after_pipeline(graph)
        return graph
