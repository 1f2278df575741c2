"""Detection quality: PASCAL VOC average precision (all-point interpolation) and its mean.

This is evaluation, not training: it runs on concrete predictions with numpy and never
traces. The rules are the VOC devkit's (VOC2010 onwards, as detectron2's
pascal_voc_evaluation): per class, the detections of all images are ranked by score;
each is a true positive when its best-overlapping ground-truth box of that class in its
image has IoU above the threshold and was not claimed by a higher-scored detection,
otherwise a false positive. AP is the area under the precision/recall curve after
precision is made monotone (the "all-point" interpolation). Boxes are continuous pixel
coordinates (no "+1" on widths). The mean runs over the classes that have ground truth.
"""
import numpy as np

from ...errors import LucidError, ShapeError
from ...tensor import Tensor

__all__ = ["average_precision", "average_precisions", "mean_average_precision"]


def _array(x, dtype):
    if isinstance(x, Tensor):
        x = x.data
    return np.asarray(x, dtype=dtype)


def _boxes(where, i, d, key="boxes"):
    if key not in d:
        raise LucidError(f"{where}: entry {i} has no {key!r} key")
    b = _array(d[key], np.float64)
    if b.size == 0:
        return b.reshape(0, 4)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ShapeError(f"{where}: entry {i} {key!r} must have shape [k, 4], got {b.shape}")
    return b


def _column(where, i, d, key, k, dtype):
    if key not in d:
        raise LucidError(f"{where}: entry {i} has no {key!r} key")
    v = _array(d[key], dtype).reshape(-1)
    if v.shape != (k,):
        raise ShapeError(f"{where}: entry {i} {key!r} must have shape ({k},) to match its boxes, got {v.shape}")
    return v


def _iou(a, b):
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def average_precision(recall, precision):
    """The all-point interpolated area under a precision/recall curve (VOC2010+):
    precision made non-increasing from the right, summed over the recall steps."""
    mrec = np.concatenate([[0.0], np.asarray(recall, np.float64), [1.0]])
    mpre = np.concatenate([[0.0], np.asarray(precision, np.float64), [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    step = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[step + 1] - mrec[step]) * mpre[step + 1]))


def average_precisions(predictions, targets, iou_threshold=0.5):
    """AP per class (a dict class -> AP) of `predictions` (one dict per image with "boxes"
    [k, 4], "scores" [k], "labels" [k], as `model.predict` returns) against `targets` (one
    dict per image with "boxes" and "labels"). Only classes with ground truth appear."""
    where = "average_precisions"
    if len(predictions) != len(targets):
        raise LucidError(f"{where}: {len(predictions)} predictions for {len(targets)} targets (one per image)")
    dets, gts = [], []
    for i, (p, t) in enumerate(zip(predictions, targets)):
        pb = _boxes(where + ": predictions", i, p)
        dets.append((pb, _column(where + ": predictions", i, p, "scores", len(pb), np.float64),
                     _column(where + ": predictions", i, p, "labels", len(pb), np.int64)))
        tb = _boxes(where + ": targets", i, t)
        gts.append((tb, _column(where + ": targets", i, t, "labels", len(tb), np.int64)))
    classes = np.unique(np.concatenate([lab for _, lab in gts])) if gts else np.zeros(0, np.int64)
    out = {}
    for c in classes.tolist():
        img_of, scores, tp = [], [], []
        npos = 0
        for i, ((pb, ps, pl), (tb, tl)) in enumerate(zip(dets, gts)):
            g = tb[tl == c]
            npos += len(g)
            sel = pl == c
            if not sel.any():
                continue
            img_of.append(np.full(sel.sum(), i)), scores.append(ps[sel])
            tp.append(_claims(pb[sel], ps[sel], g, iou_threshold))
        if not scores:
            out[c] = 0.0
            continue
        scores, tp = np.concatenate(scores), np.concatenate(tp)
        # Rank all detections of the class by score (stable: image order, then rank in image).
        order = np.argsort(-scores, kind="stable")
        tp = tp[order]
        ctp, cfp = np.cumsum(tp), np.cumsum(1.0 - tp)
        out[c] = average_precision(ctp / npos, ctp / np.maximum(ctp + cfp, np.finfo(np.float64).eps))
    return out


def _claims(boxes, scores, gt, thr):
    """1.0 for each detection of one image and class that claims a ground-truth box
    (greedily, by descending score), else 0.0; in the detections' own order."""
    tp = np.zeros(len(boxes))
    if len(gt) == 0:
        return tp
    iou = _iou(boxes, gt)
    taken = np.zeros(len(gt), bool)
    # Greedy in score order; the claims in one image do not depend on other images.
    for j in np.argsort(-scores, kind="stable"):
        best = int(np.argmax(iou[j]))
        if iou[j, best] > thr and not taken[best]:
            taken[best] = True
            tp[j] = 1.0
    return tp


def mean_average_precision(predictions, targets, iou_threshold=0.5):
    """mAP@iou_threshold: the mean of `average_precisions` over the classes that have
    ground truth (NaN when no image has any)."""
    aps = average_precisions(predictions, targets, iou_threshold)
    return float(np.mean(list(aps.values()))) if aps else float("nan")
