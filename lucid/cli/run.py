"""`lucid run DIR [--input FILE.npy] [--repeat N] [--threads N]`: run an exported artifact
(with `lucid.load_artifact`: no tracing, no compiling) on saved arrays or on random input,
and print the output shapes and the median time per run.
"""
import os
import time

import numpy as np

from ._common import describe, UsageError, fmt_time, median, positive_int, random_input, shape_text, time_calls


def add_parser(sub):
    p = sub.add_parser("run", help="run an artifact folder and time it",
                       description=describe(__doc__),
                       allow_abbrev=False)
    p.add_argument("dir", metavar="DIR", help="an artifact folder written by 'lucid compile' or lucid.export")
    p.add_argument("--input", action="append", metavar="FILE.npy",
                   help="an input array saved with numpy.save (repeat once per input); "
                        "default: random values of the artifact's input shapes")
    p.add_argument("--repeat", type=positive_int, default=10, help="timed runs (default 10)")
    p.add_argument("--threads", type=positive_int, help="native threads (default: LUCID_NUM_THREADS or all cores)")
    p.add_argument("--save", metavar="FILE.npz", help="save the outputs to this file (as output_0, output_1, ... "
                        "or output_<key> for a dict)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random input (default 0)")
    p.set_defaults(run=run)


def load_inputs(files, specs, seed):
    if not files:
        rng = np.random.default_rng(seed)
        return [random_input(shape, dtype, rng) for shape, dtype in specs]
    if len(files) != len(specs):
        raise UsageError(f"--input: the artifact takes {len(specs)} inputs, {len(files)} files given")
    arrays = []
    for name in files:
        if not os.path.isfile(name):
            raise UsageError(f"--input: no such file {name!r}")
        try:
            arrays.append(np.load(name, allow_pickle=False))
        except (OSError, ValueError) as err:
            raise UsageError(f"--input: cannot read {name!r} as a .npy array ({err})") from None
    return arrays


def flatten_outputs(result, name=""):
    """[(name, array)] of a model's result: a tensor, or tuples/lists/dicts of them
    ("0", "1", ... for a tuple; "boxes", "0.scores", ... for nested ones)."""
    if isinstance(result, dict):
        items = [(str(k), v) for k, v in result.items()]
    elif isinstance(result, (tuple, list)):
        items = [(str(k), v) for k, v in enumerate(result)]
    else:
        return [(name or "0", result.numpy() if hasattr(result, "numpy") else np.asarray(result))]
    return [pair for key, value in items for pair in flatten_outputs(value, f"{name}.{key}" if name else key)]


def run(args):
    import lucid

    if not os.path.isdir(args.dir):
        raise UsageError(f"no such artifact folder: {args.dir!r}")
    t0 = time.perf_counter()
    artifact = lucid.load_artifact(args.dir)
    load_time = time.perf_counter() - t0
    if args.threads is not None:
        artifact.set_num_threads(args.threads)
    inputs = load_inputs(args.input, artifact.input_specs, args.seed)
    t0 = time.perf_counter()
    outputs = flatten_outputs(artifact(*inputs))
    first = time.perf_counter() - t0
    times = time_calls(lambda: artifact(*inputs), args.repeat, warmup=0)

    name = artifact.manifest.get("name") if isinstance(artifact.manifest, dict) else None
    print(f"artifact {args.dir}" + (f" ({name})" if name else ""))
    for k, x in enumerate(inputs):
        print(f"  input  {k}: {x.dtype}[{shape_text(x.shape)}]")
    for key, arr in outputs:
        print(f"  output {key}: {arr.dtype}[{shape_text(arr.shape)}]")
    threads = getattr(artifact, "num_threads", None)
    print(f"load {fmt_time(load_time)}, first run {fmt_time(first)}, "
          f"median of {args.repeat} runs {fmt_time(median(times))} (min {fmt_time(min(times))})"
          + (f", {threads} thread{'s' if threads != 1 else ''}" if threads else ""))
    if args.save:
        np.savez(args.save, **{f"output_{key}": arr for key, arr in outputs})
        print(f"outputs saved to {args.save}")
    return 0
