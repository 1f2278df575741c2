"""Detection targets against an independent numpy version of torchvision's Matcher and
BalancedPositiveNegativeSampler (written from their documented semantics, sampling by
the same priorities), plus pad_targets' errors and compiled == eager."""
import numpy as np
import pytest

import lucid
from lucid.errors import DTypeError, LucidError, ShapeError
from lucid.models.detection import targets as T
from lucid.ops.detection import anchor_grid


# ---- numpy references -----------------------------------------------------------------------

def np_iou(a, b):
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def np_matcher(iou, high, low, allow_low_quality):
    """torchvision.models.detection._utils.Matcher: -1 below low, -2 between, else gt index."""
    if iou.shape[0] == 0:
        return np.full(iou.shape[1], -1, np.int64)
    vals, matches = iou.max(0), iou.argmax(0)
    all_matches = matches.copy()
    matches = matches.astype(np.int64)
    matches[vals < np.float32(low)] = -1
    matches[(vals >= np.float32(low)) & (vals < np.float32(high))] = -2
    if allow_low_quality:
        best = iou.max(1)
        _, cols = np.nonzero(iou == best[:, None])
        matches[cols] = all_matches[cols]
    return matches


def np_sample(labels, prio, batch, fraction):
    """torchvision's BalancedPositiveNegativeSampler with randperm replaced by "highest
    priority first" (ties by index). labels: >= 1 positive, 0 negative, -1 ignored."""
    pos, neg = np.flatnonzero(labels >= 1), np.flatnonzero(labels == 0)
    n_pos = min(pos.size, int(batch * fraction))
    n_neg = min(neg.size, batch - n_pos)
    pick = lambda idx, k: idx[np.argsort(-prio[idx], kind="stable")[:k]]  # noqa: E731
    return pick(pos, n_pos), pick(neg, n_neg)


def np_encode(boxes, anchors, w):
    aw, ah = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    ax, ay = anchors[:, 0] + 0.5 * aw, anchors[:, 1] + 0.5 * ah
    bw, bh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    bx, by = boxes[:, 0] + 0.5 * bw, boxes[:, 1] + 0.5 * bh
    return np.stack([w[0] * (bx - ax) / aw, w[1] * (by - ay) / ah, w[2] * np.log(bw / aw), w[3] * np.log(bh / ah)], 1)


def rand_boxes(rng, k, size=64.0, low=6.0, high=30.0):
    xy = rng.uniform(0, size - high, (k, 2))
    wh = rng.uniform(low, high, (k, 2))
    return np.round(np.concatenate([xy, xy + wh], 1)).astype(np.float32)


def make_gt(rng, counts, size=64.0):
    targets = [{"boxes": rand_boxes(rng, k, size), "labels": rng.integers(1, 4, k)} for k in counts]
    return targets, T.pad_targets(targets, len(counts), num_classes=4)


ANCHORS = anchor_grid((8, 16, 32), (0.5, 1.0, 2.0), 8, 8, 8).data  # 576 anchors over 64 x 64


# ---- pad_targets -------------------------------------------------------------------------------

def test_pad_targets_pads_to_the_largest_count():
    t = [{"boxes": [[1, 2, 5, 6]], "labels": [2]},
         {"boxes": np.zeros((0, 4)), "labels": np.zeros(0, np.int64)},
         {"boxes": lucid.tensor([[0.0, 0, 3, 3], [4, 4, 9, 8]]), "labels": lucid.tensor([1, 3])}]
    b, lab, v = T.pad_targets(t, 3, num_classes=4)
    assert b.shape == (3, 2, 4) and b.dtype is lucid.float32
    assert lab.dtype is lucid.int64 and v.dtype is lucid.bool_
    np.testing.assert_array_equal(v.data, [[1, 0], [0, 0], [1, 1]])
    np.testing.assert_array_equal(lab.data, [[2, 0], [0, 0], [1, 3]])
    np.testing.assert_array_equal(b.data[2], [[0, 0, 3, 3], [4, 4, 9, 8]])
    np.testing.assert_array_equal(b.data[0, 1], 0)


