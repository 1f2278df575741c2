"""Faster R-CNN (Ren et al., 2015) with a ResNet-50 + FPN backbone (Lin et al., 2017):
the `FasterRCNN` module and the registered `faster_rcnn_resnet_50_fpn`.

The module tree follows the Lucid framework's (so its names carry over): `backbone`
(`net`: a complete resnet_50; `stem`, `maxpool`: the same modules as `net.stem`,
`net.maxpool`; `fpn`), `rpn` (`rpn.head.conv`, `.cls_logits`, `.bbox_pred`), and the box
head `fc1`, `drop1`, `fc2`, `drop2`, `cls_score`, `bbox_pred`. The computation is
torchvision's, with static shapes throughout so that `lucid.compile(model)(x)` traces one
graph: each image keeps exactly R proposals (padded, with a `valid` mask).

`model(x)` -> (cls_logits [N, R, C], bbox_deltas [N, R, 4]): per RoI, the class logits
and the deltas (weights 10, 10, 5, 5) of its highest-scoring foreground class; rows of
padded RoIs are zero. `model(x, return_all=True)` returns a dict with those and
`class_deltas` [N, R, C, 4], `proposals` [N, R, 4] (pixel xyxy), `valid` [N, R] bool.
`predict` and `get_loss` are described on the methods.
"""
import numpy as np

from ... import nn
from ...autograd_mode import no_grad
from ...errors import DTypeError, LucidError, ShapeError
from ...ops.elementwise import where
from ...ops.shape import flatten, reshape, unsqueeze
from ...tensor import as_tensor
from ..registry import register_model
from ..resnet import resnet_50
from .fpn import ResNetFPNBackbone
from .roi_heads import BOX_WEIGHTS, best_class_deltas, pool_rois, postprocess_detections
from .rpn import ASPECT_RATIOS, STRIDES, RegionProposalNetwork

_MODEL_KWARGS = ("in_channels", "anchor_sizes", "aspect_ratios", "pre_nms_top_n", "post_nms_top_n",
                 "rpn_nms_threshold", "min_size", "pool_size", "sampling_ratio", "hidden_dim", "dropout")
SIZE_DIVISOR = 32  # the stride of P5: every level then has an exact size, and FPN adds align

_TRAINING_DEFAULTS = {  # torchvision's fasterrcnn_resnet50_fpn values
    "rpn_fg_iou_threshold": 0.7, "rpn_bg_iou_threshold": 0.3,
    "rpn_batch_size_per_image": 256, "rpn_positive_fraction": 0.5,
    "box_fg_iou_threshold": 0.5, "box_bg_iou_threshold": 0.5,
    "box_batch_size_per_image": 512, "box_positive_fraction": 0.25,
}


def _positive_int(name, what, v):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise LucidError(f"{name}: {what} must be a positive int, got {v!r}")
    return int(v)


def _check_arguments(name, num_classes, training):
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise LucidError(f"{name}: num_classes must be an int >= 2 (class 0 is the background), "
                         f"got {num_classes!r}")
    unknown = sorted(set(training) - set(_TRAINING_DEFAULTS))
    if unknown:
        raise LucidError(f"{name}: unknown keyword argument(s) {', '.join(unknown)}; known: in_channels, "
                         f"anchor_sizes, aspect_ratios, pre_nms_top_n, post_nms_top_n, rpn_nms_threshold, "
                         f"min_size, pool_size, sampling_ratio, hidden_dim, dropout, "
                         f"{', '.join(_TRAINING_DEFAULTS)}")


