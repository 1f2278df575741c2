"""`lucid models [PATTERN]`: the registered models with their parameter counts.

Building a model only to count its parameters draws every weight at random (about 1.5 s
for resnet_152), so the count comes from the cheapest source that knows it:

1. the factory's `parameter_count` attribute (an int, or a function of no arguments);
2. the count its docstring states for the default arguments ("60,192,808 parameters");
3. building the model with default arguments and counting (`--exact` always does this).
"""
import re

from ._common import describe, UsageError, fmt_bytes

_DOC_COUNT = re.compile(r"(\d{1,3}(?:,\d{3})+|\d+) parameters")


def add_parser(sub):
    p = sub.add_parser("models", help="list the registered models and their parameter counts",
                       description=describe(__doc__), allow_abbrev=False)
    p.add_argument("pattern", nargs="?", metavar="PATTERN",
                   help="a glob on the names ('resnet*'); a plain word matches names containing it")
    p.add_argument("--exact", action="store_true",
                   help="count by building every model (slower) instead of trusting documented counts")
    p.set_defaults(run=run)


def documented_count(factory):
    """The parameter count `factory` documents for its default arguments, or None."""
    count = getattr(factory, "parameter_count", None)
    if callable(count):
        count = count()
    if isinstance(count, int) and not isinstance(count, bool):
        return count
    match = _DOC_COUNT.search(factory.__doc__ or "")
    return int(match.group(1).replace(",", "")) if match else None


def built_count(factory):
    return factory().parameter_size


def summary(factory):
    """The docstring's first words, up to a colon, semicolon or full stop ('ResNet-152')."""
    doc = (factory.__doc__ or "").strip().split("\n")[0]
    return re.split(r"[:;.]( |$)", doc)[0].strip()


def run(args):
    from ..models import get_model, list_models

    pattern = args.pattern
    if pattern and not any(ch in pattern for ch in "*?["):
        pattern = f"*{pattern}*"
    names = list_models(pattern)
    if not names:
        known = list_models()
        raise UsageError(f"no registered model matches {args.pattern!r}"
                         + (f" ({len(known)} models: {', '.join(known[:8])}"
                            + (", ..." if len(known) > 8 else "") + ")" if known else
                            " (no models are registered)"))
    rows = []
    for name in names:
        factory = get_model(name)
        count = None if args.exact else documented_count(factory)
        if count is None:
            count = built_count(factory)
        rows.append((name, f"{count:,}", fmt_bytes(4 * count), summary(factory)))
    header = ("model", "parameters", "float32", "")
    widths = [max(len(r[k]) for r in rows + [header]) for k in range(3)]
    print(f"{header[0]:<{widths[0]}}  {header[1]:>{widths[1]}}  {header[2]:>{widths[2]}}")
    for name, count, size, text in rows:
        print(f"{name:<{widths[0]}}  {count:>{widths[1]}}  {size:>{widths[2]}}  {text}".rstrip())
    return 0