def test_pad_targets_without_boxes_and_with_num_boxes_and_valid():
    b, lab, v = T.pad_targets([{"boxes": [], "labels": []}], 1)
    assert b.shape == (1, 1, 4) and not v.data.any()
    t = [{"boxes": [[1, 1, 4, 4], [0, 0, 0, 0]], "labels": [1, 0], "valid": [True, False]}]
    b, lab, v = T.pad_targets(t, 1, num_classes=2, num_boxes=3)  # the padded row is not checked
    assert b.shape == (1, 3, 4)
    np.testing.assert_array_equal(v.data, [[1, 0, 0]])


@pytest.mark.parametrize("targets, n, kind, words", [
    ([{"boxes": [[0, 0, 1, 1]], "labels": [1]}], 2, LucidError, ["get_loss", "1 targets for 2 images"]),
    ({"boxes": [], "labels": []}, 1, LucidError, ["list of dicts"]),
    ([[0, 0, 1, 1]], 1, LucidError, ["targets[0]", "dict"]),
    ([{"boxes": [[0, 0, 1, 1]]}], 1, LucidError, ["targets[0]", "'labels'"]),
    ([{"labels": [1]}], 1, LucidError, ["'boxes'"]),
    ([{"boxes": [[0, 0, 1, 1]], "labels": [1]}, {"boxes": [0, 0, 1, 1], "labels": [1]}], 2, ShapeError,
     ["targets[1]['boxes']", "[k, 4]", "(4,)"]),
    ([{"boxes": [[0, 0, 1, 1]], "labels": [1, 2]}], 1, ShapeError, ["targets[0]['labels']", "(1,)"]),
    ([{"boxes": [[0, 0, 1, 1]], "labels": [1.0]}], 1, DTypeError, ["integer"]),
    ([{"boxes": [[0, 0, 1, 1], [0, 0, 2, 2]], "labels": [1, 5]}], 1, LucidError, ["class 5", "1..4"]),
    ([{"boxes": [[0, 0, 1, 1]], "labels": [0]}], 1, LucidError, ["class 0", "background"]),
    ([{"boxes": [[0, 0, 1, 1], [5, 0, 2, 2]], "labels": [1, 1]}], 1, LucidError,
     ["targets[0]['boxes'][1]", "x2 > x1"]),
    ([{"boxes": [[0, 0, 1, np.nan]], "labels": [1]}], 1, LucidError, ["non-finite"]),
    ([{"boxes": [["a", "b", "c", "d"]], "labels": [1]}], 1, DTypeError, ["'boxes'", "numbers"]),
    ([{"boxes": [[0, 0, 1, 1]], "labels": np.array([1], np.uint8), "valid": [True, True]}], 1, ShapeError,
     ["'valid'"]),
])
def test_pad_targets_errors(targets, n, kind, words):
    with pytest.raises(kind) as err:
        T.pad_targets(targets, n, num_classes=5)
    for w in words:
        assert w in str(err.value)


def test_pad_targets_traces():
    def f(boxes, labels):
        return T.pad_targets([{"boxes": boxes[0], "labels": labels[0]},
                              {"boxes": boxes[1, :1], "labels": labels[1, :1]}], 2)

    boxes = lucid.tensor(np.array([[[0, 0, 2, 2], [1, 1, 3, 3]], [[2, 2, 5, 5], [0, 0, 1, 1]]], np.float32))
    labels = lucid.tensor(np.array([[1, 2], [3, 1]]))
    g = lucid.trace(f, boxes, labels)
    from lucid.ir.interpreter import Interpreter

    out = Interpreter(g).run(boxes.data, labels.data)
    eager = f(boxes, labels)
    for a, b in zip(out, eager):
        np.testing.assert_array_equal(a, b.data)
    np.testing.assert_array_equal(eager[2].data, [[1, 1], [1, 0]])


# ---- matching ------------------------------------------------------------------------------------

