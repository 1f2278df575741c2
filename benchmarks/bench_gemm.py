"""lucid's JIT-compiled float32 gemm against numpy's matmul (OpenBLAS), same thread count.

    python benchmarks/bench_gemm.py [--sizes 512 1024 2048] [--threads 1 2] [--runs 7]

For each square size and thread count: warm-up, then `runs` rounds that time lucid and
numpy alternately (each sample repeats the call until it lasts >= 50 ms, and starts after
a pause that lets the other library's spinning workers fall asleep), so background load
hits both alike; prints the medians in GFLOP/s, their ratio lucid / numpy, the median
of the per-round ratios ("paired": the steadier figure on a busy machine) and the best
sample of each.

numpy's BLAS threads are limited with threadpoolctl when it is installed; otherwise each
thread count runs in a child process started with OPENBLAS_NUM_THREADS / OMP_NUM_THREADS.
Some machines set OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE (older OpenBLAS needed them); they
slow a current numpy, so for a fair comparison run with both unset:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_gemm.py

The kernel numpy runs (OpenBLAS core type) is printed when threadpoolctl is available.
"""
import argparse
import os
import subprocess
import sys
import time

_BLAS_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
# Idle workers of both pools busy-wait for a while after a call (OpenBLAS's for ~2^28
# cycles, ~0.1 s; lucid's for ~80 us) and would steal the core the other library's
# threads need: each sample starts after this pause, when both pools are asleep.
PAUSE = 0.3


def _sample(fn, min_time=0.05):
    """Seconds per call, timing enough calls to last at least `min_time`."""
    reps = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        elapsed = time.perf_counter() - t0
        if elapsed >= min_time:
            return elapsed / reps
        reps = max(2 * reps, int(1.2 * reps * min_time / max(elapsed, 1e-9)))


def _median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


def run(sizes, threads, runs, limit_numpy):
    import numpy as np

    from lucid.codegen import gemm, runtime

    runtime.set_num_threads(threads)
    rng = np.random.default_rng(0)
    for n in sizes:
        a = rng.standard_normal((n, n), dtype=np.float32)
        b = rng.standard_normal((n, n), dtype=np.float32)
        out_l = np.empty((n, n), np.float32)
        out_n = np.empty((n, n), np.float32)
        lucid_fn = lambda: gemm.matmul(a, b, out=out_l)
        numpy_fn = lambda: np.matmul(a, b, out=out_n)
        with limit_numpy(threads):
            for _ in range(2):  # warm-up: JIT, pool start, page faults, caches
                lucid_fn()
                numpy_fn()
            err = float(np.abs(out_l - out_n).max() / max(1.0, float(np.abs(out_n).max())))
            tl, tn = [], []
            for _ in range(runs):
                time.sleep(PAUSE)
                tl.append(_sample(lucid_fn))
                time.sleep(PAUSE)
                tn.append(_sample(numpy_fn))
        flop = 2.0 * n ** 3
        gl, gn = flop / _median(tl) / 1e9, flop / _median(tn) / 1e9
        paired = _median([n_ / l_ for l_, n_ in zip(tl, tn)])
        print(f"n={n:5d} threads={threads}  lucid {gl:6.1f} GFLOP/s  numpy {gn:6.1f} GFLOP/s  "
              f"ratio {gl / gn:4.2f} (paired {paired:4.2f})  best-of: lucid {flop / min(tl) / 1e9:5.1f}, "
              f"numpy {flop / min(tn) / 1e9:5.1f}  rel.err {err:.0e}", flush=True)


def _describe_numpy():
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "numpy BLAS: (install threadpoolctl to see which kernel runs)"
    infos = [f"{i.get('internal_api')} {i.get('version')} core={i.get('architecture')}"
             for i in threadpool_info() if i.get("user_api") == "blas"]
    return "numpy BLAS: " + ("; ".join(infos) or "none found")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--runs", type=int, default=7, help="timed rounds per size (median)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None

    if args.child or threadpool_limits is not None:
        import contextlib

        limit = (lambda t: threadpool_limits(limits=t, user_api="blas")) if threadpool_limits \
            else (lambda t: contextlib.nullcontext())
        if not args.child:
            set_vars = [v for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if v in os.environ]
            if set_vars:
                print(f"note: {', '.join(set_vars)} set: numpy may run a slower kernel "
                      f"(see the docstring)")
            import numpy  # noqa: F401  (load the BLAS so its kernel can be named)

            print(_describe_numpy())
        for t in args.threads if not args.child else args.threads[:1]:
            run(args.sizes, t, args.runs, limit)
        return
    # no threadpoolctl: numpy's thread count is fixed at import, so one child per count
    for t in args.threads:
        env = dict(os.environ, **{v: str(t) for v in _BLAS_ENV})
        subprocess.run([sys.executable, __file__, "--child", "--threads", str(t), "--runs", str(args.runs),
                        "--sizes", *map(str, args.sizes)], env=env, check=True)


if __name__ == "__main__":
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    main()
