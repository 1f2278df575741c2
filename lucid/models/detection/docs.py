"""docs/models/faster_rcnn_resnet_50_fpn.md is the output of `docs_markdown()`.

Every number on the page is computed here from a built model or from the code's own
defaults (parameter counts, the per-class terms of the formula, the anchor sizes), so the
page cannot drift from the code: tests/models/test_faster_rcnn.py compares the file
with this function's output. Regenerate with `REGENERATE`.
"""
from .rpn import ASPECT_RATIOS, STRIDES, default_anchor_sizes

REGENERATE = ("python -c \"from lucid.models.detection.docs import docs_markdown; "
              "print(docs_markdown(), end='')\" > docs/models/faster_rcnn_resnet_50_fpn.md")

SEED_COUNT = 43_515_902  # the figure on the Lucid framework's page


def parameter_counts(model=None):
    """The detector's parameter counts, from `model` (default: a freshly built one with
    num_classes=21, backbone_num_classes=1000):

    - unique: `model.parameter_size` (every tensor once);
    - with_duplicates: counted per name, as the Lucid framework did (the stem twice);
    - shared: the parameters reachable under two names (backbone.stem = backbone.net.stem);
    - per_backbone_class, per_class: what one more class adds; constant: the rest."""
    if model is None:
        from .faster_rcnn import faster_rcnn_resnet_50_fpn

        model = faster_rcnn_resnet_50_fpn()
    unique = model.parameter_size
    with_duplicates = int(sum(p.size for _, p in model.named_parameters(remove_duplicate=False)))
    per_backbone_class = model.backbone.net.fc.in_features + 1
    per_class = (model.cls_score.in_features + 1) + 4 * (model.bbox_pred.in_features + 1)
    constant = unique - per_backbone_class * model.backbone.net.num_classes - per_class * model.num_classes
    return {"unique": unique, "with_duplicates": with_duplicates, "shared": with_duplicates - unique,
            "per_backbone_class": per_backbone_class, "per_class": per_class, "constant": constant,
            "stem": int(sum(p.size for p in model.backbone.stem.parameters()))}


def _anchor_rows():
    rows = []
    for level, (stride, sizes) in enumerate(zip(STRIDES, default_anchor_sizes()), start=2):
        rows.append(f"| P{level} | {stride} | {', '.join(f'{s:.1f}' for s in sizes)} |")
    return "\n".join(rows)