def test_match_low_quality_and_ties_as_torchvision(rng):
    gt = np.array([[0, 0, 10, 10], [40, 40, 44, 70], [0, 0, 10, 10]], np.float32)  # a duplicate box
    cand = np.concatenate([rand_boxes(rng, 30), np.array([[0, 0, 10, 10], [0, 0, 10, 10], [40, 40, 50, 50]],
                                                         np.float32)])
    iou = np_iou(gt, cand)
    for allow in (False, True):
        for valid in ([1, 1, 1], [1, 0, 1], [0, 1, 0], [0, 0, 0]):
            valid = np.array(valid, bool)
            idx, fg, bg = T.match(lucid.tensor(iou), lucid.tensor(valid), 0.7, 0.3, allow)
            real = np.flatnonzero(valid)
            ref = np_matcher(iou[real], 0.7, 0.3, allow)
            np.testing.assert_array_equal(fg.data, ref >= 0)
            np.testing.assert_array_equal(bg.data, ref == -1)
            np.testing.assert_array_equal(idx.data[ref >= 0], real[ref[ref >= 0]])


def test_match_equals_torchvision_matcher(rng):
    pytest.importorskip("torch")
    utils = pytest.importorskip("torchvision.models.detection._utils")
    import torch

    gt = rand_boxes(rng, 4)
    iou = np_iou(gt, ANCHORS)
    for allow in (False, True):
        want = utils.Matcher(0.7, 0.3, allow_low_quality_matches=allow)(torch.from_numpy(iou)).numpy()
        idx, fg, bg = T.match(lucid.tensor(iou), lucid.tensor(np.ones(4, bool)), 0.7, 0.3, allow)
        np.testing.assert_array_equal(fg.data, want >= 0)
        np.testing.assert_array_equal(bg.data, want == -1)
        np.testing.assert_array_equal(idx.data[want >= 0], want[want >= 0])


def test_low_quality_matches_make_the_best_anchor_positive():
    gt = np.array([[0, 0, 5, 30]], np.float32)  # no anchor reaches IoU 0.7 with this thin box
    iou = np_iou(gt, ANCHORS)
    assert iou.max() < 0.7
    lab, _, _ = T.rpn_targets(ANCHORS, gt[None], np.ones((1, 1), bool), priorities=np.zeros((1, len(ANCHORS))))
    np.testing.assert_array_equal(np.flatnonzero(lab.data[0]), np.flatnonzero(iou[0] == iou.max()))


# ---- rpn_targets -------------------------------------------------------------------------------

@pytest.mark.parametrize("batch, fraction", [(256, 0.5), (16, 0.5), (8, 0.25)])
def test_rpn_targets_against_numpy(rng, batch, fraction):
    _, (gb, gl, gv) = make_gt(rng, [3, 1, 0, 5])
    prio = rng.random((4, len(ANCHORS))).astype(np.float32)
    lab, samp, reg = T.rpn_targets(ANCHORS, gb, gv, batch_size_per_image=batch, positive_fraction=fraction,
                                   priorities=prio)
    assert lab.shape == samp.shape == (4, len(ANCHORS)) and reg.shape == (4, len(ANCHORS), 4)
    for n in range(4):
        real = np.flatnonzero(gv.data[n])
        boxes = gb.data[n][real]
        m = np_matcher(np_iou(boxes, ANCHORS), 0.7, 0.3, True)
        labels = np.where(m >= 0, 1, np.where(m == -1, 0, -1))
        pos, neg = np_sample(labels, prio[n], batch, fraction)
        np.testing.assert_array_equal(lab.data[n], (m >= 0).astype(np.float32))
        want = np.zeros(len(ANCHORS), np.float32)
        want[pos], want[neg] = 1, 1
        np.testing.assert_array_equal(samp.data[n], want)
        assert samp.data[n].sum() == min(batch, pos.size + neg.size)
        expect = np.zeros((len(ANCHORS), 4), np.float32)
        fg = m >= 0
        if fg.any():
            expect[fg] = np_encode(boxes[m[fg]], ANCHORS[fg], (1, 1, 1, 1))
        np.testing.assert_allclose(reg.data[n], expect, rtol=1e-5, atol=1e-6)
    assert not lab.data[2].any()  # no boxes: every anchor background
    assert samp.data[2].sum() == batch


