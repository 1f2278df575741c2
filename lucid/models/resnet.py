"""ResNet (He et al., 2015, "Deep Residual Learning for Image Recognition"): resnet_18 ... 152.

The layout and parameter names follow torchvision's, because that is where pretrained
weights and most users' checkpoints come from; the one difference is that the stem's
conv1/bn1 (and its ReLU) are grouped as `stem` (`stem.0`, `stem.1`, `stem.2`), which
`convert_torchvision_state_dict` renames. Everything inside the stages is named as in
torchvision: `layer2.0.conv1.weight`, `layer2.0.downsample.1.running_var`, `fc.bias`.

`forward_features` returns the four stage outputs (C2..C5, strides 4, 8, 16, 32), the
maps a feature pyramid network is built on, so a detector reuses this module as is.

`docs_markdown()` writes docs/models/resnet.md from the code (the parameter counts in it
are counted on built models): `python -m lucid.models.resnet > docs/models/resnet.md`.
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


