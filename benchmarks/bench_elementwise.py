"""Fused elementwise and row-reduction kernels against numpy, torch and a plain copy.

    PYTHONPATH=. python benchmarks/bench_elementwise.py [--quick] [--threads N] [--repeat R]

Every case is timed in the same run for compiled lucid (`lucid.compile`, called like a
user calls it), numpy, torch (when importable: `pip install torch==2.13.0`, a CPU build)
and a plain copy of the same bytes (`np.copyto` of the largest input into a preallocated
buffer: the memory floor of a kernel that reads its input once and writes its output
once; for a reduction, which writes little, an upper bound of the floor). Each time is
the median of `--repeat` (>= 5) calls after two warm-up calls; ratios are printed as
"x faster than numpy" and "x the time of a copy".

Cases: gelu(x*w + b) over 16M float32 values (the issue's target: >= 5x numpy, <= 2x a
copy), exp/tanh/sigmoid chains, broadcast adds (a row and a column vector), softmax and
layer norm over rows, and a row sum. numpy has no vectorised erf, so its gelu is the tanh
form (its fastest); torch's is the exact erf form. The machine is shared: the load
average is printed before and after, and medians on a loaded machine are noisy.
"""
import argparse
import gc
import math
import os
import time

import numpy as np

import lucid
import lucid.nn.functional as F


def median_ms(fn, repeat, warmup=2, collect=False):
    """Median wall time of `fn()` in ms. collect=True runs the cyclic GC before each call
    (outside the timed region), so result arrays held only by reference cycles are freed
    and the compiled function can reuse its output buffers."""
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeat):
        if collect:
            gc.collect()
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return 1000 * float(np.median(ts))


def load():
    try:
        return "load average %.2f %.2f %.2f" % os.getloadavg()
    except OSError:
        return "load average unknown"


def torch_or_none():
    try:
        import torch
    except ImportError:
        return None
    return torch


class Case:
    def __init__(self, name, lucid_fn, numpy_fn, arrays, torch_fn=None):
        self.name, self.lucid_fn, self.numpy_fn = name, lucid_fn, numpy_fn
        self.arrays, self.torch_fn = arrays, torch_fn


