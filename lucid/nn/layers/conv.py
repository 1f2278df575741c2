"""2-d convolution layers: Conv2d and ConvTranspose2d (PyTorch's arguments, weight
layouts and default initialisation)."""
from ...errors import LucidError, ShapeError
from ...ops.shape import pad
from .. import functional as F
from ..module import Module
from .linear import new_parameter, reset_weight_and_bias


def pair(value, name, layer):
    """An int or a pair of ints as a pair of ints."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise LucidError(f"{layer}: {name} must be an int or a pair, got {value!r}")
        return int(value[0]), int(value[1])
    return int(value), int(value)


class _ConvNd(Module):
    def __init__(self, kind, in_channels, out_channels, kernel_size, stride, padding, dilation,
                 groups, bias, transposed, output_padding=(0, 0), dtype=None):
        super().__init__()
        if groups <= 0 or in_channels % groups or out_channels % groups:
            raise ShapeError(f"{kind}: in_channels ({in_channels}) and out_channels "
                             f"({out_channels}) must be divisible by groups ({groups})")
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.kernel_size = pair(kernel_size, "kernel_size", kind)
        self.stride = pair(stride, "stride", kind)
        self.dilation = pair(dilation, "dilation", kind)
        self.groups = int(groups)
        self.output_padding = pair(output_padding, "output_padding", kind)
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise LucidError(f"{kind}: padding must be an int, a pair, 'same' or 'valid', "
                                 f"got {padding!r}")
            if padding == "same" and self.stride != (1, 1):
                raise LucidError(f"{kind}: padding='same' needs stride 1, got stride {self.stride}")
            self.padding = padding
        else:
            self.padding = pair(padding, "padding", kind)
        if transposed:
            shape = (self.in_channels, self.out_channels // self.groups) + self.kernel_size
        else:
            shape = (self.out_channels, self.in_channels // self.groups) + self.kernel_size
        self.weight = new_parameter(*shape, dtype=dtype)
        if bias:
            self.bias = new_parameter(self.out_channels, dtype=dtype)
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        # fan_in from the weight's dims 1.. as PyTorch computes it, for both layouts.
        w = self.weight.shape
        reset_weight_and_bias(self.weight, self.bias, w[1] * w[2] * w[3])

    def extra_repr(self):
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding != (0, 0):
            s += f", padding={self.padding!r}" if isinstance(self.padding, str) else f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.output_padding != (0, 0):
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s


class Conv2d(_ConvNd):
    """2-d convolution over (N, C_in, H, W) with weight (C_out, C_in / groups, kH, kW).

    `padding` is an int, a pair, "valid" (none) or "same" (output as large as the input,
    stride 1; odd total padding puts the extra row/column at the bottom/right)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, padding_mode="zeros", dtype=None):
        if padding_mode != "zeros":
            raise LucidError(f"Conv2d: only padding_mode='zeros' is supported, got {padding_mode!r}")
        super().__init__("Conv2d", in_channels, out_channels, kernel_size, stride, padding,
                         dilation, groups, bias, transposed=False, dtype=dtype)

    def _resolved_padding(self):
        """(pre-padding of H and W as (before, after) pairs or None, symmetric padding).

        "same" pads dilation * (k - 1) in total per axis; when that is odd the extra row
        or column goes after (bottom/right), as PyTorch does, which the conv op's
        symmetric padding cannot express, so that part is padded explicitly."""
        if self.padding == "valid":
            return None, (0, 0)
        if self.padding != "same":
            return None, self.padding
        total = [d * (k - 1) for d, k in zip(self.dilation, self.kernel_size)]
        sym = tuple(t // 2 for t in total)
        if all(t % 2 == 0 for t in total):
            return None, sym
        return ((0, 0), (0, 0)) + tuple((0, t % 2) for t in total), sym

    def forward(self, x):
        pre, padding = self._resolved_padding()
        if pre is not None:
            if x.ndim != 4:
                raise ShapeError(f"Conv2d: expected a 4D (N, C, H, W) input, got shape {tuple(x.shape)}")
            x = pad(x, pre)
        return F.conv2d(x, self.weight, self.bias, stride=self.stride, padding=padding,
                        dilation=self.dilation, groups=self.groups)


class ConvTranspose2d(_ConvNd):
    """The gradient of Conv2d with respect to its input, used as a learned upsampler;
    weight shape (C_in, C_out / groups, kH, kW)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, groups=1, bias=True, dilation=1, padding_mode="zeros", dtype=None):
        if padding_mode != "zeros":
            raise LucidError(f"ConvTranspose2d: only padding_mode='zeros' is supported, "
                             f"got {padding_mode!r}")
        if isinstance(padding, str):
            raise LucidError(f"ConvTranspose2d: padding must be an int or a pair, got {padding!r}")
        super().__init__("ConvTranspose2d", in_channels, out_channels, kernel_size, stride,
                         padding, dilation, groups, bias, transposed=True,
                         output_padding=output_padding, dtype=dtype)
        for op, s, d in zip(self.output_padding, self.stride, self.dilation):
            if op >= max(s, d):
                raise ShapeError(f"ConvTranspose2d: output_padding {self.output_padding} must be "
                                 f"smaller than stride {self.stride} or dilation {self.dilation}")

    def _output_padding_for(self, x, output_size):
        """The output_padding that makes the output (H, W) equal `output_size`."""
        size = tuple(output_size)[-2:]
        pads = []
        for axis, want in enumerate(size):
            i = axis
            base = ((x.shape[2 + i] - 1) * self.stride[i] - 2 * self.padding[i]
                    + self.dilation[i] * (self.kernel_size[i] - 1) + 1)
            extra = int(want) - base
            if not 0 <= extra < max(self.stride[i], self.dilation[i]):
                raise ShapeError(f"ConvTranspose2d: output_size {tuple(output_size)} cannot be "
                                 f"reached from input shape {tuple(x.shape)}")
            pads.append(extra)
        return tuple(pads)

    def forward(self, x, output_size=None):
        output_padding = self.output_padding
        if output_size is not None:
            output_padding = self._output_padding_for(x, output_size)
        return F.conv_transpose2d(x, self.weight, self.bias, stride=self.stride,
                                  padding=self.padding, output_padding=output_padding,
                                  groups=self.groups, dilation=self.dilation)
