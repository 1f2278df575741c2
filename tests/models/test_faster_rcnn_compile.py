"""`lucid.compile(detector)(x)` equals eager `detector(x)` in eval mode.

One small detector (64x64 images, 32 proposals) is compiled once for the module: the
whole model (backbone, FPN, RPN with top-k and NMS, multi-scale RoI Align, box head)
becomes one native function."""
import numpy as np
import pytest

import lucid
from lucid.models import faster_rcnn_resnet_50_fpn


def images(seed, n=1, size=64):
    rng = np.random.default_rng(seed)
    return lucid.tensor(rng.standard_normal((n, 3, size, size)).astype(np.float32))


@pytest.fixture(scope="module")
def compiled():
    lucid.random.seed(11)
    model = faster_rcnn_resnet_50_fpn(num_classes=6, backbone_num_classes=10, pre_nms_top_n=100,
                                      post_nms_top_n=32).eval()
    fn = lucid.compile(model)
    return model, fn, fn(images(12))


def check_close(model, outputs, x):
    eager_logits, eager_deltas = model(x)
    logits, deltas = outputs
    assert logits.shape == (1, 32, 6) and deltas.shape == (1, 32, 4)
    np.testing.assert_allclose(logits.numpy(), eager_logits.numpy(), rtol=1e-3, atol=2e-4)
    np.testing.assert_allclose(deltas.numpy(), eager_deltas.numpy(), rtol=1e-3, atol=2e-4)


def test_compiled_detector_equals_eager(compiled):
    model, fn, outputs = compiled
    check_close(model, outputs, images(12))
    assert len(fn.builds) == 1
    assert np.abs(outputs[0].numpy()).max() > 0


def test_compiled_detector_reuses_its_build_for_new_values(compiled):
    model, fn, _ = compiled
    x = images(13)
    check_close(model, fn(x), x)
    assert len(fn.builds) == 1
    ops = {node.op for node in fn.graph.nodes}
    assert {"nms", "roi_align"} <= ops  # proposals and pooling run inside the native function


def test_traced_top_k_is_topk_with_ties():
    """The RPN's per-level top-k, compiled (the native radix argsort), gives the same
    indices and values as the eager topk, ties by index."""
    scores = np.random.default_rng(14).integers(0, 20, (2, 300)).astype(np.float32)  # many ties
    want_v, want_i = lucid.topk(lucid.tensor(scores), 70, axis=1)
    got_v, got_i = lucid.compile(lambda s: lucid.topk(s, 70, axis=1))(lucid.tensor(scores))
    np.testing.assert_array_equal(got_i.numpy(), want_i.numpy())
    np.testing.assert_array_equal(got_v.numpy(), want_v.numpy())
