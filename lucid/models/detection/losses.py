"""The four Faster R-CNN losses, as torchvision computes them, on static shapes.

torchvision gathers the sampled anchors (or RoIs) of the whole batch into one list and
averages over it. Here the targets come as fixed-size tensors with a `sampled` mask, so
each loss is a masked sum divided by the number of sampled elements in the batch (at
least 1, so that a batch without samples gives 0 rather than NaN). The box losses are
smooth L1 with beta = 1/9 summed over the positives, divided by that same count.
"""
import numpy as np

from ... import dtypes as _dt
from ...errors import DTypeError, ShapeError
from ...nn import functional as F
from ...ops.elementwise import cast, maximum
from ...ops.indexing import gather
from ...ops.reduce import sum as _sum
from ...ops.shape import broadcast_to, reshape, unsqueeze
from ...tensor import Tensor

__all__ = ["rpn_loss", "roi_loss", "BOX_BETA"]

BOX_BETA = 1.0 / 9.0


def _float(x, dtype=_dt.float32):
    """x as a tensor of `dtype` (float32 by default; float64 scores keep float64, which
    finite-difference checks rely on)."""
    t = x if isinstance(x, Tensor) else Tensor(np.asarray(x, dtype.np))
    return t if t.dtype is dtype else cast(t, dtype)


def _score_dtype(t):
    return t.dtype if isinstance(t, Tensor) and t.dtype.is_float else _dt.float32


def _expect(fn, name, t, shape):
    if tuple(t.shape) != tuple(shape):
        raise ShapeError(f"{fn}: {name} must have shape {tuple(shape)}, got {tuple(t.shape)}")


def _count(sampled):
    return maximum(_sum(sampled), 1.0)


def rpn_loss(objectness, rpn_deltas, labels, sampled, reg_targets):
    """(objectness loss, box loss) of the RPN: binary cross-entropy with logits over the
    sampled anchors, smooth L1 (beta 1/9) over the sampled foreground anchors, both
    divided by the number of sampled anchors. objectness [N, A], rpn_deltas [N, A, 4];
    labels, sampled [N, A] and reg_targets [N, A, 4] from `rpn_targets`."""
    dt = _score_dtype(objectness)
    objectness = _float(objectness, dt)
    n_a = tuple(objectness.shape)
    if len(n_a) != 2:
        raise ShapeError(f"rpn_loss: objectness must have shape [N, A], got {n_a}")
    labels, sampled, reg_targets = _float(labels, dt), _float(sampled, dt), _float(reg_targets, dt).detach()
    _expect("rpn_loss", "rpn_deltas", rpn_deltas, n_a + (4,))
    _expect("rpn_loss", "labels", labels, n_a)
    _expect("rpn_loss", "sampled", sampled, n_a)
    _expect("rpn_loss", "reg_targets", reg_targets, n_a + (4,))
    labels, sampled = labels.detach(), sampled.detach()
    count = _count(sampled)
    bce = F.binary_cross_entropy_with_logits(objectness, labels, reduction="none")
    cls_loss = _sum(bce * sampled) / count
    box = F.smooth_l1_loss(_float(rpn_deltas, dt), reg_targets, reduction="none", beta=BOX_BETA)
    reg_loss = _sum(box * unsqueeze(sampled * labels, -1)) / count
    return cls_loss, reg_loss


def roi_loss(class_logits, box_regression, labels, reg_targets, sampled):
    """(classification loss, box loss) of the box head: cross-entropy over the sampled
    RoIs; smooth L1 (beta 1/9) of each foreground RoI's deltas for its own class; both
    divided by the number of sampled RoIs. class_logits [N, S, C], box_regression
    [N, S, C, 4]; labels [N, S] int64, reg_targets [N, S, 4], sampled [N, S] from
    `roi_targets`."""
    dt = _score_dtype(class_logits)
    class_logits = _float(class_logits, dt)
    if class_logits.ndim != 3:
        raise ShapeError(f"roi_loss: class_logits must have shape [N, S, C], got {tuple(class_logits.shape)}")
    n, s, c = class_logits.shape
    labels = labels if isinstance(labels, Tensor) else Tensor(np.asarray(labels))
    if not labels.dtype.is_int:
        raise DTypeError(f"roi_loss: labels must be integer class indices, got {labels.dtype}")
    labels = cast(labels, _dt.int64).detach()
    sampled, reg_targets = _float(sampled, dt).detach(), _float(reg_targets, dt).detach()
    _expect("roi_loss", "box_regression", box_regression, (n, s, c, 4))
    _expect("roi_loss", "labels", labels, (n, s))
    _expect("roi_loss", "reg_targets", reg_targets, (n, s, 4))
    _expect("roi_loss", "sampled", sampled, (n, s))
    count = _count(sampled)
    ce = F.cross_entropy(reshape(class_logits, (n * s, c)), reshape(labels, (n * s,)), reduction="none")
    cls_loss = _sum(reshape(ce, (n, s)) * sampled) / count
    idx = broadcast_to(reshape(labels, (n, s, 1, 1)), (n, s, 1, 4))
    own = reshape(gather(_float(box_regression, dt), idx, axis=2), (n, s, 4))
    positive = sampled * cast(labels > 0, dt)
    box = F.smooth_l1_loss(own, reg_targets, reduction="none", beta=BOX_BETA)
    reg_loss = _sum(box * unsqueeze(positive, -1)) / count
    return cls_loss, reg_loss
