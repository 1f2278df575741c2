"""The main demo: `python -m lucid.demo`.

It builds real models with lucid's API, traces them into graphs, checks the graphs
(verify, text round trip, interpreter == eager), compiles them to native code with
`lucid.compile` and times eager against compiled, builds a backward graph with
`lucid.grad`, trains an MLP eagerly and a small CNN with a compiled training step,
compiles ResNet-50 and the Faster R-CNN detector, exports an ahead-of-time artifact and
runs it back, and prints what it did and how fast. `--quick` skips the big models.
"""
import os
import tempfile
import time

import numpy as np

import lucid
import lucid.nn as nn
import lucid.nn.functional as F


def _ms(fn, repeat=5):
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * float(np.median(times))


class SmallCNN(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(64 * 7 * 7, classes))

    def forward(self, x):
        return self.head(self.features(x))


def spirals(n, rng):
    t = np.sqrt(rng.uniform(0, 1, n)) * 3 * np.pi
    a = np.stack([t * np.cos(t), t * np.sin(t)], 1) / (3 * np.pi)
    x = np.concatenate([a, -a]) + rng.normal(0, 0.02, (2 * n, 2))
    return x.astype(np.float32), np.concatenate([np.zeros(n), np.ones(n)]).astype(np.int64)


def main(quick=False):
    lucid.random.seed(0)
    rng = np.random.default_rng(0)
    print(f"lucid {lucid.__version__}: {len(lucid.ops.OPS)} primitive ops in the registry\n")

    # 1. Trace a CNN into a typed graph and check it every way we can.
    model = SmallCNN().eval()
    x = lucid.random.randn(8, 1, 28, 28)
    t0 = time.perf_counter()
    graph = lucid.trace(model, x)
    trace_ms = 1000 * (time.perf_counter() - t0)
    lucid.ir.verify(graph)
    assert lucid.ir.parse(str(graph), params=graph.params) == graph
    eager = model(x).data
    interp = lucid.ir.interpret(graph, x)
    ops = {}
    for n in graph.compute_nodes:
        ops[n.op] = ops.get(n.op, 0) + 1
    print(f"[trace] SmallCNN (parameters: {model.parameter_size:,}) -> graph with "
          f"{len(graph.compute_nodes)} ops, {len(graph.params)} params in {trace_ms:.1f} ms")
    print("        ops: " + ", ".join(f"{k}x{v}" for k, v in sorted(ops.items())))
    print(f"        verify ok, text round trip ok, interpreter vs eager max |diff| = "
          f"{np.abs(interp - eager).max():.2e}")
    print(f"        batch 8: eager {_ms(lambda: model(x)):.1f} ms, interpreter "
          f"{_ms(lambda: lucid.ir.interpret(graph, x)):.1f} ms (median of 5)")
    print("        first lines of the graph:")
    for line in str(graph).splitlines()[:6]:
        print("          " + line)

    # 2. Compile it: passes, fusion, memory plan, native code.
    dump_dir = os.path.join(tempfile.gettempdir(), "lucid-demo-dumps")
    compiled = lucid.compile(model, debug_dir=dump_dir)
    t0 = time.perf_counter()
    out = compiled(x)
    first = time.perf_counter() - t0
    build = compiled.builds[-1]
    print(f"\n[compile] SmallCNN: first call {1000 * first:.0f} ms "
          f"(trace {1000 * build.phases['trace']:.0f}, passes {1000 * build.phases['optimize']:.0f}, "
          f"native build {1000 * build.phases['build']:.0f} ms); {len(build.traced.compute_nodes)} ops -> "
          f"{len(build.graph.compute_nodes)} kernels; max |compiled - eager| = {np.abs(out.data - eager).max():.1e}")
    plan = build.graph.meta["memory"]
    print(f"          arena {plan.arena_size / 1024:.0f} KiB (lower bound {plan.lower_bound / 1024:.0f} KiB, "
          f"one buffer per value {plan.naive_size / 1024:.0f} KiB); graph dumps per pass in {build.debug_dir}")
    eager_ms, compiled_ms = _ms(lambda: model(x)), _ms(lambda: compiled(x))
    print(f"          batch 8: eager {eager_ms:.1f} ms, compiled {compiled_ms:.1f} ms "
          f"({eager_ms / compiled_ms:.1f}x, median of 5)")

    # 3. Autodiff as a graph transformation.
    def loss_fn(w, xs, ys):
        return F.cross_entropy(xs @ w, ys)

    w = lucid.random.randn(16, 4) * 0.1
    xs, ys = lucid.random.randn(32, 16), lucid.random.randint(0, 4, (32,))
    bwd = lucid.trace(lucid.grad(loss_fn), w, xs, ys)
    g_eager = lucid.grad(loss_fn)(w, xs, ys).data
    g_graph = lucid.ir.interpret(bwd, w, xs, ys)
    print(f"\n[grad]  lucid.grad(cross_entropy(x @ w)) traced: {len(bwd.compute_nodes)} ops; "
          f"graph vs eager gradient max |diff| = {np.abs(g_graph - g_eager).max():.2e}")

    # 4. Training: an MLP eagerly, a CNN with a compiled training step.
    xs, ys = spirals(200, rng)
    mlp = nn.Sequential(nn.Linear(2, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 2))
    opt = lucid.optim.Adam(mlp.parameters(), lr=0.01)
    t0 = time.perf_counter()
    for _ in range(300):
        loss = F.cross_entropy(mlp(lucid.tensor(xs)), lucid.tensor(ys))
        opt.zero_grad()
        loss.backward()
        opt.step()
    dt = time.perf_counter() - t0
    with lucid.no_grad():
        acc = (lucid.argmax(mlp(lucid.tensor(xs)), axis=1).data == ys).mean()
    print(f"\n[train] MLP on two spirals, Adam, 300 full-batch steps in {dt:.2f} s "
          f"({1000 * dt / 300:.1f} ms/step): loss {loss.item():.3f}, accuracy {acc:.1%}")

    cnn = SmallCNN()
    opt = lucid.optim.SGD(cnn.parameters(), lr=0.05, momentum=0.9)
    images = lucid.random.randn(8, 1, 28, 28)
    labels = lucid.random.randint(0, 10, (8,))

    def train_step(xb, yb):
        loss = F.cross_entropy(cnn(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    step = lucid.compile(train_step)
    losses = [step(images, labels).item() for _ in range(2)]  # the build, then a step
    t0 = time.perf_counter()
    for _ in range(10):
        losses.append(step(images, labels).item())
    dt = time.perf_counter() - t0
    twin = SmallCNN()
    twin.load_state_dict(cnn.state_dict())
    twin_opt = lucid.optim.SGD(twin.parameters(), lr=0.05, momentum=0.9)

    def eager_step():
        loss = F.cross_entropy(twin(images), labels)
        twin_opt.zero_grad()
        loss.backward()
        twin_opt.step()

    eager_ms = _ms(eager_step)
    print(f"[train] SmallCNN, batch 8, compiled training step (forward, backward, SGD in one native call): "
          f"{100 * dt:.1f} ms/step vs eager {eager_ms:.1f} ms/step; loss {losses[0]:.3f} -> {losses[-1]:.3f}")

    if quick:
        return
    big_models(os.path.join(tempfile.gettempdir(), "lucid-demo"))


def big_models(out):
    """ResNet-50 and the detector, compiled and timed; a ResNet-18 artifact exported and
    loaded back."""
    from lucid.models import faster_rcnn_resnet_50_fpn, resnet_18, resnet_50

    x = lucid.random.randn(1, 3, 224, 224)
    r50 = resnet_50().eval()
    t0 = time.perf_counter()
    fast = lucid.compile(r50)
    fast(x)
    build = time.perf_counter() - t0
    compiled_ms, eager_ms = _ms(lambda: fast(x)), _ms(lambda: r50(x), repeat=2)
    diff = float(np.abs(fast(x).numpy() - r50(x).numpy()).max())
    print(f"\n[resnet] resnet_50 ({r50.parameter_size:,} parameters), 1x3x224x224: compile + first run "
          f"{build:.1f} s; eager {eager_ms:.0f} ms, compiled {compiled_ms:.0f} ms "
          f"({eager_ms / compiled_ms:.1f}x, {4.09e9 * 2 / compiled_ms / 1e6:.1f} GFLOP/s); max |diff| {diff:.1e}")
    prof = fast.profile(x, runs=3)
    print(f"[profile] resnet_50, kernel times inside the native call ({prof.total_ms:.0f} ms per run), "
          f"the three largest of {len(prof.by_kernel())} distinct kernels:")
    for r in prof.by_kernel()[:3]:
        print(f"          {r.ms:6.1f} ms {100 * r.share:4.1f}%  x{r.calls}  {r.kernel}")

    det = faster_rcnn_resnet_50_fpn(num_classes=21).eval()
    t0 = time.perf_counter()
    fast_det = lucid.compile(det)
    cls_logits, bbox_deltas = fast_det(x)
    build = time.perf_counter() - t0
    eager_logits, _ = det(x)
    diff = float(np.abs(cls_logits.numpy() - eager_logits.numpy()).max())
    print(f"[detector] faster_rcnn_resnet_50_fpn ({det.parameter_size:,} parameters): outputs "
          f"{tuple(cls_logits.shape)}, {tuple(bbox_deltas.shape)}; compile + first run {build:.1f} s; "
          f"eager {_ms(lambda: det(x), repeat=1):.0f} ms, compiled {_ms(lambda: fast_det(x), repeat=3):.0f} ms; "
          f"max |diff| {diff:.1e}")
    found = det.predict(x)[0]
    print(f"           predict on random weights: {len(found['boxes'])} boxes kept after per-class NMS")

    r18 = resnet_18(num_classes=10).eval()
    folder = os.path.join(out, "resnet_18_artifact")
    t0 = time.perf_counter()
    lucid.export(r18, x, folder)
    exported = time.perf_counter() - t0
    t0 = time.perf_counter()
    art = lucid.load_artifact(folder)
    loaded = time.perf_counter() - t0
    diff = float(np.abs(art(x).numpy() - r18(x).numpy()).max())
    files = ", ".join(sorted(os.listdir(folder)))
    print(f"[aot] resnet_18 exported in {exported:.1f} s to {folder} ({files}); loaded in {1000 * loaded:.0f} ms "
          f"without compiling, runs in {_ms(lambda: art(x)):.0f} ms; max |diff| vs eager {diff:.1e}")


if __name__ == "__main__":
    import sys

    main(quick="--quick" in sys.argv[1:])
