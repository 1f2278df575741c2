"""Training targets for Faster R-CNN: ground-truth padding, matching, sampling, encoding.

Everything after `pad_targets` is written with lucid ops on static shapes, so a training
step that calls it traces into one graph and compiles: matching is a max/argmax over an
IoU matrix, sampling ranks random priorities with argsort, and the variable number of
objects per image becomes a fixed G with a `gt_valid` mask. A loop over the images of a
batch unrolls; there is no Python loop over boxes.

The semantics are torchvision's (models/detection/_utils.py): its `Matcher`, with
`allow_low_quality_matches` for the RPN, and its `BalancedPositiveNegativeSampler`
(at most batch_size_per_image * positive_fraction positives, drawn uniformly; negatives
fill the rest of the batch). torchvision draws with `randperm`; here each candidate gets
a uniform priority and the highest priorities win, which picks a uniformly random subset
of the same size. The priorities come from `lucid.random.rand` unless given.
"""
from collections.abc import Mapping

import numpy as np

from ... import dtypes as _dt
from ...errors import DTypeError, LucidError, ShapeError
from ...ops.detection import box_encode, box_iou
from ...ops.elementwise import cast, logical_and, logical_not, logical_or, where
from ...ops.indexing import argsort, gather
from ...ops.reduce import argmax, max as _max, sum as _sum
from ...ops.shape import broadcast_to, concatenate, reshape, slice_axis, stack, unsqueeze
from ...tensor import Tensor

__all__ = ["pad_targets", "rpn_targets", "roi_targets", "match", "balanced_sample"]

# A box substituted for padding (and invalid proposals) before IoUs and encodings, so
# that no 0/0 or log(0) appears in the graph; masks keep it out of every result.
_DUMMY_BOX = np.array([0.0, 0.0, 1.0, 1.0], dtype=np.float32)


# ---- pad_targets ------------------------------------------------------------------------

def _field(where_, i, target, key):
    if key not in target:
        raise LucidError(f"{where_}: targets[{i}] has no {key!r} key (expected a dict with 'boxes' [k, 4] "
                         f"and 'labels' [k]), got keys {sorted(map(str, target))}")
    value = target[key]
    return value if isinstance(value, Tensor) else np.asarray(value)


def _check_image(where_, i, boxes, labels, valid, num_classes):
    """Shape and dtype checks of one image's target, value checks where values are known.
    Returns k, the number of (padded or not) boxes it holds."""
    bshape = tuple(boxes.shape)
    if bshape == (0,):
        bshape = (0, 4)
    if len(bshape) != 2 or bshape[1] != 4:
        raise ShapeError(f"{where_}: targets[{i}]['boxes'] must have shape [k, 4] (x1, y1, x2, y2), "
                         f"got {bshape}")
    k = bshape[0]
    if tuple(labels.shape) != (k,):
        raise ShapeError(f"{where_}: targets[{i}]['labels'] must have shape ({k},) to match its {k} boxes, "
                         f"got {tuple(labels.shape)}")
    if isinstance(labels, Tensor):
        label_ok, ldt = labels.dtype.is_int, labels.dtype
    else:  # an empty list becomes a float64 array: no labels, nothing wrong
        label_ok, ldt = labels.dtype.kind in "iu" or labels.size == 0, labels.dtype
    if not label_ok:
        raise DTypeError(f"{where_}: targets[{i}]['labels'] must be integer class indices, got {ldt}")
    box_ok = (boxes.dtype.is_float or boxes.dtype.is_int) if isinstance(boxes, Tensor) else boxes.dtype.kind in "iuf"
    if not box_ok and boxes.size:
        raise DTypeError(f"{where_}: targets[{i}]['boxes'] must be numbers, got {boxes.dtype}")
    if valid is not None and tuple(valid.shape) != (k,):
        raise ShapeError(f"{where_}: targets[{i}]['valid'] must have shape ({k},), got {tuple(valid.shape)}")
    if any(isinstance(v, Tensor) and v.is_tracer for v in (boxes, labels, valid)):
        return k  # values unknown while tracing
    b = np.asarray(boxes.data if isinstance(boxes, Tensor) else boxes, dtype=np.float64).reshape(k, 4)
    lab = np.asarray(labels.data if isinstance(labels, Tensor) else labels).reshape(k)
    keep = np.ones(k, bool) if valid is None else np.asarray(valid.data if isinstance(valid, Tensor) else valid,
                                                              dtype=bool)
    b, lab = b[keep], lab[keep]
    if not np.all(np.isfinite(b)):
        raise LucidError(f"{where_}: targets[{i}]['boxes'] holds a non-finite coordinate")
    bad = np.flatnonzero((b[:, 2] <= b[:, 0]) | (b[:, 3] <= b[:, 1]))
    if bad.size:
        raise LucidError(f"{where_}: targets[{i}]['boxes'][{int(np.flatnonzero(keep)[bad[0]])}] = "
                         f"{b[bad[0]].tolist()} must have x2 > x1 and y2 > y1 (positive width and height)")
    hi = num_classes - 1 if num_classes is not None else None
    out = (lab < 1) | ((lab > hi) if hi is not None else False)
    if np.any(out):
        j = int(np.flatnonzero(out)[0])
        rng = f"1..{hi}" if hi is not None else ">= 1"
        raise LucidError(f"{where_}: targets[{i}]['labels'] holds class {int(lab[j])}, out of range {rng} "
                         f"(0 is the background)")
    return k


