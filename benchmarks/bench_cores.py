"""What a second core can give on this machine: the ceiling for "2 threads vs 1".

    PYTHONPATH=. python benchmarks/bench_cores.py [--rounds 7]

Two kernels, JIT-compiled with lucid's own LLVM engine and run from Python threads
(ctypes releases the GIL), first on one thread, then on two at once, alternately for
`rounds` rounds so a change in background load hits both sides:

- fma: twelve independent chains of 8-wide fused multiply-adds in registers, no memory
  traffic: the best case for a compute-bound program (ResNet-50's convolutions are ~90%
  FMA). Each thread's throughput with both cores busy, against one alone, shows the
  clock and the core sharing of the (virtual) machine.
- stream: y = a*x + b over 64 MiB arrays: the best case for a memory-bound kernel (the
  memory bus is shared).

Prints per-thread throughput and the scaling 2 x (time alone) / (time with both busy):
a program that gains less from the second core than these two loops lose nothing to
parallel overhead; the gap to the fma figure is what a compute-bound program can still
win. Nothing is asserted: on a shared machine the figures move from run to run.
"""
import argparse
import ctypes
import os
import threading
import time

import numpy as np

from lucid.codegen.llvm import jit

_FMA_CHAINS = 12

_FMA_IR = """
declare <8 x float> @llvm.fma.v8f32(<8 x float>, <8 x float>, <8 x float>)
define float @bench_cores_fma(i64 %n, float %m0) {
entry:
  %mi = insertelement <8 x float> undef, float %m0, i32 0
  %m = shufflevector <8 x float> %mi, <8 x float> undef, <8 x i32> zeroinitializer
  br label %loop
loop:
  %i = phi i64 [0, %entry], [%i1, %loop]
PHIS
FMAS
  %i1 = add i64 %i, 1
  %c = icmp eq i64 %i1, %n
  br i1 %c, label %done, label %loop
done:
SUMS
  %r = extractelement <8 x float> %s{last}, i32 0
  ret float %r
}

define void @bench_cores_stream(ptr noalias %x, ptr noalias %y, i64 %n) {
entry:
  br label %loop
loop:
  %i = phi i64 [0, %entry], [%i1, %loop]
  %px = getelementptr inbounds float, ptr %x, i64 %i
  %v = load float, ptr %px
  %w = call float @llvm.fma.f32(float %v, float 1.5, float 0.25)
  %py = getelementptr inbounds float, ptr %y, i64 %i
  store float %w, ptr %py
  %i1 = add i64 %i, 1
  %c = icmp eq i64 %i1, %n
  br i1 %c, label %done, label %loop
done:
  ret void
}
declare float @llvm.fma.f32(float, float, float)
"""


def _ir():
    k = _FMA_CHAINS
    phis = "\n".join(f"  %a{j} = phi <8 x float> [zeroinitializer, %entry], [%b{j}, %loop]" for j in range(k))
    fmas = "\n".join(f"  %b{j} = call <8 x float> @llvm.fma.v8f32(<8 x float> %a{j}, <8 x float> %m, "
                     f"<8 x float> %m)" for j in range(k))
    # every chain feeds the result, so none is dead code
    sums = "  %s0 = fadd <8 x float> %b0, zeroinitializer\n" + "\n".join(
        f"  %s{j} = fadd <8 x float> %s{j - 1}, %b{j}" for j in range(1, k))
    return (_FMA_IR.replace("PHIS", phis).replace("FMAS", fmas).replace("SUMS", sums)
            .replace("{last}", str(k - 1)))


def _together(calls):
    """Wall time of running the calls at once, one Python thread each."""
    threads = [threading.Thread(target=c) for c in calls]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


_module = []


def _jit():
    if not _module:
        _module.append(jit(_ir(), "bench_cores"))
    return _module[0]


def fma_round(n_fma=20_000_000):
    """One round of the fma loop: (seconds alone, seconds with both cores busy). Other
    benchmarks interleave it with their own rounds (bench_native's 2 threads vs 1) to
    quote the machine's ceiling under the same load."""
    fma = _jit().cfunc("bench_cores_fma", ctypes.c_float, ctypes.c_int64, ctypes.c_float)
    return _together([lambda: fma(n_fma, 0.5)]), _together([lambda: fma(n_fma, 0.5)] * 2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    module = _jit()
    fma = module.cfunc("bench_cores_fma", ctypes.c_float, ctypes.c_int64, ctypes.c_float)
    stream = module.cfunc("bench_cores_stream", None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
    n_fma = 20_000_000  # ~0.1 s of FMAs per call
    n = 1 << 24
    xs = [np.ones(n, np.float32) for _ in range(2)]
    ys = [np.empty(n, np.float32) for _ in range(2)]
    for y in ys:
        y.fill(0)  # touch the pages once, outside the timings
    cases = {
        "fma": (lambda k: (lambda: fma(n_fma, 0.5)), _FMA_CHAINS * n_fma * 16 / 1e9, "GFLOP/s"),
        "stream": (lambda k: (lambda: stream(xs[k].ctypes.data, ys[k].ctypes.data, n)), 8 * n / 1e9, "GB/s"),
    }
    print(f"{os.cpu_count()} cpus; load average {os.getloadavg()[0]:.2f}; {args.rounds} alternating rounds")
    for name, (call, work, unit) in cases.items():
        call(0)()
        one, two = [], []
        for _ in range(args.rounds):
            one.append(_together([call(0)]))
            two.append(_together([call(0), call(1)]))
        t1, t2 = float(np.median(one)), float(np.median(two))
        print(f"  {name:6s} one thread {work / t1:6.1f} {unit}; two threads {work / t2:6.1f} {unit} each "
              f"({2 * work / t2:6.1f} in all) -> 2 threads vs 1: {2 * t1 / t2:.2f}x")
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
