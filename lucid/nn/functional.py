"""`lucid.nn.functional`: layers, activations, normalisations and losses as functions.

Names and argument conventions follow `torch.nn.functional` (sizes as ints or pairs,
`reduction="mean" | "sum" | "none"`), so model code ports over. Everything here is a
composite of registry ops: convolution and pooling call the primitives of
`lucid.ops.nn`, the rest is elementwise math, reductions, matmuls and `take` with index
arrays computed by numpy from static shapes. So every function traces, and gets its
gradient from the ops' vjps (no function here has a backward rule of its own).

Argument errors are lucid errors that name the function and the argument.
"""
import math

import numpy as np

from .. import dtypes as _dt
from .. import random as _random
from ..autograd_mode import no_grad
from ..errors import DTypeError, LucidError, ShapeError
from ..ops import nn as _nn
from ..ops.elementwise import (abs as _abs, cast, exp, gelu as _gelu, log, maximum, minimum, relu as _relu,
                               sigmoid as _sigmoid, sqrt, tanh as _tanh, where)
from ..ops.indexing import one_hot, take  # noqa: F401  (one_hot: torch's F.one_hot)
from ..ops.linalg import matmul
from ..ops.reduce import max as _max, mean, sum as _sum
from ..ops.shape import pad as _pad, reshape, squeeze, transpose, unsqueeze
from ..tensor import Tensor, as_tensor

__all__ = [
    "linear", "conv2d", "conv_transpose2d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d",
    "interpolate", "pad", "relu", "leaky_relu", "gelu", "silu", "sigmoid", "tanh", "softplus",
    "logsigmoid", "softmax", "log_softmax", "dropout", "batch_norm", "layer_norm", "group_norm",
    "embedding", "one_hot", "cross_entropy", "nll_loss", "mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss",
    "binary_cross_entropy", "binary_cross_entropy_with_logits",
]


# ---- argument helpers -------------------------------------------------------------------------

def _float_tensor(fn, name, x):
    x = as_tensor(x)
    if not x.dtype.is_float:
        raise DTypeError(f"{fn}: {name} must be a floating tensor, got {x.dtype}")
    return x


