"""faster_rcnn_resnet_50_fpn (a small configuration) exported, loaded in a fresh process,
equals eager."""
import numpy as np
import pytest

import lucid

from _aot_helpers import LOAD_AND_RUN, assert_close, run_fresh

SMALL = dict(num_classes=5, backbone_num_classes=10, pre_nms_top_n=64, post_nms_top_n=16,
             rpn_batch_size_per_image=64, box_batch_size_per_image=32)


def test_faster_rcnn_in_a_fresh_process_equals_eager(tmp_path):
    models = lucid.models
    if not hasattr(models, "faster_rcnn_resnet_50_fpn"):
        pytest.skip("no detection models in this tree")
    lucid.random.seed(1)
    model = models.faster_rcnn_resnet_50_fpn(**SMALL)
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)
    folder = tmp_path / "frcnn"
    lucid.export(model, x, folder)
    refs = model.eval()(lucid.tensor(x))
    np.save(tmp_path / "x.npy", x)
    done = run_fresh(LOAD_AND_RUN, folder, tmp_path / "x.npy", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    assert "kind tuple llvm False" in done.stdout
    assert len(refs) == 2
    for k, want in enumerate(refs):
        assert_close(np.load(tmp_path / f"out{k}.npy"), want.numpy())
