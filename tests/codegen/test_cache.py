"""The on-disk cache: a second process loads the compiled program instead of building it,
and a damaged entry is rebuilt, never loaded."""
import glob
import json
import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import lucid, lucid.nn as nn
    lucid.random.seed(0)
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 5 * 5, 3)).eval()
    x = lucid.random.randn(2, 2, 5, 5)
    compiled = lucid.compile(model)
    y = compiled(x)
    build = compiled.builds[-1]
    print(json.dumps({"from_cache": build.program.from_cache, "build_ms": 1000 * build.phases["build"],
                      "max_err": float(np.abs(y.data - model(x).data).max())}))
""")


def _run(cache_dir):
    env = dict(os.environ, LUCID_CACHE_DIR=str(cache_dir), PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_second_process_is_served_from_disk(tmp_path):
    first = _run(tmp_path)
    second = _run(tmp_path)
    assert not first["from_cache"] and second["from_cache"]
    assert first["max_err"] < 1e-5 and second["max_err"] < 1e-5


def test_corrupt_or_truncated_entries_are_rebuilt(tmp_path):
    _run(tmp_path)
    entries = glob.glob(str(tmp_path / "*" / "*.o"))  # the program's, the shared gemm's, the runtime's
    assert len(entries) == 3
    for entry in entries:  # flip one byte of the object code
        data = open(entry, "rb").read()
        with open(entry, "wb") as f:
            f.write(data[:-100] + bytes([data[-100] ^ 0xFF]) + data[-99:])
    again = _run(tmp_path)
    assert not again["from_cache"] and again["max_err"] < 1e-5
    for entry in entries:  # truncate
        with open(entry, "wb") as f:
            f.write(open(entry, "rb").read()[:50])
    again = _run(tmp_path)
    assert not again["from_cache"] and again["max_err"] < 1e-5
    assert _run(tmp_path)["from_cache"]