def pad_targets(targets, num_images, *, num_classes=None, num_boxes=None, caller="get_loss"):
    """The user's list of per-image dicts {"boxes": [k, 4], "labels": [k]} as padded arrays
    (gt_boxes [N, G, 4] float32, gt_labels [N, G] int64, gt_valid [N, G] bool), with
    G = max(1, largest k, num_boxes). Boxes are pixel (x1, y1, x2, y2); labels are
    1..num_classes-1 (0 is the background). k may be 0.

    Values may be numpy arrays, lists or lucid tensors. An optional "valid" [k] bool entry
    marks padding the caller did itself (entries marked False are ignored and unchecked):
    it lets a compiled training step take fixed-size [N, K] target tensors.
    With tracer inputs the padding is built with lucid ops and only shapes are checked.
    Errors name `caller` (the user-facing function) and the offending image and key."""
    if not isinstance(targets, (list, tuple)):
        raise LucidError(f"{caller}: targets must be a list of dicts (one per image), got {type(targets).__name__}")
    if len(targets) != num_images:
        raise LucidError(f"{caller}: got {len(targets)} targets for {num_images} images (one dict per image)")
    items = []
    for i, t in enumerate(targets):
        if not isinstance(t, Mapping):
            raise LucidError(f"{caller}: targets[{i}] must be a dict with 'boxes' and 'labels', "
                             f"got {type(t).__name__}")
        boxes, labels = _field(caller, i, t, "boxes"), _field(caller, i, t, "labels")
        valid = t.get("valid")
        if valid is not None and not isinstance(valid, Tensor):
            valid = np.asarray(valid, dtype=bool)
        k = _check_image(caller, i, boxes, labels, valid, num_classes)
        items.append((boxes, labels, valid, k))
    g = max([1, int(num_boxes or 0)] + [k for *_, k in items])
    traced = any(isinstance(v, Tensor) and v.is_tracer for it in items for v in it[:3])
    if not traced:
        out_b = np.zeros((num_images, g, 4), np.float32)
        out_l = np.zeros((num_images, g), np.int64)
        out_v = np.zeros((num_images, g), bool)
        for i, (boxes, labels, valid, k) in enumerate(items):
            keep = np.ones(k, bool) if valid is None else np.asarray(
                valid.data if isinstance(valid, Tensor) else valid, bool)
            b = np.asarray(boxes.data if isinstance(boxes, Tensor) else boxes, np.float32).reshape(k, 4)
            lab = np.asarray(labels.data if isinstance(labels, Tensor) else labels).reshape(k)
            out_b[i, :k] = np.where(keep[:, None], b, 0.0)
            out_l[i, :k] = np.where(keep, lab, 0)
            out_v[i, :k] = keep
        return Tensor._wrap(out_b), Tensor._wrap(out_l), Tensor._wrap(out_v)
    rows_b, rows_l, rows_v = [], [], []
    for boxes, labels, valid, k in items:
        b = cast(boxes if isinstance(boxes, Tensor) else Tensor(np.asarray(boxes, np.float32).reshape(k, 4)),
                 _dt.float32)
        lab = cast(labels if isinstance(labels, Tensor) else Tensor(np.asarray(labels).reshape(k)), _dt.int64)
        v = (cast(valid, _dt.bool_) if isinstance(valid, Tensor)
             else Tensor._wrap(np.ones(k, bool) if valid is None else valid))
        if g > k:
            b = concatenate([b, Tensor._wrap(np.zeros((g - k, 4), np.float32))], axis=0)
            lab = concatenate([lab, Tensor._wrap(np.zeros(g - k, np.int64))], axis=0)
            v = concatenate([v, Tensor._wrap(np.zeros(g - k, bool))], axis=0)
        rows_b.append(where(unsqueeze(v, -1), b, 0.0))
        rows_l.append(where(v, lab, Tensor._wrap(np.zeros((), np.int64))))
        rows_v.append(v)
    return stack(rows_b, axis=0), stack(rows_l, axis=0), stack(rows_v, axis=0)


