"""`lucid bench MODEL [--input SHAPE] [--repeat N]`: time a registered model run eagerly,
compiled with `lucid.compile`, and in PyTorch when torch and the model's torch twin
(torchvision's ResNets and Faster R-CNN) can be imported, and print the median time of
each with the ratios between them. The first compiled call (the build) is timed apart.
"""
import inspect
import time

import numpy as np

from ._common import (UsageError, describe, fmt_time, median, model_factory, parse_model_kwargs, positive_int,
                      shape_text, time_calls)
from .compile import add_model_arguments, prepare

BACKENDS = ("eager", "compiled", "torch")

# lucid model -> its torchvision twin (a function in torchvision.models or .detection)
TORCH_TWINS = {
    "resnet_18": "resnet18", "resnet_34": "resnet34", "resnet_50": "resnet50",
    "resnet_101": "resnet101", "resnet_152": "resnet152",
    "faster_rcnn_resnet_50_fpn": "detection.fasterrcnn_resnet50_fpn",
}


def add_parser(sub):
    p = sub.add_parser("bench", help="time eager against compiled (and torch) and print medians and ratios",
                       description=describe(__doc__),
                       epilog="Unknown --options after MODEL are passed to the model.",
                       allow_abbrev=False)
    add_model_arguments(p, out_required=None)
    p.add_argument("--repeat", type=positive_int, default=10, help="timed runs per backend (default 10)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs before timing (default 1)")
    p.add_argument("--threads", type=positive_int, help="threads for compiled code and torch")
    p.add_argument("--backends", default=",".join(BACKENDS),
                   help="comma-separated subset of eager, compiled, torch (default: all available)")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.set_defaults(run=run)


def torch_twin(name, kwargs, shape, threads):
    """(torch module in eval mode, function from a torch batch to its arguments), or
    (None, why torch is skipped). The twin gets lucid's class count (the factory's default
    unless --num-classes is given); the detector gets lucid's image size (torchvision would
    resize to 800 pixels) and a list of images."""
    twin = TORCH_TWINS.get(name)
    if twin is None:
        return None, f"no torch equivalent of {name} is known"
    if set(kwargs) - {"num_classes"}:
        return None, "model arguments other than --num-classes have no torch equivalent"
    try:
        import torchvision  # first: without it torch (slow to import) is not needed
        import torch
    except ImportError as err:
        return None, f"{err.name or 'torch'} is not importable"
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    default = inspect.signature(model_factory(name)).parameters.get("num_classes")
    options = {"weights": None,
               "num_classes": kwargs.get("num_classes", getattr(default, "default", 1000))}
    if twin.startswith("detection."):
        options.update(weights_backbone=None, min_size=min(shape[-2:]), max_size=max(shape[-2:]))
        module = torchvision.models.detection
        adapt = lambda x: (list(x),)  # noqa: E731
    else:
        module = torchvision.models
        adapt = lambda x: (x,)  # noqa: E731
    return getattr(module, twin.split(".")[-1])(**options).eval(), adapt


def run(args):
    import lucid
    from ..progress import Progress

    wanted = [b.strip() for b in args.backends.split(",") if b.strip()]
    bad = [b for b in wanted if b not in BACKENDS]
    if bad or not wanted:
        raise UsageError(f"--backends: unknown backend {bad[0] if bad else args.backends!r} "
                         f"(choose from {', '.join(BACKENDS)})")
    kwargs = parse_model_kwargs(args.model_kwargs)
    results, notes = {}, []
    with Progress(f"bench {args.model}", enabled=not args.quiet) as progress:
        model, inputs, specs = prepare(args, progress)
        if "eager" in wanted:
            tensors = [lucid.Tensor(x) for x in inputs]
            with lucid.no_grad():
                results["eager"] = time_calls(lambda: model(*tensors), args.repeat, args.warmup,
                                              progress, "eager")
        if "compiled" in wanted:
            compiled = lucid.compile(model, threads=args.threads)
            progress.update("compile")
            t0 = time.perf_counter()
            compiled(*inputs)
            notes.append(f"compile (first call): {fmt_time(time.perf_counter() - t0)}")
            results["compiled"] = time_calls(lambda: compiled(*inputs), args.repeat, args.warmup,
                                             progress, "compiled")
        if "torch" in wanted:
            progress.update("torch")
            twin, adapt = torch_twin(args.model, kwargs, specs[0][0], args.threads)
            if twin is None:
                notes.append(f"torch skipped: {adapt}")
            else:
                import torch

                xs = adapt(*[torch.from_numpy(np.ascontiguousarray(x)) for x in inputs])
                with torch.inference_mode():
                    results["torch"] = time_calls(lambda: twin(*xs), args.repeat, args.warmup,
                                                  progress, "torch")
    described = ", ".join(f"{dt.name}[{shape_text(s)}]" for s, dt in specs)
    print(f"{args.model} on {described}, median of {args.repeat} runs")
    print(format_table({k: median(v) for k, v in results.items()}, {k: min(v) for k, v in results.items()}))
    for note in notes:
        print(note)
    return 0


def format_table(medians, minimums):
    """Backends in rows; median, min and 'x faster than' each backend in columns."""
    names = list(medians)
    header = ["backend", "median", "min"] + [f"vs {n}" for n in names]
    rows = [[n, fmt_time(medians[n]), fmt_time(minimums[n])]
            + [f"{medians[other] / medians[n]:.2f}x" for other in names] for n in names]
    widths = [max(len(r[k]) for r in rows + [header]) for k in range(len(header))]
    lines = ["  ".join(c.ljust(w) if k == 0 else c.rjust(w) for k, (c, w) in enumerate(zip(r, widths)))
             for r in [header] + rows]
    return "\n".join(lines) + ("\n(vs X: how many times faster than X)" if len(names) > 1 else "")
