"""What the commands share: argument parsing (shapes, dtypes, model keyword arguments),
building a registered model, random inputs, timing and number formatting.

Bad arguments raise `UsageError` (exit status 2); failures of the work itself are lucid
errors (exit status 1). `lucid.cli.main` turns both into one line on stderr.
"""
import difflib
import inspect
import re
import statistics
import textwrap
import time

import numpy as np

from ..errors import LucidError

DEFAULT_INPUT = "1x3x224x224"


class UsageError(Exception):
    """A command line that cannot be right: exit status 2, one line on stderr."""


# ---- shapes and dtypes ------------------------------------------------------------------------

def describe(doc):
    """A command's --help description: its module docstring without the leading usage."""
    first, _, rest = re.sub(r"^`[^`]*`:\s*", "", doc.strip()).partition("\n\n")
    first = textwrap.fill(" ".join(first.split()), 88)  # the usage prefix is gone: reflow
    return first[:1].upper() + first[1:] + ("\n\n" + rest if rest else "")


def parse_dtype(name, what="--dtype"):
    from ..dtypes import as_dtype

    try:
        return as_dtype(name)
    except LucidError:
        from ..dtypes import ALL

        raise UsageError(f"{what}: unknown dtype {name!r} (one of {', '.join(d.name for d in ALL)})") from None


def parse_shape(text, default_dtype="float32"):
    """'1x3x224x224' or '1x3x224x224:int64' -> ((1, 3, 224, 224), DType)."""
    shape_text, _, dtype_text = str(text).partition(":")
    dims = shape_text.strip().lower().split("x")
    if not all(re.fullmatch(r"\d+", d.strip()) for d in dims):
        raise UsageError(f"--input: malformed shape {text!r} (expected sizes joined by 'x', "
                         f"as in {DEFAULT_INPUT}, optionally ':dtype')")
    shape = tuple(int(d) for d in dims)
    if any(d == 0 for d in shape):
        raise UsageError(f"--input: shape {text!r} has a zero-sized dimension")
    return shape, parse_dtype(dtype_text or default_dtype, "--input" if dtype_text else "--dtype")


def input_specs(shapes, dtype):
    """The --input values (a list, possibly empty) -> [(shape, DType)], default 1x3x224x224."""
    return [parse_shape(s, dtype) for s in (shapes or [DEFAULT_INPUT])]


def random_input(shape, dtype, rng):
    """An array of `shape` and `dtype` with values a model accepts (normal floats, small ints)."""
    np_dtype = np.dtype(getattr(dtype, "np", dtype))
    if np_dtype.kind == "f":
        return rng.standard_normal(shape).astype(np_dtype)
    if np_dtype.kind == "b":
        return rng.random(shape) < 0.5
    return rng.integers(0, 10, size=shape).astype(np_dtype)


def shape_text(shape):
    return "x".join(str(d) for d in shape) if len(shape) else "scalar"


# ---- model keyword arguments ------------------------------------------------------------------

def parse_value(text):
    """'10' -> 10, '0.5' -> 0.5, 'true'/'false' -> bool, 'none' -> None, '1,2' -> (1, 2), else str."""
    if "," in text:
        return tuple(parse_value(part) for part in text.split(",") if part != "")
    low = text.lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if low == "none":
        return None
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def parse_model_kwargs(words):
    """['--num-classes', '10', '--zero-init-residual', '--no-bias', '--x=1'] ->
    {'num_classes': 10, 'zero_init_residual': True, 'bias': False, 'x': 1}."""
    kwargs = {}
    k = 0
    while k < len(words):
        word = words[k]
        if not word.startswith("--") or len(word) == 2:
            raise UsageError(f"unexpected argument {word!r}")
        key, eq, value = word[2:].partition("=")
        if not eq:
            if k + 1 < len(words) and not _is_option(words[k + 1]):
                value = words[k + 1]
                k += 1
            elif key.startswith("no-"):
                key, value = key[3:], "false"
            else:
                value = "true"
        name = key.replace("-", "_")
        if not name.isidentifier():
            raise UsageError(f"malformed model argument {word!r}")
        kwargs[name] = parse_value(value)
        k += 1
    return kwargs


def _is_option(word):
    return word.startswith("--") or (word.startswith("-") and not re.fullmatch(r"-[\d.]+(e-?\d+)?", word))


def _flag(name):
    return "--" + name.replace("_", "-")


def model_factory(name, kwargs=None):
    """The factory of the registered model `name`, refusing an unknown name or a keyword
    argument its signature does not take with a UsageError (close names suggested)."""
    from ..models import get_model

    try:
        factory = get_model(name)
    except LucidError as err:
        raise UsageError(str(err).split(" (at ")[0]) from None
    accepted = _accepted_kwargs(factory)
    if accepted is not None:
        for key in kwargs or {}:
            if key not in accepted:
                raise UsageError(_unknown_kwarg(name, key, accepted))
    return factory


def build_model(name, kwargs=None):
    """Build the registered model `name` with `kwargs` (see model_factory; a factory that
    takes **kwargs can only refuse an argument when called)."""
    kwargs = dict(kwargs or {})
    factory = model_factory(name, kwargs)
    try:
        return factory(**kwargs)
    except TypeError as err:
        match = re.search(r"unexpected keyword argument '(\w+)'", str(err))
        if match is None:
            raise
        known = _accepted_kwargs(factory, deep=True) or []
        raise UsageError(_unknown_kwarg(name, match.group(1), known)) from None


def _accepted_kwargs(factory, deep=False):
    """Keyword names `factory` takes; None when it takes **kwargs (unless `deep`, where the
    names of its explicit parameters are returned anyway)."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return None
    names = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if not deep and any(p.kind == p.VAR_KEYWORD for p in params):
        return None
    return names


def _unknown_kwarg(model, key, known):
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(_flag(c) for c in close)}?" if close else (
        f" (it takes {', '.join(_flag(k) for k in known)})" if known else "")
    return f"{model}: unknown model argument {_flag(key)}{hint}"


# ---- timing and numbers -----------------------------------------------------------------------

def time_calls(fn, repeat, warmup=1, progress=None, stage=None):
    """Seconds taken by each of `repeat` calls of `fn()`, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for k in range(repeat):
        if progress is not None:
            progress.update(f"{stage} ({repeat} runs)" if stage else None, detail=f"run {k + 1}")
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def median(times):
    return statistics.median(times)


def fmt_time(seconds):
    if seconds >= 1.0:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} us"


def fmt_bytes(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024.0


def positive_int(text):
    """argparse type: an int >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        import argparse

        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value
