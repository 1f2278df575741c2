"""The optimizer base class: parameter groups, per-parameter state, state dicts.

An optimizer owns `param_groups` (dicts holding `"params"`, a list of tensors, and that
group's options such as `lr`) and `state` (a dict from parameter to that parameter's
state dict: moment estimates as lucid Tensors, step counts as Python ints).

Subclasses implement `_update(p, grad, state, group)` for one parameter: it returns the
parameter's new value and replaces state entries (`state[name] = new`), with lucid ops
only, run under `lucid.no_grad()`; `step` writes the value back with `p.data = new`.
Nothing touches numpy, so the same step runs eagerly or on tracers: when the gradients
are tracers (a whole training step traced into one graph), the parameter and its state
are first captured into that trace (see `_lift`) and `p.data = tracer` is recorded by the
trace as a state update. `_init_state` creates every parameter's state before its first
step (subclasses say how in `_initial_state`), which a compiled step needs. While a step
is traced, `group["lr"]` is a 0-d tensor (read by the graph at each call, so lr schedules
need no new build): `_update` uses it in arithmetic only.

`state_dict()` is plain data (numbers, strings, tuples, lists, dicts with int keys and
numpy arrays), which `lucid.save` writes without pickle; `load_state_dict` turns the
arrays back into tensors after checking that the groups line up.
"""
import numbers

import numpy as np

from ..autograd_mode import enable_grad, no_grad
from ..errors import LucidError
from ..tensor import Tensor


def zeros_state(p):
    """A zero tensor shaped and typed like parameter `p` (a moment before any step)."""
    return Tensor._wrap(np.zeros(p.shape, p.dtype.np))


def count_state():
    """A step count before any step: float64 0-d, as `_update` keeps it."""
    return Tensor._wrap(np.array(0.0))


class _Required:
    """Marks an option that has no default (SGD's lr): each group must then give it."""

    def __repr__(self):
        return "<required>"


required = _Required()


# ---- option checks (shared by the optimizers) -------------------------------------

