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
call. Optimiser state is created before the first trace (`Optimizer._init_state`), so the
first call is already native. The gradients `loss.backward()` leaves in `.grad` are
graph outputs too (`model.fc.weight.grad`), set on the parameters after each call as an
eager step would; a pre-existing `.grad` the step reads (it accumulates, never zeroing)
is a graph input, and whether each parameter has one is part of the signature (a build
whose trace turns out the same as an earlier one's reuses that one's code). Each param
group's `lr` is read as a 0-d graph input (`opt.group.0.lr`), so lr schedulers stepping
between calls change no graph; other hyper-parameters are compiled in. Frozen params
(not updated by the graph) are compiled in as constants; if one is
reassigned later (`p.data = ...`, `load_state_dict`), the next call notices and rebuilds.
The optimised graph becomes one native entry function (lucid.codegen.program).
"""
import numbers
import os
import time
from dataclasses import dataclass, field

import numpy as np

from .errors import CompileError, DTypeError, LucidError, ShapeError
from .ir.graph import Graph
from .ir.interpreter import Interpreter
from .ir.passes.manager import PassManager, TimingInstrument, VerifyInstrument
from .ir.passes.pipelines import pipeline
from .ir.printer import format_graph
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
        named = {id(t) for t in names.values()}
        for k, p in enumerate(_opt_params(opt)):
            if id(p) not in named:  # a tensor the optimiser updates that no module owns
                names.setdefault(f"{prefix}.param.{k}", p)
            for key, v in opt.state.get(p, {}).items():
                if isinstance(v, Tensor):
                    names.setdefault(f"{prefix}.state.{k}.{key}", v)
    return names


def _grad_owners(modules, optimizers):
    """The tensors whose `.grad` a compiled step reads and writes, in a fixed order."""
    seen, owners = set(), []
    for _, mod in modules:
        for p in mod.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                owners.append(p)
    for _, opt in optimizers:
        for p in _opt_params(opt):
            if id(p) not in seen:
                seen.add(id(p))
                owners.append(p)
    return owners


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
    # `lr` is not part of it: a build reads it at run time (or, when it could not, checks
    # the value it compiled in: `Build.stale`).
    groups = tuple(tuple(sorted((k, _static_key(v)) for k, v in g.items() if k not in ("params", "lr")))
                   for g in opt.param_groups)
    state = tuple(tuple(sorted(opt.state.get(p, {}))) for p in _opt_params(opt))
    return groups, state


# ---- one build -------------------------------------------------------------------------------

def _same_array(a, b):
    """Whether two compiled-in arrays are interchangeable (the same, or equal constants
    such as an index array that each trace makes anew)."""
    return a is b or (a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b))


class _StateCreatedByStep(Exception):
    """Tracing made optimiser state that did not exist before (see CompiledFunction)."""


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
    counted: object = None  # its counting twin, built by CompiledFunction.profile
    text: str = None  # the traced graph's text (builds whose traces match share code)
    owners: dict = field(default_factory=dict)  # "<param name>.grad" -> that param
    grads: dict = field(default_factory=dict)  # the part of `owners` the graph outputs
    grads_cleared: list = field(default_factory=list)  # tensors the step leaves with .grad None
    grads_set: list = field(default_factory=list)  # (tensor, array): an eager .grad the step set
    lrs: dict = field(default_factory=dict)  # param name -> (optimizer, group index, dtype)
    baked: list = field(default_factory=list)  # (name, optimizer, group index, lr compiled in)
    shared: list = field(default_factory=list)  # why later builds that reuse this code happened

    @property
    def updates(self):
        return self.graph.meta.get("updates", [])

    def changed(self):
        """Names of frozen tensors whose value was replaced since this build."""
        return [n for n, arr in self.frozen.items() if self.tensors[n]._data is not arr]

    def stale(self):
        """Why this build cannot serve the next call (a compiled-in value changed), or None."""
        changed = self.changed()
        if changed:
            return f"{changed[0]} was reassigned since the last build (its value is compiled in)"
        for name, opt, k, lr in self.baked:
            now = _static_key(opt.param_groups[k]["lr"])
            if now != lr:
                return f"lr of parameter group {k} of optimizer {name} changed {lr!r} -> {now!r} (it is compiled in)"
        return None

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
        for reason in self.shared:
            lines.append(f"  its code also serves a later call ({reason}): the trace was the same")
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
        self._owners = None  # the tensors whose .grad the signature looks at
        pipeline(opt_level)  # refuse a bad opt_level now, not at the first call
        self.modules, self.optimizers = discover(fn)

    def __repr__(self):
        return f"<lucid.compile of {getattr(self.fn, '__name__', type(self.fn).__name__)}: {len(self.builds)} builds>"

    # ---- calling ----------------------------------------------------------------------
    def __call__(self, *args):
        for _, opt in self.optimizers:
            # State that the first step would create must exist before tracing, so that
            # the traced step reads and updates it (and this call is already native).
            opt._init_state()
        sig = self._signature(args)
        build = self._cache.get(sig)
        stale = build.stale() if build is not None else None
        if build is None or stale:
            try:
                build = self._build(args, sig, stale or self._why(sig))
            except _StateCreatedByStep:
                # An optimiser whose `_initial_state` does not cover its `_update` made new
                # state while tracing: this step runs eagerly, which creates it for real.
                return self.fn(*args)
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

    def profile(self, *args, runs=10):
        """Where the time of a call with these arguments goes, kernel by kernel: a
        lucid.codegen.profile.Profile (print it for a table). The call is made twice
        first (building as a call would, and reaching the steady state of a training
        step's `.grad`s), then `runs` times through a counting build of the same graph;
        every call has its usual effects (a training step updates its params)."""
        if self.backend != "native":
            raise LucidError(f"profile: needs the native backend, this function uses {self.backend!r}")
        from .codegen.profile import check_runs, profile_program
        from .codegen.program import NativeProgram
        from .codegen.runtime import get_num_threads

        check_runs(runs)
        self(*args)
        self(*args)
        build = self._cache.get(self._signature(args))
        if build is None or build.program is None:
            raise LucidError("profile: this call runs eagerly (its optimiser creates state while "
                             "stepping), so there is no compiled program to profile")
        plain = build.program
        counted = build.counted
        if counted is None or counted.graph is not build.graph:
            counted = build.counted = NativeProgram(build.graph, name=f"{plain.entry_name}_profile", profile=True)
        build.program = counted
        try:
            return profile_program(counted, lambda: self._run(build, args), runs,
                                   self.threads or get_num_threads())
        finally:
            build.program = plain

    # ---- signatures -------------------------------------------------------------------
    def _signature(self, args):
        arg_sig = tuple(_describe_arg(a) for a in args)
        modes = tuple((name, m.training) for name, m in self.modules)
        opts = tuple((name, _opt_signature(o)) for name, o in self.optimizers)
        if self._owners is None:  # walking the modules costs ~1 ms a call: once per build
            self._owners = _grad_owners(self.modules, self.optimizers)
        grads = tuple(p.grad is not None for p in self._owners)
        return arg_sig, modes, opts, grads

    def _why(self, sig):
        if not self.builds:
            return "first call"
        last = self.builds[-1].signature
        reasons = []
        args, modes, opts, grads = sig
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
        if grads != last[3]:
            had = sum(last[3])
            reasons.append(f"{sum(grads)} parameters have a .grad (before: {had})")
        return "; ".join(reasons) or "a signature seen before, evicted"

    # ---- building ---------------------------------------------------------------------
    def _build(self, args, sig, reason):
        build = Build(reason, sig)
        t0 = time.perf_counter()
        traced = self._trace(args, build)
        build.phases["trace"] = time.perf_counter() - t0
        build.traced = traced
        build.text = format_graph(traced)
        build.tensors = dict(traced.meta.get("tensors", {}))
        live = set(traced.meta.get("updates", ())) | set(traced.meta.get("mutable", ()))
        build.frozen = {n: t._data for n, t in build.tensors.items() if n not in live}
        twin = self._same_trace(build)
        if twin is not None:
            # The same graph over the same compiled-in arrays (say, the first step traced
            # without `.grad`s and the second with, both zeroing them first): reuse its code.
            build.graph, build.program, build.passes = twin.graph, twin.program, twin.passes
            twin.shared.append(reason)
            self._cache[sig] = build
            return build

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

        self._cache[sig] = build
        self.builds.append(build)
        return build

    def _same_trace(self, build):
        """An earlier build whose traced graph and compiled-in arrays are this one's."""
        for old in self.builds:
            if old.text == build.text and old.frozen.keys() == build.frozen.keys() and all(
                    _same_array(old.frozen[n], arr) for n, arr in build.frozen.items()):
                return old
        return None

    def _trace(self, args, build):
        """Trace the function with its tensors named; fill in `build`'s gradient and lr
        bookkeeping. Gradients, optimiser state and lrs are as before when it returns."""
        names = _named_tensors(self.modules, self.optimizers)
        by_id = {id(t): n for n, t in names.items()}
        self._owners = _grad_owners(self.modules, self.optimizers)
        owners = [(by_id[id(p)], p) for p in self._owners]
        build.owners = {f"{n}.grad": p for n, p in owners}
        saved_grads = {n: t.grad for n, t in names.items()}
        traced_grads = {}  # param name -> the .grad it has while tracing
        for n, p in owners:
            g = p.grad
            if g is not None and not g.is_tracer:
                # Read when the step accumulates. A stand-in of its own, since the tensor
                # may also be optimiser state (eager SGD's first momentum buffer is it).
                p.grad = traced_grads[n] = Tensor._wrap(g._data)
                by_id[id(p.grad)] = f"{n}.grad"
        saved_state = [(o, {p: dict(st) for p, st in o.state.items()}) for _, o in self.optimizers]
        lrs = []  # (name, optimizer, group index, the lr, its tensor)
        for oname, opt in self.optimizers:
            for k, group in enumerate(opt.param_groups):
                lr, dtypes = group["lr"], {p.dtype for p in group["params"]}
                if isinstance(lr, numbers.Real) and not isinstance(lr, bool) and len(dtypes) == 1:
                    # A Python float meets a tensor at that tensor's dtype: so does this.
                    lr_t = Tensor._wrap(np.array(lr, dtype=dtypes.pop().np))
                    lrs.append((f"{oname}.group.{k}.lr", opt, k, lr, lr_t))
                    by_id[id(lr_t)] = lrs[-1][0]
                else:  # an lr that is no number, or a group of mixed dtypes: compiled in
                    build.baked.append((oname, opt, k, _static_key(lr)))

        def on_exit(builder):
            # Optimisers replace state entries (`state["exp_avg"] = new`): each replaced
            # entry is an update of the tensor it replaced.
            for opt, before in saved_state:
                for p, now in opt.state.items():
                    old_state = before.get(p, {})
                    for key, new in now.items():
                        old = old_state.get(key)
                        if isinstance(new, Tensor) and new is not old and new.is_tracer:
                            if not isinstance(old, Tensor):
                                raise _StateCreatedByStep()
                            builder.assign(old, new)
            for name, opt, k, _, lr_t in lrs:
                if opt.param_groups[k]["lr"] is not lr_t:
                    raise CompileError(f"the lr of parameter group {k} of optimizer {name.split('.group.')[0]} "
                                       "was changed inside the compiled function (an lr scheduler stepping "
                                       "there?): its Python runs once, when tracing; step schedulers outside")
            for n, p in owners:
                self._record_grad(builder, build, n, p, traced_grads.get(n))

        try:
            for name, opt, k, _, lr_t in lrs:
                opt.param_groups[k]["lr"] = lr_t
            traced = trace(self.fn, *args, param_names=by_id, on_exit=on_exit)
        finally:
            for n, t in names.items():
                t.grad = saved_grads[n]
            for opt, before in saved_state:
                opt.state.clear()
                opt.state.update(before)
            for name, opt, k, lr, _ in lrs:
                opt.param_groups[k]["lr"] = lr
        tensors = traced.meta.get("tensors", {})
        for name, opt, k, lr, lr_t in lrs:
            if name in tensors:
                build.lrs[name] = (opt, k, lr_t.dtype.np)
            else:  # not read as a tensor (or not at all): compiled in, if anywhere
                build.baked.append((name.split(".group.")[0], opt, k, _static_key(lr)))
        traced.meta["mutable"] = sorted(n for n in tensors if n in build.owners or n in build.lrs)
        return traced

    @staticmethod
    def _record_grad(builder, build, name, p, before):
        """What the step leaves in `p.grad`: a graph output, None, or what was there."""
        final = p.grad
        gname = f"{name}.grad"
        if final is None:
            build.grads_cleared.append(p)
        elif final.is_tracer and final._builder is builder:
            target = before
            if target is None:  # the graph's update target: a buffer it never reads
                target = Tensor._wrap(np.zeros(p.shape, final.dtype.np))
                builder.param_names[id(target)] = gname
            builder.assign(target, final)
            build.grads[gname] = p
        elif final is not before and not final.is_tracer:  # set to an eager value
            build.grads_set.append((p, final.data))

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
            if name in params and name not in build.grads:
                params[name] = build.tensors[name]._data
        for name in graph.meta.get("mutable", ()):
            if name in build.lrs:
                opt, k, dtype = build.lrs[name]
                params[name] = np.array(opt.param_groups[k]["lr"], dtype=dtype)
            elif name in params:  # a .grad the step accumulates into (the signature says it is there)
                grad = build.owners[name].grad
                if grad is not None:
                    params[name] = grad._data
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
            owner = build.grads.get(name)
            if owner is not None:  # a gradient: a new tensor, as `backward()` leaves
                owner.grad = Tensor._wrap(np.asarray(value))
            else:
                build.tensors[name]._data = np.asarray(value)
        for p in build.grads_cleared:
            p.grad = None
        for p, arr in build.grads_set:
            p.grad = Tensor._wrap(arr.copy())
        results = [Tensor._wrap(np.asarray(o)) for o in outs[:n]]
        spec = build.traced.meta.get("out_spec")
        if spec is None:
            return results[0] if len(results) == 1 else tuple(results)
        return unflatten(spec, results)
