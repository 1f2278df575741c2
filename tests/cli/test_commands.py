"""`lucid models | dump | bench` and the error handling every command shares, in process."""
import os

import pytest

import lucid

from _cli_models import TINY_INPUT, cli, one_line_error


def test_help_and_version(capsys):
    status, out, _ = cli(capsys, "--help")
    assert status == 0
    for command in ("models", "compile", "run", "dump", "bench"):
        assert command in out
        status, out_cmd, _ = cli(capsys, command, "--help")
        assert status == 0 and f"usage: lucid {command}" in out_cmd
    status, out, _ = cli(capsys, "--version")
    assert status == 0 and out.strip() == f"lucid {lucid.__version__}"
    status, _, err = cli(capsys)
    assert status == 2 and "usage: lucid" in err


def test_models_lists_documented_counts(capsys, tiny_models):
    status, out, err = cli(capsys, "models")
    assert status == 0 and err == ""
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert rows["tiny_cnn"][1] == "1,397" and rows["tiny_cnn"][-2:] == ["Tiny", "CNN"]
    assert rows["tiny_pair"][1] == "20"
    assert rows["undocumented"][1] == "9"  # no documented count: built and counted
    status, out, _ = cli(capsys, "models", "tiny")
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["tiny_cnn", "tiny_pair"]
    status, out, _ = cli(capsys, "models", "*pair", "--exact")
    assert status == 0 and out.splitlines()[1].split()[:2] == ["tiny_pair", "20"]


def test_models_documented_counts_are_right(capsys):
    """The real registry: documented counts (what `lucid models` prints) equal built ones."""
    from lucid.cli.models import documented_count
    from lucid.models import get_model, list_models

    status, out, _ = cli(capsys, "models", "resnet_[13]*")
    assert status == 0
    assert [line.split()[:2] for line in out.splitlines()[1:]] == [
        ["resnet_101", "44,549,160"], ["resnet_152", "60,192,808"], ["resnet_18", "11,689,512"],
        ["resnet_34", "21,797,672"]]
    assert all(documented_count(get_model(name)) for name in list_models())
    assert documented_count(get_model("resnet_18")) == get_model("resnet_18")().parameter_size


def test_models_no_match(capsys, tiny_models):
    status, _, err = cli(capsys, "models", "vgg*")
    assert status == 2
    assert one_line_error(err) == ("lucid: error: no registered model matches 'vgg*' "
                                   "(3 models: tiny_cnn, tiny_pair, undocumented)")


def test_dump_writes_per_pass_files(capsys, tmp_path, tiny_models):
    out_dir = tmp_path / "dump"
    status, out, err = cli(capsys, "dump", "tiny_cnn", "--input", TINY_INPUT, "--out", str(out_dir),
                           "--format", "txt,html", "--width", "2")
    assert status == 0, err
    files = sorted(os.listdir(out_dir))
    assert {"00_input.txt", "00_input.html", "summary.txt", "summary.json"} <= set(files)
    assert "02_fuse.before.txt" in files and "02_fuse.after.html" in files
    assert not [f for f in files if f.endswith((".dot", ".svg"))]
    graph = (out_dir / "00_input.txt").read_text()
    assert "conv2d" in graph and "f32[1,3,8,8]" in graph and "f32[2,3,3,3]" in graph  # --width 2
    assert "ops in" in out and "plan_memory" in out
    assert "dump tiny_cnn: 100% done" in err  # plain progress lines: stderr is no terminal here


def test_dump_errors(capsys, tmp_path, tiny_models):
    status, _, err = cli(capsys, "dump", "tiny_cnn", "--out", str(tmp_path), "--format", "png")
    assert status == 2 and "--format: unknown format 'png'" in one_line_error(err)
    status, _, err = cli(capsys, "dump", "tiny_cnn", "--out", str(tmp_path), "--input", "1x3x9x9",
                         "--quiet")
    assert status == 1  # the model's own shape check: a runtime failure, one line
    line = one_line_error(err)
    assert line.startswith("lucid: ShapeError: ") and "(at " not in line