# ---- matching and sampling --------------------------------------------------------------

def match(iou, valid, fg_iou, bg_iou, allow_low_quality_matches=False):
    """torchvision's Matcher on one image's IoU matrix [G, M] (ground truth x candidates)
    whose rows `valid` [G] says are real. Returns (matched gt index [M] int64, fg [M] bool,
    bg [M] bool): a candidate is foreground when its best IoU is >= fg_iou, background
    when it is < bg_iou, neither in between. With low-quality matches, every candidate
    that is the best one for some real ground-truth box (ties included) is foreground and
    keeps its own best match, as torchvision does. With no real box, all are background."""
    q = where(unsqueeze(valid, -1), iou, -1.0)
    best = _max(q, axis=0)
    idx = argmax(q, axis=0)
    fg = best >= fg_iou
    bg = best < bg_iou
    if allow_low_quality_matches:
        top = _max(q, axis=1, keepdims=True)
        hit = logical_and(q == top, unsqueeze(valid, -1))
        low = _max(cast(hit, _dt.float32), axis=0) > 0.0
        fg = logical_or(fg, low)
        bg = logical_and(bg, logical_not(low))
    return idx, fg, bg


def _rank(scores):
    """Each element's position in its row sorted descending (stable: ties by index)."""
    return argsort(argsort(scores, axis=1, descending=True), axis=1)


def balanced_sample(positive, negative, priorities, batch_size_per_image, positive_fraction):
    """torchvision's BalancedPositiveNegativeSampler on [N, M] masks: per row, the
    min(#positive, int(batch * fraction)) positives and then min(#negative, batch - that)
    negatives with the highest `priorities` (uniform in [0, 1): a uniform random subset).
    Returns the (sampled positive, sampled negative) bool masks."""
    num_pos = int(batch_size_per_image * positive_fraction)
    take_pos = logical_and(positive, _rank(where(positive, priorities, -1.0)) < num_pos)
    n_pos = _sum(cast(take_pos, _dt.int64), axis=1, keepdims=True)
    room = Tensor._wrap(np.asarray(batch_size_per_image, np.int64)) - n_pos
    take_neg = logical_and(negative, _rank(where(negative, priorities, -1.0)) < room)
    return take_pos, take_neg


def _check_common(fn, gt_boxes, gt_valid, fg_iou, bg_iou, batch_size_per_image, positive_fraction, weights):
    if gt_boxes.ndim != 3 or gt_boxes.shape[-1] != 4:
        raise ShapeError(f"{fn}: gt_boxes must have shape [N, G, 4], got {tuple(gt_boxes.shape)}")
    if tuple(gt_valid.shape) != tuple(gt_boxes.shape[:2]) or gt_valid.dtype is not _dt.bool_:
        raise ShapeError(f"{fn}: gt_valid must be bool of shape {tuple(gt_boxes.shape[:2])} to match gt_boxes "
                         f"{tuple(gt_boxes.shape)}, got {gt_valid.dtype} {tuple(gt_valid.shape)}")
    if not bg_iou <= fg_iou:
        raise LucidError(f"{fn}: bg_iou={bg_iou} must not exceed fg_iou={fg_iou}")
    if int(batch_size_per_image) < 1 or not 0.0 < positive_fraction <= 1.0:
        raise LucidError(f"{fn}: need batch_size_per_image >= 1 and 0 < positive_fraction <= 1, got "
                         f"{batch_size_per_image}, {positive_fraction}")
    if len(tuple(weights)) != 4:
        raise LucidError(f"{fn}: weights must be 4 numbers (wx, wy, ww, wh), got {weights!r}")


