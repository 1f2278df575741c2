"""The model registry: `@register_model` factories, found by name.

A model is published by decorating the function that builds it; `create_model(name,
**kwargs)` calls it. The registry maps names to functions and nothing more: it does not
import model code on its own, and it refuses a second model under a taken name rather
than silently replacing the first.

Tests that register toy models use `isolated_registry()`, which swaps in an empty
registry and restores the real one afterwards, so nothing leaks into `list_models()`.
"""
import contextlib
import difflib
import fnmatch

from ..errors import LucidError


class ModelRegistry:
    """Names to model factories (functions returning a model)."""

    def __init__(self):
        self._factories = {}

    def __contains__(self, name):
        return name in self._factories

    def __len__(self):
        return len(self._factories)

    def register(self, fn):
        if not callable(fn) or not isinstance(getattr(fn, "__name__", None), str):
            raise LucidError(f"register_model: expected a function, got {type(fn).__name__}")
        name = fn.__name__
        if name in self._factories:
            other = self._factories[name]
            raise LucidError(f"register_model: a model named {name!r} is already registered "
                             f"(by {getattr(other, '__module__', '?')}.{getattr(other, '__qualname__', name)})")
        self._factories[name] = fn
        return fn

    def unregister(self, name):
        self.get(name)
        del self._factories[name]

    def names(self, pattern=None):
        names = sorted(self._factories)
        return names if pattern is None else [n for n in names if fnmatch.fnmatchcase(n, pattern)]

    def get(self, name):
        if not isinstance(name, str):
            raise LucidError(f"model names are strings, got {type(name).__name__}")
        fn = self._factories.get(name)
        if fn is None:
            close = difflib.get_close_matches(name, list(self._factories), n=5, cutoff=0.5)
            hint = (f"; did you mean {', '.join(repr(c) for c in close)}?" if close
                    else f"; {len(self._factories)} models are registered (lucid.models.list_models())")
            raise LucidError(f"unknown model {name!r}{hint}")
        return fn


_registry = ModelRegistry()


def register_model(fn):
    """Decorator: register `fn` under `fn.__name__` (names are unique) and return it unchanged."""
    return _registry.register(fn)


def unregister_model(name):
    """Remove a registered model (mostly for tests and interactive sessions)."""
    _registry.unregister(name)


def list_models(pattern=None):
    """Sorted names of the registered models, optionally filtered by a glob (`"resnet*"`)."""
    return _registry.names(pattern)


def is_model(name):
    return isinstance(name, str) and name in _registry


def get_model(name):
    """The factory registered under `name` (LucidError with close matches if unknown)."""
    return _registry.get(name)


def create_model(name, **kwargs):
    """Build the model registered under `name`, passing `kwargs` to its factory."""
    return _registry.get(name)(**kwargs)


@contextlib.contextmanager
def isolated_registry():
    """Within the block, an empty registry replaces the real one (restored on exit)."""
    global _registry
    saved, _registry = _registry, ModelRegistry()
    try:
        yield _registry
    finally:
        _registry = saved