def cases(n, rows, width, rng):
    x = rng.normal(size=n).astype(np.float32)
    w, b = np.float32(1.3), np.float32(-0.2)
    c = np.float32(math.sqrt(2 / math.pi))
    a2 = rng.normal(size=(rows, width)).astype(np.float32)
    row = rng.normal(size=width).astype(np.float32)
    col = rng.normal(size=(rows, 1)).astype(np.float32)
    g = rng.normal(size=width).astype(np.float32)

    def np_softmax(t):
        e = np.exp(t - t.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    def np_layer_norm(t, gamma, beta):
        mu = t.mean(axis=-1, keepdims=True)
        var = ((t - mu) ** 2).mean(axis=-1, keepdims=True)
        return (t - mu) / np.sqrt(var + np.float32(1e-5)) * gamma + beta

    return [
        Case(f"gelu(x*w+b), {n / 2**20:.0f}M", lambda t: F.gelu(t * float(w) + float(b)),
             lambda t: (lambda y: 0.5 * y * (1 + np.tanh(c * (y + np.float32(0.044715) * y * y * y))))(t * w + b),
             [x], lambda torch, t: torch.nn.functional.gelu(t * float(w) + float(b))),
        Case(f"exp(x)*0.5 + tanh(x), {n / 2**20:.0f}M", lambda t: lucid.exp(t) * 0.5 + lucid.tanh(t),
             lambda t: np.exp(t) * np.float32(0.5) + np.tanh(t), [x],
             lambda torch, t: torch.exp(t) * 0.5 + torch.tanh(t)),
        Case(f"x*sigmoid(x) (silu), {n / 2**20:.0f}M", lambda t: F.silu(t),
             lambda t: t / (1 + np.exp(-t)), [x], lambda torch, t: torch.nn.functional.silu(t)),
        Case(f"tanh(sigmoid(x)*2-1), {n / 2**20:.0f}M", lambda t: lucid.tanh(F.sigmoid(t) * 2.0 - 1.0),
             lambda t: np.tanh(2 / (1 + np.exp(-t)) - 1), [x],
             lambda torch, t: torch.tanh(torch.sigmoid(t) * 2 - 1)),
        Case(f"a + row, {rows}x{width}", lambda p, q: p + q, lambda p, q: p + q, [a2, row],
             lambda torch, p, q: p + q),
        Case(f"a + column, {rows}x{width}", lambda p, q: p + q, lambda p, q: p + q, [a2, col],
             lambda torch, p, q: p + q),
        Case(f"softmax rows, {rows}x{width}", lambda t: F.softmax(t, axis=-1), np_softmax, [a2],
             lambda torch, t: torch.softmax(t, -1)),
        Case(f"layer_norm rows, {rows}x{width}", lambda t, gm, bt: F.layer_norm(t, width, gm, bt),
             np_layer_norm, [a2, g, row],
             lambda torch, t, gm, bt: torch.nn.functional.layer_norm(t, (width,), gm, bt)),
        Case(f"sum over rows, {rows}x{width}", lambda t: lucid.sum(t, axis=-1),
             lambda t: t.sum(axis=-1), [a2], lambda torch, t: t.sum(-1)),
    ]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="1M elements, 1024x1024")
    ap.add_argument("--threads", type=int, default=None, help="lucid's native threads (default: all cores)")
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    repeat = max(5, args.repeat)
    n, rows, width = (1 << 20, 1024, 1024) if args.quick else (1 << 24, 4096, 4096)
    torch = torch_or_none()
    if torch is not None and args.threads:
        torch.set_num_threads(args.threads)
    print(f"lucid {lucid.__version__}; numpy {np.__version__}; torch {torch.__version__ if torch else 'not installed'}")
    print(f"{os.cpu_count()} cpus; lucid threads {args.threads or 'default'}; median of {repeat}; {load()}")
    rng = np.random.default_rng(0)
    header = f"{'case':<32} {'lucid':>9} {'reuse':>9} {'numpy':>9} {'torch':>9} {'copy':>8}  vs numpy  vs copy"
    print(header)
    print("-" * len(header))
    for case in cases(n, rows, width, rng):
        f = lucid.compile(case.lucid_fn, threads=args.threads)
        tensors = [lucid.tensor(a) for a in case.arrays]
        got = f(*tensors).data
        want = case.numpy_fn(*case.arrays)
        err = float(np.max(np.abs(got - want) / (1 + np.abs(want))))
        lucid_ms = median_ms(lambda: f(*tensors), repeat)
        reuse_ms = median_ms(lambda: f(*tensors), repeat, collect=True)
        numpy_ms = median_ms(lambda: case.numpy_fn(*case.arrays), repeat)
        torch_ms = float("nan")
        if torch is not None and case.torch_fn is not None:
            tts = [torch.from_numpy(a) for a in case.arrays]
            torch_ms = median_ms(lambda: case.torch_fn(torch, *tts), repeat)
        src = max(case.arrays, key=lambda a: a.size)  # a reduction's floor: reading its input
        dst = np.empty_like(src)
        copy_ms = median_ms(lambda: np.copyto(dst, src), repeat)
        best = min(lucid_ms, reuse_ms)
        print(f"{case.name:<32} {lucid_ms:8.2f}m {reuse_ms:8.2f}m {numpy_ms:8.2f}m {torch_ms:8.2f}m "
              f"{copy_ms:7.2f}m  {numpy_ms / best:7.2f}x {best / copy_ms:7.2f}x   (max rel. diff {err:.1e})")
    print(f"ms per call; 'reuse': lucid with the cyclic GC run between calls (outside the timing), so "
          f"dropped results are reused as output buffers; 'vs' columns use the better lucid time. {load()}")


if __name__ == "__main__":
    main()
