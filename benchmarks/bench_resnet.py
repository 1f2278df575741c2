"""Where ResNet-50's time goes: every kernel of the compiled graph timed alone.

(For the kernels' times inside the whole program, see `lucid.compile(m).profile(x)` and
benchmarks/bench_scaling.py.)

    python benchmarks/bench_resnet.py [--batch 1] [--threads 2] [--top 25] [--runs 5] [--min]
    python benchmarks/bench_resnet.py --threads 1 --cpu      # steady on a shared machine

Compiles ResNet-50 (eval, 224x224), then compiles each kernel of the optimised graph (a
fused function or single op, exactly as the whole program's entry calls it) as its own
native program and times it on random inputs: median of `runs` calls after a warm-up.
Kernels with the same IR run once per distinct text and are counted with their number
of uses. Prints the sum of the kernel times (it should be close to the whole program's
time, which is printed too), the share of gemm-anchored kernels and the others, and the
slowest kernels with their GFLOP/s; with torch installed, each anchored convolution is
also timed in torch (conv2d alone, same threads) for comparison. On a shared machine,
`--threads 1 --cpu` times CPU time instead of wall time: steady under other load.
"""
import argparse
import collections
import time

import numpy as np

import lucid
import lucid.codegen
from lucid.codegen import anchors, profile
from lucid.codegen.program import NativeProgram, kernels_of


CLOCK = time.perf_counter
STAT = np.median


def median_ms(fn, runs, warmup=1):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(runs):
        t0 = CLOCK()
        fn()
        ts.append(CLOCK() - t0)
    return 1000 * float(STAT(ts))


def _direct_call(prog, ins):
    """The program's native entry with preallocated outputs: what the kernel costs inside
    the whole graph (`run` would allocate, and page-fault, a fresh output every call)."""
    prog.run(ins, {})  # checks the inputs once
    outs = [np.empty(o.type.shape, o.type.dtype.np) for o in prog.graph.outputs]
    table = lambda arrays: np.array([a.ctypes.data for a in arrays] or [0], dtype=np.uintp)
    tin, tout, tpar = table(ins), table(outs), table([])
    keep = (ins, outs)

    def call():
        prog._entry(tin.ctypes.data, tout.ctypes.data, tpar.ctypes.data, prog._arena_ptr, prog._scratch_ptr)
        return keep

    return call


def flops_of(head):
    """Multiply-adds x 2 of an anchored conv2d / matmul."""
    if head.op == "conv2d":
        n, o, oh, ow = head.type.shape
        _, c, kh, kw = head.inputs[1].type.shape
        return 2 * n * o * oh * ow * c * kh * kw
    if head.op == "matmul":
        m, k = head.inputs[0].type.shape[-2:]
        return 2 * int(np.prod(head.type.shape)) * k
    return 0


def describe(fn):
    """(label, anchored head or None) of a kernel (labels: lucid.codegen.profile)."""
    return profile.describe(fn), anchors.anchor_of(fn)


def torch_conv_ms(torch, head, runs):
    x = torch.randn(*head.inputs[0].type.shape)
    w = torch.randn(*head.inputs[1].type.shape)
    a = head.attrs
    with torch.no_grad():
        return median_ms(lambda: torch.nn.functional.conv2d(x, w, None, a["stride"], a["padding"], a["dilation"]),
                         runs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--cpu", action="store_true",
                    help="with --threads 1: time the calling thread's CPU time (steady on a shared machine)")
    ap.add_argument("--min", action="store_true",
                    help="report the fastest run instead of the median (what a quiet machine would show)")
    args = ap.parse_args()
    if args.min:
        global STAT
        STAT = np.min
    if args.cpu:
        if args.threads != 1:
            ap.error("--cpu needs --threads 1")
        global CLOCK
        CLOCK = time.thread_time
    if args.threads:
        lucid.codegen.set_num_threads(args.threads)
    torch = None
    if not args.no_torch:
        try:
            import torch
            torch.set_num_threads(lucid.codegen.get_num_threads())
        except ImportError:
            torch = None
    lucid.random.seed(0)
    model = lucid.models.resnet_50().eval()
    x = lucid.random.randn(args.batch, 3, 224, 224)
    compiled = lucid.compile(model)
    compiled(x)
    whole = median_ms(lambda: compiled(x), args.runs)
    graph = compiled.builds[-1].graph
    uses = collections.Counter()
    first = {}
    for node, fn, _ in kernels_of(graph):
        key = str(lucid.ir.graph.Graph("k", fn.inputs, fn.nodes, fn.outputs))
        uses[key] += 1
        first.setdefault(key, fn)
    rng = np.random.default_rng(0)
    rows = []
    for key, fn in first.items():
        prog = NativeProgram(lucid.ir.graph.Graph(fn.name, fn.inputs, fn.nodes, fn.outputs), use_cache=False)
        ins = [rng.standard_normal(i.type.shape).astype(i.type.dtype.np) for i in fn.inputs]
        ms = median_ms(_direct_call(prog, ins), args.runs)
        label, head = describe(fn)
        tms = torch_conv_ms(torch, head, args.runs) if torch is not None and head is not None \
            and head.op == "conv2d" else None
        rows.append((ms * uses[key], ms, uses[key], label, head, tms))
    total = sum(r[0] for r in rows)
    gemm = sum(r[0] for r in rows if r[4] is not None)
    print(f"ResNet-50 batch {args.batch}, threads {lucid.codegen.get_num_threads()}: whole program {whole:.1f} ms; "
          f"sum of kernels alone {total:.1f} ms ({len(rows)} distinct kernels)")
    print(f"  gemm-anchored kernels {gemm:.1f} ms, others {total - gemm:.1f} ms")
    tsum = sum(r[5] * r[2] for r in rows if r[5] is not None)
    if tsum:
        print(f"  torch conv2d alone over the same convs: {tsum:.1f} ms")
    print(f"  {'total ms':>9} {'each':>7} {'uses':>4} {'GFLOP/s':>8} {'torch':>7}  kernel")
    for tot, ms, n, label, head, tms in sorted(rows, key=lambda r: -r[0])[:args.top]:
        gf = flops_of(head) / ms / 1e6 if head is not None else 0
        ts = f"{tms:7.2f}" if tms is not None else "       "
        print(f"  {tot:9.2f} {ms:7.2f} {n:4d} {gf:8.1f} {ts}  {label}")


if __name__ == "__main__":
    main()