def test_rpn_sampling_counts_with_random_priorities(rng):
    _, (gb, gl, gv) = make_gt(rng, [6, 2])
    lucid.random.seed(3)
    lab, samp, _ = T.rpn_targets(ANCHORS, gb, gv, batch_size_per_image=32, positive_fraction=0.25)
    for n in range(2):
        n_fg = int(lab.data[n].sum())
        sampled_pos = int((samp.data[n] * lab.data[n]).sum())
        assert sampled_pos == min(n_fg, 8)
        assert samp.data[n].sum() == 32
        # a sampled anchor is positive or below the background threshold
        iou = np_iou(gb.data[n][gv.data[n]], ANCHORS).max(0)
        s = samp.data[n].astype(bool)
        assert np.all((lab.data[n][s] == 1) | (iou[s] < 0.3))


def test_rpn_targets_errors():
    gb, gv = np.zeros((1, 1, 4), np.float32), np.ones((1, 1), bool)
    with pytest.raises(ShapeError, match="rpn_targets: anchors"):
        T.rpn_targets(ANCHORS[:, :3], gb, gv)
    with pytest.raises(ShapeError, match="rpn_targets: gt_valid"):
        T.rpn_targets(ANCHORS, gb, np.ones((1, 2), bool))
    with pytest.raises(ShapeError, match="rpn_targets: priorities"):
        T.rpn_targets(ANCHORS, gb, gv, priorities=np.zeros((1, 3)))
    with pytest.raises(LucidError, match="bg_iou"):
        T.rpn_targets(ANCHORS, gb, gv, fg_iou=0.3, bg_iou=0.7)


# ---- roi_targets -------------------------------------------------------------------------------

def np_roi_reference(proposals, pvalid, gb, gl, gv, prio, batch, fraction, weights):
    """Per image: the sorted sampled candidate indices, their labels and targets."""
    out = []
    for n in range(gb.shape[0]):
        cand = np.concatenate([proposals[n], gb[n]])
        cvalid = np.concatenate([pvalid[n], gv[n]])
        real = np.flatnonzero(gv[n])
        m = np_matcher(np_iou(gb[n][real], np.where(cvalid[:, None], cand, [0, 0, 1, 1])), 0.5, 0.5, False)
        gt_labels = np.concatenate([gl[n][real], [0]])  # [0]: a filler for images without boxes
        labels = np.where(m >= 0, gt_labels[np.maximum(m, 0)], np.where(m == -1, 0, -1))
        labels[~cvalid] = -1  # invalid proposals and padding: never sampled
        pos, neg = np_sample(labels, prio[n], batch, fraction)
        idx = np.sort(np.concatenate([pos, neg]))
        reg = np.zeros((len(idx), 4), np.float32)
        fg = labels[idx] >= 1
        if fg.any():
            reg[fg] = np_encode(gb[n][real][m[idx][fg]], cand[idx][fg], weights)
        out.append((idx, cand[idx], np.maximum(labels[idx], 0), reg))
    return out


