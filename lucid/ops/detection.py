"""Detection ops for Faster R-CNN: box geometry, non-maximum suppression, RoI Align.

Boxes are (x1, y1, x2, y2) in pixels along a last axis of 4, in a floating dtype. The
semantics are torchvision's (torchvision.ops and its BoxCoder), so weights trained there
behave the same here.

Primitives (each with a numpy reference and a native lowering):

- `box_iou(a[N,4], b[M,4]) -> [N,M]`: pairwise IoU. No gradient (torchvision's has none
  either; an IoU loss on matched pairs is a composite of elementwise ops instead).
- `box_encode(boxes, anchors)` / `box_decode(deltas, anchors)`: the (dx, dy, dw, dh)
  regression parametrisation with per-component `weights`; decode clamps dw and dh at
  `clip` = log(1000/16) before exp. Both differentiate; decode's anchors never get a
  gradient (proposals are detached in the detector, as in torchvision).
- `clip_boxes(boxes){height, width}`: coordinates clamped to the image; the gradient
  passes where a coordinate was inside [0, bound] (torch.clamp's rule).
- `nms(boxes, scores){iou_threshold, max_output}`: greedy NMS, torchvision.ops.nms
  exactly (stable descending sort, a box is dropped when its IoU with a kept box is
  strictly above the threshold), returning a static [max_output] int64 vector of kept
  indices in descending score order, padded with -1 (`keep >= 0` is the mask).
- `roi_align(features[N,C,H,W], rois[K,5]) -> [K,C,oh,ow]` with rows (batch index, x1, y1,
  x2, y2), torchvision.ops.roi_align's bilinear sampling; its adjoint in the features is
  `roi_align_grad`, and each op is the other's vjp (both are linear in their first input).
  Only a fixed `sampling_ratio > 0` is supported: torchvision's adaptive grid
  (ceil(roi_size / output_size) samples) depends on the box values, which a static
  graph and an unrolled native loop cannot follow. Faster R-CNN's box head uses 2.
  A batch index outside [0, N) is refused with a ShapeError by the reference (eager
  mode, interpreter) and by native code alike (lucid.codegen.checks).

Composites: `batched_nms` (per-class NMS through the coordinate-offset trick),
`multiscale_roi_align` (the FPN level rule `fpn_levels`; with traced RoIs every level
pools every RoI and the right one is selected: static shapes at the price of one
roi_align per level) and `anchor_grid` (a plain numpy function, not an op: anchors depend
only on shapes, so they are an eager constant that a trace captures as a frozen param,
folded at compile time).
"""
import math

import numpy as np

from .. import dtypes as _dt
from ..errors import DTypeError, ShapeError
from ..ir.types import TensorType
from ..tensor import Tensor
from . import _rules as R
from .registry import ELEMENTWISE, OPAQUE, OUT_FUSABLE, REQUIRED, Sample, defop

__all__ = ["box_iou", "box_encode", "box_decode", "clip_boxes", "nms", "batched_nms", "roi_align",
           "multiscale_roi_align", "fpn_levels", "anchor_grid", "strict_threshold", "BBOX_XFORM_CLIP"]

BBOX_XFORM_CLIP = math.log(1000.0 / 16)  # torchvision's cap on dw, dh before exp


def _as_t(x):
    return x if isinstance(x, Tensor) else Tensor(x)


# ---- shared checks ----------------------------------------------------------------------

def _boxes_type(op, name, t, ndim=None):
    if not t.dtype.is_float:
        raise DTypeError(f"{op}: {name} must be floating boxes, got {t.dtype}")
    if t.ndim < 1 or t.shape[-1] != 4 or (ndim is not None and t.ndim != ndim):
        want = f"[{', '.join('N' * (ndim - 1))}, 4]" if ndim else "[..., 4]"
        raise ShapeError(f"{op}: {name} must have shape {want} (x1, y1, x2, y2), got {t.shape}")


def _weights(op, weights):
    if not (isinstance(weights, tuple) and len(weights) == 4):
        raise ShapeError(f"{op}: weights must be a 4-tuple (wx, wy, ww, wh), got {weights!r}")


def _xyxy(a):
    return a[..., 0], a[..., 1], a[..., 2], a[..., 3]


def strict_threshold(threshold, dtype):
    """The `dtype` value t with (v > t) == (float64(v) > threshold) for every `dtype` v.

    torchvision compares a float32 IoU with the threshold as a double; numpy would round
    the threshold to float32 first (0.3 rounds up), which keeps boxes torchvision drops.
    The native kernel compares with this same constant."""
    t = np.asarray(threshold, dtype=dtype)
    if float(t) > float(threshold):
        t = np.nextafter(t, np.asarray(-np.inf, dtype=dtype))
    return t[()]


# ---- box_iou ------------------------------------------------------------------------------

def _box_iou_infer(a, b):
    _boxes_type("box_iou", "a", a, 2)
    _boxes_type("box_iou", "b", b, 2)
    return TensorType((a.shape[0], b.shape[0]), R.same_dtype("box_iou", a, b))


def _areas(x):
    x1, y1, x2, y2 = _xyxy(x)
    return (x2 - x1) * (y2 - y1)