def _pair(fn, name, value, low=0):
    """An int or a pair of ints as a pair, each at least `low`."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise LucidError(f"{fn}: {name} must be an int or a pair of ints, got {value!r}")
        pair = tuple(value)
    else:
        pair = (value, value)
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in pair):
        raise LucidError(f"{fn}: {name} must be an int or a pair of ints, got {value!r}")
    pair = (int(pair[0]), int(pair[1]))
    if min(pair) < low:
        raise LucidError(f"{fn}: {name} must be >= {low}, got {value!r}")
    return pair


def _batched(fn, x):
    """`x` as NCHW (a 3-D CHW input gets a batch of one) and whether to drop it again."""
    if x.ndim == 4:
        return x, False
    if x.ndim == 3:
        return unsqueeze(x, 0), True
    raise ShapeError(f"{fn}: input must be 4-D (N, C, H, W) or 3-D (C, H, W), got shape {tuple(x.shape)}")


def _unbatch(y, dropped):
    return squeeze(y, 0) if dropped else y


def _channel_vector(fn, name, v, channels, ndim):
    """A per-channel vector of length `channels`, shaped to broadcast over axis 1 of an ndim tensor."""
    v = as_tensor(v)
    if tuple(v.shape) != (channels,):
        raise ShapeError(f"{fn}: {name} must have shape ({channels},), got {tuple(v.shape)}")
    return reshape(v, (1, channels) + (1,) * (ndim - 2))


# ---- linear and convolution --------------------------------------------------------------------

def linear(x, weight, bias=None):
    """x @ weight.T + bias, with weight [out_features, in_features] (torch's layout)."""
    x = _float_tensor("linear", "x", x)
    weight = as_tensor(weight)
    if weight.ndim != 2:
        raise ShapeError(f"linear: weight must be 2-D (out_features, in_features), got {tuple(weight.shape)}")
    if x.ndim == 0 or x.shape[-1] != weight.shape[1]:
        raise ShapeError(f"linear: input x {tuple(x.shape)} has {x.shape[-1] if x.ndim else 0} features but "
                         f"weight {tuple(weight.shape)} expects {weight.shape[1]}")
    y = matmul(x, transpose(weight))
    if bias is not None:
        bias = as_tensor(bias)
        if tuple(bias.shape) != (weight.shape[0],):
            raise ShapeError(f"linear: bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}")
        y = y + bias
    return y


def _same_padding(fn, weight, dilation, stride):
    """'same' padding per side as (top, bottom, left, right); the odd one goes bottom/right."""
    if stride != (1, 1):
        raise LucidError(f"{fn}: padding='same' needs stride 1, got stride {stride}")
    out = []
    for k, d in zip(weight.shape[2:], dilation):
        total = d * (k - 1)
        out += [total // 2, total - total // 2]
    return tuple(out)


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution (cross-correlation) of x[N, C, H, W] with weight[O, C/groups, kh, kw].

    `padding` is an int, a pair, "valid" (none) or "same" (stride 1; an odd total puts
    the extra row/column at the bottom/right, as torch does)."""
    x = _float_tensor("conv2d", "x", x)
    weight = _float_tensor("conv2d", "weight", weight)
    x, dropped = _batched("conv2d", x)
    stride = _pair("conv2d", "stride", stride, 1)
    dilation = _pair("conv2d", "dilation", dilation, 1)
    if not isinstance(groups, (int, np.integer)) or groups < 1:
        raise LucidError(f"conv2d: groups must be a positive int, got {groups!r}")
    if isinstance(padding, str):
        if padding not in ("same", "valid"):
            raise LucidError(f"conv2d: padding must be an int, a pair, 'same' or 'valid', got {padding!r}")
        if weight.ndim != 4:
            raise ShapeError(f"conv2d: weight must be 4-D (O, C/groups, kh, kw), got {tuple(weight.shape)}")
        if padding == "valid":
            padding = (0, 0)
        else:
            top, bottom, left, right = _same_padding("conv2d", weight, dilation, stride)
            if top == bottom and left == right:
                padding = (top, left)
            else:
                x = _pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
                padding = (0, 0)
    padding = _pair("conv2d", "padding", padding)
    y = _nn.conv2d(x, weight, stride=stride, padding=padding, dilation=dilation, groups=int(groups))
    if bias is not None:
        y = y + _channel_vector("conv2d", "bias", bias, weight.shape[0], 4)
    return _unbatch(y, dropped)


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """Transposed convolution of x[N, C_in, H, W] with weight[C_in, C_out/groups, kh, kw]
    (torch's semantics and argument order): the gradient of conv2d with respect to its input."""
    x = _float_tensor("conv_transpose2d", "x", x)
    weight = _float_tensor("conv_transpose2d", "weight", weight)
    x, dropped = _batched("conv_transpose2d", x)
    if not isinstance(groups, (int, np.integer)) or groups < 1:
        raise LucidError(f"conv_transpose2d: groups must be a positive int, got {groups!r}")
    y = _nn.conv_transpose2d(x, weight, stride=_pair("conv_transpose2d", "stride", stride, 1),
                             padding=_pair("conv_transpose2d", "padding", padding),
                             output_padding=_pair("conv_transpose2d", "output_padding", output_padding),
                             dilation=_pair("conv_transpose2d", "dilation", dilation, 1), groups=int(groups))
    if bias is not None:
        y = y + _channel_vector("conv_transpose2d", "bias", bias, y.shape[1], 4)
    return _unbatch(y, dropped)


# ---- pooling ---------------------------------------------------------------------------------------

def _pool_args(fn, kernel_size, stride, padding, dilation=1):
    kernel = _pair(fn, "kernel_size", kernel_size, 1)
    stride = kernel if stride is None or (isinstance(stride, (tuple, list)) and not stride) \
        else _pair(fn, "stride", stride, 1)
    padding = _pair(fn, "padding", padding)
    dilation = _pair(fn, "dilation", dilation, 1)
    for k, p, d in zip(kernel, padding, dilation):
        if 2 * p > d * (k - 1) + 1:
            raise LucidError(f"{fn}: padding {padding} must be at most half the kernel size {kernel}")
    return kernel, stride, padding, dilation


def _pool_out_len(n, k, s, p, d, ceil_mode):
    """torch's pooling output length; in ceil mode the last window must start inside the
    input or its left padding."""
    span = n + 2 * p - d * (k - 1) - 1
    out = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= n + p:
        out -= 1
    return out


def _ceil_extra(fn, x, kernel, stride, padding, dilation, ceil_mode):
    """Output size and the extra bottom/right padding ceil mode needs (zero without it)."""
    out, extra = [], []
    for n, k, s, p, d in zip(x.shape[2:], kernel, stride, padding, dilation):
        m = _pool_out_len(n, k, s, p, d, ceil_mode)
        if m < 1:
            raise ShapeError(f"{fn}: kernel {kernel} does not fit the input {tuple(x.shape)} "
                             f"padded by {padding}")
        out.append(m)
        extra.append(max(0, (m - 1) * s + d * (k - 1) + 1 - (n + 2 * p)))
    return tuple(out), tuple(extra)


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """Maximum over each window; `stride` defaults to `kernel_size`, padding counts as -inf."""
    if return_indices:
        raise LucidError("max_pool2d: return_indices=True is not supported")
    x = _float_tensor("max_pool2d", "x", x)
    x, dropped = _batched("max_pool2d", x)
    kernel, stride, padding, dilation = _pool_args("max_pool2d", kernel_size, stride, padding, dilation)
    _, extra = _ceil_extra("max_pool2d", x, kernel, stride, padding, dilation, ceil_mode)
    if any(extra):
        # ceil mode: pad the far ends with -inf explicitly; every window keeps a real element.
        (ph, pw), (eh, ew) = padding, extra
        x = _pad(x, ((0, 0), (0, 0), (ph, ph + eh), (pw, pw + ew)), value=-math.inf)
        padding = (0, 0)
    y = _nn.max_pool2d(x, kernel=kernel, stride=stride, padding=padding, dilation=dilation)
    return _unbatch(y, dropped)


def _avg_divisor(in_hw, out_hw, kernel, stride, padding, count_include_pad):
    """torch's divisor of each output cell [Ho, Wo]: windows are clipped to the padded
    input, and padding is counted iff count_include_pad."""
    per_axis = []
    for n, m, k, s, p in zip(in_hw, out_hw, kernel, stride, padding):
        start = np.arange(m) * s - p
        end = np.minimum(start + k, n + p)
        size = end - start
        if not count_include_pad:
            size = np.minimum(end, n) - np.maximum(start, 0)
        per_axis.append(size.astype(np.float64))
    return per_axis[0][:, None] * per_axis[1][None, :]


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """Mean over each window; `stride` defaults to `kernel_size`; padded zeros count in the
    divisor iff `count_include_pad` (torch's argument order)."""
    x = _float_tensor("avg_pool2d", "x", x)
    x, dropped = _batched("avg_pool2d", x)
    kernel, stride, padding, _ = _pool_args("avg_pool2d", kernel_size, stride, padding)
    out_hw, extra = _ceil_extra("avg_pool2d", x, kernel, stride, padding, (1, 1), ceil_mode)
    if divisor_override is not None and (not isinstance(divisor_override, (int, np.integer))
                                         or divisor_override <= 0):
        raise LucidError(f"avg_pool2d: divisor_override must be a positive int, got {divisor_override!r}")
    if not any(extra) and divisor_override is None:
        y = _nn.avg_pool2d(x, kernel=kernel, stride=stride, padding=padding,
                           count_include_pad=bool(count_include_pad))
        return _unbatch(y, dropped)
    # Window sums (a mean over the full kernel times its size) divided by torch's divisor.
    if divisor_override is not None:
        divisor = np.full(out_hw, float(divisor_override))
    else:
        divisor = _avg_divisor(x.shape[2:], out_hw, kernel, stride, padding, count_include_pad)
    (ph, pw), (eh, ew) = padding, extra
    xp = _pad(x, ((0, 0), (0, 0), (ph, ph + eh), (pw, pw + ew)))
    sums = _nn.avg_pool2d(xp, kernel=kernel, stride=stride, padding=(0, 0), count_include_pad=True)
    factor = Tensor((kernel[0] * kernel[1] / divisor).astype(x.dtype.np))
    return _unbatch(sums * factor, dropped)


def _adaptive_bins(n, m):
    """torch's adaptive bins along one axis: [floor(i n / m), ceil((i+1) n / m))."""
    i = np.arange(m)
    return (i * n) // m, -((-(i + 1) * n) // m)


def adaptive_avg_pool2d(x, output_size):
    """Average pooling to a fixed output size with torch's bins (which may overlap when
    the input does not divide). `output_size`: an int, or a pair whose None keeps that
    input size."""
    x = _float_tensor("adaptive_avg_pool2d", "x", x)
    x, dropped = _batched("adaptive_avg_pool2d", x)
    sizes = tuple(output_size) if isinstance(output_size, (tuple, list)) else (output_size, output_size)
    if len(sizes) != 2:
        raise LucidError(f"adaptive_avg_pool2d: output_size must be an int or a pair, got {output_size!r}")
    out_hw = tuple(n if m is None else m for n, m in zip(x.shape[2:], sizes))
    if not all(isinstance(m, (int, np.integer)) and m >= 1 for m in out_hw):
        raise LucidError(f"adaptive_avg_pool2d: output_size must be positive ints, got {output_size!r}")
    (h, w), (ho, wo) = x.shape[2:], out_hw
    if (ho, wo) == (1, 1):
        y = mean(x, axis=(2, 3), keepdims=True)
    elif h % ho == 0 and w % wo == 0:
        k = (h // ho, w // wo)
        y = _nn.avg_pool2d(x, kernel=k, stride=k, padding=(0, 0), count_include_pad=True)
    else:
        # Each axis is a constant averaging matrix: y = A_h x A_w^T.
        mats = []
        for n, m in ((h, ho), (w, wo)):
            start, end = _adaptive_bins(n, m)
            cols = np.arange(n)
            inside = (cols[None, :] >= start[:, None]) & (cols[None, :] < end[:, None])
            mats.append((inside / (end - start)[:, None]).astype(x.dtype.np))
        y = x
        if w != wo:
            y = matmul(y, Tensor(np.ascontiguousarray(mats[1].T)))
        if h != ho:
            y = matmul(Tensor(mats[0]), y)
    return _unbatch(y, dropped)


# ---- interpolation -------------------------------------------------------------------------------

_INTERP_MODES = ("nearest", "nearest-exact", "bilinear")


def _interp_sizes(x, size, scale_factor, recompute_scale_factor):
    """Output (H, W) and the scales torch's kernels use (None: derive from the sizes)."""
    if (size is None) == (scale_factor is None):
        raise LucidError("interpolate: give exactly one of size and scale_factor")
    in_hw = x.shape[2:]
    if size is not None:
        out = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
        if len(out) != 2 or not all(isinstance(s, (int, np.integer)) and s >= 1 for s in out):
            raise LucidError(f"interpolate: size must be a positive int or a pair of them, got {size!r}")
        return tuple(int(s) for s in out), (None, None)
    scales = tuple(scale_factor) if isinstance(scale_factor, (tuple, list)) else (scale_factor, scale_factor)
    if len(scales) != 2 or not all(isinstance(s, (int, float, np.number)) and s > 0 for s in scales):
        raise LucidError(f"interpolate: scale_factor must be a positive number or a pair, got {scale_factor!r}")
    out = tuple(int(math.floor(float(n) * float(s))) for n, s in zip(in_hw, scales))
    if min(out) < 1:
        raise ShapeError(f"interpolate: scale_factor {scale_factor} makes input {tuple(x.shape)} empty")
    if recompute_scale_factor:
        return out, (None, None)
    return out, tuple(float(s) for s in scales)


def _kernel_scale(n, m, scale, dtype):
    """torch's compute_scales_value: 1/scale_factor when given, else in/out, in `dtype`."""
    if scale is not None:
        return dtype(1.0 / scale)
    return dtype(n) / dtype(m)


def _nearest_index(n, m, scale, exact):
    """Source index of each output position (torch computes it in float32)."""
    dst = np.arange(m)
    if not exact and m == n:
        return dst
    if not exact and m == 2 * n:
        return dst >> 1
    s = _kernel_scale(n, m, scale, np.float32)
    if exact:  # torch: floorf((dst + 0.5) * scale), the product in double
        pos = ((dst + 0.5) * np.float64(s)).astype(np.float32)
    else:  # torch: floorf(dst * scale) in float
        pos = dst.astype(np.float32) * s
    return np.minimum(np.floor(pos).astype(np.int64), n - 1)


def _linear_taps(n, m, scale, align_corners, dtype):
    """(i0, i1, l0, l1): the two source indices and weights of each output position,
    computed as torch's CPU kernel does, in the input's dtype."""
    dst = np.arange(m)
    if m == n:
        return dst, dst, np.ones(m, dtype), np.zeros(m, dtype)
    if align_corners:
        ratio = dtype(n - 1) / dtype(m - 1) if m > 1 else dtype(0)
        src = ratio * dst.astype(dtype)
    else:
        ratio = _kernel_scale(n, m, scale, dtype)
        src = ratio * (dst.astype(dtype) + dtype(0.5)) - dtype(0.5)
        src = np.where(src < 0, dtype(0), src).astype(dtype)
    i0 = np.minimum(np.floor(src).astype(np.int64), n - 1)
    l1 = np.clip(src - i0.astype(dtype), 0, 1).astype(dtype)
    i1 = i0 + (i0 < n - 1)
    return i0, i1, (dtype(1) - l1).astype(dtype), l1


def interpolate(x, size=None, scale_factor=None, mode="nearest", align_corners=None,
                recompute_scale_factor=None):
    """Resize x[N, C, H, W] to `size` or by `scale_factor` with torch's exact source
    indices and weights ("nearest", "nearest-exact" or "bilinear")."""
    x = _float_tensor("interpolate", "x", x)
    if mode not in _INTERP_MODES:
        raise LucidError(f"interpolate: unknown mode {mode!r}; use one of {', '.join(_INTERP_MODES)}")
    if x.ndim != 4:
        raise ShapeError(f"interpolate: input must be 4-D (N, C, H, W), got shape {tuple(x.shape)}")
    if mode != "bilinear" and align_corners is not None:
        raise LucidError(f"interpolate: align_corners only applies to mode='bilinear', not {mode!r}")
    out_hw, scales = _interp_sizes(x, size, scale_factor, recompute_scale_factor)
    in_hw = x.shape[2:]
    y = x
    if mode == "bilinear":
        dtype = x.dtype.np.type
        # Width first, then height: torch's h0*(w0*x00 + w1*x01) + h1*(w0*x10 + w1*x11).
        for axis, n, m, scale in ((3, in_hw[1], out_hw[1], scales[1]), (2, in_hw[0], out_hw[0], scales[0])):
            if n == m:
                continue
            i0, i1, l0, l1 = _linear_taps(n, m, scale, bool(align_corners), dtype)
            shape = (m,) if axis == 3 else (m, 1)
            y = (take(y, Tensor(i0), axis=axis) * Tensor(l0.reshape(shape))
                 + take(y, Tensor(i1), axis=axis) * Tensor(l1.reshape(shape)))
        return y
    for axis, n, m, scale in ((2, in_hw[0], out_hw[0], scales[0]), (3, in_hw[1], out_hw[1], scales[1])):
        idx = _nearest_index(n, m, scale, exact=mode == "nearest-exact")
        if not np.array_equal(idx, np.arange(n)):
            y = take(y, Tensor(idx), axis=axis)
    return y


def pad(x, pad, mode="constant", value=0.0):
    """torch's pad: `pad` lists (before, after) pairs starting from the LAST axis;
    constant mode only."""
    x = as_tensor(x)
    if mode != "constant":
        raise LucidError(f"pad: only mode='constant' is supported, got {mode!r}")
    pad = tuple(pad)
    if len(pad) % 2 or len(pad) // 2 > x.ndim or not all(isinstance(p, (int, np.integer)) for p in pad):
        raise LucidError(f"pad: pad must be an even-length sequence of ints covering at most "
                         f"{x.ndim} axes, got {pad!r}")
    widths = [(0, 0)] * x.ndim
    for i in range(len(pad) // 2):
        widths[x.ndim - 1 - i] = (int(pad[2 * i]), int(pad[2 * i + 1]))
    if any(a < 0 or b < 0 for a, b in widths):
        raise LucidError(f"pad: negative padding (cropping) is not supported, got {pad!r}")
    return _pad(x, tuple(widths), value=float(value))


# ---- activations ------------------------------------------------------------------------------------

def relu(x):
    return _relu(as_tensor(x))


def leaky_relu(x, negative_slope=0.01):
    """x where x > 0, else negative_slope * x (the gradient at 0 is negative_slope, as torch's)."""
    x = as_tensor(x)
    return where(x > 0, x, x * float(negative_slope))


def gelu(x, approximate="none"):
    """x * Phi(x): exact with erf ("none", the `gelu` primitive) or torch's tanh
    approximation ("tanh")."""
    x = as_tensor(x)
    if approximate == "none":
        return _gelu(x)
    if approximate == "tanh":
        inner = (x + 0.044715 * x * x * x) * math.sqrt(2.0 / math.pi)
        return x * 0.5 * (1.0 + _tanh(inner))
    raise LucidError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")


def silu(x):
    x = as_tensor(x)
    return x * _sigmoid(x)


def sigmoid(x):
    return _sigmoid(as_tensor(x))


def tanh(x):
    return _tanh(as_tensor(x))


def softplus(x, beta=1.0, threshold=20.0):
    """log(1 + exp(beta x)) / beta, linear where beta x > threshold (as torch)."""
    x = as_tensor(x)
    bx = x * float(beta)
    soft = (maximum(bx, 0.0) + log(1.0 + exp(-_abs(bx)))) * (1.0 / float(beta))
    return where(bx > float(threshold), x, soft)


def logsigmoid(x):
    """log(sigmoid(x)) without overflow: min(x, 0) - log(1 + exp(-|x|))."""
    x = as_tensor(x)
    return minimum(x, 0.0) - log(1.0 + exp(-_abs(x)))


def _axis(fn, axis, dim):
    if dim is not None:
        if axis not in (-1, dim):
            raise LucidError(f"{fn}: give axis or dim, not both")
        return dim
    return axis


def softmax(x, axis=-1, dim=None):
    """exp(x) / sum(exp(x)) along `axis` (torch's `dim` is accepted), stable for large x."""
    x = as_tensor(x)
    axis = _axis("softmax", axis, dim)
    e = exp(x - _max(x, axis=axis, keepdims=True).detach())
    return e / _sum(e, axis=axis, keepdims=True)


def log_softmax(x, axis=-1, dim=None):
    """x - logsumexp(x) along `axis`, stable for large x."""
    x = as_tensor(x)
    axis = _axis("log_softmax", axis, dim)
    shifted = x - _max(x, axis=axis, keepdims=True).detach()
    return shifted - log(_sum(exp(shifted), axis=axis, keepdims=True))


def dropout(x, p=0.5, training=True):
    """Zero each element with probability p and scale the rest by 1/(1-p) (identity when
    not training or p == 0). The mask is `lucid.random.rand(...) >= p` (float32 uniforms
    from lucid's key), so a traced or compiled training step draws a fresh mask each call."""
    x = as_tensor(x)
    if isinstance(p, bool) or not isinstance(p, (int, float, np.number)) or not 0.0 <= p <= 1.0:
        raise LucidError(f"dropout: p must be a probability in [0, 1], got {p!r}")
    if not training or p == 0:
        return x
    if p == 1:
        return x * 0.0
    dt = x.dtype if x.dtype.is_float else _dt.DEFAULT_FLOAT
    keep = _random.rand(*x.shape) >= float(p)
    return x * (cast(keep, dt) * (1.0 / (1.0 - float(p))))


# ---- normalisation -----------------------------------------------------------------------------------

def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,
               eps=1e-5):
    """Normalise over every axis but 1 (the channels) of x[N, C, ...].

    Training: batch statistics (biased variance), and running_mean/var (when given) move
    toward them by `momentum`, with the unbiased variance, as torch does; the update is an
    assignment to `.data`, which a trace records as a state update. Eval: running stats."""
    x = _float_tensor("batch_norm", "x", x)
    if x.ndim < 2:
        raise ShapeError(f"batch_norm: input must have at least 2 dims (N, C, ...), got {tuple(x.shape)}")
    c = x.shape[1]
    axes = (0,) + tuple(range(2, x.ndim))
    bshape = (1, c) + (1,) * (x.ndim - 2)
    if (running_mean is None) != (running_var is None):
        raise LucidError("batch_norm: give both running_mean and running_var, or neither")
    for name, t in (("running_mean", running_mean), ("running_var", running_var)):
        if t is not None and tuple(t.shape) != (c,):
            raise ShapeError(f"batch_norm: {name} must have shape ({c},) for input {tuple(x.shape)}, "
                             f"got {tuple(t.shape)}")
    if training:
        n = x.size // c
        if n <= 1:
            raise LucidError(f"batch_norm: training needs more than one value per channel, got input "
                             f"shape {tuple(x.shape)}")
        m = mean(x, axis=axes, keepdims=True)
        d = x - m
        v = mean(d * d, axis=axes, keepdims=True)
        if running_mean is not None:
            with no_grad():
                f = float(momentum)
                new_mean = running_mean * (1.0 - f) + cast(reshape(m.detach(), (c,)), running_mean.dtype) * f
                unbiased = reshape(v.detach(), (c,)) * (n / (n - 1))
                new_var = running_var * (1.0 - f) + cast(unbiased, running_var.dtype) * f
            running_mean.data = new_mean
            running_var.data = new_var
        scale = 1.0 / sqrt(v + float(eps))
        y = d * scale
    else:
        if running_mean is None:
            raise LucidError("batch_norm: training=False needs running_mean and running_var")
        rm, rv = reshape(running_mean, bshape), reshape(running_var, bshape)
        y = (x - cast(rm, x.dtype)) * (1.0 / sqrt(cast(rv, x.dtype) + float(eps)))
    if weight is not None:
        y = y * _channel_vector("batch_norm", "weight", weight, c, x.ndim)
    if bias is not None:
        y = y + _channel_vector("batch_norm", "bias", bias, c, x.ndim)
    return y


def _normalize(x, axes, eps):
    m = mean(x, axis=axes, keepdims=True)
    d = x - m
    v = mean(d * d, axis=axes, keepdims=True)
    return d * (1.0 / sqrt(v + float(eps)))


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Normalise over the trailing axes `normalized_shape`, then scale and shift elementwise."""
    x = _float_tensor("layer_norm", "x", x)
    shape = (normalized_shape,) if isinstance(normalized_shape, (int, np.integer)) else tuple(normalized_shape)
    k = len(shape)
    if k == 0 or k > x.ndim or tuple(x.shape[x.ndim - k:]) != tuple(shape):
        raise ShapeError(f"layer_norm: normalized_shape {shape} does not match the trailing axes of "
                         f"input {tuple(x.shape)}")
    y = _normalize(x, tuple(range(x.ndim - k, x.ndim)), eps)
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and tuple(t.shape) != tuple(shape):
            raise ShapeError(f"layer_norm: {name} must have shape {shape}, got {tuple(t.shape)}")
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    """Normalise each of `num_groups` channel groups of x[N, C, ...] per sample."""
    x = _float_tensor("group_norm", "x", x)
    if x.ndim < 2:
        raise ShapeError(f"group_norm: input must have at least 2 dims (N, C, ...), got {tuple(x.shape)}")
    n, c = x.shape[:2]
    if not isinstance(num_groups, (int, np.integer)) or num_groups < 1 or c % num_groups:
        raise ShapeError(f"group_norm: {c} channels of input {tuple(x.shape)} cannot be split into "
                         f"num_groups={num_groups!r}")
    y = reshape(_normalize(reshape(x, (n, int(num_groups), -1)), (2,), eps), x.shape)
    if weight is not None:
        y = y * _channel_vector("group_norm", "weight", weight, c, x.ndim)
    if bias is not None:
        y = y + _channel_vector("group_norm", "bias", bias, c, x.ndim)
    return y


def embedding(indices, weight):
    """Rows of weight[num_embeddings, dim] at integer `indices` (any shape)."""
    weight = as_tensor(weight)
    if weight.ndim != 2:
        raise ShapeError(f"embedding: weight must be 2-D (num_embeddings, dim), got {tuple(weight.shape)}")
    indices = indices if isinstance(indices, Tensor) else Tensor(np.asarray(indices))
    if not indices.dtype.is_int:
        raise DTypeError(f"embedding: indices must be integers, got {indices.dtype}")
    return take(weight, indices, axis=0)


# ---- losses -------------------------------------------------------------------------------------------

_REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(fn, reduction):
    if reduction not in _REDUCTIONS:
        raise LucidError(f"{fn}: unknown reduction {reduction!r}; use 'mean', 'sum' or 'none'")


def _reduce(loss, reduction):
    if reduction == "mean":
        return mean(loss)
    if reduction == "sum":
        return _sum(loss)
    return loss


def _pair_loss_args(fn, input, target, reduction):
    _check_reduction(fn, reduction)
    input = _float_tensor(fn, "input", input)
    target = as_tensor(target, input.dtype) if not isinstance(target, Tensor) else target
    if tuple(input.shape) != tuple(target.shape):
        raise ShapeError(f"{fn}: input {tuple(input.shape)} and target {tuple(target.shape)} must have "
                         f"the same shape")
    if target.dtype != input.dtype:
        target = cast(target, input.dtype)
    return input, target


def mse_loss(input, target, reduction="mean"):
    input, target = _pair_loss_args("mse_loss", input, target, reduction)
    d = input - target
    return _reduce(d * d, reduction)


def l1_loss(input, target, reduction="mean"):
    input, target = _pair_loss_args("l1_loss", input, target, reduction)
    return _reduce(_abs(input - target), reduction)


def smooth_l1_loss(input, target, reduction="mean", beta=1.0):
    """0.5 d^2 / beta where |d| < beta, else |d| - 0.5 beta (plain L1 when beta == 0)."""
    input, target = _pair_loss_args("smooth_l1_loss", input, target, reduction)
    if beta < 0:
        raise LucidError(f"smooth_l1_loss: beta must be non-negative, got {beta}")
    d = _abs(input - target)
    if beta == 0:
        return _reduce(d, reduction)
    beta = float(beta)
    return _reduce(where(d < beta, d * d * (0.5 / beta), d - 0.5 * beta), reduction)


def huber_loss(input, target, reduction="mean", delta=1.0):
    """0.5 d^2 where |d| < delta, else delta (|d| - 0.5 delta)."""
    input, target = _pair_loss_args("huber_loss", input, target, reduction)
    if delta <= 0:
        raise LucidError(f"huber_loss: delta must be positive, got {delta}")
    delta = float(delta)
    d = _abs(input - target)
    return _reduce(where(d < delta, d * d * 0.5, (d - 0.5 * delta) * delta), reduction)


def _elementwise_weight(fn, weight, shape):
    weight = as_tensor(weight)
    try:
        np.broadcast_shapes(tuple(weight.shape), tuple(shape))
    except ValueError:
        raise ShapeError(f"{fn}: weight {tuple(weight.shape)} does not broadcast to input {tuple(shape)}") from None
    return weight


def binary_cross_entropy(input, target, weight=None, reduction="mean"):
    """-(t log p + (1 - t) log(1 - p)) with each log clamped at -100, as torch does."""
    input, target = _pair_loss_args("binary_cross_entropy", input, target, reduction)
    if not input.is_tracer:
        data = input.data
        if data.size and (np.nanmin(data) < 0 or np.nanmax(data) > 1):
            raise LucidError("binary_cross_entropy: input probabilities must lie in [0, 1]")
    with np.errstate(divide="ignore"):  # log(0) = -inf is expected here, and clamped
        loss = -(target * maximum(log(input), -100.0) + (1.0 - target) * maximum(log(1.0 - input), -100.0))
    if weight is not None:
        loss = loss * _elementwise_weight("binary_cross_entropy", weight, input.shape)
    return _reduce(loss, reduction)


def binary_cross_entropy_with_logits(input, target, weight=None, reduction="mean", pos_weight=None):
    """Sigmoid + binary cross entropy in one stable formula:
    (1 - t) x + (1 + (pos_weight - 1) t) softplus(-x)."""
    input, target = _pair_loss_args("binary_cross_entropy_with_logits", input, target, reduction)
    softplus_neg = maximum(-input, 0.0) + log(1.0 + exp(-_abs(input)))
    if pos_weight is not None:
        pos_weight = _elementwise_weight("binary_cross_entropy_with_logits", pos_weight, input.shape)
        softplus_neg = softplus_neg * ((pos_weight - 1.0) * target + 1.0)
    loss = (1.0 - target) * input + softplus_neg
    if weight is not None:
        loss = loss * _elementwise_weight("binary_cross_entropy_with_logits", weight, input.shape)
    return _reduce(loss, reduction)


def _class_args(fn, input, target, weight, reduction):
    """Check (N, C, d...) scores against (N, d...) class indices; unbatched (C,) with a
    0-d target becomes a batch of one. Returns input, target (int64), weight, unbatched."""
    _check_reduction(fn, reduction)
    input = _float_tensor(fn, "input", input)
    target = target if isinstance(target, Tensor) else Tensor(np.asarray(target))
    unbatched = input.ndim == 1
    if input.ndim == 0:
        raise ShapeError(f"{fn}: input must have a class axis, got a 0-d tensor")
    c = input.shape[0] if unbatched else input.shape[1]
    if weight is not None:
        weight = as_tensor(weight)
        if tuple(weight.shape) != (c,):
            raise ShapeError(f"{fn}: weight must have shape ({c},) (one per class), got {tuple(weight.shape)}")
        weight = cast(weight, input.dtype)
    if target.dtype.is_float and tuple(target.shape) == tuple(input.shape):
        return input, target, weight, unbatched  # class probabilities (cross_entropy only)
    if not target.dtype.is_int:
        raise DTypeError(f"{fn}: target must hold integer class indices, got {target.dtype}")
    if unbatched:
        input = unsqueeze(input, 0)
        if target.ndim == 0:
            target = unsqueeze(target, 0)
    expect = (input.shape[0],) + tuple(input.shape[2:])
    if tuple(target.shape) != expect:
        raise ShapeError(f"{fn}: input {tuple(input.shape)} needs a target of shape {expect}, "
                         f"got {tuple(target.shape)}")
    return input, cast(target, _dt.int64), weight, unbatched


def _check_targets(fn, target, classes, ignore_index):
    if target.is_tracer:
        return
    t = target.data
    bad = t[((t < 0) | (t >= classes)) & (t != ignore_index)]
    if bad.size:
        raise LucidError(f"{fn}: target class {int(bad.flat[0])} is out of range for {classes} classes")


def _picked(logp, target, weight, ignore_index):
    """(-log p[target] * w[target], w[target]) per sample, zero where target == ignore_index."""
    c = logp.shape[1]
    cls_shape = (1, c) + (1,) * (logp.ndim - 2)
    hit = unsqueeze(target, 1) == Tensor(np.arange(c, dtype=np.int64).reshape(cls_shape))
    valid = target != ignore_index
    nll = where(valid, -_sum(where(hit, logp, 0.0), axis=1), 0.0)
    if weight is None:
        return nll, cast(valid, logp.dtype)
    w = where(valid, _sum(where(hit, reshape(weight, cls_shape), 0.0), axis=1), 0.0)
    return nll * w, w


def _class_reduce(loss, w, reduction, unbatched):
    if reduction == "mean":
        return _sum(loss) / _sum(w)
    if reduction == "sum":
        return _sum(loss)
    return squeeze(loss, 0) if unbatched else loss


def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean"):
    """Negative log-likelihood of class indices under log-probabilities input[N, C, d...];
    'mean' divides by the summed weights of the targets that are not ignored."""
    input, target, weight, unbatched = _class_args("nll_loss", input, target, weight, reduction)
    if target.dtype.is_float:
        raise DTypeError(f"nll_loss: target must hold integer class indices, got {target.dtype}")
    _check_targets("nll_loss", target, input.shape[1], ignore_index)
    loss, w = _picked(input, target, weight, ignore_index)
    return _class_reduce(loss, w, reduction, unbatched)


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    """log_softmax over axis 1 and the negative log-likelihood of the targets, as torch:
    integer class indices (with weight, ignore_index and label_smoothing) or class
    probabilities of the input's shape."""
    if not 0.0 <= label_smoothing <= 1.0:
        raise LucidError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    input, target, weight, unbatched = _class_args("cross_entropy", input, target, weight, reduction)
    class_axis = 0 if unbatched and target.dtype.is_float else 1
    logp = log_softmax(input, axis=class_axis)
    c = input.shape[class_axis]
    cls_shape = tuple(c if i == class_axis else 1 for i in range(input.ndim))
    wb = None if weight is None else reshape(weight, cls_shape)
    if target.dtype.is_float:
        t = cast(target, input.dtype)
        if label_smoothing > 0:
            t = t * (1.0 - label_smoothing) + label_smoothing / c
        terms = logp * t if wb is None else logp * t * wb
        loss = -_sum(terms, axis=class_axis)
        if reduction == "mean":
            return _sum(loss) * (1.0 / max(input.size // c, 1))
        return _reduce(loss, reduction)
    _check_targets("cross_entropy", target, c, ignore_index)
    loss, w = _picked(logp, target, weight, ignore_index)
    if label_smoothing == 0:
        return _class_reduce(loss, w, reduction, unbatched)
    # torch: (1 - ls) * nll + ls / C * smooth, smooth = -sum_c w_c logp_c (zero where ignored),
    # the 'mean' of smooth dividing by the same target weights as the nll's.
    valid = target != ignore_index
    smooth = where(valid, -_sum(logp if wb is None else logp * wb, axis=1), 0.0)
    eps = float(label_smoothing)
    if reduction == "none":
        out = loss * (1.0 - eps) + smooth * (eps / c)
        return squeeze(out, 0) if unbatched else out
    if reduction == "sum":
        return _sum(loss) * (1.0 - eps) + _sum(smooth) * (eps / c)
    total = _sum(w)
    return (_sum(loss) / total) * (1.0 - eps) + (_sum(smooth) / total) * (eps / c)