def check_number(opt, name, value, low=0.0, high=None, low_open=False, high_open=True):
    """Refuse `value` unless it is a real number in the range; the message names it."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok:
        value = float(value)
        ok = (value > low if low_open else value >= low) if low is not None else value == value
        if ok and high is not None:
            ok = value < high if high_open else value <= high
    if not ok:
        lo = "" if low is None else ("> " if low_open else ">= ") + repr(low)
        hi = "" if high is None else ("< " if high_open else "<= ") + repr(high)
        rng = " and ".join(s for s in (lo, hi) if s)
        raise LucidError(f"{opt}: invalid {name} {value!r}: it must be a number {rng}")


def check_betas(opt, betas):
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise LucidError(f"{opt}: invalid betas {betas!r}: expected a pair (beta1, beta2)")
    for i, b in enumerate(betas):
        check_number(opt, f"betas[{i}]", b, 0.0, 1.0)


class Optimizer:
    """Base class of lucid's optimizers (see the module docstring)."""

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.state = {}
        self.param_groups = []
        name = type(self).__name__
        if isinstance(params, Tensor) or isinstance(params, dict):
            raise LucidError(f"{name}: params must be an iterable of tensors or of dicts, "
                             f"got a single {type(params).__name__} (wrap it in a list)")
        try:
            groups = list(params)
        except TypeError:
            raise LucidError(f"{name}: params must be an iterable of tensors or of dicts, "
                             f"got {type(params).__name__}") from None
        if not groups:
            raise LucidError(f"{name} got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, g in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {v}" for k, v in g.items() if k != "params"]
        return "\n".join(lines + [")"])

    # ---- groups -----------------------------------------------------------------
    def check_group(self, group):
        """Validate one group's options (subclasses check their hyper-parameters)."""

    def add_param_group(self, group):
        """Add a group of parameters with its own options (missing ones take the defaults)."""
        name = type(self).__name__
        if not isinstance(group, dict):
            raise LucidError(f"{name}: a parameter group must be a dict, got {type(group).__name__}")
        if "params" not in group:
            raise LucidError(f"{name}: a parameter group needs a 'params' entry")
        params = group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, (set, frozenset)):
            raise LucidError(f"{name}: parameters must be given in a fixed order (a list), not a set")
        else:
            params = list(params)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        for i, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise LucidError(f"{name}: params[{i}] of group {len(self.param_groups)} is a "
                                 f"{type(p).__name__}, not a Tensor")
            if p.is_tracer:
                raise LucidError(f"{name}: params[{i}] is a tracer; optimizers hold eager tensors")
            if not p.dtype.is_float:
                raise LucidError(f"{name}: params[{i}] has dtype {p.dtype}; only floating tensors "
                                 "can be optimized")
            if id(p) in seen:
                raise LucidError(f"{name}: params[{i}] of group {len(self.param_groups)} appears in "
                                 "more than one place; each parameter may be listed once")
            seen.add(id(p))
        new = {"params": params}
        new.update((k, v) for k, v in group.items() if k != "params")
        for key, default in self.defaults.items():
            if key not in new:
                if default is required:
                    raise LucidError(f"{name}: parameter group {len(self.param_groups)} does not "
                                     f"give the required option {key!r}")
                new[key] = default
        self.check_group(new)
        self.param_groups.append(new)

    # ---- stepping ---------------------------------------------------------------
    def zero_grad(self, set_to_none=True):
        """Forget every parameter's gradient (`set_to_none=False` keeps zero arrays)."""
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none or p.grad is None or p.grad.is_tracer:
                    p.grad = None
                else:
                    p.grad = Tensor._wrap(np.zeros(p.shape, p.dtype.np))

    def step(self, closure=None):
        """Update every parameter that has a gradient; returns `closure()` if given.

        `closure` re-evaluates the model and returns the loss (run with grad enabled)."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        with no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    grad = p.grad
                    if grad is None:
                        continue
                    if tuple(grad.shape) != tuple(p.shape):
                        raise LucidError(f"{type(self).__name__}.step: a parameter of shape {p.shape} "
                                         f"has a gradient of shape {grad.shape}")
                    if grad.dtype != p.dtype:
                        grad = grad.astype(p.dtype)
                    state = self.state.get(p)
                    if state is None:
                        state = self.state[p] = {}
                    value = p
                    if grad.is_tracer:
                        value = _lift(p, grad)
                        for key, v in state.items():
                            if isinstance(v, Tensor):
                                state[key] = _lift(v, grad)
                    p.data = self._update(value, grad, state, group)
        return loss

    def _update(self, p, grad, state, group):
        """The new value of parameter `p` (lucid ops only); may update `state` in place."""
        raise NotImplementedError(f"{type(self).__name__} does not define its update")

    # ---- state before the first step ---------------------------------------------
    def _init_state(self):
        """Create the state of every parameter that has none yet, as the first step would.

        Eagerly, state appears at a parameter's first step. A compiled training step needs
        it to exist before tracing, so that the traced step reads and updates named
        tensors (and its first call is already native). `_initial_state` gives each
        entry's starting value, chosen so that `_update` on it computes exactly what the
        first step on no state computes (zero moments: `0 * beta + x == x`)."""
        for group in self.param_groups:
            for p in group["params"]:
                if not self.state.get(p):
                    self.state[p] = self._initial_state(p, group)

    def _initial_state(self, p, group):
        """The state of parameter `p` before its first step (none: stateless updates)."""
        return {}

    # ---- state dicts ------------------------------------------------------------
    def state_dict(self):
        """`{"state": {index: {name: array or number}}, "param_groups": [{..., "params": [index]}]}`.

        Parameters are numbered across the groups in order; arrays are copies."""
        index = {}
        groups = []
        for g in self.param_groups:
            packed = {k: v for k, v in g.items() if k != "params"}
            packed["params"] = [index.setdefault(id(p), len(index)) for p in g["params"]]
            groups.append(packed)
        state = {}
        for g in self.param_groups:
            for p in g["params"]:
                st = self.state.get(p)
                if st:
                    state[index[id(p)]] = {k: _export(v) for k, v in st.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restore options and state saved by `state_dict` (groups must match in size)."""
        name = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state_dict, dict) or "state" not in state_dict or "param_groups" not in state_dict:
            raise LucidError(f"{name}: expected a dict with 'state' and 'param_groups' (an optimizer "
                             f"state_dict), got {type(state_dict).__name__}")
        saved_groups = state_dict["param_groups"]
        if not isinstance(saved_groups, (list, tuple)) or len(saved_groups) != len(self.param_groups):
            count = len(saved_groups) if isinstance(saved_groups, (list, tuple)) else "no list of"
            raise LucidError(f"{name}: the state dict has {count} parameter groups, this optimizer "
                             f"has {len(self.param_groups)}")
        by_index = {}
        new_groups = []
        for i, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            if not isinstance(saved, dict) or not isinstance(saved.get("params"), (list, tuple)):
                raise LucidError(f"{name}: parameter group {i} of the state dict has no 'params' list")
            if len(saved["params"]) != len(group["params"]):
                raise LucidError(f"{name}: parameter group {i} has {len(saved['params'])} parameters "
                                 f"in the state dict but {len(group['params'])} in this optimizer")
            for k, p in zip(saved["params"], group["params"]):
                by_index[_as_index(name, k)] = p
            new = {"params": group["params"]}
            new.update((k, v) for k, v in saved.items() if k != "params")
            self.check_group(new)
            new_groups.append(new)
        saved_state = state_dict["state"]
        if not isinstance(saved_state, dict):
            raise LucidError(f"{name}: 'state' must be a dict, got {type(saved_state).__name__}")
        new_state = {}
        for k, entries in saved_state.items():
            p = by_index.get(_as_index(name, k))
            if p is None:
                raise LucidError(f"{name}: state for parameter {k!r}, which is in no parameter group")
            if not isinstance(entries, dict):
                raise LucidError(f"{name}: the state of parameter {k!r} must be a dict")
            new_state[p] = {key: _import(name, k, key, v, p) for key, v in entries.items()}
        self.param_groups = new_groups
        self.state = new_state


