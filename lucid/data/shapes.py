"""A generated data set of simple coloured shapes, for training detectors from scratch.

Each image is a noisy, smoothly shaded background with a few filled shapes on it
(rectangles, ellipses, triangles) of random size, position and colour; a shape's class
is its kind. `detection_set` gives the boxes and labels in the format of
`FasterRCNN.get_loss` and `evaluate.mean_average_precision`; `classification_set` gives
one centred shape per image with its kind as the label, for pretraining a backbone as
a classifier (the first stage of the detector's training recipe).

Everything is numpy, rendered for a whole batch at once (one boolean mask per object
slot on the pixel grid; the last shape drawn wins where shapes touch), and a function
of its seed only. Shapes of one image overlap little (IoU <= `max_overlap`), so each
box describes a mostly visible object.
"""
import numpy as np

from ..errors import LucidError

__all__ = ["KINDS", "MEAN", "STD", "detection_set", "classification_set", "render", "denormalize"]

KINDS = ("rectangle", "ellipse", "triangle")  # detection labels 1, 2, 3 (0: background)
MEAN, STD = 0.33, 0.2  # images are (pixel - MEAN) / STD (the measured pixel mean and spread)


def _check(name, n, size):
    if int(n) < 1:
        raise LucidError(f"{name}: the number of images must be positive, got {n}")
    if int(size) < 16:
        raise LucidError(f"{name}: size must be at least 16 pixels, got {size}")


def _backgrounds(rng, n, size):
    """[n, 3, size, size] in [0, 1]: a random dim colour, a linear shading and noise."""
    base = rng.uniform(0.1, 0.5, (n, 3, 1, 1))
    g = np.linspace(-0.5, 0.5, size)
    slope = rng.uniform(-0.15, 0.15, (n, 2, 1, 1, 1))
    shade = slope[:, 0] * g[None, None, :, None] + slope[:, 1] * g[None, None, None, :]
    noise = rng.normal(0.0, 0.05, (n, 3, size, size))
    return base + shade + noise


def _colours(rng, shape):
    """Bright, saturated colours: one channel high, the others random (apart from the
    dim backgrounds)."""
    c = rng.uniform(0.0, 0.6, shape + (3,))
    hi = rng.integers(0, 3, shape)
    np.put_along_axis(c, hi[..., None], rng.uniform(0.8, 1.0, shape + (1,)), axis=-1)
    return c


