"""The ResNet-50 artifact: export time, load time to the first result, run time next to
lucid.compile's, and the peak memory of a process that loads and runs it.

    python benchmarks/bench_aot.py [--dir FOLDER] [--repeat 5]

Every measurement of loading runs in a fresh process (python -c ...), as a user's would:
  import      `import lucid` (numpy included)
  load        lucid.load_artifact(folder): manifest and CPU checks, mapping weights.bin,
              its sha256 (the "weight read": every page is touched once), dlopen of model.so
  first run   the first call (thread pool start, first touch of the workspace)
  run         median of --repeat later calls
  peak RSS    resource.getrusage(RUSAGE_SELF).ru_maxrss at the end of that process, and
              VmHWM of /proc/self/status (the same peak, for this process image only)
The same process shape with verify=False shows the load without the checksum pass. For
comparison, lucid.compile runs the same model in another fresh process (its disk cache
warm, so that its compile time is the cached path). ONNX Runtime needed 308 MiB peak for
ResNet-50 at batch 1 on this machine (figure from the issue).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

LOAD = """
import json, resource, sys, time
t0 = time.perf_counter()
import numpy as np
import lucid
t1 = time.perf_counter()
folder, verify, repeat = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3])
x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
t2 = time.perf_counter()
art = lucid.load_artifact(folder, verify=verify)
t3 = time.perf_counter()
art(x)
t4 = time.perf_counter()
runs = []
for _ in range(repeat):
    s = time.perf_counter(); art(x); runs.append(time.perf_counter() - s)
runs.sort()
hwm = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) / 1024
print(json.dumps({"import": t1 - t0, "load": t3 - t2, "first": t4 - t3, "run": runs[len(runs) // 2],
                  "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "hwm_mib": hwm,
                  "llvm_imported": "llvmlite.binding" in sys.modules}))
"""

COMPILED = """
import json, resource, sys, time
import numpy as np
import lucid
repeat = int(sys.argv[1])
model = lucid.models.resnet_50().eval()
x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
c = lucid.compile(model)
t0 = time.perf_counter(); c(x); first = time.perf_counter() - t0
runs = []
for _ in range(repeat):
    s = time.perf_counter(); c(x); runs.append(time.perf_counter() - s)
runs.sort()
b = c.builds[-1]
hwm = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) / 1024
print(json.dumps({"compile": sum(b.phases.values()), "phases": b.phases, "first": first,
                  "run": runs[len(runs) // 2], "cached": b.program.from_cache,
                  "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "hwm_mib": hwm}))
"""

EXPORT = """
import json, sys, time
import lucid
t = time.perf_counter()
lucid.export(lucid.models.resnet_50().eval(), lucid.random.randn(1, 3, 224, 224), sys.argv[1])
print(json.dumps(time.perf_counter() - t))
"""

HASH = """
import hashlib, json, sys, time
t = time.perf_counter()
h = hashlib.sha256()
with open(sys.argv[1], "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
        h.update(block)
print(json.dumps(time.perf_counter() - t))
"""


def fresh(code, *args):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", help="artifact folder (exported there if it has no manifest)")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    tmp = None
    folder = args.dir
    if folder is None:
        tmp = tempfile.TemporaryDirectory()
        folder = os.path.join(tmp.name, "resnet50")
    if not os.path.isfile(os.path.join(folder, "manifest.json")):
        # in a child too: Linux carries a parent's peak RSS over into the ru_maxrss of the
        # processes it starts, so this script itself stays small (it never imports lucid)
        print(f"export: {fresh(EXPORT, folder):.1f} s -> {folder}")
    sizes = {f: os.path.getsize(os.path.join(folder, f)) for f in sorted(os.listdir(folder))}
    print("files: " + ", ".join(f"{f} {n / 2**20:.1f} MiB" for f, n in sizes.items()))

    fresh(LOAD, folder, 1, 1)  # warm the page cache: the figures below are for a warm one
    hashed = fresh(HASH, os.path.join(folder, "weights.bin"))
    rows = [("artifact, checksums verified", fresh(LOAD, folder, 1, args.repeat)),
            ("artifact, verify=False", fresh(LOAD, folder, 0, args.repeat))]
    fresh(COMPILED, 1)  # fill lucid.compile's disk cache
    compiled = fresh(COMPILED, args.repeat)

    print(f"\nResNet-50, batch 1, 224x224, float32; {os.cpu_count()} CPUs; median of {args.repeat} runs\n")
    print(f"{'':32} {'import':>8} {'load':>8} {'1st run':>8} {'run':>8} {'ru_maxrss':>10} {'VmHWM':>8}")
    for label, r in rows:
        print(f"{label:32} {r['import']:7.2f}s {r['load']:7.3f}s {r['first']:7.3f}s {1000 * r['run']:6.0f}ms "
              f"{r['rss_mib']:7.0f} MiB {r['hwm_mib']:5.0f} MiB" + ("   (LLVM imported!)" if r["llvm_imported"] else ""))
    print(f"{'lucid.compile (warm disk cache)':32} {'':>8} {compiled['compile']:7.3f}s {compiled['first']:7.3f}s "
          f"{1000 * compiled['run']:6.0f}ms {compiled['rss_mib']:7.0f} MiB {compiled['hwm_mib']:5.0f} MiB"
          f"   (load = compile time, "
          f"cached: {compiled['cached']})")
    verified = rows[0][1]
    beyond = verified["load"] + verified["first"] - hashed
    quick = rows[1][1]
    print(f"\nsha256 of weights.bin alone: {hashed:.3f} s; load + first result beyond it: {beyond:.3f} s "
          f"(target 0.3 s); without verification: {quick['load'] + quick['first']:.3f} s, of which "
          f"{quick['load'] + quick['first'] - quick['run']:.3f} s is more than one steady-state run")
    print(f"run time, artifact / lucid.compile: {verified['run'] / compiled['run']:.2f}x; "
          f"peak memory vs ONNX Runtime's 308 MiB: {verified['rss_mib'] / 308:.2f}x")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