class FasterRCNN(nn.Module):
    """Faster R-CNN over a backbone that returns FPN maps [P2, P3, P4, P5] with
    `backbone.out_channels` channels; see the module docstring.

    Keyword arguments (all optional): `anchor_sizes` (one tuple of sizes per level;
    default lucid.models.detection.rpn.default_anchor_sizes()), `aspect_ratios` (0.5, 1,
    2), `pre_nms_top_n` (1000, per level), `post_nms_top_n` (R, 300), `rpn_nms_threshold`
    (0.7), `min_size` (1e-3), `pool_size` (7), `sampling_ratio` (2), `hidden_dim` (1024),
    `dropout` (0.5), and the training settings of `get_loss`: `rpn_fg_iou_threshold`
    (0.7), `rpn_bg_iou_threshold` (0.3), `rpn_batch_size_per_image` (256),
    `rpn_positive_fraction` (0.5), `box_fg_iou_threshold` (0.5), `box_bg_iou_threshold`
    (0.5), `box_batch_size_per_image` (512), `box_positive_fraction` (0.25)."""

    def __init__(self, backbone, num_classes, *, name="FasterRCNN", in_channels=3, anchor_sizes=None,
                 aspect_ratios=ASPECT_RATIOS, pre_nms_top_n=1000, post_nms_top_n=300, rpn_nms_threshold=0.7,
                 min_size=1e-3, pool_size=7, sampling_ratio=2, hidden_dim=1024, dropout=0.5, **training):
        super().__init__()
        self.name = name
        _check_arguments(name, num_classes, training)
        self.training_settings = {**_TRAINING_DEFAULTS, **training}
        self.num_classes = int(num_classes)
        self.in_channels = _positive_int(name, "in_channels", in_channels)
        self.pool_size = (_positive_int(name, "pool_size", pool_size),) * 2
        self.sampling_ratio = _positive_int(name, "sampling_ratio", sampling_ratio)
        hidden_dim = _positive_int(name, "hidden_dim", hidden_dim)
        channels = backbone.out_channels

        self.backbone = backbone
        self.rpn = RegionProposalNetwork(channels, anchor_sizes, aspect_ratios, STRIDES, pre_nms_top_n,
                                         post_nms_top_n, rpn_nms_threshold, min_size, name=name)
        self.fc1 = nn.Linear(channels * self.pool_size[0] * self.pool_size[1], hidden_dim)
        self.drop1 = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden_dim, hidden_dim)
        self.drop2 = nn.Dropout(dropout)
        self.cls_score = nn.Linear(hidden_dim, self.num_classes)
        self.bbox_pred = nn.Linear(hidden_dim, 4 * self.num_classes)
        nn.init.normal_(self.cls_score.weight, std=0.01)  # torchvision's FastRCNNPredictor start
        nn.init.zeros_(self.cls_score.bias)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.zeros_(self.bbox_pred.bias)

    # ---- checks --------------------------------------------------------------------------
    def _check_images(self, x, what):
        """x as a tensor, after checking it is a batch of images the detector can take."""
        x = as_tensor(x)
        shape = tuple(x.shape)
        form = f"(N, {self.in_channels}, H, W)"
        if len(shape) != 4:
            raise ShapeError(f"{self.name}: {what} must be a 4D batch of images {form}, got shape {shape}")
        if shape[1] != self.in_channels:
            raise ShapeError(f"{self.name}: {what} must have {self.in_channels} channels on axis 1 {form}, "
                             f"got shape {shape}")
        if shape[0] < 1 or shape[2] % SIZE_DIVISOR or shape[3] % SIZE_DIVISOR or min(shape[2:]) < 1:
            raise ShapeError(f"{self.name}: {what} height and width must be positive multiples of "
                             f"{SIZE_DIVISOR} (the stride of P5), got shape {shape}; pad or resize the images")
        if not x.dtype.is_float:
            raise DTypeError(f"{self.name}: {what} must be floating images, got dtype {x.dtype}")
        return x

    # ---- the stages ----------------------------------------------------------------------
    def box_head(self, features, boxes):
        """(cls_logits [N, R, C], class_deltas [N, R, C, 4]) for boxes [N, R, 4] (pixels)."""
        n, r = boxes.shape[0], boxes.shape[1]
        x = flatten(pool_rois(features, boxes, self.pool_size, self.sampling_ratio), 1)
        x = self.drop1(nn.functional.relu(self.fc1(x)))
        x = self.drop2(nn.functional.relu(self.fc2(x)))
        c = self.num_classes
        return reshape(self.cls_score(x), (n, r, c)), reshape(self.bbox_pred(x), (n, r, c, 4))

    def forward(self, x, return_all=False):
        """(cls_logits [N, R, C], bbox_deltas [N, R, 4]); a dict with more when
        `return_all` (see the module docstring)."""
        x = self._check_images(x, "x")
        height, width = x.shape[2], x.shape[3]
        features = self.backbone(x)
        _, _, _, proposals, valid = self.rpn(features, (height, width))
        cls_logits, class_deltas = self.box_head(features, proposals)
        bbox_deltas = best_class_deltas(cls_logits, class_deltas)
        mask = unsqueeze(valid, -1)
        cls_logits = where(mask, cls_logits, 0.0)
        bbox_deltas = where(mask, bbox_deltas, 0.0)
        if not return_all:
            return cls_logits, bbox_deltas
        return {"cls_logits": cls_logits, "bbox_deltas": bbox_deltas,
                "class_deltas": where(unsqueeze(mask, -1), class_deltas, 0.0),
                "proposals": proposals, "valid": valid}

    def predict(self, x, score_threshold=0.05, nms_threshold=0.5, detections_per_image=100):
        """Detections per image: a list of N dicts {"boxes" [k, 4] pixel xyxy float32,
        "scores" [k], "labels" [k] int64 in 1..C-1}, k <= detections_per_image, best first.

        Runs in eval mode (dropout off, batch norm on running statistics; every module's
        mode is restored afterwards) without gradients. Softmax over the classes; each
        foreground class's deltas decoded on the proposal (weights 10, 10, 5, 5) and
        clipped to the image; candidates with score > `score_threshold`; NMS per class at
        `nms_threshold`. On an untrained model the scores sit near 1 / num_classes."""
        x = self._check_images(x, "x")
        detections_per_image = _positive_int(f"{self.name}.predict", "detections_per_image",
                                             detections_per_image)
        modes = [(m, m.training) for m in self.modules()]  # each its own (frozen batch norms stay so)
        self.eval()
        try:
            with no_grad():
                out = self.forward(x, return_all=True)
        finally:
            for m, mode in modes:
                m.training = mode
        return postprocess_detections(out["cls_logits"], out["class_deltas"], out["proposals"], out["valid"],
                                      (x.shape[2], x.shape[3]), score_threshold, nms_threshold,
                                      detections_per_image, weights=BOX_WEIGHTS)

    def get_loss(self, images, targets):
        """The training losses for `images` [N, 3, H, W] and `targets`, one dict per image
        {"boxes": [k, 4] pixel xyxy, "labels": [k] in 1..C-1} (k may be 0).

        Returns {"rpn_cls_loss", "rpn_reg_loss", "roi_cls_loss", "roi_reg_loss",
        "total_loss"} (scalars; total is their sum). As torchvision: anchors matched at
        IoU >= 0.7 / < 0.3 (and each ground-truth box's best anchors), 256 sampled per
        image, half positive at most; the proposals (detached), joined by the
        ground-truth boxes, matched at IoU 0.5, 512 sampled per image, a quarter positive
        at most; binary cross-entropy and smooth-L1 for the RPN, cross-entropy and
        smooth-L1 on the true class's deltas for the box head. The model's mode applies
        (call `model.train()` for dropout and batch statistics)."""
        from .losses import roi_loss, rpn_loss
        from .targets import pad_targets, roi_targets, rpn_targets

        images = self._check_images(images, "images")
        s = self.training_settings
        height, width = images.shape[2], images.shape[3]
        gt_boxes, gt_labels, gt_valid = pad_targets(targets, images.shape[0], num_classes=self.num_classes,
                                                    caller=f"{self.name}.get_loss")
        features = self.backbone(images)
        objectness, deltas, anchors, proposals, valid = self.rpn(features, (height, width))
        labels, sampled, reg_targets = rpn_targets(
            anchors, gt_boxes, gt_valid, fg_iou=s["rpn_fg_iou_threshold"], bg_iou=s["rpn_bg_iou_threshold"],
            batch_size_per_image=s["rpn_batch_size_per_image"], positive_fraction=s["rpn_positive_fraction"])
        rpn_cls, rpn_reg = rpn_loss(objectness, deltas, labels, sampled, reg_targets)
        rois, roi_labels, roi_reg_targets, roi_sampled = roi_targets(
            proposals, valid, gt_boxes, gt_labels, gt_valid, fg_iou=s["box_fg_iou_threshold"],
            bg_iou=s["box_bg_iou_threshold"], batch_size_per_image=s["box_batch_size_per_image"],
            positive_fraction=s["box_positive_fraction"], weights=BOX_WEIGHTS)
        cls_logits, class_deltas = self.box_head(features, rois.detach())
        roi_cls, roi_reg = roi_loss(cls_logits, class_deltas, roi_labels, roi_reg_targets, roi_sampled)
        return {"rpn_cls_loss": rpn_cls, "rpn_reg_loss": rpn_reg, "roi_cls_loss": roi_cls,
                "roi_reg_loss": roi_reg, "total_loss": rpn_cls + rpn_reg + roi_cls + roi_reg}

    def extra_repr(self):
        return f"name={self.name!r}, num_classes={self.num_classes}"


@register_model
def faster_rcnn_resnet_50_fpn(num_classes=21, backbone_num_classes=1000, **kwargs):
    """Faster R-CNN, ResNet-50 + FPN; 43,506,366 parameters at the defaults (41,349,741
    + 2,049 backbone_num_classes + 5,125 num_classes). `backbone.net` is a complete
    resnet_50(num_classes=backbone_num_classes); kwargs go to `FasterRCNN`."""
    name = "faster_rcnn_resnet_50_fpn"
    if isinstance(backbone_num_classes, bool) or not isinstance(backbone_num_classes, (int, np.integer)) \
            or backbone_num_classes < 1:
        raise LucidError(f"{name}: backbone_num_classes must be a positive int, got {backbone_num_classes!r}")
    _check_arguments(name, num_classes, {k: v for k, v in kwargs.items() if k not in _MODEL_KWARGS})
    in_channels = kwargs.pop("in_channels", 3)
    net = resnet_50(num_classes=int(backbone_num_classes), in_channels=in_channels)
    return FasterRCNN(ResNetFPNBackbone(net), num_classes, name=name, in_channels=in_channels, **kwargs)
