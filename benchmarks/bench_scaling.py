"""What the second core buys, kernel by kernel, inside the whole ResNet-50 program.

    python benchmarks/bench_scaling.py [--batch 1] [--rounds 4] [--runs 5] [--top 20]

Compiles ResNet-50 (eval, 224x224) for 1 and for 2 threads and profiles both
(`CompiledFunction.profile`: time-stamp counters around each kernel inside the native
call), alternating `rounds` times so that the machine's drift hits both alike. Prints
the whole call's median times and their ratio, then the kernels (summed over identical
steps) ordered by their loss: their 2-thread time less half their 1-thread time, the
milliseconds a perfect split would save.
"""
import argparse

import numpy as np

import lucid


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--top", type=int, default=20)
    args = ap.parse_args()
    lucid.random.seed(0)
    model = lucid.models.resnet_50().eval()
    x = np.random.default_rng(0).standard_normal((args.batch, 3, 224, 224)).astype(np.float32)
    compiled = {nt: lucid.compile(model, threads=nt) for nt in (1, 2)}
    profiles = {1: [], 2: []}
    for _ in range(args.rounds):
        for nt in (1, 2):
            profiles[nt].append(compiled[nt].profile(x, runs=args.runs))
    total = {nt: float(np.median([p.total_ms for p in profiles[nt]])) for nt in (1, 2)}
    print(f"ResNet-50 batch {args.batch}: 1 thread {total[1]:.1f} ms, 2 threads {total[2]:.1f} ms, "
          f"ratio {total[1] / total[2]:.2f} (medians of {args.rounds} profiles of {args.runs} runs)")
    ms = {}
    for nt in (1, 2):
        for p in profiles[nt]:
            for r in p.by_kernel():
                ms.setdefault((r.kernel, r.calls), {}).setdefault(nt, []).append(r.ms)
    rows = []
    for (kernel, calls), by in ms.items():
        one, two = float(np.median(by[1])), float(np.median(by[2]))
        rows.append((two - one / 2, one, two, calls, kernel))
    rows.sort(key=lambda r: -r[0])
    print(f"  loss vs a perfect split {sum(r[0] for r in rows):.1f} ms")
    print(f"  {'loss':>6} {'1T ms':>7} {'2T ms':>7} {'ratio':>5} {'calls':>5}  kernel")
    for loss, one, two, calls, kernel in rows[:args.top]:
        ratio = f"{one / two:5.2f}" if two > 0 else "    -"
        print(f"  {loss:6.2f} {one:7.2f} {two:7.2f} {ratio} {calls:5d}  {kernel}")


if __name__ == "__main__":
    main()
