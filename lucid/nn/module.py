"""`Module`: the base class of every layer and model.

A module owns three kinds of state, each kept in its own ordered dict so that the order
of definition is the order of iteration (and of `state_dict` keys):

- parameters (`Parameter`s, learnable), in `_parameters`;
- buffers (plain tensors that are state but not learned, such as running statistics),
  in `_buffers`; non-persistent ones are left out of `state_dict`;
- submodules, in `_modules`.

Attribute assignment sorts values into these dicts (`self.fc = Linear(...)` registers a
submodule), so model code reads like PyTorch. Names are dotted paths
(`layer1.0.conv1.weight`), which is also what `lucid.trace` calls the captured tensors.
"""
from collections import OrderedDict, namedtuple

import numpy as np

from .. import dtypes as _dt
from ..errors import LucidError, ShapeError
from ..tensor import Tensor
from .parameter import Parameter


class IncompatibleKeys(namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])):
    """What `load_state_dict` could not match: keys the module has that the state dict
    lacks, and keys the state dict has that the module lacks."""

    __slots__ = ()

    def __repr__(self):
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return super().__repr__()


class RemovableHandle:
    """Returned by the `register_*_hook` methods; `handle.remove()` takes the hook out."""

    _next_id = 0

    def __init__(self, hooks):
        self._hooks = hooks
        self.id = RemovableHandle._next_id
        RemovableHandle._next_id += 1

    def remove(self):
        self._hooks.pop(self.id, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


def _indent(text, spaces):
    """Indent every line of `text` but the first (for nested module reprs)."""
    lines = text.split("\n")
    if len(lines) == 1:
        return text
    pad = " " * spaces
    return lines[0] + "\n" + "\n".join(pad + line for line in lines[1:])


def _state_value_array(key, value):
    """A state-dict value (lucid tensor, numpy array, torch tensor, number) as an array."""
    if isinstance(value, Tensor):
        return value._eager_data(f"load_state_dict: value of {key!r}")
    if not isinstance(value, np.ndarray) and hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu().numpy()  # a torch tensor
    return np.asarray(value)


class Module:
    """Base class of layers and models: subclass it, assign layers and parameters in
    `__init__`, compute the output in `forward`, and call the module to run it."""

    training: bool

    def __init__(self):
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent_buffers", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_forward_pre_hooks", OrderedDict())
        object.__setattr__(self, "_forward_hooks", OrderedDict())

    # ---- running ---------------------------------------------------------------
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} has no forward() method")

    def __call__(self, *args, **kwargs):
        for hook in list(self._forward_pre_hooks.values()):
            new_args = hook(self, args)
            if new_args is not None:
                args = new_args if isinstance(new_args, tuple) else (new_args,)
        out = self.forward(*args, **kwargs)
        for hook in list(self._forward_hooks.values()):
            new_out = hook(self, args, out)
            if new_out is not None:
                out = new_out
        return out

    def register_forward_pre_hook(self, hook):
        """`hook(module, args)` runs before `forward`; a non-None result replaces the args."""
        handle = RemovableHandle(self._forward_pre_hooks)
        self._forward_pre_hooks[handle.id] = hook
        return handle

    def register_forward_hook(self, hook):
        """`hook(module, args, output)` runs after `forward`; a non-None result replaces
        the output."""
        handle = RemovableHandle(self._forward_hooks)
        self._forward_hooks[handle.id] = hook
        return handle

    # ---- registration ----------------------------------------------------------
    def _check_init(self, what):
        if "_parameters" not in self.__dict__:
            raise LucidError(f"cannot assign {what} before Module.__init__() is called "
                             f"(call super().__init__() first in {type(self).__name__}.__init__)")

    def _check_name(self, name, kind):
        if not isinstance(name, str):
            raise LucidError(f"{kind} name must be a string, got {type(name).__name__}")
        if not name or "." in name:
            raise LucidError(f"{kind} name {name!r} must be non-empty and contain no '.'")

    def register_parameter(self, name, param):
        """Register `param` (a Parameter, or None for an absent one) under `name`."""
        self._check_init("parameters")
        self._check_name(name, "parameter")
        if name not in self._parameters and hasattr(self, name):
            raise LucidError(f"attribute {name!r} already exists on {type(self).__name__}")
        if param is not None and not isinstance(param, Parameter):
            raise LucidError(f"cannot register a {type(param).__name__} as parameter {name!r} "
                             f"(lucid.nn.Parameter or None expected)")
        self._parameters[name] = param

    def register_buffer(self, name, tensor, persistent=True):
        """Register `tensor` as state that is not learned (e.g. running statistics).

        Persistent buffers appear in `state_dict`; all buffers are cast by `to()` and
        captured by name when tracing."""
        self._check_init("buffers")
        self._check_name(name, "buffer")
        if name not in self._buffers and hasattr(self, name):
            raise LucidError(f"attribute {name!r} already exists on {type(self).__name__}")
        if tensor is not None and not isinstance(tensor, Tensor):
            raise LucidError(f"cannot register a {type(tensor).__name__} as buffer {name!r} "
                             f"(lucid.Tensor or None expected)")
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent_buffers.discard(name)
        else:
            self._non_persistent_buffers.add(name)

    def add_module(self, name, module):
        """Register `module` (or None) as a child under `name`."""
        self._check_init("submodules")
        self._check_name(name, "module")
        if module is not None and not isinstance(module, Module):
            raise LucidError(f"{type(module).__name__} is not a Module subclass")
        if name not in self._modules and hasattr(self, name):
            raise LucidError(f"attribute {name!r} already exists on {type(self).__name__}")
        self._modules[name] = module

    register_module = add_module

    def _forget(self, name, keep):
        """Drop `name` from every registry except `keep` (so re-assigning a parameter
        or submodule keeps its place in the order)."""
        self.__dict__.pop(name, None)
        for registry in ("_parameters", "_buffers", "_modules"):
            if registry != keep:
                getattr(self, registry).pop(name, None)
        self._non_persistent_buffers.discard(name)

    def __setattr__(self, name, value):
        params = self.__dict__.get("_parameters")
        if isinstance(value, Parameter):
            self._check_init("parameters")
            self._forget(name, keep="_parameters")
            self._parameters[name] = value
        elif params is not None and name in params:
            if value is not None:
                raise LucidError(f"cannot assign a {type(value).__name__} as parameter {name!r} "
                                 f"of {type(self).__name__} (lucid.nn.Parameter or None expected)")
            params[name] = None
        elif isinstance(value, Module):
            self._check_init("submodules")
            self._forget(name, keep="_modules")
            self._modules[name] = value
        elif params is not None and name in self._modules:
            if value is not None:
                raise LucidError(f"cannot assign a {type(value).__name__} as submodule {name!r} "
                                 f"of {type(self).__name__} (Module or None expected)")
            self._modules[name] = None
        elif params is not None and name in self._buffers:
            if value is not None and not isinstance(value, Tensor):
                raise LucidError(f"cannot assign a {type(value).__name__} as buffer {name!r} "
                                 f"of {type(self).__name__} (lucid.Tensor or None expected)")
            self._buffers[name] = value
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name):
        # Only called when normal lookup fails: look in the registries.
        d = self.__dict__
        for registry in ("_parameters", "_buffers", "_modules"):
            reg = d.get(registry)
            if reg is not None and name in reg:
                return reg[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name):
        if name in self._parameters:
            del self._parameters[name]
        elif name in self._buffers:
            del self._buffers[name]
            self._non_persistent_buffers.discard(name)
        elif name in self._modules:
            del self._modules[name]
        else:
            object.__delattr__(self, name)

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self._parameters) | set(self._buffers)
                      | set(self._modules))

    # ---- iteration -------------------------------------------------------------
    def named_modules(self, memo=None, prefix="", remove_duplicate=True):
        """(dotted name, module) for this module and every descendant, depth first;
        a module reachable twice is yielded once unless `remove_duplicate=False`."""
        if memo is None:
            memo = set()
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, child in self._modules.items():
            if child is None:
                continue
            sub = f"{prefix}.{name}" if prefix else name
            yield from child.named_modules(memo, sub, remove_duplicate)

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        seen = set()
        for name, child in self._modules.items():
            if child is not None and id(child) not in seen:
                seen.add(id(child))
                yield name, child

    def children(self):
        for _, child in self.named_children():
            yield child

    def _named_members(self, registry, prefix, recurse, remove_duplicate=True):
        seen = set()
        mods = self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate) if recurse \
            else [(prefix, self)]
        for mod_prefix, mod in mods:
            for name, value in getattr(mod, registry).items():
                if value is None or (remove_duplicate and id(value) in seen):
                    continue
                seen.add(id(value))
                yield (f"{mod_prefix}.{name}" if mod_prefix else name), value

    def named_parameters(self, prefix="", recurse=True, remove_duplicate=True):
        """(dotted name, Parameter) pairs; a shared parameter comes once, under the first
        name it is reached by."""
        yield from self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse=True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix="", recurse=True, remove_duplicate=True):
        yield from self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse=True):
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def get_submodule(self, target):
        """The descendant at dotted path `target` ("" is this module)."""
        mod = self
        if not target:
            return mod
        for part in target.split("."):
            child = mod._modules.get(part) if isinstance(mod, Module) else None
            if child is None:
                raise LucidError(f"{type(mod).__name__} has no submodule {part!r} "
                                 f"(looking up {target!r})")
            mod = child
        return mod

    @property
    def parameter_size(self):
        """The number of scalar parameters (a shared parameter counts once)."""
        return int(sum(p.size for p in self.parameters()))

    # ---- mode and bulk changes ---------------------------------------------------
    def train(self, mode=True):
        """Set training mode here and in every descendant (Dropout, BatchNorm look at it)."""
        if not isinstance(mode, bool):
            raise LucidError(f"train(mode) expects a bool, got {type(mode).__name__}")
        object.__setattr__(self, "training", mode)
        for child in self.children():
            child.train(mode)
        return self

    def eval(self):
        return self.train(False)

    def apply(self, fn):
        """Call `fn(module)` on every descendant (children first) and on self."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    def zero_grad(self, set_to_none=True):
        for p in self.parameters():
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad = Tensor(np.zeros_like(p.grad.data))

    def requires_grad_(self, requires_grad=True):
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def to(self, *args, dtype=None, device=None):
        """Cast floating parameters and buffers to `dtype` in place (identity kept).

        Accepts `to(lucid.float64)`, `to(dtype=...)`, a tensor (its dtype) and, for code
        written for PyTorch, the device "cpu" (the only device; others are refused)."""
        for a in args:
            if isinstance(a, Tensor):
                dtype = a.dtype
            elif a is None or a == "cpu":
                device = a
            else:
                try:
                    dtype = _dt.as_dtype(a)
                except LucidError:
                    raise LucidError(f"Module.to: unknown device or dtype {a!r}; lucid runs on "
                                     f"the CPU (pass a dtype or 'cpu')") from None
        if device not in (None, "cpu"):
            raise LucidError(f"Module.to: unknown device {device!r}; lucid runs on the CPU")
        if dtype is None:
            return self
        dtype = _dt.as_dtype(dtype)
        if not dtype.is_float:
            raise LucidError(f"Module.to only casts to floating dtypes, got {dtype}")
        for t in list(self.parameters()) + list(self.buffers()):
            if t.dtype.is_float and t.dtype != dtype:
                t.data = t.data.astype(dtype.np)
                if t.grad is not None:
                    t.grad = Tensor(t.grad.data.astype(dtype.np))
        return self

    def float(self):
        return self.to(_dt.float32)

    def double(self):
        return self.to(_dt.float64)

    # ---- state -----------------------------------------------------------------
    def _state_items(self, prefix=""):
        """(key, tensor) for every state-dict entry: each module's parameters, then its
        persistent buffers, then its children's entries, recursively. A tensor shared
        between modules appears under each of its names, as in PyTorch."""
        for name, p in self._parameters.items():
            if p is not None:
                yield prefix + name, p
        for name, b in self._buffers.items():
            if b is not None and name not in self._non_persistent_buffers:
                yield prefix + name, b
        for name, child in self._modules.items():
            if child is not None:
                yield from child._state_items(prefix + name + ".")

    def state_dict(self, prefix="", keep_vars=False):
        """An ordered dict of name -> numpy array (a copy) of every parameter and
        persistent buffer; `keep_vars=True` gives the tensors themselves."""
        out = OrderedDict()
        for key, t in self._state_items(prefix):
            out[key] = t if keep_vars else np.array(t._eager_data(f"state_dict[{key!r}]"), copy=True)
        return out

    def load_state_dict(self, state_dict, strict=True):
        """Copy values from `state_dict` (arrays or tensors) into this module's tensors.

        Each tensor keeps its identity and dtype (values are cast to it), so optimisers
        holding the parameters see the new values. Nothing is loaded unless every key
        can be: with `strict=True` missing or unexpected keys raise `LucidError`; a
        value whose shape differs raises `ShapeError` either way. Returns
        `IncompatibleKeys(missing_keys, unexpected_keys)`."""
        if not hasattr(state_dict, "keys"):
            raise LucidError(f"load_state_dict expects a dict of name -> array, "
                             f"got {type(state_dict).__name__}")
        targets = OrderedDict(self._state_items())
        missing = [k for k in targets if k not in state_dict]
        unexpected = [k for k in state_dict.keys() if k not in targets]
        where = f"loading state_dict into {type(self).__name__}"
        if strict and (missing or unexpected):
            parts = []
            if missing:
                parts.append(f"missing keys: {', '.join(repr(k) for k in missing)}")
            if unexpected:
                parts.append(f"unexpected keys: {', '.join(repr(k) for k in unexpected)}")
            raise LucidError(f"{where}: " + "; ".join(parts))
        arrays, bad = {}, []
        for key, t in targets.items():
            if key not in state_dict:
                continue
            arr = _state_value_array(key, state_dict[key])
            if tuple(arr.shape) != tuple(t.shape):
                bad.append(f"{key!r} expects shape {tuple(t.shape)}, got {tuple(arr.shape)}")
            arrays[key] = arr
        if bad:
            raise ShapeError(f"{where}: shape mismatch for " + "; ".join(bad))
        for key, arr in arrays.items():
            t = targets[key]
            t.data = np.array(arr, dtype=t._eager_data(f"load_state_dict[{key!r}]").dtype, copy=True)
        return IncompatibleKeys(missing, unexpected)

    # ---- printing --------------------------------------------------------------
    def extra_repr(self):
        """The text inside the parentheses of this module's repr (its settings)."""
        return ""

    def _get_name(self):
        return type(self).__name__

    def __repr__(self):
        extra = self.extra_repr()
        extra_lines = extra.split("\n") if extra else []
        child_lines = [f"({name}): {_indent(repr(child), 2)}"
                       for name, child in self._modules.items()]
        lines = extra_lines + child_lines
        body = ""
        if len(extra_lines) == 1 and not child_lines:
            body = extra_lines[0]
        elif lines:
            body = "\n  " + "\n  ".join(lines) + "\n"
        return f"{self._get_name()}({body})"