def _lift(t, like):
    """`t` as a value of the trace `like` belongs to (`t` itself when it already is one).

    Inside a traced step the gradients are tracers but parameters and optimizer state are
    eager; an expression of eager values alone (`p * weight_decay`) would be computed at
    trace time and frozen into the graph as a constant. Lifting them first makes every
    step of the update a graph node that reads the current parameter."""
    if t.is_tracer:
        return t
    builder = like._builder
    return Tensor._tracer(builder.capture(t), builder)


def _export(value):
    if isinstance(value, Tensor):
        return np.array(value.data, copy=True)
    if isinstance(value, np.ndarray):
        return value.copy()
    return value


def _as_index(where, k):
    if isinstance(k, (int, np.integer)) and not isinstance(k, bool):
        return int(k)
    if isinstance(k, str) and k.isdigit():
        return int(k)
    raise LucidError(f"{where}: parameter index {k!r} is not an integer")


def _import(where, index, key, value, p):
    """A saved state entry as the optimizer keeps it: arrays become tensors."""
    if isinstance(value, Tensor):
        value = value.data
    if isinstance(value, np.ndarray):
        if value.ndim and value.shape != tuple(p.shape):
            raise LucidError(f"{where}: state {key!r} of parameter {index} has shape {value.shape}, "
                             f"the parameter has shape {tuple(p.shape)}")
        if value.dtype.kind == "f" and value.dtype != p.dtype.np:
            value = value.astype(p.dtype.np)
        return Tensor(value.copy())
    return value
