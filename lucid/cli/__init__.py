"""The `lucid` command line: `lucid models | compile | run | dump | bench`.

`main(argv)` parses the arguments, runs one command and returns the exit status: 0 on
success, 2 for a command line that cannot be right (unknown model or option, malformed
shape, missing file), 1 when the work itself fails (a lucid error, an artifact refused).
Every failure is one line on stderr, never a traceback; `LUCID_DEBUG=1` shows the
traceback too. Each command is a module with `add_parser(subparsers)` and `run(args)`.
"""
import argparse
import os
import re
import sys
import traceback

from ..errors import LucidError
from ._common import UsageError
from . import bench, compile as compile_cmd, dump, models, run as run_cmd

COMMANDS = (models, compile_cmd, run_cmd, dump, bench)


class _Parser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of printing the usage block and exiting,
    and shows the commands' descriptions (their module docstrings) as written."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        raise UsageError(f"{message} (see '{self.prog} --help')")


def build_parser():
    parser = _Parser(prog="lucid", allow_abbrev=False,
                     description="lucid: list, compile, run, inspect and benchmark models.",
                     epilog="Model commands pass unknown --options after MODEL to the model "
                            "(--num-classes 10 -> num_classes=10). LUCID_DEBUG=1 shows tracebacks.")
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"lucid {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv=None):
    """Run the command line `argv` (default: sys.argv[1:]); return the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    outer = _caller_locations()
    debug = os.environ.get("LUCID_DEBUG", "") not in ("", "0")
    parser = build_parser()
    try:
        try:
            args, extra = parser.parse_known_args(argv)
        except SystemExit as done:  # --help, --version
            return done.code or 0
        if args.command is None:
            parser.print_help(sys.stderr)
            return 2
        if extra and not getattr(args, "model_kwargs_allowed", False):
            raise UsageError(f"unrecognized arguments: {' '.join(extra)} "
                             f"(see 'lucid {args.command} --help')")
        args.model_kwargs = extra
        return args.run(args) or 0
    except UsageError as err:
        return _fail(err, 2, debug, outer, prefix="lucid: error: ")
    except BrokenPipeError:  # `lucid models | head`: the reader left; say nothing more
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 1
    except KeyboardInterrupt:
        print("lucid: interrupted", file=sys.stderr)
        return 130
    except LucidError as err:
        return _fail(err, 1, debug, outer, prefix=f"lucid: {type(err).__name__}: ")
    except (OSError, ValueError) as err:
        return _fail(err, 1, debug, outer, prefix=f"lucid: {type(err).__name__}: ")
    except Exception as err:  # a bug in lucid: still one line, with a way to see more
        return _fail(err, 1, debug, outer, prefix=f"lucid: internal error: {type(err).__name__}: ",
                     hint=" (run with LUCID_DEBUG=1 for the traceback)")


def _caller_locations():
    """'file:line' of every frame that called main: lucid errors append the innermost
    frame outside lucid to their message, which from the command line is one of these and
    says nothing to the user, so it is dropped from the printed line."""
    frame, found = sys._getframe(2), set()
    while frame is not None:
        found.add(f"{frame.f_code.co_filename}:{frame.f_lineno}")
        frame = frame.f_back
    return found


def _fail(err, status, debug, outer, prefix, hint=""):
    if debug:
        traceback.print_exception(type(err), err, err.__traceback__, file=sys.stderr)
    text = str(err) if not isinstance(err, OSError) or not err.filename else \
        f"{err.strerror or err}: {err.filename}"
    match = re.search(r" \(at (.+)\)$", text)
    if match and match.group(1) in outer:
        text = text[:match.start()]
    text = " ".join(text.split()) or type(err).__name__  # one line, whatever the message held
    print(f"{prefix}{text}{hint}", file=sys.stderr)
    return status