def _as_tensor(x, dtype=None):
    t = x if isinstance(x, Tensor) else Tensor(np.asarray(x))
    return cast(t, dtype) if dtype is not None and t.dtype is not dtype else t


def _safe(boxes, valid):
    """Boxes with the entries `valid` rejects replaced by a harmless unit box."""
    return where(unsqueeze(valid, -1), boxes, Tensor._wrap(_DUMMY_BOX))


def _priorities(fn, priorities, shape):
    if priorities is None:
        from ... import random

        return random.rand(*shape)
    p = _as_tensor(priorities, _dt.float32)
    if tuple(p.shape) != tuple(shape):
        raise ShapeError(f"{fn}: priorities must have shape {tuple(shape)}, got {tuple(p.shape)}")
    return p


def _gather_rows(x, idx):
    """x[n, idx[n, j], ...] for x [N, M, d...] and idx [N, K]: [N, K, d...]."""
    if x.ndim == 2:
        return gather(x, idx, axis=1)
    shaped = reshape(idx, tuple(idx.shape) + (1,) * (x.ndim - 2))
    return gather(x, broadcast_to(shaped, tuple(idx.shape) + tuple(x.shape[2:])), axis=1)


def rpn_targets(anchors, gt_boxes, gt_valid, *, fg_iou=0.7, bg_iou=0.3, batch_size_per_image=256,
                positive_fraction=0.5, weights=(1.0, 1.0, 1.0, 1.0), priorities=None):
    """Targets of the region proposal network for anchors [A, 4] and padded ground truth
    (gt_boxes [N, G, 4], gt_valid [N, G]): (labels [N, A] float32, 1 foreground and 0
    otherwise; sampled [N, A] float32 mask of the anchors the loss uses; reg_targets
    [N, A, 4], the encoded matched box of each foreground anchor and 0 elsewhere).
    `priorities` [N, A] in [0, 1) drive the sampling (default: lucid.random.rand)."""
    anchors = _as_tensor(anchors, _dt.float32).detach()
    gt_boxes = _as_tensor(gt_boxes, _dt.float32).detach()
    gt_valid = _as_tensor(gt_valid)
    if anchors.ndim != 2 or anchors.shape[1] != 4:
        raise ShapeError(f"rpn_targets: anchors must have shape [A, 4], got {tuple(anchors.shape)}")
    _check_common("rpn_targets", gt_boxes, gt_valid, fg_iou, bg_iou, batch_size_per_image, positive_fraction,
                  weights)
    n, a = gt_boxes.shape[0], anchors.shape[0]
    prio = _priorities("rpn_targets", priorities, (n, a))
    safe = _safe(gt_boxes, gt_valid)
    idx, fg, bg = [], [], []
    for i in range(n):
        m, f, b = match(box_iou(safe[i], anchors), gt_valid[i], fg_iou, bg_iou, allow_low_quality_matches=True)
        idx.append(m), fg.append(f), bg.append(b)
    idx, fg, bg = stack(idx, axis=0), stack(fg, axis=0), stack(bg, axis=0)
    take_pos, take_neg = balanced_sample(fg, bg, prio, batch_size_per_image, positive_fraction)
    matched = _gather_rows(safe, idx)
    enc = box_encode(matched, unsqueeze(anchors, 0), weights=tuple(float(w) for w in weights))
    reg = where(unsqueeze(fg, -1), enc, 0.0)
    return cast(fg, _dt.float32), cast(logical_or(take_pos, take_neg), _dt.float32), reg