@pytest.mark.parametrize("r, batch, fraction", [(40, 16, 0.25), (12, 64, 0.25), (40, 512, 0.5)])
def test_roi_targets_against_numpy(rng, r, batch, fraction):
    _, (gb, gl, gv) = make_gt(rng, [2, 0, 4])
    proposals = np.stack([rand_boxes(rng, r) for _ in range(3)])
    proposals[0, :3] = gb.data[0, 0] + np.float32(1)  # near copies of a gt box: positive
    pvalid = rng.random((3, r)) < 0.8
    proposals[0, 3] = gb.data[0, 1]
    pvalid[0, 3] = False  # identical to a gt box but invalid: never sampled
    weights = (10.0, 10.0, 5.0, 5.0)
    c = r + gb.shape[1]
    prio = rng.random((3, c)).astype(np.float32)
    rois, labels, reg, sampled = T.roi_targets(proposals, pvalid, gb, gl, gv, batch_size_per_image=batch,
                                               positive_fraction=fraction, priorities=prio)
    assert rois.shape == (3, batch, 4) and labels.shape == (3, batch) and reg.shape == (3, batch, 4)
    assert labels.dtype is lucid.int64 and sampled.dtype is lucid.float32
    ref = np_roi_reference(proposals, pvalid, gb.data, gl.data, gv.data, prio, batch, fraction, weights)
    for n, (idx, boxes, lab, tgt) in enumerate(ref):
        k = len(idx)
        np.testing.assert_array_equal(sampled.data[n], np.arange(batch) < k)
        np.testing.assert_array_equal(rois.data[n, :k], boxes)
        np.testing.assert_array_equal(labels.data[n, :k], lab)
        np.testing.assert_array_equal(labels.data[n, k:], 0)
        np.testing.assert_allclose(reg.data[n, :k], tgt, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(reg.data[n, k:], 0)
        assert (lab >= 1).sum() <= int(batch * fraction)
    assert 3 not in ref[0][0]
    assert (ref[0][2] >= 1).sum() >= 2  # the gt boxes themselves and the near copies


def test_roi_targets_detach_proposals(rng):
    _, (gb, gl, gv) = make_gt(rng, [2])
    p = lucid.tensor(rand_boxes(rng, 8)[None], requires_grad=True)
    rois, *_ = T.roi_targets(p, np.ones((1, 8), bool), gb, gl, gv, batch_size_per_image=4)
    assert not rois.requires_grad


# ---- tracing and compiling ---------------------------------------------------------------------

def test_compiled_rpn_and_roi_targets_with_losses_equal_eager(rng):
    from lucid.models.detection.losses import roi_loss, rpn_loss

    _, (gb, gl, gv) = make_gt(rng, [3, 1])
    a = len(ANCHORS)
    anchors = lucid.tensor(ANCHORS)
    r, s, classes = 20, 16, 4
    proposals = lucid.tensor(np.stack([rand_boxes(rng, r) for _ in range(2)]))
    pvalid = lucid.tensor(rng.random((2, r)) < 0.9)

    def step(gb, gl, gv, prio_a, prio_r, obj, deltas, logits, boxreg):
        lab, samp, reg = T.rpn_targets(anchors, gb, gv, batch_size_per_image=32, priorities=prio_a)
        c1, r1 = rpn_loss(obj, deltas, lab, samp, reg)
        rois, labels, rreg, rs = T.roi_targets(proposals, pvalid, gb, gl, gv, batch_size_per_image=s,
                                               priorities=prio_r)
        c2, r2 = roi_loss(logits, boxreg, labels, rreg, rs)
        return c1, r1, c2, r2, rois, labels

    args = [gb, gl, gv, lucid.tensor(rng.random((2, a)).astype(np.float32)),
            lucid.tensor(rng.random((2, r + gb.shape[1])).astype(np.float32)),
            lucid.tensor(rng.normal(size=(2, a)).astype(np.float32)),
            lucid.tensor(rng.normal(size=(2, a, 4)).astype(np.float32) * 0.1),
            lucid.tensor(rng.normal(size=(2, s, classes)).astype(np.float32)),
            lucid.tensor(rng.normal(size=(2, s, classes, 4)).astype(np.float32) * 0.1)]
    eager = step(*args)
    compiled = lucid.compile(step)(*args)
    for e, c in zip(eager, compiled):
        np.testing.assert_allclose(c.data, e.data, rtol=1e-4, atol=1e-5)
    assert float(eager[1].data) > 0 and float(eager[3].data) > 0


def test_compiled_sampling_draws_the_same_priorities_as_eager(rng):
    """Without given priorities the sampler draws from lucid.random, which compiled code
    reproduces: under one seed, compiled targets equal eager ones."""
    _, (gb, gl, gv) = make_gt(rng, [3, 2])
    anchors = lucid.tensor(ANCHORS)

    def f(gb, gv):
        return T.rpn_targets(anchors, gb, gv, batch_size_per_image=32)

    lucid.random.seed(11)
    eager = f(gb, gv)
    lucid.random.seed(11)
    compiled = lucid.compile(f)(gb, gv)
    np.testing.assert_array_equal(compiled[0].data, eager[0].data)
    np.testing.assert_array_equal(compiled[1].data, eager[1].data)
    np.testing.assert_allclose(compiled[2].data, eager[2].data, rtol=1e-6, atol=1e-7)  # native log
    lucid.random.seed(12)
    other = f(gb, gv)
    assert not np.array_equal(other[1].data, eager[1].data)  # another draw, another sample
