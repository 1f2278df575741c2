"""`lucid.compile`: trace once per input signature, optimise, then run the optimised graph.

`compile(model_or_fn)` returns a `CompiledFunction`. Its first call for an input
signature (tensor shapes and dtypes, static arguments, the train/eval mode of the modules
it uses, optimiser hyper-parameters) traces the function, runs the pass pipeline and
keeps the result; later calls with the same signature reuse it. A new signature builds
again, and `explain()` says why each build happened.

What the function touches is found the way a reader would: the module itself, or the
modules and optimisers its closure and globals name. Their parameters, buffers and
optimiser state become named graph params (`model.fc.weight`, `opt.state.3.exp_avg`).
A training step (forward, `loss.backward()` or `lucid.grad`, `optimizer.step()`) thus
becomes one graph whose `update` outputs are written back into those tensors after each
call. Frozen params (not updated by the graph) are compiled in as constants; if one is
reassigned later (`p.data = ...`, `load_state_dict`), the next call notices and rebuilds.
The optimised graph becomes one native entry function (lucid.codegen.program).
"""
import os
import time
from dataclasses import dataclass, field

import numpy as np

from .errors import CompileError, DTypeError, LucidError, ShapeError
from .ir.graph import Graph
from .ir.interpreter import Interpreter
from .ir.passes.manager import PassManager, TimingInstrument, VerifyInstrument
from .ir.passes.pipelines import pipeline
from .ir.trace import trace, unflatten
from .tensor import Tensor


BACKENDS = ("native", "interpreter")


def compile(model_or_fn, *, opt_level=2, debug_dir=None, verify=None, backend="native", threads=None):
    """Compile a module or function; see the module docstring.

    `debug_dir` (or the environment variable LUCID_DUMP) receives a dump of the graph
    before and after every pass and a summary of each build; `verify` checks the graph
    after every pass (on by default when dumping). `backend="interpreter"` runs the
    optimised graph on the numpy references instead of native code (for debugging).
    `threads` sets the native thread pool's size for this function's calls (default: the
    pool's setting: LUCID_NUM_THREADS, else the machine's cores)."""
    if not callable(model_or_fn):
        raise CompileError(f"lucid.compile needs a module or a function, got {type(model_or_fn).__name__}")
    if backend not in BACKENDS:
        raise CompileError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if threads is not None:
        from .codegen.runtime import _check_count

        _check_count(threads, "threads")
    return CompiledFunction(model_or_fn, opt_level=opt_level, debug_dir=debug_dir, verify=verify,
                            backend=backend, threads=threads)


# ---- what a function touches ---------------------------------------------------------------

def _is_module(obj):
    from .nn.module import Module

    return isinstance(obj, Module)


def _is_optimizer(obj):
    from .optim.optimizer import Optimizer

    return isinstance(obj, Optimizer)


def discover(fn):
    """The modules and optimisers `fn` uses, as (name, object) pairs."""
    if _is_module(fn):
        return [("", fn)], []
    owner = getattr(fn, "__self__", None)
    if owner is not None and _is_module(owner):
        return [("", owner)], []
    code = getattr(fn, "__code__", None)
    if code is None:
        return [], []
    found = {}
    for name, cell in zip(code.co_freevars, getattr(fn, "__closure__", None) or ()):
        try:
            found[name] = cell.cell_contents
        except ValueError:  # an empty cell
            continue
    glb = getattr(fn, "__globals__", {})
    for name in code.co_names:
        if name in glb and name not in found:
            found[name] = glb[name]
    modules = [(k, v) for k, v in found.items() if _is_module(v)]
    optimizers = [(k, v) for k, v in found.items() if _is_optimizer(v)]
    return modules, optimizers


def _named_tensors(modules, optimizers):
    """name -> tensor for every parameter, buffer and optimiser state tensor."""
    names = {}
    for prefix, mod in modules:
        for name, t in list(mod.named_parameters()) + list(mod.named_buffers()):
            names.setdefault(f"{prefix}.{name}" if prefix else name, t)
    for prefix, opt in optimizers:
        for k, p in enumerate(_opt_params(opt)):
            for key, v in opt.state.get(p, {}).items():
                if isinstance(v, Tensor):
                    names.setdefault(f"{prefix}.state.{k}.{key}", v)
    return names


def _opt_params(opt):
    return [p for group in opt.param_groups for p in group["params"]]


# ---- signatures ------------------------------------------------------------------------------

def _static_key(value):
    try:
        hash(value)
        return value
    except TypeError:
        return repr(value)


def _describe_arg(a):
    if isinstance(a, (Tensor, np.ndarray)):
        t = a if isinstance(a, Tensor) else None
        shape = tuple(a.shape)
        dtype = t.dtype.name if t is not None else str(a.dtype)
        return ("tensor", shape, dtype)
    return ("static", _static_key(a))


def _opt_signature(opt):
    groups = tuple(tuple(sorted((k, _static_key(v)) for k, v in g.items() if k != "params"))
                   for g in opt.param_groups)
    state = tuple(tuple(sorted(opt.state.get(p, {}))) for p in _opt_params(opt))
    return groups, state


