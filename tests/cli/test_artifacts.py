"""`lucid compile` and `lucid run`: export a registered model, run the artifact in this
process and in a fresh one (`python -m lucid`), and every refusal as one line."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import lucid
from lucid.cli import main
from lucid.models.registry import isolated_registry, register_model

from _cli_models import cli, one_line_error, tiny_cnn, tiny_pair

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """tiny_cnn(num_classes=3) and tiny_pair exported once, by the command line."""
    root = tmp_path_factory.mktemp("artifacts")
    with isolated_registry():
        register_model(tiny_cnn)
        register_model(tiny_pair)
        assert main(["compile", "tiny_cnn", "--input", "1x3x8x8", "--out", str(root / "cnn"),
                     "--num-classes", "3", "--quiet"]) == 0
        assert main(["compile", "tiny_pair", "--input", "2x3", "--input", "2x4", "--num-classes", "4", "--out",
                     str(root / "pair"), "--quiet"]) == 0
    return root


def test_compile_writes_an_artifact_and_reports_progress(capsys, tmp_path, tiny_models):
    status, out, err = cli(capsys, "compile", "tiny_cnn", "--input", "1x3x8x8", "--out",
                           str(tmp_path / "a"), "--width", "2", "--opt-level", "1")
    assert status == 0, err
    files = {line.split()[0] for line in out.splitlines()[1:]}
    assert {"manifest.json", "weights.bin", "model.h", "graph.txt"} <= files
    assert out.splitlines()[0] == f"wrote {tmp_path / 'a'}"
    stages = err.splitlines()  # plain lines, one per stage: stderr is no terminal here
    assert stages[0].startswith("compile tiny_cnn: building the model ")
    assert stages[1].startswith("compile tiny_cnn: 0% ")
    assert err.splitlines()[-1].startswith("compile tiny_cnn: exported for float32[1x3x8x8] (")
    art = lucid.load_artifact(tmp_path / "a")
    assert art.input_specs == [((1, 3, 8, 8), "float32")] and art.output_specs == [((1, 5), "float32")]
    assert art.manifest["name"] == "tiny_cnn"


def test_run_matches_the_eager_model(capsys, tmp_path, artifacts):
    x = np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    status, out, err = cli(capsys, "run", str(artifacts / "cnn"), "--input", str(tmp_path / "x.npy"),
                           "--repeat", "3", "--threads", "1", "--save", str(tmp_path / "y.npz"))
    assert status == 0, err
    lines = out.splitlines()
    assert lines[:3] == [f"artifact {artifacts / 'cnn'} (tiny_cnn)", "  input  0: float32[1x3x8x8]",
                         "  output 0: float32[1x3]"]
    assert lines[3].startswith("load ") and "median of 3 runs" in lines[3] and lines[3].endswith(", 1 thread")
    lucid.random.seed(0)  # what `lucid compile` seeds before building the model
    model = tiny_cnn(num_classes=3).eval()
    want = model(lucid.Tensor(x)).numpy()
    np.testing.assert_allclose(np.load(tmp_path / "y.npz")["output_0"], want, rtol=1e-5, atol=1e-5)


def test_run_random_inputs_of_every_input(capsys, artifacts):
    status, out, _ = cli(capsys, "run", str(artifacts / "pair"), "--repeat", "1")
    assert status == 0
    assert out.splitlines()[1:4] == ["  input  0: float32[2x3]", "  input  1: float32[2x4]",
                                     "  output 0: float32[2x4]"]


def test_run_refusals(capsys, tmp_path, artifacts):
    np.save(tmp_path / "bad.npy", np.zeros((1, 3, 9, 9), np.float32))
    np.save(tmp_path / "int.npy", np.zeros((1, 3, 8, 8), np.int64))
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    cnn = str(artifacts / "cnn")
    cases = [
        (["run", cnn, "--input", str(tmp_path / "missing.npy")], 2, "--input: no such file"),
        (["run", cnn, "--input", str(tmp_path / "junk.npy")], 2, "cannot read"),
        (["run", cnn, "--input", str(tmp_path / "bad.npy"), "--input", str(tmp_path / "bad.npy")], 2,
         "--input: the artifact takes 1 inputs, 2 files given"),
        (["run", cnn, "--input", str(tmp_path / "bad.npy")], 1,
         "ShapeError: artifact tiny_cnn: input 0 (x) expects shape (1, 3, 8, 8), got (1, 3, 9, 9)"),
        (["run", cnn, "--input", str(tmp_path / "int.npy")], 1, "DTypeError: artifact tiny_cnn: input 0"),
        (["run", str(tmp_path)], 1, "ArtifactError: artifact"),  # a folder, but no artifact
        (["run", cnn, "--repeat", "-1"], 2, "--repeat: expected a positive integer"),
    ]
    for argv, status, message in cases:
        got, out, err = cli(capsys, *argv)
        line = one_line_error(err)
        assert got == status and message in line, (argv, line)
    damaged = tmp_path / "damaged"
    shutil.copytree(artifacts / "cnn", damaged)
    with open(damaged / "weights.bin", "r+b") as f:
        f.truncate(100)
    status, _, err = cli(capsys, "run", str(damaged))
    assert status == 1 and "lucid: ArtifactError: " in one_line_error(err)


def test_python_dash_m_lucid_in_a_fresh_process(artifacts):
    """The real entry point: `python -m lucid` runs an artifact and refuses bad input."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("LUCID_DEBUG", None)
    done = subprocess.run([sys.executable, "-m", "lucid", "run", str(artifacts / "cnn"), "--repeat", "2"],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "  output 0: float32[1x3]" in done.stdout.splitlines()
    done = subprocess.run([sys.executable, "-m", "lucid", "compile", "resnet50", "--out", "x"],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lucid: error: unknown model 'resnet50'; did you mean 'resnet_50'")
