"""The command line's argument parsing and the progress display, without running models."""
import io
import threading
import time

import numpy as np

import pytest

import lucid
from lucid.cli._common import (UsageError, build_model, fmt_time, parse_model_kwargs, parse_shape,
                               parse_value)
from lucid.progress import Progress, track


def test_shapes_and_dtypes():
    assert parse_shape("1x3x224x224") == ((1, 3, 224, 224), lucid.float32)
    assert parse_shape("2X5", "float64") == ((2, 5), lucid.float64)
    assert parse_shape("4:int64") == ((4,), lucid.int64)
    for bad in ("1x3xa", "", "1x-3", "1,3", "2x0", "3x"):
        with pytest.raises(UsageError, match="shape"):
            parse_shape(bad)
    with pytest.raises(UsageError, match="unknown dtype 'float8'"):
        parse_shape("1x2:float8")


def test_values_and_model_kwargs():
    assert [parse_value(v) for v in ("10", "-2", "0.5", "1e-3", "true", "No", "none", "abc")] == \
        [10, -2, 0.5, 1e-3, True, False, None, "abc"]
    assert parse_value("32,64,128") == (32, 64, 128)
    assert parse_model_kwargs(["--num-classes", "10", "--zero-init-residual", "--no-bias",
                               "--scale=-0.5", "--offset", "-3", "--name", "x"]) == \
        {"num_classes": 10, "zero_init_residual": True, "bias": False, "scale": -0.5, "offset": -3,
         "name": "x"}
    for bad in (["10"], ["--"], ["--a.b", "1"]):
        with pytest.raises(UsageError):
            parse_model_kwargs(bad)


def test_build_model_refuses_unknown_names_and_arguments(tiny_models):
    assert build_model("tiny_cnn", {"num_classes": 3}).parameter_size == 112 + 256 * 3 + 3
    with pytest.raises(UsageError, match=r"unknown model 'tiny_cn'; did you mean 'tiny_cnn'"):
        build_model("tiny_cn")
    with pytest.raises(UsageError, match=r"unknown model argument --num-clases; did you mean --num-classes\?"):
        build_model("tiny_cnn", {"num_clases": 3})
    with pytest.raises(UsageError, match=r"argument --colour \(it takes --num-classes, --width, --bias\)"):
        build_model("tiny_cnn", {"colour": 1})
    # A factory taking **kwargs: the unknown name is only found by calling it.
    with pytest.raises(UsageError, match="undocumented: unknown model argument --colour"):
        build_model("undocumented", {"colour": 1})


def test_fmt_time():
    assert [fmt_time(s) for s in (2.5, 0.0123, 4.5e-6)] == ["2.50 s", "12.30 ms", "4.5 us"]


def test_progress_plain_lines_once_per_stage():
    out = io.StringIO()
    with Progress("compile m", stream=out) as p:
        assert not p.tty  # a StringIO is no terminal
        p("trace", 0.1)
        p.update("trace", 0.2, detail="node 5")
        p("codegen", 0.5)
        p.close("done")
    lines = out.getvalue().splitlines()
    assert [line.split(" ")[:4] for line in lines[:2]] == [["compile", "m:", "10%", "trace"],
                                                           ["compile", "m:", "50%", "codegen"]]
    assert lines[2].startswith("compile m: done (") and len(lines) == 3
    assert "\r" not in out.getvalue()


def test_progress_terminal_redraws_one_line():
    out = io.StringIO()
    p = Progress("bench", stream=out, tty=True, tick=False)
    p.update("eager", None, detail="run 1")  # unknown fraction: a spinner
    p.start -= 1  # pretend time passed so the next update redraws
    p._last_draw = -1.0
    p.update("compile", 0.5)
    p.close()
    text = out.getvalue()
    assert text.startswith("\rbench ") and "run 1" in text and "[" + "#" * 12 + "." * 12 + "]" in text
    assert " 50% compile" in text and "\n" not in text and text.endswith("\r")


def test_progress_disabled_and_track():
    out = io.StringIO()
    with Progress("quiet", stream=out, enabled=False) as p:
        p("stage", 0.5)
        p.close("done")
    assert out.getvalue() == ""
    out = io.StringIO()
    assert list(track(range(3), "loop", stream=out)) == [0, 1, 2]
    assert out.getvalue().splitlines()[0].startswith("loop: 0% 3 items")


def test_flatten_outputs_names_nested_results():
    from lucid.cli.run import flatten_outputs

    got = flatten_outputs({"boxes": lucid.zeros(2, 4), "extra": (np.zeros(1), [np.ones(3)])})
    assert [(k, a.shape) for k, a in got] == [("boxes", (2, 4)), ("extra.0", (1,)), ("extra.1.0", (3,))]
    assert [(k, a.shape) for k, a in flatten_outputs(lucid.ones(5))] == [("0", (5,))]


def test_progress_ticker_moves_the_clock_while_nothing_reports():
    out = io.StringIO()
    with Progress("compile", stream=out, tty=True) as p:
        p.update("codegen", 0.5)
        time.sleep(0.6)  # a long native call that reports nothing
    draws = out.getvalue().split("\r")
    assert sum("codegen" in d for d in draws) >= 2 and "\n" not in out.getvalue()
    assert p._ticker is None and not [t for t in threading.enumerate() if t.name == "lucid-progress"]
