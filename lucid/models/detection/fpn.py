"""The ResNet-50 + FPN backbone of the detector: C2..C5 from a complete ResNet, P2..P5 out.

`ResNetFPNBackbone` keeps the classifier it wraps whole (`net`, its `fc` included), so the
classifier can be trained on its own and its `state_dict` loaded back into
`detector.backbone.net` (the seed's two-stage recipe). `stem` and `maxpool` are the very
modules `net.stem` and `net.maxpool`, as in the Lucid framework; `Module.named_parameters`
reaches every tensor once (under `net.`), so counts and optimisers see no duplicates,
while `state_dict` lists the shared tensors under both names, as PyTorch does.

`FeaturePyramidNetwork` is Lin et al. (2017): a 1x1 lateral convolution per level, a
top-down path that upsamples the coarser map (nearest, to the finer map's size) and adds
it, and a 3x3 output convolution per level, all with bias and `out_channels` channels.
No extra P6 level: the RPN runs on P2..P5.
"""
from ... import nn
from ...errors import LucidError
from ...nn import functional as F


class FeaturePyramidNetwork(nn.Module):
    """P2..P5 (finest first) from C2..C5; `lateral[k]` and `output[k]` serve level k + 2."""

    def __init__(self, in_channels_list, out_channels=256):
        super().__init__()
        if not in_channels_list:
            raise LucidError("FeaturePyramidNetwork: in_channels_list is empty")
        self.out_channels = int(out_channels)
        self.lateral = nn.ModuleList([nn.Conv2d(c, self.out_channels, 1) for c in in_channels_list])
        self.output = nn.ModuleList([nn.Conv2d(self.out_channels, self.out_channels, 3, padding=1)
                                     for _ in in_channels_list])
        for m in self.modules():  # torchvision's FPN initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=1)
                nn.init.zeros_(m.bias)

    def forward(self, features):
        features = list(features)
        if len(features) != len(self.lateral):
            raise LucidError(f"FeaturePyramidNetwork: expected {len(self.lateral)} feature maps, "
                             f"got {len(features)}")
        top = self.lateral[-1](features[-1])
        outs = [self.output[-1](top)]
        for k in range(len(features) - 2, -1, -1):
            lateral = self.lateral[k](features[k])
            top = lateral + F.interpolate(top, size=tuple(lateral.shape[2:]), mode="nearest")
            outs.insert(0, self.output[k](top))
        return outs


class ResNetFPNBackbone(nn.Module):
    """A ResNet (`net`, kept complete) and an FPN over its four stage outputs."""

    def __init__(self, net, out_channels=256):
        super().__init__()
        self.net = net
        self.stem = net.stem  # the same modules, not copies (see the module docstring)
        self.maxpool = net.maxpool
        self.fpn = FeaturePyramidNetwork(net.feature_channels, out_channels)
        self.out_channels = self.fpn.out_channels

    def forward(self, x):
        """[P2, P3, P4, P5] at strides 4, 8, 16, 32."""
        net = self.net
        x = self.maxpool(self.stem(x))
        c2 = net.layer1(x)
        c3 = net.layer2(c2)
        c4 = net.layer3(c3)
        c5 = net.layer4(c4)
        return self.fpn([c2, c3, c4, c5])
