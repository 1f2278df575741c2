"""The region proposal network over an FPN: one head shared by every level, anchors laid
at each level's own stride, and proposals with static shapes.

Anchors. Each location of level l (stride 2^l) carries 9 anchors: 3 sizes x aspect ratios
(0.5, 1, 2) (height / width). The sizes are the level's base size 32 * 2^(l-2) times
2^0, 2^(1/3), 2^(2/3) (RetinaNet's octave scales), so the four levels cover side lengths
32 to 406 pixels in twelve steps of 2^(1/3), with no gaps between levels:

    P2 (stride  4): 32.0, 40.3,  50.8      P4 (stride 16): 128.0, 161.3, 203.2
    P3 (stride  8): 64.0, 80.6, 101.6      P5 (stride 32): 256.0, 322.5, 406.4

(The Lucid framework put 128, 256, 512 at stride 16 on P2 alone: on a 224 x 224 image
its anchors started a quarter of the way in and ran off the far edge.) `anchor_grid`
makes them with numpy from the feature shapes only, so a trace captures them as a
constant that the compiler folds; they are cached per feature shape.

Proposals, per torchvision's RPN: on each level the `pre_nms_top_n` highest objectness
logits are kept (top-k, static), their deltas decoded on their anchors, the boxes clipped
to the image; boxes narrower or lower than `min_size` are pushed to the bottom of the
score order instead of being removed (a removal would change the shape); NMS at
`nms_threshold` runs per level (`batched_nms` with the level as the class) and returns
the best `post_nms_top_n` = R boxes, padded with -1. `valid` marks real survivors; padded
slots get the empty box (0, 0, 0, 0). Proposals are computed from detached outputs: no
gradient flows through them (torchvision does the same).
"""
import numpy as np

from ... import nn
from ...errors import LucidError
from ...ops.detection import anchor_grid, batched_nms, box_decode, clip_boxes
from ...ops.elementwise import logical_and, maximum, where
from ...ops.indexing import gather, take, topk
from ...ops.shape import broadcast_to, concatenate, reshape, stack, transpose, unsqueeze
from ...tensor import Tensor

ASPECT_RATIOS = (0.5, 1.0, 2.0)
STRIDES = (4, 8, 16, 32)
_PUSHED_DOWN = -1e30  # the score of a box too small to propose: below any real logit


def default_anchor_sizes(strides=STRIDES, base=32.0, scales_per_octave=3):
    """((s, s 2^(1/3), s 2^(2/3)) for s = base * stride / 4): see the module docstring."""
    return tuple(tuple(base * (stride / strides[0]) * 2.0 ** (k / scales_per_octave)
                       for k in range(scales_per_octave)) for stride in strides)


class RPNHead(nn.Module):
    """3x3 conv + ReLU, then 1x1 convs to `num_anchors` objectness logits and
    4 * `num_anchors` box deltas per location; the same weights on every level."""

    def __init__(self, in_channels, num_anchors):
        super().__init__()
        self.num_anchors = int(num_anchors)
        self.conv = nn.Conv2d(in_channels, in_channels, 3, padding=1)
        self.cls_logits = nn.Conv2d(in_channels, self.num_anchors, 1)
        self.bbox_pred = nn.Conv2d(in_channels, 4 * self.num_anchors, 1)
        for conv in (self.conv, self.cls_logits, self.bbox_pred):  # torchvision's initialisation
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, features):
        """(objectness [N, A], deltas [N, A, 4]) over all levels, A = sum of H_l W_l
        num_anchors; within a level location-major, then anchor (anchor_grid's order)."""
        logits, deltas = [], []
        a = self.num_anchors
        for f in features:
            t = nn.functional.relu(self.conv(f))
            n, _, h, w = t.shape
            logits.append(reshape(transpose(self.cls_logits(t), (0, 2, 3, 1)), (n, h * w * a)))
            d = reshape(self.bbox_pred(t), (n, a, 4, h, w))
            deltas.append(reshape(transpose(d, (0, 3, 4, 1, 2)), (n, h * w * a, 4)))
        if len(features) == 1:
            return logits[0], deltas[0]
        return concatenate(logits, axis=1), concatenate(deltas, axis=1)


