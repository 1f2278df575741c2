"""The detector training example, in its --quick form: both stages run (classifier
pretraining saved and loaded into the detector's backbone.net, then detection with
compiled steps), the loss falls, and the evaluation reports an mAP."""
import importlib.util
import io
import math
import os

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_example():
    spec = importlib.util.spec_from_file_location("train_detector", os.path.join(ROOT, "examples", "train_detector.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_quick_run_trains_and_evaluates(tmp_path):
    example = load_example()
    messages = []
    out = example.main(["--quick", "--checkpoint", str(tmp_path / "backbone.lucid")], log=messages.append)
    assert (tmp_path / "backbone.lucid").exists()
    assert any("saved to" in m for m in messages) and any("mAP@0.5" in m for m in messages)
    losses = out["losses"]
    assert all(math.isfinite(v) for v in losses) and all(math.isfinite(v) for v in out["stage1_losses"])
    assert np.mean(losses[-2:]) < np.mean(losses[:2]), losses
    assert 0.0 <= out["map"] <= 1.0
    assert set(out["history"][0]) == {"rpn_cls_loss", "rpn_reg_loss", "roi_cls_loss", "roi_reg_loss", "total_loss"}


def test_progress_line():
    example = load_example()
    stream = io.StringIO()
    bar = example.Progress("demo", 4, stream=stream)
    for k in range(1, 5):
        bar.update(k, 1.0 / k)
    bar.close()
    text = stream.getvalue()
    assert "[4/4]" in text and "it/s" in text and "loss" in text and text.endswith("\n")


def test_quick_flags_can_be_overridden():
    example = load_example()
    args = example.parse_args(["--quick", "--steps", "3", "--image-size", "96"])
    assert args.steps == 3 and args.image_size == 96 and args.backend == "interpreter" and args.batch == 1
