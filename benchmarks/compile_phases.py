"""Where compile time goes: trace, each pass, build, for a few models.

    python benchmarks/compile_phases.py

Each model is compiled with `lucid.compile` and called once; the build record of that call
says how long tracing, every pass of the pipeline and the build took. Timings are single
runs (compilation happens once per signature); the op counts after each pass show what
each pass did.
"""
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


def report(title, compiled, *args):
    t0 = time.perf_counter()
    compiled(*args)
    total = time.perf_counter() - t0
    build = compiled.builds[-1]
    print(f"\n{title}: first call {1000 * total:.0f} ms")
    ops_in = len(build.traced.compute_nodes)
    print(f"  {'trace':<18} {1000 * build.phases['trace']:8.1f} ms   {ops_in} ops")
    for name, sec, ops in build.passes:
        print(f"  pass {name:<13} {1000 * sec:8.1f} ms   -> {ops} ops")
    build_phase = build.phases.get("build")
    print(f"  {'build':<18} " + (f"{1000 * build_phase:8.1f} ms" if build_phase is not None
                                 else "     n/a   (no native code yet: the interpreter runs the graph)"))
    plan = build.graph.meta.get("memory")
    if plan is not None:
        print("  " + plan.summary().replace("\n", "\n  "))


def main():
    lucid.random.seed(0)
    mlp = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10)).eval()
    report("MLP 784-256-10, batch 32", lucid.compile(mlp), lucid.random.randn(32, 784))

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
    compiled(x, y)  # the first step runs eagerly (it creates the optimiser state)
    report("training step of the small CNN (forward, backward, SGD), batch 8", compiled, x, y)


if __name__ == "__main__":
    main()