# ---- one build -------------------------------------------------------------------------------

class _ParamInterpreter(Interpreter):
    def __init__(self, graph, params):
        super().__init__(graph)
        self._params = params

    def param(self, node):
        return self._params[node.name]

    def run_node(self, node, args):
        if node.op == "call":
            return Interpreter(self.graph.functions[node.attrs["callee"]]).run(*args)[0]
        return super().run_node(node, args)


@dataclass
class Build:
    """One build: why it happened, its graphs and where the time went."""

    reason: str
    signature: tuple
    graph: Graph = None
    traced: Graph = None
    phases: dict = field(default_factory=dict)  # phase name -> seconds
    passes: list = field(default_factory=list)  # (pass name, seconds, ops after)
    tensors: dict = field(default_factory=dict)  # param name -> the tensor it reads / writes
    frozen: dict = field(default_factory=dict)  # param name -> the array compiled in
    debug_dir: str = None
    program: object = None  # the NativeProgram (None with the interpreter backend)

    @property
    def updates(self):
        return self.graph.meta.get("updates", [])

    def changed(self):
        """Names of frozen tensors whose value was replaced since this build."""
        return [n for n, arr in self.frozen.items() if self.tensors[n]._data is not arr]

    def summary(self):
        lines = [f"build for {self._sig_text()}: {self.reason}"]
        lines.append("  " + ", ".join(f"{k} {1000 * v:.1f} ms" for k, v in self.phases.items()))
        for name, sec, ops in self.passes:
            lines.append(f"    {name:<16} {1000 * sec:8.2f} ms  -> {ops} ops")
        plan = self.graph.meta.get("memory")
        if plan is not None:
            lines.append("  " + plan.summary().replace("\n", "\n  "))
        if self.debug_dir:
            lines.append(f"  dumps in {self.debug_dir}")
        return "\n".join(lines)

    def _sig_text(self):
        args = self.signature[0]
        return "(" + ", ".join(f"{a[2]}{list(a[1])}" if a[0] == "tensor" else repr(a[1]) for a in args) + ")"