def render(kinds, boxes, colours, backgrounds):
    """Draw shapes onto backgrounds: kinds [n, K] int (0..2, -1 = no shape), boxes
    [n, K, 4] pixel xyxy, colours [n, K, 3]; backgrounds [n, 3, H, W]. Slot k is drawn
    over slots < k. Returns [n, 3, H, W]."""
    n, k = kinds.shape
    h, w = backgrounds.shape[2:]
    ys = np.arange(h)[None, None, :, None] + 0.5
    xs = np.arange(w)[None, None, None, :] + 0.5
    x1, y1, x2, y2 = (boxes[..., i][..., None, None] for i in range(4))
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    rx, ry = np.maximum((x2 - x1) / 2, 1e-6), np.maximum((y2 - y1) / 2, 1e-6)  # empty slots: no 0/0
    inside = (xs >= x1) & (xs < x2) & (ys >= y1) & (ys < y2)
    rect = inside
    ellipse = ((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 <= 1.0
    # An upright isosceles triangle: apex at the top centre, base along the bottom edge.
    t = (ys - y1) / (2 * ry)  # 0 at the apex, 1 at the base
    triangle = inside & (np.abs(xs - cx) <= t * rx)
    kk = kinds[..., None, None]
    mask = np.where(kk == 0, rect, np.where(kk == 1, ellipse, np.where(kk == 2, triangle, False)))
    # The topmost slot covering each pixel (0 = background, k + 1 = slot k).
    top = np.max(mask * np.arange(1, k + 1)[None, :, None, None], axis=1)  # [n, H, W]
    palette = np.concatenate([np.zeros((n, 1, 3)), colours], axis=1)  # [n, K + 1, 3]
    painted = np.take_along_axis(palette, top.reshape(n, -1, 1), axis=1).reshape(n, h, w, 3).transpose(0, 3, 1, 2)
    return np.where((top > 0)[:, None], painted, backgrounds)


def _overlap(box, others):
    if not len(others):
        return 0.0
    o = np.asarray(others)
    lt = np.maximum(box[:2], o[:, :2])
    rb = np.minimum(box[2:], o[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    return float(np.max(inter / (area(box) + area(o) - inter)))


def _place(rng, size, count, min_frac, max_frac, max_overlap):
    """Up to `count` boxes (integer pixels) in a size x size image, sides in
    [min_frac, max_frac] * size, pairwise IoU <= max_overlap (rejection sampling)."""
    boxes = []
    for _ in range(count * 20):
        if len(boxes) == count:
            break
        wh = np.round(rng.uniform(min_frac, max_frac, 2) * size)
        xy = np.floor(rng.uniform(0, 1, 2) * (size - wh + 1))
        box = np.concatenate([xy, xy + wh])
        if _overlap(box, boxes) <= max_overlap:
            boxes.append(box)
    return np.array(boxes, np.float64).reshape(-1, 4)


def normalize(pixels):
    return ((pixels - MEAN) / STD).astype(np.float32)


def denormalize(images):
    """Pixels in [0, 1] from normalised images (for display)."""
    return np.clip(np.asarray(images, np.float64) * STD + MEAN, 0.0, 1.0)


def detection_set(n, size=128, *, seed=0, objects=(1, 3), min_frac=0.15, max_frac=0.45, max_overlap=0.1,
                  pad_to=None):
    """`n` images [n, 3, size, size] float32 (normalised) and their targets, a list of
    dicts {"boxes": [k, 4] float32 pixel xyxy, "labels": [k] int64 in 1..3 (KINDS)}
    with k drawn uniformly from `objects` = (lowest, highest).

    `pad_to` = K gives every dict K rows and a "valid" [K] bool entry marking the real
    ones (padding rows are zeros): fixed shapes for a compiled training step."""
    _check("detection_set", n, size)
    lo, hi = objects
    if not 0 <= lo <= hi:
        raise LucidError(f"detection_set: objects must be (lowest, highest) counts, got {objects!r}")
    if pad_to is not None and pad_to < hi:
        raise LucidError(f"detection_set: pad_to={pad_to} is below the largest object count {hi}")
    rng = np.random.default_rng(seed)
    counts = rng.integers(lo, hi + 1, n)
    slots = max(1, hi)
    kinds = np.full((n, slots), -1, np.int64)
    boxes = np.zeros((n, slots, 4))
    for i in range(n):
        b = _place(rng, size, int(counts[i]), min_frac, max_frac, max_overlap)
        boxes[i, :len(b)] = b
        kinds[i, :len(b)] = rng.integers(0, len(KINDS), len(b))
    pixels = render(kinds, boxes, _colours(rng, (n, slots)), _backgrounds(rng, n, size))
    targets = []
    for i in range(n):
        real = kinds[i] >= 0
        if pad_to is None:
            targets.append({"boxes": boxes[i, real].astype(np.float32), "labels": kinds[i, real] + 1})
        else:
            k = int(pad_to)
            bx = np.zeros((k, 4), np.float32)
            lab = np.zeros(k, np.int64)
            valid = np.zeros(k, bool)
            m = int(real.sum())
            bx[:m], lab[:m], valid[:m] = boxes[i, real], kinds[i, real] + 1, True
            targets.append({"boxes": bx, "labels": lab, "valid": valid})
    return normalize(pixels), targets


def classification_set(n, size=64, *, seed=0, min_frac=0.4, max_frac=0.8, jitter=0.1):
    """`n` images [n, 3, size, size] float32 (normalised), each with one shape near the
    centre, and labels [n] int64: the shape's kind (0..2, KINDS)."""
    _check("classification_set", n, size)
    rng = np.random.default_rng(seed)
    wh = rng.uniform(min_frac, max_frac, (n, 2)) * size
    centre = size / 2 + rng.uniform(-jitter, jitter, (n, 2)) * size
    boxes = np.concatenate([centre - wh / 2, centre + wh / 2], axis=1)[:, None, :]
    labels = rng.integers(0, len(KINDS), n)
    pixels = render(labels[:, None], boxes, _colours(rng, (n, 1)), _backgrounds(rng, n, size))
    return normalize(pixels), labels.astype(np.int64)
