"""The generated shapes data set: determinism, target format, and that each box is the
tight box of the shape drawn."""
import numpy as np
import pytest

from lucid.data import shapes
from lucid.errors import LucidError
from lucid.models.detection.targets import pad_targets


def test_deterministic_given_the_seed():
    a, ta = shapes.detection_set(6, 64, seed=5)
    b, tb = shapes.detection_set(6, 64, seed=5)
    c, _ = shapes.detection_set(6, 64, seed=6)
    np.testing.assert_array_equal(a, b)
    for x, y in zip(ta, tb):
        np.testing.assert_array_equal(x["boxes"], y["boxes"])
        np.testing.assert_array_equal(x["labels"], y["labels"])
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(shapes.classification_set(4, 32, seed=1)[0], shapes.classification_set(4, 32, seed=1)[0])


def test_detection_targets_format():
    images, targets = shapes.detection_set(40, 96, seed=0, objects=(0, 4), min_frac=0.1, max_frac=0.3)
    assert images.shape == (40, 3, 96, 96) and images.dtype == np.float32
    assert abs(float(images.mean())) < 0.5 and 0.5 < float(images.std()) < 1.5  # roughly normalised
    counts = [len(t["labels"]) for t in targets]
    assert min(counts) == 0 and max(counts) == 4
    for t in targets:
        b, lab = t["boxes"], t["labels"]
        assert b.dtype == np.float32 and b.shape == (len(lab), 4) and lab.dtype == np.int64
        assert np.all((lab >= 1) & (lab <= len(shapes.KINDS)))
        assert np.all(b >= 0) and np.all(b <= 96) and np.all(b == np.round(b))
        side = np.concatenate([b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]])
        assert np.all(side >= np.floor(0.1 * 96)) and np.all(side <= np.ceil(0.3 * 96))
    gb, gl, gv = pad_targets(targets, 40, num_classes=4)  # the detector's own check accepts them
    assert gb.shape == (40, 4, 4)


def test_padded_targets_for_compiled_steps():
    _, targets = shapes.detection_set(5, 64, seed=2, objects=(1, 3), pad_to=4)
    for t in targets:
        assert t["boxes"].shape == (4, 4) and t["labels"].shape == (4,) and t["valid"].shape == (4,)
        k = int(t["valid"].sum())
        assert 1 <= k <= 3 and t["valid"][:k].all() and not t["labels"][k:].any()
    gb, gl, gv = pad_targets(targets, 5, num_classes=4)
    np.testing.assert_array_equal(gv.data, np.stack([t["valid"] for t in targets]))


@pytest.mark.parametrize("kind, fill", [(0, 1.0), (1, np.pi / 4), (2, 0.5)])
def test_each_box_is_the_tight_box_of_its_shape(kind, fill):
    box = np.array([[[10.0, 20.0, 50.0, 44.0]]])
    out = shapes.render(np.array([[kind]]), box, np.ones((1, 1, 3)), np.zeros((1, 3, 64, 64)))
    mask = out[0, 0] > 0.5
    ys, xs = np.nonzero(mask)
    assert abs(xs.min() - 10) <= 1 and abs(xs.max() + 1 - 50) <= 1
    assert abs(ys.min() - 20) <= 1 and abs(ys.max() + 1 - 44) <= 1
    assert mask.sum() / (40 * 24) == pytest.approx(fill, abs=0.05)


def test_later_slots_are_drawn_on_top():
    boxes = np.array([[[0.0, 0, 20, 20], [10, 10, 30, 30]]])
    colours = np.array([[[1.0, 0, 0], [0, 0, 1.0]]])
    out = shapes.render(np.array([[0, 0]]), boxes, colours, np.zeros((1, 3, 32, 32)))
    assert out[0, 2, 15, 15] == 1.0 and out[0, 0, 5, 5] == 1.0 and out[0, :, 31, 0].sum() == 0


def test_classification_set():
    images, labels = shapes.classification_set(90, 48, seed=3)
    assert images.shape == (90, 3, 48, 48) and images.dtype == np.float32 and labels.dtype == np.int64
    assert set(labels.tolist()) == {0, 1, 2}
    # rectangles and ellipses cover the centre pixel (bright colour; the background is dim)
    centre = shapes.denormalize(images)[:, :, 24, 24].max(axis=1)
    assert np.all(centre[labels < 2] >= 0.75)


def test_errors():
    with pytest.raises(LucidError, match="pad_to"):
        shapes.detection_set(2, 64, objects=(1, 5), pad_to=3)
    with pytest.raises(LucidError, match="size"):
        shapes.classification_set(2, 8)
    with pytest.raises(LucidError, match="objects"):
        shapes.detection_set(2, 64, objects=(3, 1))
