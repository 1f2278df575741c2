"""How fast the numpy reference of conv2d is on a common ResNet layer (the eager path).

    python benchmarks/bench_conv_reference.py

x[1,64,56,56] * w[64,64,3,3]: the reference reduces to one im2col copy and one matmul,
so it is timed against that bare matmul in the same run (medians of 7)."""
import time

import numpy as np

from lucid.ops import nn as N


def median_ms(fn, n=7):
    fn()
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return 1000 * float(np.median(ts))


def main():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 64, 56, 56)).astype(np.float32)
    w = rng.normal(size=(64, 64, 3, 3)).astype(np.float32)
    attrs = dict(stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1)
    a, b = w.reshape(64, -1), rng.normal(size=(576, 56 * 56)).astype(np.float32)
    conv = median_ms(lambda: N._conv2d_ref(x, w, **attrs))
    mm = median_ms(lambda: a @ b)
    print(f"conv2d reference {conv:.1f} ms, the matmul it reduces to {mm:.1f} ms, ratio {conv / mm:.2f}")


if __name__ == "__main__":
    main()
