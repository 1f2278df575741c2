"""VOC mAP@0.5 on hand-computed cases."""
import numpy as np
import pytest

import lucid
from lucid.errors import LucidError, ShapeError
from lucid.models.detection.evaluate import average_precision, average_precisions, mean_average_precision


def det(boxes, scores, labels):
    return {"boxes": np.asarray(boxes, np.float32).reshape(-1, 4), "scores": np.asarray(scores, np.float32),
            "labels": np.asarray(labels, np.int64)}


def gt(boxes, labels):
    return {"boxes": np.asarray(boxes, np.float32).reshape(-1, 4), "labels": np.asarray(labels, np.int64)}


A, B = [0, 0, 10, 10], [20, 20, 40, 30]


def test_all_point_interpolation_by_hand():
    # precision 1, 0.5, 2/3 at recall 0.5, 0.5, 1: area 0.5 * 1 + 0.5 * 2/3
    assert average_precision([0.5, 0.5, 1.0], [1.0, 0.5, 2 / 3]) == pytest.approx(0.5 + 1 / 3)
    # a later, higher precision lifts the earlier recall steps
    assert average_precision([0.25, 0.5, 0.75], [0.5, 0.4, 0.6]) == pytest.approx(0.75 * 0.6)
    assert average_precision([], []) == 0.0


def test_perfect_detections_score_one():
    preds = [det([A, B], [0.9, 0.8], [1, 2]), det([B], [0.5], [1])]
    targets = [gt([A, B], [1, 2]), gt([B], [1])]
    assert average_precisions(preds, targets) == {1: 1.0, 2: 1.0}
    assert mean_average_precision(preds, targets) == 1.0


def test_false_positive_between_true_positives():
    preds = [det([A, B], [0.9, 0.8], [1, 1]), det([B], [0.7], [1])]  # B in image 0 is not a class-1 box
    targets = [gt([A], [1]), gt([B], [1])]
    assert mean_average_precision(preds, targets) == pytest.approx(0.5 * 1 + 0.5 * (2 / 3))


def test_duplicates_and_misses():
    near = [0, 0, 10, 9]  # IoU 0.9 with A
    preds = [det([near, A], [0.6, 0.9], [1, 1]), det([], [], [])]
    targets = [gt([A], [1]), gt([B], [1])]
    # A (0.9) is a TP, its duplicate (0.6) a FP; B is never found: recall stops at 0.5
    assert average_precisions(preds, targets)[1] == pytest.approx(0.5)


def test_iou_must_exceed_the_threshold():
    half = [0, 0, 10, 5]  # IoU exactly 0.5 with A
    assert mean_average_precision([det([half], [1.0], [1])], [gt([A], [1])]) == 0.0
    assert mean_average_precision([det([half], [1.0], [1])], [gt([A], [1])], iou_threshold=0.49) == 1.0


def test_a_claimed_box_is_not_given_twice():
    # two overlapping gt boxes; the lower-scored detection's best match is already claimed,
    # so it is a false positive even though the other box overlaps it above 0.5 (VOC's rule)
    g1, g2 = [0, 0, 10, 10], [0, 0, 10, 12]
    d = [0, 0, 10, 11]  # IoU 11/12 with g2... and 10/11 with g1: its best is g2
    preds = [det([g2, d], [0.9, 0.8], [1, 1])]
    targets = [gt([g1, g2], [1, 1])]
    # TP, FP: precision 1, 0.5 at recall 0.5, 0.5 -> AP 0.5
    assert mean_average_precision(preds, targets) == pytest.approx(0.5)


def test_classes_without_ground_truth_are_left_out():
    preds = [det([A, B], [0.9, 0.8], [1, 3])]
    targets = [gt([A, B], [1, 2])]
    aps = average_precisions(preds, targets)
    assert aps == {1: 1.0, 2: 0.0}
    assert mean_average_precision(preds, targets) == 0.5
    assert np.isnan(mean_average_precision([det([A], [1.0], [1])], [gt([], [])]))


def test_lucid_tensors_are_accepted():
    p = {"boxes": lucid.tensor(np.array([A], np.float32)), "scores": lucid.tensor([0.3]), "labels": lucid.tensor([2])}
    assert mean_average_precision([p], [{"boxes": lucid.tensor(np.array([A], np.float32)), "labels": [2]}]) == 1.0


def test_errors():
    with pytest.raises(LucidError, match="1 predictions for 2 targets"):
        mean_average_precision([det([A], [1], [1])], [gt([A], [1])] * 2)
    with pytest.raises(ShapeError, match="'scores'"):
        mean_average_precision([det([A], [1, 2], [1, 1])], [gt([A], [1])])
    with pytest.raises(LucidError, match="'labels'"):
        mean_average_precision([{"boxes": [A], "scores": [1.0]}], [gt([A], [1])])