def _box_iou_ref(a, b):
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.maximum(rb - lt, 0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (_areas(a)[:, None] + _areas(b)[None, :] - inter)


def _torch_box_iou(torch, a, b):
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def random_boxes(rng, n, size=20.0, low=2.0, high=10.0):
    """`n` float64 boxes with corners in [0, size) and sides in [low, high)."""
    xy = rng.uniform(0, size, (n, 2))
    wh = rng.uniform(low, high, (n, 2))
    return np.concatenate([xy, xy + wh], axis=1)


def _box_iou_samples(rng):
    a, b = random_boxes(rng, 5), random_boxes(rng, 4)
    b[0] = a[1]  # identical boxes: IoU 1
    b[1] = a[2] + 40.0  # far away: IoU 0
    return [Sample([a, b], grad=False), Sample([random_boxes(rng, 1), random_boxes(rng, 7, low=0.5)], grad=False)]


_box_iou = defop(
    "box_iou", infer=_box_iou_infer, reference=_box_iou_ref, fusion=OUT_FUSABLE, samples=_box_iou_samples,
    torch=_torch_box_iou,
    doc="Pairwise IoU of boxes a[N,4] and b[M,4] (torchvision.ops.box_iou); no gradient.")


# ---- box_encode / box_decode --------------------------------------------------------------

def _coder_infer(op, first):
    def infer(x, anchors, weights, **_):
        _boxes_type(op, first, x)
        _boxes_type(op, "anchors", anchors)
        _weights(op, weights)
        d = R.same_dtype(op, x, anchors)
        return TensorType(R.broadcast_shapes(op, x.shape, anchors.shape), d)

    return infer


def _box_encode_ref(boxes, anchors, weights):
    wx, wy, ww, wh = weights
    ax1, ay1, ax2, ay2 = _xyxy(anchors)
    bx1, by1, bx2, by2 = _xyxy(boxes)
    ew, eh = ax2 - ax1, ay2 - ay1
    ecx, ecy = ax1 + 0.5 * ew, ay1 + 0.5 * eh
    gw, gh = bx2 - bx1, by2 - by1
    gcx, gcy = bx1 + 0.5 * gw, by1 + 0.5 * gh
    return np.stack([wx * (gcx - ecx) / ew, wy * (gcy - ecy) / eh,
                     ww * np.log(gw / ew), wh * np.log(gh / eh)], axis=-1)


def _box_encode_vjp(g, y, boxes, anchors, weights):
    from .shape import stack

    wx, wy, ww, wh = weights
    g0, g1, g2, g3 = _xyxy(g)
    ax1, ay1, ax2, ay2 = _xyxy(anchors)
    bx1, by1, bx2, by2 = _xyxy(boxes)
    ew, eh, gw, gh = ax2 - ax1, ay2 - ay1, bx2 - bx1, by2 - by1
    # d(dx)/d(b x1) = d(dx)/d(b x2) = wx / (2 ew); d(dw)/d(b x2) = -d(dw)/d(b x1) = ww / gw
    cx, cy, sx, sy = g0 * (0.5 * wx) / ew, g1 * (0.5 * wy) / eh, g2 * ww / gw, g3 * wh / gh
    gb = stack([cx - sx, cy - sy, cx + sx, cy + sy], axis=-1) if boxes.requires_grad else None
    ga = None
    if anchors.requires_grad:
        tx = ((bx1 + 0.5 * gw) - (ax1 + 0.5 * ew)) / ew  # dx / wx
        ty = ((by1 + 0.5 * gh) - (ay1 + 0.5 * eh)) / eh
        px, py = g0 * wx / ew, g1 * wy / eh
        qx, qy = g2 * ww / ew, g3 * wh / eh
        ga = stack([px * (tx - 0.5) + qx, py * (ty - 0.5) + qy,
                    -px * (tx + 0.5) - qx, -py * (ty + 0.5) - qy], axis=-1)
    return gb, ga


def _box_decode_ref(deltas, anchors, weights, clip):
    wx, wy, ww, wh = weights
    ax1, ay1, ax2, ay2 = _xyxy(anchors)
    d0, d1, d2, d3 = _xyxy(deltas)
    w, h = ax2 - ax1, ay2 - ay1
    cx, cy = ax1 + 0.5 * w, ay1 + 0.5 * h
    pcx, pcy = (d0 / wx) * w + cx, (d1 / wy) * h + cy
    pw, ph = np.exp(np.minimum(d2 / ww, clip)) * w, np.exp(np.minimum(d3 / wh, clip)) * h
    return np.stack([pcx - 0.5 * pw, pcy - 0.5 * ph, pcx + 0.5 * pw, pcy + 0.5 * ph], axis=-1)


def _box_decode_vjp(g, y, deltas, anchors, weights, clip):
    from .elementwise import exp, minimum, where
    from .shape import stack

    wx, wy, ww, wh = weights
    g0, g1, g2, g3 = _xyxy(g)
    ax1, ay1, ax2, ay2 = _xyxy(anchors)
    _, _, d2, d3 = _xyxy(deltas)
    w, h = ax2 - ax1, ay2 - ay1
    sw, sh = d2 / ww, d3 / wh
    pw, ph = exp(minimum(sw, clip)) * w, exp(minimum(sh, clip)) * h
    zero = Tensor._wrap(np.zeros((), g.dtype.np))
    # The clamp at `clip` passes the gradient where sw <= clip (torch.clamp's rule).
    return stack([(g0 + g2) * w / wx, (g1 + g3) * h / wy,
                  where(sw <= clip, (g2 - g0) * (0.5 * pw) / ww, zero),
                  where(sh <= clip, (g3 - g1) * (0.5 * ph) / wh, zero)], axis=-1), None


def _torch_encode(torch, boxes, anchors, weights):
    wx, wy, ww, wh = weights
    ew, eh = anchors[..., 2] - anchors[..., 0], anchors[..., 3] - anchors[..., 1]
    ecx, ecy = anchors[..., 0] + 0.5 * ew, anchors[..., 1] + 0.5 * eh
    gw, gh = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
    gcx, gcy = boxes[..., 0] + 0.5 * gw, boxes[..., 1] + 0.5 * gh
    return torch.stack([wx * (gcx - ecx) / ew, wy * (gcy - ecy) / eh,
                        ww * torch.log(gw / ew), wh * torch.log(gh / eh)], dim=-1)


def _torch_decode(torch, deltas, anchors, weights, clip):
    wx, wy, ww, wh = weights
    w, h = anchors[..., 2] - anchors[..., 0], anchors[..., 3] - anchors[..., 1]
    cx, cy = anchors[..., 0] + 0.5 * w, anchors[..., 1] + 0.5 * h
    pcx, pcy = deltas[..., 0] / wx * w + cx, deltas[..., 1] / wy * h + cy
    pw = torch.exp(torch.clamp(deltas[..., 2] / ww, max=clip)) * w
    ph = torch.exp(torch.clamp(deltas[..., 3] / wh, max=clip)) * h
    return torch.stack([pcx - 0.5 * pw, pcy - 0.5 * ph, pcx + 0.5 * pw, pcy + 0.5 * ph], dim=-1)


def _box_encode_samples(rng):
    return [Sample([random_boxes(rng, 6), random_boxes(rng, 6)]),
            Sample([random_boxes(rng, 6).reshape(3, 2, 4), random_boxes(rng, 2)], {"weights": (10.0, 10.0, 5.0, 5.0)}),
            Sample([random_boxes(rng, 3).reshape(3, 1, 4), random_boxes(rng, 3)], {"weights": (1.0, 2.0, 0.5, 3.0)})]


def _box_decode_samples(rng):
    deltas = rng.uniform(-1.0, 1.0, (6, 4))
    big = rng.uniform(-1.0, 1.0, (4, 4))
    big[:2, 2:] = rng.uniform(5.0, 6.0, (2, 2))  # dw, dh above the clip: no gradient there
    return [Sample([deltas, random_boxes(rng, 6)], nondiff=(1,)),
            Sample([rng.uniform(-3, 3, (3, 2, 4)), random_boxes(rng, 3).reshape(3, 1, 4)],
                   {"weights": (10.0, 10.0, 5.0, 5.0)}, nondiff=(1,)),
            Sample([big, random_boxes(rng, 1)], {"clip": 4.0}, nondiff=(1,))]


_box_encode = defop(
    "box_encode", infer=_coder_infer("box_encode", "boxes"), reference=_box_encode_ref, vjp=_box_encode_vjp,
    fusion=OUT_FUSABLE, attrs={"weights": (1.0, 1.0, 1.0, 1.0)}, samples=_box_encode_samples,
    torch=_torch_encode,
    doc="Regression targets (dx, dy, dw, dh) of boxes relative to anchors (torchvision's BoxCoder.encode); "
        "leading axes broadcast.")

_box_decode = defop(
    "box_decode", infer=_coder_infer("box_decode", "deltas"), reference=_box_decode_ref, vjp=_box_decode_vjp,
    fusion=OUT_FUSABLE, attrs={"weights": (1.0, 1.0, 1.0, 1.0), "clip": BBOX_XFORM_CLIP}, nondiff=(1,),
    samples=_box_decode_samples, torch=_torch_decode,
    doc="Boxes from regression deltas applied to anchors (torchvision's BoxCoder.decode); dw, dh are "
        "clamped at `clip` before exp; anchors get no gradient.")


# ---- clip_boxes ---------------------------------------------------------------------------

def _clip_infer(boxes, height, width):
    _boxes_type("clip_boxes", "boxes", boxes)
    return boxes


def _bounds(dtype, height, width):
    return np.array([width, height, width, height], dtype=dtype)


def _clip_ref(boxes, height, width):
    return np.minimum(np.maximum(boxes, np.zeros((), boxes.dtype)), _bounds(boxes.dtype, height, width))


def _clip_vjp(g, y, boxes, height, width):
    from .elementwise import logical_and, where

    inside = logical_and(boxes >= 0, boxes <= Tensor._wrap(_bounds(boxes.dtype.np, height, width)))
    return (where(inside, g, Tensor._wrap(np.zeros((), g.dtype.np))),)


def _clip_samples(rng):
    x = R.rng_away_from(rng, (5, 4), [0.0, 30.0, 40.0], margin=0.5, low=-10, high=50)
    return [Sample([x], {"height": 30.0, "width": 40.0}),
            Sample([R.rng_away_from(rng, (2, 3, 4), [0.0, 7.0, 9.0], margin=0.3, low=-3, high=12)],
                   {"height": 7, "width": 9})]


_clip_boxes = defop(
    "clip_boxes", infer=_clip_infer, reference=_clip_ref, vjp=_clip_vjp, fusion=ELEMENTWISE,
    attrs={"height": REQUIRED, "width": REQUIRED}, samples=_clip_samples,
    torch=lambda torch, b, height, width: torch.clamp(
        b, min=torch.zeros(4, dtype=b.dtype), max=torch.tensor([width, height, width, height], dtype=b.dtype)),
    doc="x clamped to [0, width], y to [0, height] (torchvision's clip_boxes_to_image).")


# ---- nms ----------------------------------------------------------------------------------

def _nms_infer(boxes, scores, iou_threshold, max_output):
    _boxes_type("nms", "boxes", boxes, 2)
    if scores.ndim != 1 or scores.shape[0] != boxes.shape[0]:
        raise ShapeError(f"nms: scores must have shape ({boxes.shape[0]},) to match boxes {boxes.shape}, "
                         f"got {scores.shape}")
    R.same_dtype("nms", boxes, scores)
    if max_output is not None and (not isinstance(max_output, (int, np.integer)) or max_output < 0):
        raise ShapeError(f"nms: max_output must be None or a non-negative int, got {max_output!r}")
    return TensorType((boxes.shape[0] if max_output is None else int(max_output),), _dt.int64)


def score_order(scores):
    """Positions of `scores` sorted descending, stably (ties keep index order; NaN first)."""
    n = scores.shape[0]
    return (n - 1) - np.argsort(scores[::-1], kind="stable")[::-1]


def _over(a, b, t):
    """[len(a), len(b)] bool: IoU above `t` for the column boxes a and b (x1, y1, x2, y2,
    area), with torchvision's arithmetic in the boxes' dtype (in place: few temporaries)."""
    (ax1, ay1, ax2, ay2, aa), (bx1, by1, bx2, by2, ba) = a, b
    zero = np.zeros((), ax1.dtype)
    w = np.minimum(ax2[:, None], bx2[None, :])
    w -= np.maximum(ax1[:, None], bx1[None, :])
    np.maximum(w, zero, out=w)
    h = np.minimum(ay2[:, None], by2[None, :])
    h -= np.maximum(ay1[:, None], by1[None, :])
    np.maximum(h, zero, out=h)
    w *= h  # the intersection
    union = aa[:, None] + ba[None, :]
    union -= w
    with np.errstate(invalid="ignore"):  # 0/0 for two empty boxes: NaN, never above t
        np.divide(w, union, out=w)
    return w > t


_NMS_BLOCK, _NMS_CHUNK = 32, 1024  # boxes per greedy block; later boxes per IoU tile (cache-sized)


def _nms_ref(boxes, scores, iou_threshold, max_output):
    """Greedy NMS in blocks of the score order: the greedy pass inside a block runs on its
    small IoU matrix, then the block's kept boxes drop every later box they overlap, in
    cache-sized tiles. Same result as the box-by-box loop, a few numpy calls per block."""
    n = boxes.shape[0]
    m = n if max_output is None else max_output
    keep = np.full(m, -1, dtype=np.int64)
    if n == 0 or m == 0:
        return keep
    order = score_order(scores)
    cols = [np.ascontiguousarray(boxes[order, k]) for k in range(4)]
    cols.append((cols[2] - cols[0]) * (cols[3] - cols[1]))
    t = strict_threshold(iou_threshold, boxes.dtype)
    dropped = np.zeros(n, dtype=bool)
    kept = 0
    for s in range(0, n, _NMS_BLOCK):
        e = min(n, s + _NMS_BLOCK)
        block = [c[s:e] for c in cols]
        over = _over(block, block, t)
        alive = ~dropped[s:e]
        for r in range(e - s):
            if alive[r]:
                alive[r + 1:] &= ~over[r, r + 1:]
        idx = np.flatnonzero(alive)
        take = min(len(idx), m - kept)
        keep[kept:kept + take] = order[s + idx[:take]]
        kept += take
        if kept == m or e == n:
            break
        if len(idx):
            src = [c[idx] for c in block]
            for c0 in range(e, n, _NMS_CHUNK):
                c1 = min(n, c0 + _NMS_CHUNK)
                dropped[c0:c1] |= _over(src, [c[c0:c1] for c in cols], t).any(axis=0)
    return keep


def _torch_nms(torch, boxes, scores, iou_threshold, max_output):
    """Greedy NMS written directly in torch (torchvision is not required)."""
    n = boxes.shape[0]
    m = n if max_output is None else max_output
    order = torch.argsort(scores, descending=True, stable=True)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    dropped = torch.zeros(n, dtype=torch.bool)
    keep = []
    for i in order.tolist():
        if dropped[i] or len(keep) == m:
            continue
        keep.append(i)
        w = (torch.min(boxes[i, 2], boxes[:, 2]) - torch.max(boxes[i, 0], boxes[:, 0])).clamp(min=0)
        h = (torch.min(boxes[i, 3], boxes[:, 3]) - torch.max(boxes[i, 1], boxes[:, 1])).clamp(min=0)
        inter = w * h
        dropped |= inter / (area[i] + area - inter) > iou_threshold
    return torch.tensor(keep + [-1] * (m - len(keep)), dtype=torch.int64)


def _nms_samples(rng):
    clustered = random_boxes(rng, 14, size=12.0, low=3.0, high=8.0)
    ties = rng.integers(0, 4, 14).astype(np.float64)  # many equal scores: index order decides
    cl2 = random_boxes(rng, 20, size=15.0)
    return [Sample([clustered, rng.uniform(0, 1, 14)], {"iou_threshold": 0.5}, grad=False),
            Sample([clustered, ties], {"iou_threshold": 0.3}, grad=False),
            Sample([cl2, rng.uniform(0, 1, 20)], {"iou_threshold": 0.2, "max_output": 4}, grad=False),
            Sample([cl2[:5], rng.uniform(0, 1, 5)], {"iou_threshold": 0.7, "max_output": 8}, grad=False)]


_nms = defop(
    "nms", infer=_nms_infer, reference=_nms_ref, fusion=OPAQUE,
    attrs={"iou_threshold": REQUIRED, "max_output": None}, samples=_nms_samples, torch=_torch_nms,
    doc="Greedy non-maximum suppression (torchvision.ops.nms): int64 indices of the kept boxes in "
        "descending score order, padded with -1 to max_output (default N).")


# ---- roi_align / roi_align_grad -----------------------------------------------------------

def _roi_attrs(op, output_size, spatial_scale, sampling_ratio, aligned):
    if not (isinstance(output_size, tuple) and len(output_size) == 2
            and all(isinstance(v, (int, np.integer)) and v >= 1 for v in output_size)):
        raise ShapeError(f"{op}: output_size must be a pair of positive ints, got {output_size!r}")
    if not isinstance(sampling_ratio, (int, np.integer)) or sampling_ratio < 1:
        raise ShapeError(f"{op}: sampling_ratio must be a positive int (the adaptive grid of "
                         f"sampling_ratio <= 0 depends on the box values, which static shapes cannot "
                         f"follow), got {sampling_ratio!r}")


def _rois_type(op, rois, dtype):
    if rois.ndim != 2 or rois.shape[1] != 5:
        raise ShapeError(f"{op}: rois must have shape [K, 5] (batch index, x1, y1, x2, y2), got {rois.shape}")
    if rois.dtype != dtype:
        raise DTypeError(f"{op}: rois must have the features' dtype {dtype}, got {rois.dtype}")


def _roi_align_infer(x, rois, output_size, spatial_scale, sampling_ratio, aligned):
    if x.ndim != 4 or not x.dtype.is_float:
        raise ShapeError(f"roi_align: features must be floating [N, C, H, W], got {x.dtype} {x.shape}")
    _rois_type("roi_align", rois, x.dtype)
    _roi_attrs("roi_align", output_size, spatial_scale, sampling_ratio, aligned)
    return TensorType((rois.shape[0], x.shape[1]) + tuple(output_size), x.dtype)


def _roi_align_grad_infer(g, rois, feature_shape, output_size, spatial_scale, sampling_ratio, aligned):
    _roi_attrs("roi_align_grad", output_size, spatial_scale, sampling_ratio, aligned)
    if not (isinstance(feature_shape, tuple) and len(feature_shape) == 4):
        raise ShapeError(f"roi_align_grad: feature_shape must be a 4-tuple (N, C, H, W), got {feature_shape!r}")
    if not g.dtype.is_float:
        raise DTypeError(f"roi_align_grad: needs a floating gradient, got {g.dtype}")
    _rois_type("roi_align_grad", rois, g.dtype)
    expect = (rois.shape[0], feature_shape[1]) + tuple(output_size)
    if tuple(g.shape) != expect:
        raise ShapeError(f"roi_align_grad: g {g.shape} is not roi_align's output shape {expect}")
    return TensorType(tuple(feature_shape), g.dtype)


def _batch_index(rois, n, op):
    b = rois[:, 0].astype(np.int64)  # truncation, as torchvision's (int) cast
    bad = b[(b < 0) | (b >= n)]
    if bad.size:
        raise ShapeError(f"{op}: batch index {int(bad[0])} is out of range for {n} feature maps")
    return b


def _axis_samples(start, bin_size, bins, grid, size, dt):
    """Bilinear taps along one axis for every RoI, bin and sample of the bin.

    Returns (index, weight), each [K, bins, 2 * grid]: sample s of bin p reads rows
    index[k, p, 2s] and index[k, p, 2s + 1] with those weights. Arithmetic in the
    features' dtype and in torchvision's order, so the native kernel agrees to the bit."""
    one = dt.type(1)
    p = np.arange(bins, dtype=dt)[None, :, None]
    s = (np.arange(grid, dtype=dt) + dt.type(0.5))[None, None, :]
    start, bin_size = start[:, None, None], bin_size[:, None, None]
    pos = (start + p * bin_size) + (s * bin_size) / dt.type(grid)
    valid = (pos >= -1) & (pos <= size)  # a sample beyond one pixel off the map reads zero
    pos = np.where(valid & (pos > 0), pos, dt.type(0))
    low = pos.astype(np.int64)
    end = low >= size - 1
    low = np.where(end, size - 1, low)
    high = np.where(end, size - 1, low + 1)
    frac = np.where(end, dt.type(0), pos - low.astype(dt))
    weight = np.stack([(one - frac) * valid, frac * valid], axis=-1).astype(dt, copy=False)
    k = start.shape[0]
    return np.stack([low, high], axis=-1).reshape(k, bins, 2 * grid), weight.reshape(k, bins, 2 * grid)


def _roi_taps(rois, shape, output_size, spatial_scale, sampling_ratio, aligned, op):
    """Batch index, row and column taps of every RoI (see `_axis_samples`) and the divisor."""
    dt = rois.dtype
    n, _, height, width = shape
    b = _batch_index(rois, n, op)
    off = dt.type(0.5 if aligned else 0.0)
    scale = dt.type(spatial_scale)
    x1, y1, x2, y2 = (rois[:, k] * scale - off for k in range(1, 5))
    rw, rh = x2 - x1, y2 - y1
    if not aligned:
        rw, rh = np.maximum(rw, dt.type(1)), np.maximum(rh, dt.type(1))
    oh, ow = output_size
    iy, wy = _axis_samples(y1, rh / dt.type(oh), oh, sampling_ratio, height, dt)
    ix, wx = _axis_samples(x1, rw / dt.type(ow), ow, sampling_ratio, width, dt)
    return b, iy, wy, ix, wx, dt.type(sampling_ratio * sampling_ratio)


def _roi_chunks(k, per_roi):
    step = max(1, (1 << 22) // max(per_roi, 1))
    for k0 in range(0, k, step):
        yield slice(k0, min(k, k0 + step))


def _roi_align_ref(x, rois, output_size, spatial_scale, sampling_ratio, aligned):
    """Each output is a weighted sum of the (2g x 2g) taps of its bin: the taps of all bins
    of a chunk of RoIs are gathered at once from an NHWC copy (C contiguous per tap)."""
    b, iy, wy, ix, wx, count = _roi_taps(rois, x.shape, output_size, spatial_scale, sampling_ratio, aligned,
                                         "roi_align")
    k, c = rois.shape[0], x.shape[1]
    oh, ow = output_size
    out = np.empty((k, c, oh, ow), dtype=x.dtype)
    nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    for sl in _roi_chunks(k, iy.shape[1] * iy.shape[2] * ix.shape[1] * ix.shape[2] * c):
        taps = nhwc[b[sl, None, None, None, None], iy[sl, :, :, None, None], ix[sl, None, None, :, :]]
        out[sl] = np.einsum("kpa,kqb,kpaqbc->kcpq", wy[sl], wx[sl], taps) / count
    return out


def _distinct_taps(idx, weight):
    """Per RoI, the distinct rows (or columns) its taps read and the weights onto them.

    idx, weight: [K, bins, T] from `_axis_samples`. Returns (rows [K, bins*T], whose first
    count[k] entries are RoI k's distinct rows in increasing order; count [K]; dense
    [K, bins, bins*T] weights, bin p onto distinct row u, repeated taps summed)."""
    k, bins, taps = idx.shape
    flat = idx.reshape(k, bins * taps)
    order = np.argsort(flat, axis=1, kind="stable")
    ordered = np.take_along_axis(flat, order, axis=1)
    new = np.ones(ordered.shape, dtype=bool)
    new[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    group = np.cumsum(new, axis=1) - 1
    local = np.empty_like(group)
    np.put_along_axis(local, order, group, axis=1)
    rows = np.zeros_like(ordered)
    np.put_along_axis(rows, group, ordered, axis=1)
    dense = np.zeros((k, bins, bins * taps), dtype=weight.dtype)
    at = (np.arange(k)[:, None, None] * bins + np.arange(bins)[None, :, None]) * (bins * taps) \
        + local.reshape(k, bins, taps)
    np.add.at(dense.reshape(-1), at.reshape(-1), weight.reshape(-1))
    return rows, group[:, -1] + 1, dense


def _roi_align_grad_ref(g, rois, feature_shape, output_size, spatial_scale, sampling_ratio, aligned):
    """RoI by RoI: g[k] is spread onto the grid of the RoI's distinct tap rows x columns
    (two small matmuls), which is added to the C-contiguous rows of an NHWC buffer. The
    grid has no repeated position, so a plain fancy-indexed += is exact; RoIs that overlap
    each other are added one after the other."""
    b, iy, wy, ix, wx, count = _roi_taps(rois, feature_shape, output_size, spatial_scale, sampling_ratio,
                                         aligned, "roi_align_grad")
    n, c, height, width = feature_shape
    rows, n_rows, ry = _distinct_taps(iy, wy)
    cols, n_cols, rx = _distinct_taps(ix, wx)
    out = np.zeros((n * height * width, c), dtype=g.dtype)
    share = g / count
    for k in range(rois.shape[0]):
        u, v = n_rows[k], n_cols[k]
        spread = np.matmul(np.matmul(ry[k, :, :u].T, share[k]), rx[k, :, :v])  # [C, u, v]
        at = b[k] * (height * width) + (rows[k, :u, None] * width + cols[k, None, :v]).reshape(-1)
        out[at] += spread.reshape(c, -1).T
    return out.reshape(n, height, width, c).transpose(0, 3, 1, 2).copy()


def _roi_align_vjp(g, y, x, rois, **attrs):
    return _roi_align_grad(g, rois, feature_shape=tuple(x.shape), **attrs), None


def _roi_align_grad_vjp(gg, y, g, rois, feature_shape, **attrs):
    return _roi_align(gg, rois, **attrs), None


def _torch_roi_align(torch, x, rois, output_size, spatial_scale, sampling_ratio, aligned):
    """roi_align written directly in torch: each sample reads its four neighbours."""
    n, c, height, width = x.shape
    oh, ow = output_size
    grid = sampling_ratio
    off = 0.5 if aligned else 0.0
    b = rois[:, 0].long()
    x1, y1, x2, y2 = (rois[:, k] * spatial_scale - off for k in range(1, 5))
    rw, rh = x2 - x1, y2 - y1
    if not aligned:
        rw, rh = rw.clamp(min=1.0), rh.clamp(min=1.0)

    def positions(start, length, bins):
        j = torch.arange(bins * grid, dtype=x.dtype)
        bin_size = (length / bins)[:, None]
        return start[:, None] + torch.div(j, grid, rounding_mode="floor") * bin_size \
            + (j % grid + 0.5) * bin_size / grid

    ys, xs = positions(y1, rh, oh), positions(x1, rw, ow)
    yy, xx = ys[:, :, None].expand(-1, -1, xs.shape[1]), xs[:, None, :].expand(-1, ys.shape[1], -1)
    valid = (yy >= -1) & (yy <= height) & (xx >= -1) & (xx <= width)

    def taps(pos, size):
        pos = torch.where(valid & (pos > 0), pos, torch.zeros_like(pos))
        low = pos.long().clamp(max=size - 1)
        high = (low + 1).clamp(max=size - 1)
        frac = torch.where(low >= size - 1, torch.zeros_like(pos), pos - low.to(pos.dtype))
        return low, high, frac

    yl, yh, ly = taps(yy, height)
    xl, xh, lx = taps(xx, width)
    bb = b[:, None, None]

    def at(iy, ix):
        return x[bb, :, iy, ix]  # [K, S, S, C]

    hy, hx = 1 - ly, 1 - lx
    val = ((hy * hx)[..., None] * at(yl, xl) + (hy * lx)[..., None] * at(yl, xh)
           + (ly * hx)[..., None] * at(yh, xl) + (ly * lx)[..., None] * at(yh, xh))
    val = val * valid[..., None]
    val = val.reshape(rois.shape[0], oh, grid, ow, grid, c).sum(dim=(2, 4)) / (grid * grid)
    return val.permute(0, 3, 1, 2)


def _torch_roi_align_grad(torch, g, rois, feature_shape, **attrs):
    with torch.enable_grad():
        x = torch.zeros(feature_shape, dtype=g.dtype, requires_grad=True)
        y = _torch_roi_align(torch, x, rois, **attrs)
        return torch.autograd.grad(y, x, g, create_graph=True)[0]


def random_rois(rng, k, n, height, width, scale=1.0, margin=2.0):
    """`k` float64 RoIs (batch index, x1, y1, x2, y2) in the pixels of a feature map of
    height x width at `spatial_scale` `scale`, some reaching `margin` pixels off the map."""
    lo = -margin / scale
    x1 = rng.uniform(lo, width / scale * 0.8, k)
    y1 = rng.uniform(lo, height / scale * 0.8, k)
    x2 = x1 + rng.uniform(0.3, width / scale * 0.6, k)
    y2 = y1 + rng.uniform(0.3, height / scale * 0.6, k)
    return np.stack([rng.integers(0, n, k).astype(np.float64), x1, y1, x2, y2], axis=1)


_ROI_CASES = [  # (features shape, K, output_size, spatial_scale, sampling_ratio, aligned)
    ((2, 3, 6, 7), 5, (2, 3), 0.5, 2, True),
    ((2, 2, 5, 6), 4, (3, 2), 1.0, 1, False),
    ((1, 3, 7, 5), 3, (2, 2), 0.25, 3, False),
    ((1, 2, 4, 4), 3, (1, 2), 1.0, 2, True),
]


def _roi_attrs_of(case):
    _, _, out, scale, ratio, aligned = case
    return {"output_size": out, "spatial_scale": scale, "sampling_ratio": ratio, "aligned": aligned}


def _roi_align_samples(rng):
    out = []
    for case in _ROI_CASES:
        shape, k = case[0], case[1]
        rois = random_rois(rng, k, shape[0], shape[2], shape[3], case[3])
        out.append(Sample([R.rng_float(rng, shape), rois], _roi_attrs_of(case), nondiff=(1,)))
    return out


def _roi_align_grad_samples(rng):
    out = []
    for case in _ROI_CASES:
        shape, k = case[0], case[1]
        rois = random_rois(rng, k, shape[0], shape[2], shape[3], case[3])
        g = R.rng_float(rng, (k, shape[1]) + case[2])
        out.append(Sample([g, rois], {**_roi_attrs_of(case), "feature_shape": shape}, nondiff=(1,)))
    return out


_ROI_ATTRS = {"output_size": (7, 7), "spatial_scale": 1.0, "sampling_ratio": 2, "aligned": True}

_roi_align = defop(
    "roi_align", infer=_roi_align_infer, reference=_roi_align_ref, vjp=_roi_align_vjp, fusion=OPAQUE,
    attrs=_ROI_ATTRS, nondiff=(1,), samples=_roi_align_samples, torch=_torch_roi_align,
    doc="torchvision.ops.roi_align: each output bin the mean of sampling_ratio^2 bilinear samples of "
        "features[batch index] inside the RoI (rows: batch index, x1, y1, x2, y2 in input pixels, scaled "
        "by spatial_scale); aligned shifts by half a pixel. RoIs get no gradient.")

_roi_align_grad = defop(
    "roi_align_grad", infer=_roi_align_grad_infer, reference=_roi_align_grad_ref, vjp=_roi_align_grad_vjp,
    fusion=OPAQUE, attrs={**_ROI_ATTRS, "feature_shape": REQUIRED}, nondiff=(1,),
    samples=_roi_align_grad_samples, torch=_torch_roi_align_grad,
    doc="The adjoint of roi_align in its features: each g element spread over the bilinear taps of its "
        "samples into zeros of feature_shape (vjp: roi_align).")


# ---- public functions ---------------------------------------------------------------------

def _pair(name, v):
    if isinstance(v, (int, np.integer)):
        return (int(v), int(v))
    v = tuple(int(a) for a in v)
    if len(v) != 2:
        raise ShapeError(f"{name}: expected an int or a pair, got {v!r}")
    return v


def _weights_attr(weights):
    return tuple(float(w) for w in weights)


def box_iou(a, b):
    """Pairwise IoU [N, M] of boxes a[N, 4] and b[M, 4] (xyxy). Not differentiable."""
    return _box_iou(_as_t(a), _as_t(b))


def box_encode(boxes, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
    """Regression deltas (dx, dy, dw, dh) that take `anchors` to `boxes` (torchvision's
    BoxCoder.encode(boxes, anchors)); the leading axes broadcast."""
    return _box_encode(_as_t(boxes), _as_t(anchors), weights=_weights_attr(weights))


def box_decode(deltas, anchors, weights=(1.0, 1.0, 1.0, 1.0), clip=BBOX_XFORM_CLIP):
    """Boxes from `deltas` applied to `anchors` (torchvision's BoxCoder.decode); dw and dh
    are capped at `clip`. Differentiable in the deltas; anchors are constants."""
    return _box_decode(_as_t(deltas), _as_t(anchors), weights=_weights_attr(weights), clip=float(clip))


def clip_boxes(boxes, height, width):
    """Boxes clamped to an image of `height` x `width` pixels (x to [0, width], y to [0, height])."""
    return _clip_boxes(_as_t(boxes), height=float(height), width=float(width))


def nms(boxes, scores, iou_threshold, max_output=None):
    """Indices (int64) of the boxes greedy NMS keeps, in descending score order, padded
    with -1 to `max_output` entries (default: one per box); `keep >= 0` masks the valid
    ones. torchvision.ops.nms semantics: stable sort by score, a box is dropped when its
    IoU with a kept box is strictly greater than `iou_threshold`."""
    return _nms(_as_t(boxes), _as_t(scores), iou_threshold=float(iou_threshold),
                max_output=None if max_output is None else int(max_output))


def batched_nms(boxes, scores, classes, iou_threshold, max_output=None):
    """NMS within each class (boxes of different classes never suppress each other), as
    torchvision.ops.batched_nms: every class's boxes are shifted by class * (max
    coordinate + 1), so boxes of different classes cannot overlap, then one `nms`."""
    from .elementwise import cast
    from .reduce import max as _max
    from .shape import reshape

    boxes, scores, classes = _as_t(boxes), _as_t(scores), _as_t(classes)
    if boxes.shape[0] == 0:
        return nms(boxes, scores, iou_threshold, max_output)
    offsets = cast(classes, boxes.dtype) * (_max(boxes) + 1.0)
    return nms(boxes + reshape(offsets, (-1, 1)), scores, iou_threshold, max_output)


def roi_align(features, rois, output_size=(7, 7), spatial_scale=1.0, sampling_ratio=2, aligned=True):
    """RoI Align (torchvision.ops.roi_align) of features[N, C, H, W] over rois[K, 5] rows
    (batch index, x1, y1, x2, y2) in input pixels: [K, C, oh, ow]. `sampling_ratio` must
    be positive (see the module docstring). Differentiable in the features."""
    return _roi_align(_as_t(features), _as_t(rois), output_size=_pair("roi_align", output_size),
                      spatial_scale=float(spatial_scale), sampling_ratio=int(sampling_ratio),
                      aligned=bool(aligned))


def fpn_levels(rois, k_min=2, k_max=5, canonical_size=224.0, canonical_level=4.0, eps=1e-6):
    """The FPN level of each RoI [K, 5] (Lin et al., eq. 1, torchvision's LevelMapper):
    floor(k0 + log2(sqrt(area) / canonical_size) + eps) clamped to [k_min, k_max], as
    the RoIs' float dtype. Areas are in input pixels; an empty box gets k_min."""
    from .elementwise import clip, floor, log2, sqrt

    from .elementwise import maximum

    rois = _as_t(rois)
    w, h = rois[:, 3] - rois[:, 1], rois[:, 4] - rois[:, 2]
    # An empty or inverted box (area <= 0, log2 of 0 or NaN) goes to k_min, without warnings.
    area = maximum(w * h, 1e-12)
    k = floor((log2(sqrt(area) / float(canonical_size)) + float(canonical_level)) + eps)
    return clip(k, float(k_min), float(k_max))


def multiscale_roi_align(rois, features, levels=None, output_size=(7, 7), sampling_ratio=2, aligned=False,
                         canonical_size=224.0, canonical_level=4.0):
    """RoI Align over an FPN pyramid (torchvision's MultiScaleRoIAlign with its default
    aligned=False): each RoI [K, 5] (pixels) is pooled from the level `fpn_levels` picks,
    at spatial scale 1/2^level. `features` are the maps of `levels` (default 2, 3, ...).

    When the RoIs are a tracer their levels are not known while tracing, and shapes must
    be static: every level pools every RoI and `where` keeps the right one. That is
    len(levels) times the sampling work (and the backward pass scatters zeros for the
    other levels); for 512 RoIs x 256 channels x 7 x 7 it stays small next to the
    backbone. When the RoIs are concrete (eager mode, or constant RoIs in a trace) each
    level pools only its own RoIs (`take` picks them, and puts the results back in
    order): the same values for a quarter of the work."""
    from .elementwise import where
    from .indexing import take
    from .shape import concatenate, reshape

    rois = _as_t(rois)
    features = [_as_t(f) for f in features]
    levels = tuple(range(2, 2 + len(features))) if levels is None else tuple(int(v) for v in levels)
    if len(levels) != len(features) or not features:
        raise ShapeError(f"multiscale_roi_align: {len(features)} feature maps for levels {levels}")
    if list(levels) != list(range(levels[0], levels[0] + len(levels))):
        raise ShapeError(f"multiscale_roi_align: levels must be consecutive, got {levels}")
    lvl_args = (levels[0], levels[-1], canonical_size, canonical_level)

    def pool(f, r, lv):
        return roi_align(f, r, output_size, 2.0 ** -lv, sampling_ratio, aligned)

    if not rois.is_tracer:
        lvl = fpn_levels(Tensor._wrap(rois._data), *lvl_args)._data
        lvl = np.where(np.isin(lvl, levels), lvl, levels[-1])  # NaN boxes: the last level, as `where` does
        parts, picked = [], []
        for f, lv in zip(features, levels):  # a level without RoIs still joins (zero gradient)
            idx = np.flatnonzero(lvl == lv)
            parts.append(pool(f, take(rois, idx, axis=0), lv))
            picked.append(idx)
        out = concatenate(parts, axis=0)
        order = np.concatenate(picked)
        return out if np.array_equal(order, np.arange(len(order))) else take(out, np.argsort(order), axis=0)
    pooled = [pool(f, rois, lv) for f, lv in zip(features, levels)]
    if len(pooled) == 1:
        return pooled[0]
    lvl = reshape(fpn_levels(rois, *lvl_args), (-1, 1, 1, 1))
    out = pooled[-1]
    for p, lv in zip(pooled[-2::-1], levels[-2::-1]):
        out = where(lvl == float(lv), p, out)
    return out


def anchor_grid(sizes, aspect_ratios, stride, height, width, dtype=_dt.float32):
    """The anchors of one feature map (torchvision's AnchorGenerator for one level):
    [height * width * A, 4] boxes, A = len(aspect_ratios) * len(sizes), location-major
    (row, then column), then ratio, then size. Cell anchors are rounded, zero-centred
    boxes of area size^2 and height/width = ratio; location (i, j) shifts them by
    (j * stride_x, i * stride_y).

    Not an op: anchors depend only on shapes, so this computes them with numpy and
    returns an eager tensor. A traced model captures it as a constant (frozen param), which
    the compiler folds; no graph node ever recomputes it."""
    sy, sx = _pair("anchor_grid", stride)
    dt = _dt.as_dtype(dtype)
    if not dt.is_float:
        raise DTypeError(f"anchor_grid: dtype must be floating, got {dt}")
    scales = np.asarray(sizes, dtype=np.float32)
    h_ratios = np.sqrt(np.asarray(aspect_ratios, dtype=np.float32))
    w_ratios = np.float32(1) / h_ratios
    ws = (w_ratios[:, None] * scales[None, :]).reshape(-1)
    hs = (h_ratios[:, None] * scales[None, :]).reshape(-1)
    cell = np.round(np.stack([-ws, -hs, ws, hs], axis=1) / np.float32(2))
    shift_x = np.arange(int(width), dtype=np.float32) * np.float32(sx)
    shift_y = np.arange(int(height), dtype=np.float32) * np.float32(sy)
    yy, xx = np.meshgrid(shift_y, shift_x, indexing="ij")
    shifts = np.stack([xx.ravel(), yy.ravel(), xx.ravel(), yy.ravel()], axis=1)
    anchors = (shifts[:, None, :] + cell[None, :, :]).reshape(-1, 4)
    return Tensor._wrap(anchors.astype(dt.np))