class RegionProposalNetwork(nn.Module):
    """The RPN head and the proposal step (see the module docstring)."""

    def __init__(self, in_channels, anchor_sizes=None, aspect_ratios=ASPECT_RATIOS, strides=STRIDES,
                 pre_nms_top_n=1000, post_nms_top_n=300, nms_threshold=0.7, min_size=1e-3, name="rpn"):
        super().__init__()
        self.strides = tuple(int(s) for s in strides)
        self.anchor_sizes = (default_anchor_sizes(self.strides) if anchor_sizes is None
                             else tuple(tuple(float(s) for s in lv) for lv in anchor_sizes))
        self.aspect_ratios = tuple(float(r) for r in aspect_ratios)
        if len(self.anchor_sizes) != len(self.strides):
            raise LucidError(f"{name}: anchor_sizes needs one tuple of sizes per level "
                             f"({len(self.strides)} levels), got {len(self.anchor_sizes)}")
        counts = {len(lv) for lv in self.anchor_sizes}
        if len(counts) != 1 or 0 in counts or not self.aspect_ratios:
            raise LucidError(f"{name}: every level needs the same, non-zero number of anchor sizes "
                             f"(the head is shared), got {self.anchor_sizes}")
        for what, v in (("pre_nms_top_n", pre_nms_top_n), ("post_nms_top_n", post_nms_top_n)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise LucidError(f"{name}: {what} must be a positive int, got {v!r}")
        if not 0.0 <= float(nms_threshold) <= 1.0:
            raise LucidError(f"{name}: nms_threshold must be in [0, 1], got {nms_threshold!r}")
        self.num_anchors = counts.pop() * len(self.aspect_ratios)
        self.pre_nms_top_n = int(pre_nms_top_n)
        self.post_nms_top_n = int(post_nms_top_n)
        self.nms_threshold = float(nms_threshold)
        self.min_size = float(min_size)
        self.head = RPNHead(in_channels, self.num_anchors)
        self._anchor_cache = {}

    def anchors(self, feature_shapes, dtype="float32"):
        """[A_l, 4] anchors per level for feature maps of (H_l, W_l); eager constants."""
        key = (tuple(tuple(int(v) for v in s) for s in feature_shapes), str(dtype))
        hit = self._anchor_cache.get(key)
        if hit is None:
            hit = [anchor_grid(sizes, self.aspect_ratios, stride, h, w, dtype=dtype)
                   for sizes, stride, (h, w) in zip(self.anchor_sizes, self.strides, key[0])]
            self._anchor_cache = {key: hit}  # one entry: the latest input size
        return hit

    def forward(self, features, image_size):
        """(objectness [N, A], deltas [N, A, 4], anchors [A, 4], proposals [N, R, 4],
        valid [N, R] bool) for FPN `features` of an image batch of `image_size` (H, W)."""
        objectness, deltas = self.head(features)
        level_anchors = self.anchors([f.shape[2:] for f in features], objectness.dtype)
        counts = [int(a.shape[0]) for a in level_anchors]
        proposals, valid = self.propose(objectness.detach(), deltas.detach(), level_anchors, counts,
                                        image_size)
        anchors = Tensor._wrap(np.concatenate([a.numpy() for a in level_anchors])) \
            if len(level_anchors) > 1 else level_anchors[0]
        return objectness, deltas, anchors, proposals, valid

    def propose(self, objectness, deltas, level_anchors, counts, image_size):
        """Static-shape proposals (see the module docstring): ([N, R, 4], valid [N, R])."""
        height, width = image_size
        n = objectness.shape[0]
        boxes, scores, levels = [], [], []
        start = 0
        for lvl, (anchors, count) in enumerate(zip(level_anchors, counts)):
            obj = objectness[:, start:start + count]
            dl = deltas[:, start:start + count]
            start += count
            k = min(self.pre_nms_top_n, count)
            top, idx = topk(obj, k, axis=1)  # [N, k], best first, ties by index (native: radix sort)
            d = gather(dl, broadcast_to(unsqueeze(idx, -1), (n, k, 4)), axis=1)
            b = clip_boxes(box_decode(d, take(anchors, idx, axis=0)), height, width)
            boxes.append(b)
            scores.append(top)
            levels.append(np.full(k, lvl, dtype=np.int64))
        boxes = concatenate(boxes, axis=1) if len(boxes) > 1 else boxes[0]  # [N, K, 4]
        scores = concatenate(scores, axis=1) if len(scores) > 1 else scores[0]
        levels = Tensor._wrap(np.concatenate(levels))
        big = self._big_enough(boxes)
        scores = where(big, scores, _PUSHED_DOWN)
        props, masks = [], []
        for i in range(n):
            keep = batched_nms(boxes[i], scores[i], levels, self.nms_threshold, self.post_nms_top_n)
            b = take(boxes[i], maximum(keep, 0), axis=0)  # [R, 4]
            ok = logical_and(keep >= 0, self._big_enough(b))
            props.append(where(unsqueeze(ok, -1), b, 0.0))
            masks.append(ok)
        return stack(props, axis=0), stack(masks, axis=0)

    def _big_enough(self, boxes):
        w = boxes[..., 2] - boxes[..., 0]
        h = boxes[..., 3] - boxes[..., 1]
        return logical_and(w >= self.min_size, h >= self.min_size)

    def extra_repr(self):
        sizes = ", ".join("(" + ", ".join(f"{s:.1f}" for s in lv) + ")" for lv in self.anchor_sizes)
        return (f"anchor_sizes=({sizes}), aspect_ratios={self.aspect_ratios}, strides={self.strides}, "
                f"pre_nms_top_n={self.pre_nms_top_n}, post_nms_top_n={self.post_nms_top_n}, "
                f"nms_threshold={self.nms_threshold}")
