"""Object detection: Faster R-CNN with a ResNet-50 + FPN backbone.

fpn.py (backbone and pyramid), rpn.py (anchors, RPN head, proposals), roi_heads.py
(pooling, class deltas, detections), faster_rcnn.py (the model and its builder);
targets.py and losses.py (matching, sampling and the four losses used by `get_loss`),
evaluate.py (mAP); docs.py writes docs/models/faster_rcnn_resnet_50_fpn.md.
"""
from .faster_rcnn import FasterRCNN, faster_rcnn_resnet_50_fpn
from .fpn import FeaturePyramidNetwork, ResNetFPNBackbone
from .rpn import RegionProposalNetwork, RPNHead, default_anchor_sizes

__all__ = ["FasterRCNN", "faster_rcnn_resnet_50_fpn", "FeaturePyramidNetwork", "ResNetFPNBackbone",
           "RegionProposalNetwork", "RPNHead", "default_anchor_sizes"]
