"""ResNet (He et al., 2015, "Deep Residual Learning for Image Recognition"): resnet_18 ... 152.

The layout and parameter names follow torchvision's, because that is where pretrained
weights and most users' checkpoints come from; the one difference is that the stem's
conv1/bn1 (and its ReLU) are grouped as `stem` (`stem.0`, `stem.1`, `stem.2`), which
`convert_torchvision_state_dict` renames. Everything inside the stages is named as in
torchvision: `layer2.0.conv1.weight`, `layer2.0.downsample.1.running_var`, `fc.bias`.

`forward_features` returns the four stage outputs (C2..C5, strides 4, 8, 16, 32), the
maps a feature pyramid network is built on, so a detector reuses this module as is.

docs/models/resnet.md is the output of `docs_markdown()` (its parameter counts are
counted on built models); the command that regenerates it is `REGENERATE` below.
"""
import math

import numpy as np

from .. import nn
from ..errors import LucidError, ShapeError
from ..ops.shape import flatten
from ..random import get_rng
from .registry import register_model


def _conv3x3(in_channels, out_channels, stride=1):
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def _conv1x1(in_channels, out_channels, stride=1):
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


def _he_normal_fan_out(weight):
    """`nn.init.kaiming_normal_(weight, mode="fan_out", nonlinearity="relu")`, drawn in
    float32: the same distribution at half the cost of float64 draws, which is most of the
    time it takes to build resnet_152 (60M parameters)."""
    out_channels, _, kh, kw = weight.shape
    std = np.float32(math.sqrt(2.0 / (out_channels * kh * kw)))
    values = get_rng().standard_normal(weight.shape, dtype=np.float32)
    values *= std
    weight.data = values.astype(weight.data.dtype, copy=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions (the first carries the stride) and a shortcut; ResNet-18/34."""

    expansion = 1

    def __init__(self, in_channels, channels, stride=1, downsample=None):
        super().__init__()
        self.conv1 = _conv3x3(in_channels, channels, stride)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = _conv3x3(channels, channels)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + shortcut)


class Bottleneck(nn.Module):
    """1x1 (reduce) -> 3x3 (with the stride, as torchvision's "ResNet v1.5") -> 1x1
    (expand 4x) and a shortcut; ResNet-50/101/152."""

    expansion = 4

    def __init__(self, in_channels, channels, stride=1, downsample=None):
        super().__init__()
        out_channels = channels * self.expansion
        self.conv1 = _conv1x1(in_channels, channels)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = _conv3x3(channels, channels, stride)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv3 = _conv1x1(channels, out_channels)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + shortcut)


class ResNet(nn.Module):
    """A ResNet classifier: stem, max pool, four stages of `block`, global average pool, fc.

    `layers` gives the number of blocks per stage; stage k has 64 * 2**k channels inside
    its blocks (times `block.expansion` at its output) and all but the first halve the
    resolution. `zero_init_residual` starts each block's last batch norm at zero, so every
    block begins as the identity (Goyal et al., 2017); off by default, as in torchvision."""

    def __init__(self, block, layers, num_classes=1000, *, in_channels=3,
                 zero_init_residual=False, name="ResNet"):
        super().__init__()
        if len(layers) != 4 or not all(isinstance(n, int) and n >= 1 for n in layers):
            raise LucidError(f"{name}: layers must be four positive ints, got {layers!r}")
        for what, value in (("num_classes", num_classes), ("in_channels", in_channels)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise LucidError(f"{name}: {what} must be a positive int, got {value!r}")
        self.name = name
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(),
        )
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        width = 64
        for k, depth in enumerate(layers):
            stage, width = self._stage(block, width, 64 * 2 ** k, depth, stride=1 if k == 0 else 2)
            setattr(self, f"layer{k + 1}", stage)
        self.feature_channels = tuple(64 * 2 ** k * block.expansion for k in range(4))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        self._init_weights(zero_init_residual)

    @staticmethod
    def _stage(block, in_channels, channels, depth, stride):
        """`depth` blocks; the first gets a projection shortcut if the shape changes."""
        out_channels = channels * block.expansion
        downsample = None
        if stride != 1 or in_channels != out_channels:
            downsample = nn.Sequential(_conv1x1(in_channels, out_channels, stride),
                                       nn.BatchNorm2d(out_channels))
        blocks = [block(in_channels, channels, stride, downsample)]
        blocks += [block(out_channels, channels) for _ in range(depth - 1)]
        return nn.Sequential(*blocks), out_channels

    def _init_weights(self, zero_init_residual):
        """torchvision's initialisation: He-normal (fan_out, relu) convolutions, batch norms
        at weight 1 / bias 0; fc keeps Linear's default."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                _he_normal_fan_out(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)
                elif isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    def _check_input(self, x):
        shape = tuple(x.shape)
        if len(shape) != 4:
            raise ShapeError(f"{self.name}: expected a 4D input (N, {self.in_channels}, H, W), "
                             f"got shape {shape}")
        if shape[1] != self.in_channels:
            raise ShapeError(f"{self.name}: expected {self.in_channels} input channels on axis 1 "
                             f"(N, {self.in_channels}, H, W), got shape {shape}")

    def forward_features(self, x):
        """(C2, C3, C4, C5): the outputs of layer1..layer4, at strides 4, 8, 16 and 32 with
        `self.feature_channels` channels."""
        self._check_input(x)
        x = self.maxpool(self.stem(x))
        c2 = self.layer1(x)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return c2, c3, c4, c5

    def forward(self, x):
        """Class logits of shape (N, num_classes)."""
        c5 = self.forward_features(x)[-1]
        return self.fc(flatten(self.avgpool(c5), 1))

    def load_state_dict(self, state_dict, strict=True):
        """Module.load_state_dict, with a classifier-size mismatch explained: a state dict
        saved from a ResNet with another `num_classes` (a detector's backbone built with a
        different `backbone_num_classes`) cannot fill this `fc`."""
        w = state_dict.get("fc.weight") if hasattr(state_dict, "get") else None
        shape = tuple(getattr(w, "shape", ()))
        if len(shape) == 2 and shape[1] == self.fc.in_features and shape[0] != self.num_classes:
            raise ShapeError(
                f"{self.name}.load_state_dict: the state dict's classifier fc has {shape[0]} classes, "
                f"this model has num_classes={self.num_classes} (for a detector's backbone.net: "
                f"backbone_num_classes). Build the model with {shape[0]} classes, or drop the 'fc.*' "
                f"keys and load with strict=False to keep a fresh classifier")
        return super().load_state_dict(state_dict, strict=strict)

    def extra_repr(self):
        return f"name={self.name!r}"


def convert_torchvision_state_dict(state_dict):
    """A torchvision ResNet state dict with lucid's key names (values unchanged).

    torchvision's `conv1.*` and `bn1.*` (the stem) become `stem.0.*` and `stem.1.*`; every
    other key is the same in both. `model.load_state_dict(convert_torchvision_state_dict(sd))`
    loads it (torch tensors are accepted as values)."""
    renamed = {}
    for key, value in state_dict.items():
        for old, new in (("conv1.", "stem.0."), ("bn1.", "stem.1.")):
            if key.startswith(old):
                key = new + key[len(old):]
                break
        renamed[key] = value
    return renamed


# ---- the registered models --------------------------------------------------------------

_CONFIGS = {  # name: (block, blocks per stage)
    "resnet_18": (BasicBlock, (2, 2, 2, 2)),
    "resnet_34": (BasicBlock, (3, 4, 6, 3)),
    "resnet_50": (Bottleneck, (3, 4, 6, 3)),
    "resnet_101": (Bottleneck, (3, 4, 23, 3)),
    "resnet_152": (Bottleneck, (3, 8, 36, 3)),
}


def _build(name, num_classes, kwargs):
    block, layers = _CONFIGS[name]
    return ResNet(block, list(layers), num_classes, name=name, **kwargs)


@register_model
def resnet_18(num_classes=1000, **kwargs):
    """ResNet-18: BasicBlocks [2, 2, 2, 2]; 11,689,512 parameters at 1000 classes."""
    return _build("resnet_18", num_classes, kwargs)


@register_model
def resnet_34(num_classes=1000, **kwargs):
    """ResNet-34: BasicBlocks [3, 4, 6, 3]; 21,797,672 parameters at 1000 classes."""
    return _build("resnet_34", num_classes, kwargs)


@register_model
def resnet_50(num_classes=1000, **kwargs):
    """ResNet-50: Bottlenecks [3, 4, 6, 3]; 25,557,032 parameters at 1000 classes."""
    return _build("resnet_50", num_classes, kwargs)


@register_model
def resnet_101(num_classes=1000, **kwargs):
    """ResNet-101: Bottlenecks [3, 4, 23, 3]; 44,549,160 parameters at 1000 classes."""
    return _build("resnet_101", num_classes, kwargs)


@register_model
def resnet_152(num_classes=1000, **kwargs):
    """ResNet-152: Bottlenecks [3, 8, 36, 3]; 60,192,808 parameters at 1000 classes."""
    return _build("resnet_152", num_classes, kwargs)




# ---- documentation: docs/models/resnet.md is this function's output -------------------------

_BLOCK_TEXT = {
    BasicBlock: "BasicBlock (two 3x3 convolutions)",
    Bottleneck: "Bottleneck (1x1 -> 3x3 -> 1x1, expanding 4x)",
}

REGENERATE = ("python -c \"from lucid.models.resnet import docs_markdown; "
              "print(docs_markdown(), end='')\" > docs/models/resnet.md")


def parameter_counts(num_classes=1000):
    """{model name: parameter count}, counted on freshly built models."""
    return {name: _build(name, num_classes, {}).parameter_size for name in _CONFIGS}


def _spatial_after_stem(size):
    """Side length of C2 for an input of side `size` (7x7/2 conv, then 3x3/2 max pool)."""
    size = (size + 2 * 3 - 7) // 2 + 1
    return (size + 2 * 1 - 3) // 2 + 1


def _model_section(name, count):
    block, layers = _CONFIGS[name]
    channels = tuple(64 * 2 ** k * block.expansion for k in range(4))
    side = _spatial_after_stem(224)
    sides = [side]
    for _ in range(3):
        sides.append((sides[-1] - 1) // 2 + 1)  # each later stage: stride 2 (3x3 pad 1 or 1x1)
    c2 = f"(2, {channels[0]}, {sides[0]}, {sides[0]})"
    c5 = f"(2, {channels[3]}, {sides[3]}, {sides[3]})"
    per_class = 512 * block.expansion + 1
    depth = name.split("_")[1]
    return f"""## {name}

`{name}` builds ResNet-{depth}: {_BLOCK_TEXT[block]} blocks, {list(layers)} per stage,
with feature channels {channels} at C2..C5.

**Total Parameters**: {count:,} (with `num_classes=1000`)

### Function Signature

```python
@register_model
def {name}(num_classes: int = 1000, **kwargs) -> ResNet
```

### Parameters

- **num_classes** (*int*, optional):
  The number of output classes of the classifier `fc`. Default is 1000 (ImageNet).
  Only `fc` depends on it: each class is {per_class:,} parameters.

- **kwargs** (*dict*, optional):
  Passed to `ResNet`: `in_channels` (*int*, default 3) is the number of input channels
  (the stem's first convolution takes it), and `zero_init_residual` (*bool*, default
  False) starts the last batch norm of every block at zero, so each block begins as the
  identity.

### Returns

- **ResNet**:
  The model, in training mode. `model(x)` gives logits of shape (N, num_classes);
  `model.forward_features(x)` gives (C2, C3, C4, C5) with {channels} channels.

### Examples

```python
import lucid
from lucid.models import {name}

model = {name}(num_classes=10)
x = lucid.random.randn(2, 3, 224, 224)

logits = model(x)                             # eager: shape (2, 10)
c2, c3, c4, c5 = model.forward_features(x)    # {c2} ... {c5}

model.eval()                                  # batch norm uses its running statistics
compiled = lucid.compile(model)               # traced, optimised, compiled to native code
logits = compiled(x)                          # shape (2, 10), model(x) up to float32 rounding
```
"""


def docs_markdown(counts=None):
    """The text of docs/models/resnet.md. `counts` ({name: parameters}) defaults to
    `parameter_counts()`, i.e. to building every model."""
    counts = parameter_counts() if counts is None else counts
    rows = "\n".join(
        f"| `{name}` | {block.__name__} | {list(layers)} | "
        f"{tuple(64 * 2 ** k * block.expansion for k in range(4))} | {counts[name]:,} |"
        for name, (block, layers) in _CONFIGS.items())
    sections = "\n".join(_model_section(name, counts[name]) for name in _CONFIGS)
    return f"""# ResNet: {", ".join(f"`{n}`" for n in _CONFIGS)}

<!-- Generated from lucid/models/resnet.py by docs_markdown(); tests/models/test_resnet.py
checks that this file is its output. Regenerate with:
{REGENERATE} -->

The ResNet family (He et al., 2015, "Deep Residual Learning for Image Recognition") of
image classifiers, registered in `lucid.models` (`create_model("resnet_50")` works too).
They double as detection backbones: `forward_features` returns the four stage outputs
(C2..C5) that a feature pyramid network is built on.

| model | block | blocks per stage | channels of C2..C5 | parameters (1000 classes) |
| --- | --- | --- | --- | --- |
{rows}

Lucid does not ship pretrained weights; train them, or load torchvision's (below).

## Architecture

The layout, and the names of the parameters, are torchvision's:

- `stem`: `Sequential(Conv2d(3, 64, 7, stride=2, padding=3, bias=False), BatchNorm2d(64), ReLU())`
- `maxpool`: `MaxPool2d(3, stride=2, padding=1)`
- `layer1` ... `layer4`: `Sequential`s of blocks with 64, 128, 256 and 512 channels inside
  each block (times 4 at a Bottleneck's output); `layer2` to `layer4` halve the resolution
  in their first block. A block adds its input (the shortcut) to its last batch norm's
  output, then applies ReLU. Where the shape changes, the shortcut is `downsample`: a
  strided 1x1 convolution and a batch norm. A Bottleneck puts the stride on its 3x3
  convolution (torchvision's "ResNet v1.5").
- `avgpool`: `AdaptiveAvgPool2d(1)`; `fc`: `Linear(512 * expansion, num_classes)`.

Convolutions start He-normal (fan_out, relu), batch norms at weight 1 and bias 0, and
`fc` with `Linear`'s default, as in torchvision.

- `model(x)`: logits, shape (N, num_classes), for x of shape (N, in_channels, H, W).
- `model.forward_features(x)`: (C2, C3, C4, C5), the outputs of `layer1` ... `layer4`, at
  strides 4, 8, 16 and 32 (H = 224 gives 56, 28, 14, 7); their channel counts are
  `model.feature_channels`.
- An input of another rank or channel count raises `lucid.ShapeError` naming the model,
  e.g. `resnet_50: expected 3 input channels on axis 1 (N, 3, H, W), got shape (1, 1, 64, 64)`.

## Loading torchvision weights

Only the stem is named differently. `lucid.models.resnet.convert_torchvision_state_dict`
renames a torchvision state dict; its values may be torch tensors.

| torchvision | lucid |
| --- | --- |
| `conv1.weight` | `stem.0.weight` |
| `bn1.weight`, `bn1.bias`, `bn1.running_mean`, `bn1.running_var`, `bn1.num_batches_tracked` | `stem.1.*` (same suffixes) |
| `layerK.B.convI.*`, `layerK.B.bnI.*`, `layerK.B.downsample.0.*`, `layerK.B.downsample.1.*` | unchanged |
| `fc.weight`, `fc.bias` | unchanged |

```python
import torch
from lucid.models import resnet_50
from lucid.models.resnet import convert_torchvision_state_dict

state = torch.load("resnet50.pth")            # a torchvision resnet50 state dict
model = resnet_50()
model.load_state_dict(convert_torchvision_state_dict(state))
```

{sections}
## Training notes

`model.train()` (the default) makes batch norm use batch statistics and update its
running estimates; `model.eval()` switches to the running estimates, which is what the
compiled inference examples above use. A training step is ordinary lucid code:

```python
import lucid
import lucid.nn.functional as F
from lucid.models import resnet_18

model = resnet_18(num_classes=10)
opt = lucid.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)

x = lucid.random.randn(8, 3, 64, 64)
y = lucid.randint(0, 10, size=(8,))
loss = F.cross_entropy(model(x), y)
opt.zero_grad()
loss.backward()
opt.step()
```
"""
