"""Where compile time goes: trace, each pass, build, for a few models.

    PYTHONPATH=. python benchmarks/compile_phases.py            # all models
    PYTHONPATH=. python benchmarks/compile_phases.py detector   # titles containing a word

Each model is compiled with `lucid.compile` and called once; the build record of that call
says how long tracing (and, inside it, autodiff), every pass of the pipeline (the inner
passes and rounds of the optimisation fixpoint too) and the build took: LLVM IR emission
in Python, LLVM's optimisation and code generation, and the rest (loading). Timings are
single runs (compilation happens once per signature); the op counts after each pass show
what each pass did. Compiles are cold: the disk cache is a fresh temporary folder unless
LUCID_CACHE_DIR is set. Wall and CPU seconds are both shown: on a busy machine the CPU
figure is the one to compare.
"""
import contextlib
import os
import sys
import tempfile
import time

import numpy as np

import lucid
import lucid.nn as nn
import lucid.nn.functional as F


class Basic(nn.Module):
    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.down is None else self.down(x)))


def resnet18_like(classes=10):
    layers = [nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
              nn.MaxPool2d(3, stride=2, padding=1)]
    cin = 64
    for cout, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
        layers += [Basic(cin, cout, stride), Basic(cout, cout)]
        cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, classes)]
    return nn.Sequential(*layers)


@contextlib.contextmanager
def _timed_autodiff(record):
    """Add the time spent building gradient graphs (autodiff.backprop) to record[0]."""
    from lucid.ir import autodiff

    inner = autodiff.backprop

    def timed(*a, **kw):
        t0 = time.perf_counter()
        try:
            return inner(*a, **kw)
        finally:
            record[0] += time.perf_counter() - t0

    autodiff.backprop = timed
    try:
        yield
    finally:
        autodiff.backprop = inner


@contextlib.contextmanager
def _timed_fixpoints(found):
    """Collect the fixpoint passes of the pipelines `lucid.compile` builds meanwhile."""
    from lucid.ir.passes import pipelines

    inner = pipelines.pipeline

    def recording(*a, **kw):
        passes = inner(*a, **kw)
        found.extend(p for p in passes if hasattr(p, "last_rounds"))
        return passes

    import lucid.compiler as compiler_module

    compiler_module.pipeline = recording
    try:
        yield
    finally:
        compiler_module.pipeline = inner


def report(title, compiled, *args):
    autodiff_time, fixpoints = [0.0], []
    with _timed_autodiff(autodiff_time), _timed_fixpoints(fixpoints):
        t0, c0 = time.perf_counter(), time.process_time()
        compiled(*args)
        total, cpu = time.perf_counter() - t0, time.process_time() - c0
    build = compiled.builds[-1]
    print(f"\n{title}: first call {total:.2f} s wall, {cpu:.2f} s CPU")
    ops_in = len(build.traced.compute_nodes)
    print(f"  {'trace':<18} {1000 * build.phases['trace']:8.1f} ms   {ops_in} ops")
    if autodiff_time[0]:
        print(f"    {'of which autodiff':<16} {1000 * autodiff_time[0]:8.1f} ms")
    for name, sec, ops in build.passes:
        print(f"  pass {name:<13} {1000 * sec:8.1f} ms   -> {ops} ops")
        for fix in fixpoints:
            if fix.name == name and fix.last_times:
                inner = ", ".join(f"{k} {1000 * v:.0f} ms" for k, v in fix.last_times.items())
                print(f"    {fix.last_rounds} rounds: {inner}")
    build_phase = build.phases.get("build")
    print(f"  {'build':<18} " + (f"{1000 * build_phase:8.1f} ms" if build_phase is not None
                                 else "     n/a   (no native code yet: the interpreter runs the graph)"))
    program = build.program
    if program is not None and getattr(program, "timings", None):
        timings = program.timings
        for phase, what in (("emit", "LLVM IR (Python)"), ("llvm", "optimise+codegen"), ("load", "from cache")):
            if phase in timings:
                print(f"    {phase:<16} {1000 * timings[phase]:8.1f} ms   {what}")
        rest = build_phase - sum(timings.values())
        print(f"    {'other':<16} {1000 * rest:8.1f} ms   (shared gemm, runtime, tables)")
        if program.kernel_count is not None:
            print(f"    {program.kernel_count} distinct kernels for {len(build.graph.compute_nodes)} steps")
    plan = build.graph.meta.get("memory")
    if plan is not None:
        print("  " + plan.summary().replace("\n", "\n  "))
    t0 = time.perf_counter()
    compiled(*args)
    print(f"  second call {1000 * (time.perf_counter() - t0):.0f} ms")


def detector(train):
    """Faster R-CNN ResNet-50 FPN at small settings: 2 images of 64x64; inference, or one
    training step (losses, backward, SGD with momentum) as one compiled graph."""
    from lucid.models import faster_rcnn_resnet_50_fpn

    model = faster_rcnn_resnet_50_fpn(num_classes=4, backbone_num_classes=4, pre_nms_top_n=50,
                                      post_nms_top_n=16, rpn_batch_size_per_image=32,
                                      box_batch_size_per_image=16, hidden_dim=64)
    x = lucid.random.randn(2, 3, 64, 64)
    if not train:
        return lucid.compile(model.eval()), x
    model.train()
    targets = [{"boxes": [[4.0, 4.0, 30.0, 30.0]], "labels": [1]},
               {"boxes": [[10.0, 12.0, 50.0, 60.0]], "labels": [2]}]
    opt = lucid.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def detector_step(x):
        loss = model.get_loss(x, targets)["total_loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    return lucid.compile(detector_step), x


def main(words=()):
    if not os.environ.get("LUCID_CACHE_DIR"):
        os.environ["LUCID_CACHE_DIR"] = tempfile.mkdtemp(prefix="lucid-cache-")  # cold compiles
    lucid.random.seed(0)

    def wanted(title):
        return not words or any(w.lower() in title.lower() for w in words)

    title = "MLP 784-256-10, batch 32"
    if wanted(title):
        mlp = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10)).eval()
        report(title, lucid.compile(mlp), lucid.random.randn(32, 784))
    for train in (False, True):
        title = f"Faster R-CNN ResNet-50 FPN detector, {'training step' if train else 'inference'}, 2x3x64x64"
        if wanted(title):
            report(title, *detector(train))
    if not any(wanted(t) for t in ("small CNN", "ResNet-18", "training step of the small CNN")):
        return

    cnn = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(64 * 7 * 7, 10)).eval()
    report("small CNN, batch 8, 1x28x28", lucid.compile(cnn), lucid.random.randn(8, 1, 28, 28))

    resnet = resnet18_like().eval()
    report("ResNet-18 layout, batch 1, 3x224x224", lucid.compile(resnet), lucid.random.randn(1, 3, 224, 224))

    cnn.train()
    opt = lucid.optim.SGD(cnn.parameters(), lr=0.01, momentum=0.9)

    def step(x, y):
        loss = F.cross_entropy(cnn(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    compiled = lucid.compile(step)
    x, y = lucid.random.randn(8, 1, 28, 28), lucid.tensor(np.arange(8) % 10)
    report("training step of the small CNN (forward, backward, SGD), batch 8", compiled, x, y)


if __name__ == "__main__":
    main(sys.argv[1:])