class CompiledFunction:
    """What `lucid.compile` returns: call it like the original."""

    def __init__(self, fn, opt_level=2, debug_dir=None, verify=None, backend="native", threads=None):
        self.fn = fn
        self.backend = backend
        self.threads = threads
        self.opt_level = opt_level
        self.debug_dir = debug_dir or os.environ.get("LUCID_DUMP") or None
        self.verify = bool(self.debug_dir) if verify is None else verify
        self._cache = {}
        self.builds = []
        self._warm = False
        pipeline(opt_level)  # refuse a bad opt_level now, not at the first call
        self.modules, self.optimizers = discover(fn)

    def __repr__(self):
        return f"<lucid.compile of {getattr(self.fn, '__name__', type(self.fn).__name__)}: {len(self.builds)} builds>"

    # ---- calling ----------------------------------------------------------------------
    def __call__(self, *args):
        if self.optimizers and not self._warm:
            # Optimiser state (moments, step counts) is created by the first step; run that
            # one eagerly so that the traced step reads and updates state that exists.
            self._warm = True
            return self.fn(*args)
        sig = self._signature(args)
        build = self._cache.get(sig)
        if build is not None:
            changed = build.changed()
            if changed:
                build = self._build(args, sig, f"{changed[0]} was reassigned since the last build "
                                               "(its value is compiled in)")
        else:
            build = self._build(args, sig, self._why(sig))
        return self._run(build, args)

    @property
    def graph(self):
        """The optimised graph of the latest build."""
        if not self.builds:
            raise LucidError("nothing compiled yet: call the compiled function first")
        return self.builds[-1].graph

    def explain(self):
        """Why each build happened, and where its time went."""
        if not self.builds:
            return "no builds yet"
        return "\n".join(b.summary() for b in self.builds)

    # ---- signatures -------------------------------------------------------------------
    def _signature(self, args):
        arg_sig = tuple(_describe_arg(a) for a in args)
        modes = tuple((name, m.training) for name, m in self.modules)
        opts = tuple((name, _opt_signature(o)) for name, o in self.optimizers)
        return arg_sig, modes, opts

    def _why(self, sig):
        if not self.builds:
            return "first call"
        last = self.builds[-1].signature
        reasons = []
        args, modes, opts = sig
        if len(args) != len(last[0]):
            reasons.append(f"called with {len(args)} arguments instead of {len(last[0])}")
        else:
            for k, (new, old) in enumerate(zip(args, last[0])):
                if new != old:
                    if new[0] == old[0] == "tensor":
                        what = []
                        if new[1] != old[1]:
                            what.append(f"shape {old[1]} -> {new[1]}")
                        if new[2] != old[2]:
                            what.append(f"dtype {old[2]} -> {new[2]}")
                        reasons.append(f"argument {k}: " + ", ".join(what))
                    else:
                        reasons.append(f"argument {k}: {old[1]!r} -> {new[1]!r}")
        for (name, mode), (_, old_mode) in zip(modes, last[1]):
            if mode != old_mode:
                reasons.append(f"{name or 'the model'} switched to {'train' if mode else 'eval'} mode")
        for (name, o), (_, old_o) in zip(opts, last[2]):
            if o[0] != old_o[0]:
                reasons.append(f"hyper-parameters of optimizer {name} changed")
            if o[1] != old_o[1]:
                reasons.append(f"the state of optimizer {name} changed structure")
        return "; ".join(reasons) or "a signature seen before, evicted"

    # ---- building ---------------------------------------------------------------------
    def _build(self, args, sig, reason):
        build = Build(reason, sig)
        names = _named_tensors(self.modules, self.optimizers)
        by_id = {id(t): n for n, t in names.items()}
        saved_grads = {n: t.grad for n, t in names.items()}
        saved_state = [(o, {p: dict(st) for p, st in o.state.items()}) for _, o in self.optimizers]

        def record_state(builder):
            # Optimisers replace state entries (`state["exp_avg"] = new`): each replaced
            # entry is an update of the tensor it replaced.
            for opt, before in saved_state:
                for p, old_state in before.items():
                    for key, old in old_state.items():
                        new = opt.state.get(p, {}).get(key)
                        if isinstance(new, Tensor) and new is not old and isinstance(old, Tensor):
                            if new.is_tracer:
                                builder.assign(old, new)

        t0 = time.perf_counter()
        try:
            traced = trace(self.fn, *args, param_names=by_id, on_exit=record_state)
        finally:
            for n, t in names.items():
                t.grad = saved_grads[n]
            for opt, before in saved_state:
                opt.state.clear()
                opt.state.update(before)
        build.phases["trace"] = time.perf_counter() - t0
        build.traced = traced

        timing = TimingInstrument()
        instruments = [timing]
        if self.verify:
            instruments.append(VerifyInstrument())
        dumper = None
        if self.debug_dir:
            from .ir.passes.dumping import DumpInstrument

            build.debug_dir = os.path.join(self.debug_dir, f"build_{len(self.builds) + 1:02d}")
            dumper = DumpInstrument(build.debug_dir)
            dumper.add_phase("trace", build.phases["trace"])
            instruments.append(dumper)
        t0 = time.perf_counter()
        try:
            graph = PassManager(pipeline(self.opt_level), instruments).run(traced)
        except LucidError:
            raise
        except Exception as err:  # a pass failing is our bug; say which build hit it
            raise CompileError(f"compiling {getattr(self.fn, '__name__', 'the model')} failed: "
                               f"{type(err).__name__}: {err}") from err
        build.phases["optimize"] = time.perf_counter() - t0
        build.passes = timing.records[1:]
        build.graph = graph
        if self.backend == "native":
            from .codegen.program import NativeProgram

            t0 = time.perf_counter()
            build.program = NativeProgram(graph, name=f"lucid_{len(self.builds)}")
            build.phases["build"] = time.perf_counter() - t0
            if dumper is not None:
                dumper.add_phase("build", build.phases["build"])

        build.tensors = dict(traced.meta.get("tensors", {}))
        updates = set(graph.meta.get("updates", ()))
        build.frozen = {n: t._data for n, t in build.tensors.items() if n not in updates}
        self._cache[sig] = build
        self.builds.append(build)
        return build

    # ---- running ----------------------------------------------------------------------
    def _run(self, build, args):
        graph = build.graph
        tensor_args = [a for a in args if isinstance(a, (Tensor, np.ndarray))]
        arrays = []
        for node, a in zip(graph.inputs, tensor_args):
            arr = a.data if isinstance(a, Tensor) else a
            if arr.shape != node.type.shape:
                raise ShapeError(f"input %{node.name} expects shape {node.type.shape}, got {arr.shape}")
            if arr.dtype != node.type.dtype.np:
                raise DTypeError(f"input %{node.name} expects dtype {node.type.dtype}, got {arr.dtype}")
            arrays.append(arr)
        params = dict(graph.params)
        updates = build.updates
        for name in updates:
            if name in params:
                params[name] = build.tensors[name]._data
        if build.program is not None and self.threads is not None:
            from .codegen.runtime import get_num_threads, set_num_threads

            before = get_num_threads()
            set_num_threads(self.threads)
            try:
                outs = build.program.run(arrays, params)
            finally:
                set_num_threads(before)
        elif build.program is not None:
            outs = build.program.run(arrays, params)
        else:
            outs = _ParamInterpreter(graph, params).run(*arrays)
        n = len(outs) - len(updates)
        for name, value in zip(updates, outs[n:]):
            build.tensors[name]._data = np.asarray(value)
        results = [Tensor._wrap(np.asarray(o)) for o in outs[:n]]
        spec = graph.meta.get("out_spec")
        if spec is None:
            return results[0] if len(results) == 1 else tuple(results)
        return unflatten(spec, results)