def roi_targets(proposals, proposal_valid, gt_boxes, gt_labels, gt_valid, *, fg_iou=0.5, bg_iou=0.5,
                batch_size_per_image=512, positive_fraction=0.25, weights=(10.0, 10.0, 5.0, 5.0),
                priorities=None):
    """Targets of the box head: the proposals [N, R, 4] (detached) and the ground-truth
    boxes join as candidates (as torchvision), are matched without low-quality matches
    and sampled; S = batch_size_per_image slots per image receive the sampled ones
    (in candidate order), the rest are padding. Returns (rois [N, S, 4], labels [N, S]
    int64, 0 = background and padding; reg_targets [N, S, 4], the encoded matched box for
    foreground slots and 0 elsewhere; sampled [N, S] float32 mask). Invalid proposals and
    padded ground truth are never sampled. `priorities` [N, R + G] drive the sampling."""
    proposals = _as_tensor(proposals, _dt.float32).detach()
    proposal_valid = _as_tensor(proposal_valid)
    gt_boxes = _as_tensor(gt_boxes, _dt.float32).detach()
    gt_labels = _as_tensor(gt_labels, _dt.int64)
    gt_valid = _as_tensor(gt_valid)
    _check_common("roi_targets", gt_boxes, gt_valid, fg_iou, bg_iou, batch_size_per_image, positive_fraction,
                  weights)
    n, g = gt_boxes.shape[0], gt_boxes.shape[1]
    if proposals.ndim != 3 or proposals.shape[0] != n or proposals.shape[2] != 4:
        raise ShapeError(f"roi_targets: proposals must have shape [{n}, R, 4] to match gt_boxes "
                         f"{tuple(gt_boxes.shape)}, got {tuple(proposals.shape)}")
    if tuple(proposal_valid.shape) != tuple(proposals.shape[:2]) or proposal_valid.dtype is not _dt.bool_:
        raise ShapeError(f"roi_targets: proposal_valid must be bool of shape {tuple(proposals.shape[:2])}, "
                         f"got {proposal_valid.dtype} {tuple(proposal_valid.shape)}")
    if tuple(gt_labels.shape) != (n, g):
        raise ShapeError(f"roi_targets: gt_labels must have shape {(n, g)}, got {tuple(gt_labels.shape)}")
    s = int(batch_size_per_image)
    cand = concatenate([proposals, gt_boxes], axis=1)
    cvalid = concatenate([proposal_valid, gt_valid], axis=1)
    c = cand.shape[1]
    prio = _priorities("roi_targets", priorities, (n, c))
    cand = _safe(cand, cvalid)
    safe = _safe(gt_boxes, gt_valid)
    idx, fg, bg = [], [], []
    for i in range(n):
        m, f, b = match(box_iou(safe[i], cand[i]), gt_valid[i], fg_iou, bg_iou)
        idx.append(m), fg.append(f), bg.append(b)
    idx, fg, bg = stack(idx, axis=0), stack(fg, axis=0), stack(bg, axis=0)
    pos, neg = logical_and(fg, cvalid), logical_and(bg, cvalid)
    take_pos, take_neg = balanced_sample(pos, neg, prio, s, positive_fraction)
    sampled = logical_or(take_pos, take_neg)
    labels = where(pos, gather(gt_labels, idx, axis=1), Tensor._wrap(np.zeros((), np.int64)))
    enc = box_encode(_gather_rows(safe, idx), cand, weights=tuple(float(w) for w in weights))
    reg = where(unsqueeze(pos, -1), enc, 0.0)
    # The sampled candidates first (stable: in candidate order), then the rest.
    order = argsort(cast(sampled, _dt.float32), axis=1, descending=True)
    keep = min(c, s)
    if keep < c:
        order = slice_axis(order, 1, 0, keep)
    slot_sampled = _gather_rows(sampled, order)
    if keep < s:  # fewer candidates than slots: pad with candidate 0, never sampled
        order = concatenate([order, Tensor._wrap(np.zeros((n, s - keep), np.int64))], axis=1)
        slot_sampled = concatenate([slot_sampled, Tensor._wrap(np.zeros((n, s - keep), bool))], axis=1)
    rois = _gather_rows(cand, order)
    zero = Tensor._wrap(np.zeros((), np.int64))
    slot_labels = where(slot_sampled, _gather_rows(labels, order), zero)
    slot_reg = where(unsqueeze(slot_sampled, -1), _gather_rows(reg, order), 0.0)
    return rois, slot_labels, slot_reg, cast(slot_sampled, _dt.float32)
