"""The second stage: pooling proposals from the pyramid, choosing each RoI's class deltas,
and turning the box head's outputs into detections.

Pooling is torchvision's MultiScaleRoIAlign: 7x7 bins, 2x2 bilinear samples per bin,
aligned=False, each RoI taken from the level the FPN rule picks, floor(4 + log2(sqrt(area)
/ 224)) clamped to [2, 5], with the area in pixels. (The Lucid framework applied the rule
to boxes already scaled to [0, 1], whose areas are below 1, so every RoI came from P2.)

Box regression uses torchvision's weights (10, 10, 5, 5): the head predicts deltas scaled
by them, the same as Lucid's "bbox_reg_stds" (0.1, 0.1, 0.2, 0.2).
"""
import numpy as np

from ...nn import functional as F
from ...ops.detection import batched_nms, box_decode, clip_boxes, multiscale_roi_align
from ...ops.indexing import gather
from ...ops.reduce import argmax
from ...ops.shape import broadcast_to, concatenate, reshape, unsqueeze
from ...tensor import Tensor

BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)


def pool_rois(features, boxes, output_size=(7, 7), sampling_ratio=2):
    """RoI Align of boxes [N, R, 4] (pixels) over the FPN maps P2..: [N * R, C, oh, ow],
    image-major (RoI r of image i is row i * R + r)."""
    n, r = boxes.shape[0], boxes.shape[1]
    index = np.repeat(np.arange(n, dtype=boxes.dtype.np), r).reshape(n * r, 1)
    rois = concatenate([Tensor._wrap(index), reshape(boxes, (n * r, 4))], axis=1)
    return multiscale_roi_align(rois, features, output_size=output_size, sampling_ratio=sampling_ratio,
                                aligned=False)


def best_class_deltas(cls_logits, class_deltas):
    """Deltas [N, R, 4] of each RoI's highest-scoring foreground class (class 0 is the
    background), from cls_logits [N, R, C] and class_deltas [N, R, C, 4]."""
    n, r, c = cls_logits.shape
    best = argmax(cls_logits[:, :, 1:], axis=-1) + 1  # [N, R] int64
    idx = broadcast_to(reshape(best, (n, r, 1, 1)), (n, r, 1, 4))
    return reshape(gather(class_deltas, idx, axis=2), (n, r, 4))


def postprocess_detections(cls_logits, class_deltas, proposals, valid, image_size, score_threshold=0.05,
                           nms_threshold=0.5, detections_per_image=100, min_size=1e-2, weights=BOX_WEIGHTS):
    """One dict {boxes [k, 4] pixel xyxy, scores [k], labels [k] int64} per image, as
    torchvision's postprocess_detections: softmax scores, each foreground class's deltas
    decoded on the proposal and clipped to the image, then candidates kept if the RoI is
    valid, the score above `score_threshold` and the box at least `min_size` wide and
    high; NMS per class at `nms_threshold`; the best `detections_per_image` by score.

    Eager only: the number of detections depends on the values."""
    height, width = image_size
    scores = F.softmax(cls_logits, axis=-1).numpy()
    boxes = clip_boxes(box_decode(class_deltas, unsqueeze(proposals, 2), weights), height, width).numpy()
    valid = np.asarray(valid.numpy() if isinstance(valid, Tensor) else valid, dtype=bool)
    n, r, c = scores.shape
    labels = np.broadcast_to(np.arange(1, c, dtype=np.int64), (r, c - 1))
    out = []
    for i in range(n):
        s, b = scores[i, :, 1:], boxes[i, :, 1:]
        wh = b[..., 2:] - b[..., :2]
        keep = valid[i][:, None] & (s > score_threshold) & (wh >= min_size).all(axis=-1)
        s, b, lab = s[keep], b[keep], labels[keep]
        if len(s):
            order = batched_nms(Tensor._wrap(b), Tensor._wrap(s), Tensor._wrap(lab), nms_threshold,
                                detections_per_image).numpy()
            order = order[order >= 0]
            s, b, lab = s[order], b[order], lab[order]
        out.append({"boxes": Tensor._wrap(np.ascontiguousarray(b.reshape(-1, 4))),
                    "scores": Tensor._wrap(np.ascontiguousarray(s)),
                    "labels": Tensor._wrap(np.ascontiguousarray(lab))})
    return out