def test_bench_prints_medians_and_ratios(capsys, tiny_models):
    status, out, err = cli(capsys, "bench", "tiny_cnn", "--input", TINY_INPUT, "--repeat", "2",
                           "--num-classes", "3")
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0] == "tiny_cnn on float32[1x3x8x8], median of 2 runs"
    assert lines[1].split() == ["backend", "median", "min", "vs", "eager", "vs", "compiled"]
    eager, compiled = lines[2].split(), lines[3].split()
    assert eager[0] == "eager" and compiled[0] == "compiled"
    assert eager[-2] == "1.00x" and compiled[-1] == "1.00x"
    assert any(line.startswith("compile (first call): ") for line in lines)
    assert any(line.startswith("torch skipped: no torch equivalent of tiny_cnn") for line in lines)
    assert "bench tiny_cnn: compiled (2 runs)" in err


def test_bench_backends(capsys, tiny_models):
    status, out, _ = cli(capsys, "bench", "tiny_cnn", "--input", TINY_INPUT, "--repeat", "1",
                         "--backends", "eager", "--quiet")
    assert status == 0 and out.splitlines()[1].split() == ["backend", "median", "min", "vs", "eager"]
    status, _, err = cli(capsys, "bench", "tiny_cnn", "--backends", "eager,jax")
    assert status == 2 and "unknown backend 'jax'" in one_line_error(err)
    status, _, err = cli(capsys, "bench", "tiny_cnn", "--repeat", "0")
    assert status == 2 and "expected a positive integer, got '0'" in one_line_error(err)


def test_bench_torch_twin_needs_torchvision(tiny_models):
    from lucid.cli.bench import torch_twin

    assert torch_twin("tiny_cnn", {}, (1, 3, 8, 8), None) == (None, "no torch equivalent of tiny_cnn is known")


def test_bench_torch_twins_of_the_real_models():
    from lucid.cli.bench import torch_twin

    shape = (1, 3, 64, 64)
    assert "no torch equivalent" in torch_twin("resnet_18", {"in_channels": 1}, shape, None)[1]
    try:
        import torchvision  # noqa: F401
    except ImportError:
        assert torch_twin("resnet_18", {}, shape, None) == (None, "torchvision is not importable")
        return
    model, adapt = torch_twin("resnet_18", {"num_classes": 7}, shape, 1)
    assert model.fc.out_features == 7 and len(adapt(object())) == 1
    model, adapt = torch_twin("faster_rcnn_resnet_50_fpn", {}, shape, 1)
    assert model.roi_heads.box_predictor.cls_score.out_features == 21  # lucid's default
    assert model.transform.min_size == (64,)


@pytest.mark.parametrize("argv, status, message", [
    (["compile", "tiny_cn", "--out", "x"], 2, "unknown model 'tiny_cn'; did you mean 'tiny_cnn'"),
    (["dump", "tiny_cnn", "--input", "1x3xz", "--out", "x"], 2, "--input: malformed shape '1x3xz'"),
    (["dump", "tiny_cnn", "--dtype", "float8", "--out", "x"], 2, "--dtype: unknown dtype 'float8'"),
    (["bench", "tiny_cnn", "--num-clases", "3"], 2, "unknown model argument --num-clases; did you mean"),
    (["bench", "tiny_cnn", "--num-classes", "0"], 1, "LucidError: tiny_cnn: num_classes must be positive, got 0 (at "),
    (["compile", "tiny_cnn"], 2, "the following arguments are required: --out"),
    (["frobnicate"], 2, "invalid choice: 'frobnicate'"),
    (["models", "--frob"], 2, "unrecognized arguments: --frob (see 'lucid models --help')"),
    (["run", "/no/such/folder"], 2, "no such artifact folder: '/no/such/folder'"),
])
def test_bad_arguments_give_one_line(capsys, tiny_models, argv, status, message):
    got, out, err = cli(capsys, *argv)
    line = one_line_error(err)
    assert got == status and line.startswith("lucid: ") and message in line, line
    # Lucid errors name the innermost frame outside lucid: the caller of main() says nothing
    # and is dropped; a registered model's own line (conftest.py here) is kept.
    assert "test_commands.py" not in line
    assert out == ""


def test_internal_errors_are_one_line_unless_debugging(capsys, tiny_models, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr("lucid.cli.dump.parse_formats", broken)
    status, _, err = cli(capsys, "dump", "tiny_cnn", "--out", "x")
    assert status == 1 and one_line_error(err) == ("lucid: internal error: RuntimeError: boom second line "
                                                   "(run with LUCID_DEBUG=1 for the traceback)")
    monkeypatch.setenv("LUCID_DEBUG", "1")
    status, _, err = cli(capsys, "dump", "tiny_cnn", "--out", "x")
    assert status == 1 and "Traceback (most recent call last)" in err and "in broken" in err
