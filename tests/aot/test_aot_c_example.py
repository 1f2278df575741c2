"""examples/c/run_model.c: built with the system C compiler against an artifact, its outputs
equal Python's."""
import os
import shutil
import subprocess

import numpy as np
import pytest

import lucid

from _aot_helpers import REPO, assert_close

EXAMPLE = os.path.join(REPO, "examples", "c", "run_model.c")


def build(folder, exe):
    cc = shutil.which(os.environ.get("CC") or "cc")
    if cc is None:
        pytest.skip("no C compiler")
    done = subprocess.run([cc, "-O2", "-Wall", "-Werror", "-I", folder, EXAMPLE, os.path.join(folder, "model.so"),
                           f"-Wl,-rpath,{os.path.abspath(folder)}", "-o", exe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return exe


@pytest.mark.parametrize("which", ["resnet", "small"])
def test_c_example_matches_python(which, request, tmp_path):
    folder, x, ref = request.getfixturevalue(which)
    exe = build(folder, str(tmp_path / "run_model"))
    x.astype(np.float32).tofile(tmp_path / "x.bin")
    done = subprocess.run([exe, folder, str(tmp_path / "out"), str(tmp_path / "x.bin")], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    refs = ref if isinstance(ref, tuple) else (ref,)
    python = lucid.load_artifact(folder)(x)
    python = python if isinstance(python, tuple) else (python,)
    for k, (want, py) in enumerate(zip(refs, python)):
        got = np.fromfile(tmp_path / f"out{k}.bin", dtype=np.float32).reshape(want.shape)
        np.testing.assert_array_equal(got, py.numpy())  # the same code on the same input
        assert_close(got, want)
        assert f"output {k}" in done.stdout


def test_c_example_refuses_a_wrong_input_file(small, tmp_path):
    folder, x, _ = small
    exe = build(folder, str(tmp_path / "run_model"))
    x[:1].astype(np.float32).tofile(tmp_path / "short.bin")
    done = subprocess.run([exe, folder, str(tmp_path / "out"), str(tmp_path / "short.bin")], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1 and "must hold exactly" in done.stderr
