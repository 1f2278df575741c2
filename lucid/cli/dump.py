"""`lucid dump MODEL --input SHAPE --out DIR [--format txt,dot,svg,html]`: trace a registered
model and write its graph before and after every optimisation pass (lucid's
DumpInstrument, as `lucid.compile(debug_dir=...)` does), with summary.txt/.json timing
each pass and counting its ops. No native code is built.
"""
import os
import time

from ..ir.passes.manager import Instrument
from ._common import describe, UsageError
from .compile import add_model_arguments, prepare

FORMATS = ("txt", "dot", "svg", "html")


def add_parser(sub):
    p = sub.add_parser("dump", help="write the graph before and after every pass (text, DOT/SVG, HTML)",
                       description=describe(__doc__),
                       epilog="Unknown --options after MODEL are passed to the model.",
                       allow_abbrev=False)
    add_model_arguments(p, out_required=True)
    p.add_argument("--format", default="txt,dot,html",
                   help="comma-separated formats among txt, dot, svg, html (default txt,dot,html; "
                        ".svg is added for small graphs when Graphviz is installed)")
    p.add_argument("--opt-level", type=int, default=2, choices=(0, 1, 2), help="optimisation level (default 2)")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.set_defaults(run=run)


def parse_formats(text):
    formats = [f.strip().lstrip(".").lower() for f in text.split(",") if f.strip()]
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise UsageError(f"--format: unknown format {bad[0] if bad else text!r} (choose from {', '.join(FORMATS)})")
    return formats


def run(args):
    from ..ir.passes.dumping import DumpInstrument
    from ..ir.passes.manager import PassManager, VerifyInstrument
    from ..ir.passes.pipelines import pipeline
    from ..ir.trace import trace
    from ..progress import Progress

    formats = parse_formats(args.format)
    dumper = DumpInstrument(args.out, formats=formats)
    if args.format != "txt,dot,html":
        dumper.auto_svg = False  # formats asked for explicitly: exactly those
    passes = pipeline(args.opt_level)
    with Progress(f"dump {args.model}", enabled=not args.quiet) as progress:
        model, inputs, _ = prepare(args, progress)
        progress.update("trace", 0.0)
        t0 = time.perf_counter()
        graph = trace(model, *inputs)
        dumper.add_phase("trace", time.perf_counter() - t0)
        PassManager(passes, [VerifyInstrument(), dumper, PassProgress(progress, len(passes))]).run(graph)
        progress.close(f"{len(dumper.files)} files written")
    print(f"wrote {len(dumper.files)} graph files and summary.txt to {os.fspath(args.out)}")
    print(dumper.summary_text(), end="")
    return 0


class PassProgress(Instrument):
    """A pass-manager instrument that reports each pass to a Progress."""

    def __init__(self, progress, count):
        self.progress, self.count = progress, max(count, 1)

    def before_pass(self, index, pass_, graph):
        self.progress.update(pass_.name, 0.05 + 0.95 * index / self.count)

    def after_pipeline(self, graph):
        self.progress.update("done", 1.0)