def docs_markdown(counts=None):
    """The text of docs/models/faster_rcnn_resnet_50_fpn.md (`counts`: see
    `parameter_counts`, which builds the model when not given)."""
    c = parameter_counts() if counts is None else counts
    ratios = ", ".join(f"{r:g}" for r in ASPECT_RATIOS)
    return f"""# faster_rcnn_resnet_50_fpn

<!-- Generated from lucid/models/detection/docs.py by docs_markdown(); tests/models/test_faster_rcnn.py
checks that this file is its output. Regenerate with:
{REGENERATE} -->

`faster_rcnn_resnet_50_fpn` builds a two-stage object detector, Faster R-CNN (Ren et al.,
2015), on a ResNet-50 backbone with a feature pyramid network (Lin et al., 2017). It runs
eagerly, traces, and compiles: every shape inside is static, so `lucid.compile(model)`
turns the whole detector (backbone, proposals with NMS, RoI Align, box head) into one
native function.

**Total Parameters**: {c["unique"]:,}

The Lucid framework's page gives {SEED_COUNT:,}. That figure counts the stem twice: the
backbone wrapper exposes the ResNet's stem as `backbone.stem` and the ResNet itself as
`backbone.net`, so the same {c["stem"]:,} parameters (the 7x7 convolution, 9,408, and its
batch norm, 128) appear under `backbone.stem.*` and under `backbone.net.stem.*`. Counted
once per tensor, as `model.parameter_size` does, the detector has {c["unique"]:,}
parameters ({c["with_duplicates"]:,} - {c["shared"]:,}). In general:

    parameters = {c["constant"]:,} + {c["per_backbone_class"]:,} * backbone_num_classes + {c["per_class"]:,} * num_classes

(each backbone class is a row of `backbone.net.fc`, 2,048 weights and a bias; each
detection class a row of `cls_score` and four of `bbox_pred`, 1,025 parameters each).

## Function Signature

```python
@register_model
def faster_rcnn_resnet_50_fpn(
    num_classes: int = 21,
    backbone_num_classes: int = 1000,
    **kwargs
) -> FasterRCNN
```

## Parameters

- **num_classes** (*int*, optional):
  The number of classes of the box head, background included (class 0). Default 21
  (PASCAL VOC's 20 and the background). Sizes `cls_score` and `bbox_pred`.

- **backbone_num_classes** (*int*, optional):
  The number of classes of `backbone.net`, the complete `resnet_50` inside the detector.
  Default 1000 (ImageNet). Detection does not use its classifier `fc`; it is kept so that
  the backbone can be trained as a classifier first (see Training Notes), and it must
  match the classifier whose weights you load.

- **kwargs** (*dict*, optional): passed to `FasterRCNN`:
  - `anchor_sizes`: one tuple of sizes per level (default below), `aspect_ratios`
    (default ({ratios})): the RPN's anchors;
  - `pre_nms_top_n` (1000): proposals kept per level, by objectness, before NMS;
  - `post_nms_top_n` (300): R, the proposals kept per image after NMS;
  - `rpn_nms_threshold` (0.7), `min_size` (0.001 pixels): the proposals' NMS IoU and
    the smallest side a proposal may have;
  - `pool_size` (7), `sampling_ratio` (2): RoI Align's output and samples per bin;
  - `hidden_dim` (1024), `dropout` (0.5): the box head;
  - `in_channels` (3): channels of the input images;
  - training (used by `get_loss`): `rpn_fg_iou_threshold` (0.7), `rpn_bg_iou_threshold`
    (0.3), `rpn_batch_size_per_image` (256), `rpn_positive_fraction` (0.5),
    `box_fg_iou_threshold` (0.5), `box_bg_iou_threshold` (0.5),
    `box_batch_size_per_image` (512), `box_positive_fraction` (0.25).

## Returns

- **FasterRCNN**: the detector, in training mode (call `model.eval()` for inference).

## Architecture

- `backbone`: `net`, a complete `resnet_50(num_classes=backbone_num_classes)`;
  `stem` and `maxpool`, the same modules as `net.stem` and `net.maxpool` (not copies);
  `fpn`: over C2..C5 (256, 512, 1024, 2048 channels), a 1x1 lateral convolution per
  level (`fpn.lateral.k`), a top-down path (nearest upsampling, add) and a 3x3 output
  convolution per level (`fpn.output.k`), all with bias, giving P2..P5 with 256 channels
  at strides 4, 8, 16, 32. No P6.
- `rpn.head`: shared by all levels: `conv` 3x3 256->256 with ReLU, `cls_logits` 1x1
  256->9 (objectness), `bbox_pred` 1x1 256->36 (box deltas).
- Box head: RoI Align to 7x7 from the FPN level of each RoI, flatten, `fc1`
  12,544->1,024, ReLU, `drop1` (0.5), `fc2` 1,024->1,024, ReLU, `drop2` (0.5), then
  `cls_score` 1,024->num_classes and `bbox_pred` 1,024->4*num_classes.

### Anchors

Nine anchors per location: three sizes times aspect ratios ({ratios}) (height / width),
laid at the stride of the level the RPN head runs on. The sizes grow with the level:
32 * 2^(l-2) times 2^0, 2^(1/3), 2^(2/3) on level l (RetinaNet's octave scales), twelve
sizes from 32 to 406 pixels in steps of 2^(1/3):

| level | stride | anchor sizes (side of the square of equal area, pixels) |
| --- | --- | --- |
{_anchor_rows()}

The Lucid framework ran the RPN on P2 alone, with anchors of 128, 256 and 512 laid at
stride 16; here every level has its own. Anchors depend only on the input's shape: a
trace captures them as constants, which the compiler folds.

### Proposals and RoIs

Per level, the `pre_nms_top_n` best objectness logits are kept; their deltas are
decoded on their anchors and clipped to the image; boxes with a side below `min_size`
are pushed below every real score; NMS at IoU 0.7 runs per level; the best R =
`post_nms_top_n` survive per image. Fewer survivors are padded: the `valid` mask marks
the real ones, padded proposals are (0, 0, 0, 0) and their output rows are zero.

Each RoI is pooled from level floor(4 + log2(sqrt(w h) / 224)) clamped to [2, 5], with
w and h in pixels (torchvision's MultiScaleRoIAlign; the Lucid framework applied the rule
to boxes scaled to [0, 1] and so pooled every RoI from P2).

## Outputs

```python
cls_logits, bbox_deltas = model(x)   # x: (N, 3, H, W), H and W multiples of 32
```

- `cls_logits` (N, R, num_classes): class logits of each proposal (zero for padding).
- `bbox_deltas` (N, R, 4): each proposal's box deltas (dx, dy, dw, dh), scaled by the
  weights (10, 10, 5, 5), for its highest-scoring foreground class.

`model(x, return_all=True)` returns a dict with those two and `class_deltas`
(N, R, num_classes, 4), the deltas of every class; `proposals` (N, R, 4), the RoIs in
pixels (x1, y1, x2, y2); `valid` (N, R), bool. Decoding the boxes yourself:

```python
from lucid.ops.detection import box_decode

out = model(x, return_all=True)
boxes = box_decode(out["bbox_deltas"], out["proposals"], weights=(10.0, 10.0, 5.0, 5.0))
```

An input of another rank, another channel count, or a height or width that is not a
multiple of 32 raises `lucid.ShapeError` naming the model and the argument, e.g.
`faster_rcnn_resnet_50_fpn: x height and width must be positive multiples of 32 (the
stride of P5), got shape (1, 3, 100, 100); pad or resize the images`.

## predict

```python
detections = model.predict(x, score_threshold=0.05, nms_threshold=0.5, detections_per_image=100)
```

One dict per image: `boxes` (k, 4) in pixels (x1, y1, x2, y2), `scores` (k,), `labels`
(k,) int64 in 1..num_classes-1, best first. It runs in eval mode without gradients (the
model's mode is restored after), takes the softmax over classes, decodes each foreground
class's deltas on the proposal (weights 10, 10, 5, 5), clips to the image, drops scores at
or below `score_threshold` and boxes under 0.01 pixels, runs NMS per class and keeps the
best `detections_per_image`. It works on an untrained model too (its scores sit near
1 / num_classes, so lower `score_threshold` to see boxes).

## get_loss

```python
targets = [{{"boxes": [[10, 20, 60, 90]], "labels": [3]}},    # one dict per image, pixels
           {{"boxes": lucid.zeros((0, 4)), "labels": []}}]     # an image without objects
losses = model.get_loss(x, targets)    # x: (2, 3, H, W)
losses["total_loss"].backward()
```

`boxes` are (k, 4) pixel (x1, y1, x2, y2), `labels` (k,) in 1..num_classes-1 (numpy
arrays, lists or lucid tensors; k may be 0). Returns a dict of scalars `rpn_cls_loss`,
`rpn_reg_loss`, `roi_cls_loss`, `roi_reg_loss` and `total_loss` (their sum), matched and
sampled as torchvision does:

- RPN: anchors with IoU >= 0.7 with a ground-truth box are positive (and each box's best
  anchors), below 0.3 negative; 256 sampled per image, at most half positive; binary
  cross-entropy on objectness, smooth L1 (beta 1/9) on the positives' deltas, both over
  the number of sampled anchors.
- Box head: the proposals (no gradient flows through them) and the ground-truth boxes
  are matched at IoU 0.5; 512 sampled per image, at most a quarter positive; cross-entropy
  on the classes and smooth L1 (beta 1/9) on the true class's deltas (weights 10, 10, 5, 5),
  over the number of sampled RoIs.

Every parameter the detector uses gets a gradient; `backbone.net.fc` (the classifier,
unused by detection) keeps `grad` None. A target with a bad shape, a label out of range
or a box with x2 < x1 raises a `lucid.LucidError` naming `get_loss`, the image and the key.

## Examples

**Basic Usage**

```python
import lucid
from lucid.models import faster_rcnn_resnet_50_fpn

# Create the model with 21 object classes (VOC-style)
model = faster_rcnn_resnet_50_fpn(num_classes=21)

# Input tensor: 1 image with 3 channels and 224x224 spatial dimensions
x = lucid.random.randn(1, 3, 224, 224)

# Forward pass
cls_logits, bbox_deltas = model(x)

print(cls_logits.shape)   # (1, 300, 21)
print(bbox_deltas.shape)  # (1, 300, 4)
```

**Compiled**

```python
model.eval()
compiled = lucid.compile(model)
cls_logits, bbox_deltas = compiled(x)   # model(x) up to float32 rounding
```

## Training Notes

Lucid does not provide pretrained weights for detection backbones. Train in two stages.

1. **Pretrain the backbone as a classifier.** `detector.backbone.net` is a complete
   ResNet-50 (`resnet_50(num_classes=backbone_num_classes)`); train it like any classifier
   and save its `state_dict`:

   ```python
   import lucid
   import lucid.nn.functional as F
   from lucid.models import faster_rcnn_resnet_50_fpn

   detector = faster_rcnn_resnet_50_fpn(num_classes=21, backbone_num_classes=10)
   backbone_net = detector.backbone.net        # a ResNet-50 with a 10-class fc

   opt = lucid.optim.SGD(backbone_net.parameters(), lr=0.01, momentum=0.9)
   for images, labels in classification_batches:   # your data: (B, 3, H, W), (B,)
       loss = F.cross_entropy(backbone_net(images), labels)
       opt.zero_grad()
       loss.backward()
       opt.step()

   state_dict = backbone_net.state_dict()
   lucid.save(state_dict, "backbone.lucid")
   ```

2. **Fine-tune the detector.** Load the weights into a detector's `backbone.net` (the
   shared `backbone.stem` and `backbone.maxpool` are the same modules, so they load too)
   and train on detection, with a lower learning rate for the pretrained backbone:

   ```python
   detector = faster_rcnn_resnet_50_fpn(num_classes=21, backbone_num_classes=10)
   detector.backbone.net.load_state_dict(lucid.load("backbone.lucid"))

   backbone = list(detector.backbone.net.parameters())
   ids = {{id(p) for p in backbone}}
   heads = [p for p in detector.parameters() if id(p) not in ids]
   opt = lucid.optim.SGD([{{"params": backbone, "lr": 0.001}},
                          {{"params": heads, "lr": 0.01}}], momentum=0.9, weight_decay=1e-4)
   for images, targets in detection_batches:
       losses = detector.get_loss(images, targets)
       opt.zero_grad()
       losses["total_loss"].backward()
       opt.step()
   ```

Detection batches are small (a few images), which makes batch statistics noisy; as
torchvision freezes the backbone's batch norms, you may keep them on their pretrained
running statistics (`predict` restores these modes after its eval-mode pass):

```python
detector.train()
for m in detector.backbone.modules():
    if isinstance(m, lucid.nn.BatchNorm2d):
        m.eval()   # running statistics, no updates
```

`backbone_num_classes` must match the classifier you pretrained: a state dict whose `fc`
has another number of classes raises `lucid.ShapeError` naming `fc.weight` and both
shapes, and nothing is loaded. To reuse such weights anyway, drop the classifier's keys
and load the rest with `strict=False`:

```python
state_dict = {{k: v for k, v in state_dict.items() if not k.startswith("fc.")}}
detector.backbone.net.load_state_dict(state_dict, strict=False)
```

A detector's own `state_dict` lists the shared stem under both `backbone.stem.*` and
`backbone.net.stem.*` (as PyTorch does for shared modules) and loads back as it is;
`parameters()` yields every tensor once, so optimisers update the stem once per step.
"""
