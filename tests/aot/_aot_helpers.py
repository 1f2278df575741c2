"""Helpers of the AOT tests: a tiny two-output model, a fresh-process runner, tolerances."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import lucid
import lucid.nn as nn

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class TwoHeads(nn.Module):
    """A tiny CNN with two outputs (a tuple), for the quick tests and the refusals."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8 * 8 * 8, 5)

    def forward(self, x):
        y = lucid.relu(self.bn(self.conv(x)))
        z = self.fc(y.reshape(y.shape[0], -1))
        return z, lucid.tanh(z) * 2


def run_fresh(code, *args, env=None, timeout=300):
    """Run `code` in a new Python process (lucid importable); its completed process."""
    full_env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
                          capture_output=True, text=True, env=full_env, timeout=timeout)


# Loads an artifact, runs it on x.npy, saves every output as out<k>.npy, and reports whether
# LLVM (llvmlite.binding) or the tracer was ever imported/used.
LOAD_AND_RUN = """
    import sys, numpy as np
    import lucid
    folder, inputs, out = sys.argv[1], sys.argv[2], sys.argv[3]
    a = lucid.load_artifact(folder)
    xs = [np.load(p) for p in inputs.split(",")]
    y = a(*xs)
    ys = y if isinstance(y, tuple) else (y,)
    for k, t in enumerate(ys):
        np.save(f"{out}{k}.npy", t.numpy())
    print("kind", type(y).__name__, "llvm", "llvmlite.binding" in sys.modules)
"""


def assert_close(got, want):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(want).max())))
