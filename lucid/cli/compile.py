"""`lucid compile MODEL --input 1x3x224x224 --out DIR`: export a registered model as an
ahead-of-time artifact (native code, weights, C header, manifest) with `lucid.export`.

Options the command does not know are the model's keyword arguments:
`lucid compile resnet_50 --num-classes 10 --out r50` builds `resnet_50(num_classes=10)`.
"""
import os

import numpy as np

from ._common import (build_model, describe, fmt_bytes, input_specs, model_factory, parse_model_kwargs,
                      random_input, shape_text)


def add_model_arguments(p, out_required):
    """MODEL, --input, --dtype and --out: what compile, dump and bench share."""
    p.add_argument("model", metavar="MODEL", help="a registered model name (see 'lucid models')")
    p.add_argument("--input", action="append", metavar="SHAPE",
                   help="an input shape such as 1x3x224x224 (default), optionally with ':dtype'; "
                        "repeat for a model with several inputs")
    p.add_argument("--dtype", default="float32", help="dtype of the inputs (default float32)")
    if out_required is not None:
        p.add_argument("--out", required=out_required, metavar="DIR", help="the folder to write")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and random inputs (default 0)")
    p.set_defaults(model_kwargs_allowed=True)


def add_parser(sub):
    p = sub.add_parser("compile", help="export a model as an ahead-of-time artifact folder",
                       description=describe(__doc__),
                       epilog="Unknown --options after MODEL are passed to the model.",
                       allow_abbrev=False)
    add_model_arguments(p, out_required=True)
    p.add_argument("--opt-level", type=int, default=2, choices=(0, 1, 2), help="optimisation level (default 2)")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.set_defaults(run=run)


def prepare(args, progress=None):
    """(model in eval mode, example input arrays, specs) from a model command line.
    Building a large model takes seconds: `progress` shows it."""
    import lucid

    kwargs = parse_model_kwargs(args.model_kwargs)
    specs = input_specs(args.input, args.dtype)
    model_factory(args.model, kwargs)  # a bad name or argument: one line, before any progress
    lucid.random.seed(args.seed)
    if progress is not None:
        progress.update("building the model")
    model = build_model(args.model, kwargs)
    if hasattr(model, "eval"):
        model.eval()
    rng = np.random.default_rng(args.seed)
    inputs = [random_input(shape, dtype, rng) for shape, dtype in specs]
    return model, inputs, specs


def run(args):
    import lucid
    from ..progress import Progress

    with Progress(f"compile {args.model}", enabled=not args.quiet) as progress:
        model, inputs, specs = prepare(args, progress)
        example = inputs[0] if len(inputs) == 1 else tuple(inputs)
        described = ", ".join(f"{dt.name}[{shape_text(s)}]" for s, dt in specs)
        path = lucid.export(model, example, args.out, opt_level=args.opt_level, name=args.model,
                            progress=progress)
        progress.close(f"exported for {described}")
    print(f"wrote {path}")
    for name in sorted(os.listdir(path)):
        full = os.path.join(path, name)
        if os.path.isfile(full):
            print(f"  {name:<16} {fmt_bytes(os.path.getsize(full)):>10}")
    return 0
