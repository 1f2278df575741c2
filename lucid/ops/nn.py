"""Neural-network primitives: 2-D convolution and pooling, NCHW layout.

Three convolution ops form a set closed under differentiation, so gradients of any
order stay inside it: `conv2d(x, w)`, its adjoint in the input `conv_transpose2d(y, w)`
and its adjoint in the weight `conv2d_weight_grad(x, gy)`. Each is bilinear, and its
vjp is built from the other two.

Pooling: `max_pool2d` routes its gradient through `max_pool2d_grad`; `avg_pool2d`
and `avg_pool2d_grad` are linear and adjoint, so each is the other's vjp.

Spatial attributes are 2-tuples (height, width); `lucid.nn.functional` accepts ints
or pairs and normalises them. The numpy references are vectorised: convolutions are an
im2col view (`as_strided`, no copy) fed to BLAS matmuls in row blocks that bound the
memory of the column buffer; pooling and the scatter of transposed convolution loop
over kernel taps only, never over pixels.
"""
import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..errors import DTypeError, ShapeError
from ..ir.types import TensorType
from . import _rules as R
from .registry import OUT_FUSABLE, REQUIRED, Sample, defop

# Elements of one im2col block (4 MB of float32): big enough for BLAS, small enough that
# an 800x1216 feature map never materialises a k*k-times copy of itself.
_BLOCK = 1 << 20


# ---- geometry ------------------------------------------------------------------------

def conv_out_len(n, k, stride, padding, dilation=1):
    """Output length of a convolution or pooling window sliding along an axis of length n."""
    return (n + 2 * padding - dilation * (k - 1) - 1) // stride + 1


def conv_transpose_out_len(n, k, stride, padding, output_padding, dilation=1):
    return (n - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1


def _check_pairs(op, **pairs):
    """Attributes must be pairs of ints; strides/dilations/kernels >= 1, paddings >= 0."""
    for key, value in pairs.items():
        if not (isinstance(value, tuple) and len(value) == 2
                and all(isinstance(v, (int, np.integer)) for v in value)):
            raise ShapeError(f"{op}: {key} must be a pair of ints, got {value!r}")
        low = 0 if key in ("padding", "output_padding") else 1
        if min(value) < low:
            raise ShapeError(f"{op}: {key} must be >= {low} in each dimension, got {value}")


def _check_float4d(op, **types):
    for name, t in types.items():
        if t.ndim != 4:
            raise ShapeError(f"{op}: {name} must be 4-D (NCHW), got shape {t.shape}")
    d = R.same_dtype(op, *types.values())
    if not d.is_float:
        raise DTypeError(f"{op}: needs floating inputs, got {d}")
    return d


def _check_groups(op, groups, **channels):
    if not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ShapeError(f"{op}: groups must be a positive int, got {groups!r}")
    for name, c in channels.items():
        if c % groups:
            raise ShapeError(f"{op}: {name} ({c}) is not divisible by groups={groups}")


def _conv_out_hw(op, x_shape, k, stride, padding, dilation):
    out = tuple(conv_out_len(n, kk, s, p, d)
                for n, kk, s, p, d in zip(x_shape[2:], k, stride, padding, dilation))
    if min(out) < 1:
        raise ShapeError(f"{op}: a kernel {tuple(k)} with dilation {dilation} does not fit the input "
                         f"{x_shape} padded by {padding} (output would be {out})")
    return out


def _conv2d_infer(x, w, stride, padding, dilation, groups):
    d = _check_float4d("conv2d", x=x, weight=w)
    _check_pairs("conv2d", stride=stride, padding=padding, dilation=dilation)
    _check_groups("conv2d", groups, out_channels=w.shape[0])
    if x.shape[1] != w.shape[1] * groups:
        raise ShapeError(f"conv2d: input x {x.shape} has {x.shape[1]} channels but weight {w.shape} "
                         f"expects in_channels*groups = {w.shape[1]}*{groups} = {w.shape[1] * groups}")
    ho, wo = _conv_out_hw("conv2d", x.shape, w.shape[2:], stride, padding, dilation)
    return TensorType((x.shape[0], w.shape[0], ho, wo), d)


def _conv_transpose2d_infer(x, w, stride, padding, output_padding, dilation, groups):
    d = _check_float4d("conv_transpose2d", x=x, weight=w)
    _check_pairs("conv_transpose2d", stride=stride, padding=padding, output_padding=output_padding,
                 dilation=dilation)
    _check_groups("conv_transpose2d", groups, in_channels=x.shape[1])
    if x.shape[1] != w.shape[0]:
        raise ShapeError(f"conv_transpose2d: input x {x.shape} has {x.shape[1]} channels but weight "
                         f"{w.shape} expects in_channels = {w.shape[0]}")
    for op_, s, dl in zip(output_padding, stride, dilation):
        if op_ >= max(s, dl):
            raise ShapeError(f"conv_transpose2d: output_padding {output_padding} must be smaller than "
                             f"stride {stride} or dilation {dilation} in each dimension")
    out = tuple(conv_transpose_out_len(n, k, s, p, o, dl) for n, k, s, p, o, dl in
                zip(x.shape[2:], w.shape[2:], stride, padding, output_padding, dilation))
    if min(out) < 1:
        raise ShapeError(f"conv_transpose2d: input {x.shape} and weight {w.shape} with padding "
                         f"{padding} give an empty output {out}")
    return TensorType((x.shape[0], w.shape[1] * groups) + out, d)


def _weight_grad_infer(x, gy, stride, padding, dilation, groups, weight_shape):
    d = _check_float4d("conv2d_weight_grad", x=x, gy=gy)
    _check_pairs("conv2d_weight_grad", stride=stride, padding=padding, dilation=dilation)
    if len(weight_shape) != 4:
        raise ShapeError(f"conv2d_weight_grad: weight_shape must have 4 dims, got {weight_shape}")
    o, cg, kh, kw = weight_shape
    _check_groups("conv2d_weight_grad", groups, out_channels=o)
    if x.shape[1] != cg * groups:
        raise ShapeError(f"conv2d_weight_grad: input x {x.shape} has {x.shape[1]} channels but weight "
                         f"shape {tuple(weight_shape)} expects {cg}*{groups} = {cg * groups}")
    expect = (x.shape[0], o) + _conv_out_hw("conv2d_weight_grad", x.shape, (kh, kw), stride, padding,
                                            dilation)
    if tuple(gy.shape) != expect:
        raise ShapeError(f"conv2d_weight_grad: gy {gy.shape} is not the output shape {expect} of a "
                         f"conv2d of x {x.shape} with weight shape {tuple(weight_shape)}")
    return TensorType(tuple(weight_shape), d)


# ---- numpy references ----------------------------------------------------------------

def _pad_hw(x, padding, value=0.0):
    ph, pw = padding
    if ph == 0 and pw == 0:
        return x
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=value)


def _windows(xp, k, stride, dilation, out_hw):
    """A read-only view [N, C, kh, kw, Ho, Wo] of every window of the padded input."""
    n, c = xp.shape[:2]
    s_n, s_c, s_h, s_w = xp.strides
    return as_strided(xp, (n, c) + tuple(k) + tuple(out_hw),
                      (s_n, s_c, s_h * dilation[0], s_w * dilation[1], s_h * stride[0], s_w * stride[1]),
                      writeable=False)


def _row_blocks(rows, per_row):
    step = max(1, _BLOCK // max(per_row, 1))
    for r0 in range(0, rows, step):
        yield r0, min(rows, r0 + step)


def _columns(win, groups, r0, r1):
    """im2col of output rows r0:r1 as [N, groups, Cg*kh*kw, rows*Wo] (one copy)."""
    n, c, kh, kw, _, wo = win.shape
    return win[..., r0:r1, :].reshape(n, groups, (c // groups) * kh * kw, (r1 - r0) * wo)


def _conv2d_ref(x, w, stride, padding, dilation, groups):
    n, c = x.shape[:2]
    o, cg, kh, kw = w.shape
    ho, wo = (conv_out_len(*a) for a in zip(x.shape[2:], (kh, kw), stride, padding, dilation))
    w2 = w.reshape(groups, o // groups, cg * kh * kw)
    if (kh, kw) == (1, 1) and padding == (0, 0):
        # A 1x1 convolution is one matmul over the (strided) pixels.
        xs = x[:, :, ::stride[0], ::stride[1]][:, :, :ho, :wo]
        cols = np.ascontiguousarray(xs).reshape(n, groups, cg, ho * wo)
        return np.matmul(w2, cols).reshape(n, o, ho, wo)
    win = _windows(_pad_hw(x, padding), (kh, kw), stride, dilation, (ho, wo))
    out = np.empty((n, groups, o // groups, ho, wo), dtype=np.result_type(x, w))
    for r0, r1 in _row_blocks(ho, n * c * kh * kw * wo):
        part = np.matmul(w2, _columns(win, groups, r0, r1))
        out[..., r0:r1, :] = part.reshape(n, groups, o // groups, r1 - r0, wo)
    return out.reshape(n, o, ho, wo)


def _conv2d_weight_grad_ref(x, gy, stride, padding, dilation, groups, weight_shape):
    n, c = x.shape[:2]
    o, cg, kh, kw = weight_shape
    ho, wo = gy.shape[2:]
    win = _windows(_pad_hw(x, padding), (kh, kw), stride, dilation, (ho, wo))
    gy5 = gy.reshape(n, groups, o // groups, ho, wo)
    acc = np.zeros((groups, o // groups, cg * kh * kw), dtype=np.result_type(x, gy))
    for r0, r1 in _row_blocks(ho, n * c * kh * kw * wo):
        g = gy5[..., r0:r1, :].reshape(n, groups, o // groups, (r1 - r0) * wo)
        cols = _columns(win, groups, r0, r1)
        acc += np.matmul(g, cols.transpose(0, 1, 3, 2)).sum(axis=0)
    return acc.reshape(weight_shape)


def _conv_transpose2d_ref(x, w, stride, padding, output_padding, dilation, groups):
    """Columns W^T x per block of input rows, scatter-added tap by tap (col2im)."""
    n, cin, h, wd = x.shape
    _, cog, kh, kw = w.shape
    (sh, sw), (dh, dw), (ph, pw) = stride, dilation, padding
    hout, wout = (conv_transpose_out_len(*a) for a in
                  zip((h, wd), (kh, kw), stride, padding, output_padding, dilation))
    cig = cin // groups
    # [groups, Cout_g*kh*kw, Cin_g]: row (co, ki, kj) holds w[g*cig:(g+1)*cig, co, ki, kj].
    wt = np.ascontiguousarray(w.reshape(groups, cig, cog * kh * kw).transpose(0, 2, 1))
    xg = x.reshape(n, groups, cig, h * wd)
    if (kh, kw) == (1, 1) and stride == (1, 1) and padding == (0, 0) and output_padding == (0, 0):
        return np.matmul(wt, xg).reshape(n, groups * cog, h, wd)  # the input grad of a 1x1 conv
    full_h = (h - 1) * sh + dh * (kh - 1) + 1 + output_padding[0]
    full_w = (wd - 1) * sw + dw * (kw - 1) + 1 + output_padding[1]
    buf = np.zeros((n, groups * cog, full_h, full_w), dtype=np.result_type(x, w))
    for r0, r1 in _row_blocks(h, n * groups * cog * kh * kw * wd):
        cols = np.matmul(wt, xg[..., r0 * wd:r1 * wd])
        cols = cols.reshape(n, groups * cog, kh, kw, r1 - r0, wd)
        for i in range(kh):
            top = i * dh + r0 * sh
            rows = slice(top, top + (r1 - r0 - 1) * sh + 1, sh)
            for j in range(kw):
                buf[:, :, rows, j * dw:j * dw + (wd - 1) * sw + 1:sw] += cols[:, :, i, j]
    return buf[:, :, ph:ph + hout, pw:pw + wout]


# ---- vjps (lucid ops only) --------------------------------------------------------------

def _transpose_output_padding(in_hw, out_hw, k, stride, padding, dilation):
    """The output_padding that makes conv_transpose2d map `out_hw` back to `in_hw`."""
    return tuple(int(n + 2 * p - d * (kk - 1) - 1 - (m - 1) * s)
                 for n, m, kk, s, p, d in zip(in_hw, out_hw, k, stride, padding, dilation))


def _conv2d_vjp(g, y, x, w, stride, padding, dilation, groups):
    gx = gw = None
    if x.requires_grad:
        opad = _transpose_output_padding(x.shape[2:], y.shape[2:], w.shape[2:], stride, padding, dilation)
        gx = conv_transpose2d(g, w, stride=stride, padding=padding, output_padding=opad,
                              dilation=dilation, groups=groups)
    if w.requires_grad:
        gw = conv2d_weight_grad(x, g, stride=stride, padding=padding, dilation=dilation, groups=groups,
                                weight_shape=tuple(w.shape))
    return gx, gw


def _conv_transpose2d_vjp(g, y, x, w, stride, padding, output_padding, dilation, groups):
    # <g, conv_transpose2d(x, w)> = <conv2d(g, w), x>: the input grad is a conv2d of g, and
    # the weight grad is conv2d_weight_grad with g as the input and x as the output grad.
    from .shape import pad, slice_nd

    attrs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    conv_hw = _conv_out_hw("conv_transpose2d", tuple(y.shape), w.shape[2:], stride, padding, dilation)
    gx = gw = None
    if x.requires_grad:
        gx = conv2d(g, w, **attrs)
        if conv_hw != tuple(x.shape[2:]):
            # output_padding >= stride (allowed when dilation is larger): the extra rows of
            # conv2d(g, w) correspond to no input position.
            gx = slice_nd(gx, {2: slice(0, x.shape[2]), 3: slice(0, x.shape[3])})
    if w.requires_grad:
        xo = x
        if conv_hw != tuple(x.shape[2:]):
            xo = pad(x, ((0, 0), (0, 0), (0, conv_hw[0] - x.shape[2]), (0, conv_hw[1] - x.shape[3])))
        gw = conv2d_weight_grad(g, xo, weight_shape=tuple(w.shape), **attrs)
    return gx, gw


def _weight_grad_vjp(g, dw, x, gy, stride, padding, dilation, groups, weight_shape):
    # <G, weight_grad(x, gy)> = <gy, conv2d(x, G)> = <x, conv_transpose2d(gy, G)>.
    attrs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    gx = ggy = None
    if x.requires_grad:
        opad = _transpose_output_padding(x.shape[2:], gy.shape[2:], weight_shape[2:], stride, padding,
                                         dilation)
        gx = conv_transpose2d(gy, g, output_padding=opad, **attrs)
    if gy.requires_grad:
        ggy = conv2d(x, g, **attrs)
    return gx, ggy


# ---- samples and torch oracles ------------------------------------------------------------

def _conv_cases():
    """(x shape, w shape, stride, padding, dilation, groups) covering the geometry."""
    return [
        ((2, 3, 5, 5), (4, 3, 3, 3), (1, 1), (1, 1), (1, 1), 1),
        ((1, 2, 7, 6), (3, 2, 3, 2), (2, 1), (1, 0), (1, 1), 1),  # stride, non-square
        ((1, 2, 7, 7), (2, 2, 2, 3), (1, 2), (0, 2), (2, 1), 1),  # dilation, uneven padding
        ((2, 4, 5, 4), (6, 2, 3, 3), (2, 2), (1, 1), (1, 1), 2),  # groups, odd size with stride 2
        ((1, 3, 6, 6), (3, 1, 3, 3), (1, 1), (1, 1), (1, 1), 3),  # depthwise
        ((1, 4, 5, 5), (2, 4, 1, 1), (2, 2), (0, 0), (1, 1), 1),  # 1x1, strided
        ((2, 4, 3, 4), (6, 2, 1, 1), (1, 1), (0, 0), (1, 1), 2),  # 1x1, grouped
    ]


def _conv2d_samples(rng):
    return [Sample([R.rng_float(rng, xs), R.rng_float(rng, ws)],
                   {"stride": s, "padding": p, "dilation": d, "groups": g})
            for xs, ws, s, p, d, g in _conv_cases()]


def _conv_transpose2d_samples(rng):
    cases = [((2, 3, 3, 3), (3, 2, 3, 3), (1, 1), (1, 1), (0, 0), (1, 1), 1),
             ((1, 2, 3, 4), (2, 3, 3, 2), (2, 2), (1, 0), (1, 1), (1, 1), 1),  # output_padding
             ((1, 4, 3, 3), (4, 1, 2, 3), (2, 1), (0, 1), (0, 0), (1, 2), 2),  # groups, dilation
             ((1, 2, 3, 3), (2, 2, 3, 3), (1, 1), (0, 0), (1, 1), (2, 2), 1),  # output_padding < dilation
             ((2, 4, 3, 2), (4, 3, 1, 1), (1, 1), (0, 0), (0, 0), (1, 1), 2)]  # 1x1: one matmul
    return [Sample([R.rng_float(rng, xs), R.rng_float(rng, ws)],
                   {"stride": s, "padding": p, "output_padding": o, "dilation": d, "groups": g})
            for xs, ws, s, p, o, d, g in cases]


def _weight_grad_samples(rng):
    out = []
    for xs, ws, s, p, d, g in _conv_cases():
        ho, wo = (conv_out_len(*a) for a in zip(xs[2:], ws[2:], s, p, d))
        gys = (xs[0], ws[0], ho, wo)
        out.append(Sample([R.rng_float(rng, xs), R.rng_float(rng, gys)],
                          {"stride": s, "padding": p, "dilation": d, "groups": g, "weight_shape": ws}))
    return out


def _torch_conv2d(torch, x, w, stride, padding, dilation, groups):
    return torch.nn.functional.conv2d(x, w, None, stride, padding, dilation, groups)


def _torch_conv_transpose2d(torch, x, w, stride, padding, output_padding, dilation, groups):
    return torch.nn.functional.conv_transpose2d(x, w, None, stride, padding, output_padding, groups,
                                                dilation)


def _torch_weight_grad(torch, x, gy, stride, padding, dilation, groups, weight_shape):
    return torch.nn.grad.conv2d_weight(x, weight_shape, gy, stride, padding, dilation, groups)


_CONV_ATTRS = {"stride": (1, 1), "padding": (0, 0), "dilation": (1, 1), "groups": 1}

conv2d = defop(
    "conv2d", infer=_conv2d_infer, reference=_conv2d_ref, vjp=_conv2d_vjp, fusion=OUT_FUSABLE,
    attrs=_CONV_ATTRS, samples=_conv2d_samples, torch=_torch_conv2d,
    doc="2-D cross-correlation of x[N,C,H,W] with w[O,C/groups,kh,kw] (no bias), torch semantics.")

conv_transpose2d = defop(
    "conv_transpose2d", infer=_conv_transpose2d_infer, reference=_conv_transpose2d_ref,
    vjp=_conv_transpose2d_vjp, fusion=OUT_FUSABLE, attrs={**_CONV_ATTRS, "output_padding": (0, 0)},
    samples=_conv_transpose2d_samples, torch=_torch_conv_transpose2d,
    doc="Transposed convolution of x[N,Cin,H,W] with w[Cin,Cout/groups,kh,kw] (torch semantics): "
        "the adjoint of conv2d in its input; output_padding adds rows/columns at the far end.")

conv2d_weight_grad = defop(
    "conv2d_weight_grad", infer=_weight_grad_infer, reference=_conv2d_weight_grad_ref,
    vjp=_weight_grad_vjp, fusion=OUT_FUSABLE, attrs={**_CONV_ATTRS, "weight_shape": REQUIRED},
    samples=_weight_grad_samples, torch=_torch_weight_grad,
    doc="d conv2d(x, w) / d w contracted with gy: the adjoint of conv2d in its weight.")


# ---- pooling ------------------------------------------------------------------------------

def _pool_geometry(op, x, kernel, stride, padding, dilation=(1, 1)):
    if x.ndim != 4:
        raise ShapeError(f"{op}: input must be 4-D (NCHW), got shape {x.shape}")
    if not x.dtype.is_float:
        raise DTypeError(f"{op}: needs a floating input, got {x.dtype}")
    _check_pairs(op, kernel=kernel, stride=stride, padding=padding, dilation=dilation)
    for k, p, d in zip(kernel, padding, dilation):
        if 2 * p > d * (k - 1) + 1:
            raise ShapeError(f"{op}: padding {padding} must be at most half the (dilated) kernel {kernel}")
    return _conv_out_hw(op, x.shape, kernel, stride, padding, dilation)


def _max_pool2d_infer(x, kernel, stride, padding, dilation):
    ho, wo = _pool_geometry("max_pool2d", x, kernel, stride, padding, dilation)
    return TensorType(x.shape[:2] + (ho, wo), x.dtype)


def _max_pool2d_grad_infer(x, gy, kernel, stride, padding, dilation):
    ho, wo = _pool_geometry("max_pool2d_grad", x, kernel, stride, padding, dilation)
    expect = x.shape[:2] + (ho, wo)
    if tuple(gy.shape) != expect:
        raise ShapeError(f"max_pool2d_grad: gy {gy.shape} is not the pooled shape {expect} of x {x.shape}")
    R.same_dtype("max_pool2d_grad", x, gy)
    return x


def _taps(kernel, stride, out_hw, dilation=(1, 1)):
    """(tap index, row slice, column slice) of each kernel tap into the padded input."""
    (kh, kw), (sh, sw), (ho, wo), (dh, dw) = kernel, stride, out_hw, dilation
    for i in range(kh):
        for j in range(kw):
            yield (i * kw + j, slice(i * dh, i * dh + (ho - 1) * sh + 1, sh),
                   slice(j * dw, j * dw + (wo - 1) * sw + 1, sw))


def _max_pool2d_ref(x, kernel, stride, padding, dilation):
    out_hw = tuple(conv_out_len(*a) for a in zip(x.shape[2:], kernel, stride, padding, dilation))
    xp = _pad_hw(x, padding, -np.inf)
    out = None
    for _, rows, cols in _taps(kernel, stride, out_hw, dilation):
        tap = xp[:, :, rows, cols]
        out = tap.copy() if out is None else np.maximum(out, tap, out=out)
    return out


def _max_pool2d_grad_ref(x, gy, kernel, stride, padding, dilation):
    out_hw = gy.shape[2:]
    xp = _pad_hw(x, padding, -np.inf)
    best, arg = None, None
    for t, rows, cols in _taps(kernel, stride, out_hw, dilation):
        tap = xp[:, :, rows, cols]
        if best is None:
            best, arg = tap.copy(), np.zeros(tap.shape, dtype=np.int64)
        else:
            win = tap > best  # strict: the first maximum in the window keeps the gradient
            best = np.where(win, tap, best)
            arg[win] = t
    gxp = np.zeros(xp.shape, dtype=gy.dtype)
    for t, rows, cols in _taps(kernel, stride, out_hw, dilation):
        gxp[:, :, rows, cols] += np.where(arg == t, gy, 0)
    ph, pw = padding
    return gxp[:, :, ph:ph + x.shape[2], pw:pw + x.shape[3]]


def _max_pool2d_vjp(g, y, x, kernel, stride, padding, dilation):
    return (max_pool2d_grad(x, g, kernel=kernel, stride=stride, padding=padding, dilation=dilation),)


def _pool_cases():
    return [((2, 3, 6, 6), (2, 2), (2, 2), (0, 0)),
            ((1, 2, 7, 5), (3, 3), (2, 2), (1, 1)),  # ResNet's stem pool, odd sizes
            ((1, 2, 6, 7), (3, 2), (1, 2), (1, 0))]  # non-square, overlapping


def _max_pool_cases():
    return [(xs, k, s, p, (1, 1)) for xs, k, s, p in _pool_cases()] + [
        ((1, 2, 7, 8), (2, 3), (1, 2), (1, 1), (2, 2))]  # dilation


def _distinct(rng, shape):
    """Values with distinct entries, so every window has one maximum (clean finite differences)."""
    return (rng.permutation(int(np.prod(shape))).reshape(shape) * 0.1 + rng.uniform(-1, 1)).astype(np.float64)


def _max_pool2d_samples(rng):
    return [Sample([_distinct(rng, xs)], {"kernel": k, "stride": s, "padding": p, "dilation": d})
            for xs, k, s, p, d in _max_pool_cases()]


def _max_pool2d_grad_samples(rng):
    out = []
    for xs, k, s, p, d in _max_pool_cases():
        ho, wo = (conv_out_len(*a) for a in zip(xs[2:], k, s, p, d))
        out.append(Sample([_distinct(rng, xs), R.rng_float(rng, xs[:2] + (ho, wo))],
                          {"kernel": k, "stride": s, "padding": p, "dilation": d}, grad=False))
    return out


def _torch_max_pool2d(torch, x, kernel, stride, padding, dilation):
    return torch.nn.functional.max_pool2d(x, kernel, stride, padding, dilation)


def _torch_max_pool2d_grad(torch, x, gy, kernel, stride, padding, dilation):
    _, idx = torch.nn.functional.max_pool2d(x.detach(), kernel, stride, padding, dilation, return_indices=True)
    return torch.ops.aten.max_pool2d_with_indices_backward(gy, x, kernel, stride, padding, dilation, False, idx)


_POOL_ATTRS = {"kernel": REQUIRED, "stride": REQUIRED, "padding": (0, 0)}
_MAX_ATTRS = {**_POOL_ATTRS, "dilation": (1, 1)}

max_pool2d = defop(
    "max_pool2d", infer=_max_pool2d_infer, reference=_max_pool2d_ref, vjp=_max_pool2d_vjp,
    fusion=OUT_FUSABLE, attrs=_MAX_ATTRS, samples=_max_pool2d_samples, torch=_torch_max_pool2d,
    doc="Max over each (dilated) kernel window of x[N,C,H,W]; padding counts as -inf (never selected).")

max_pool2d_grad = defop(
    "max_pool2d_grad", infer=_max_pool2d_grad_infer, reference=_max_pool2d_grad_ref, vjp=None,
    fusion=OUT_FUSABLE, attrs=_MAX_ATTRS, samples=_max_pool2d_grad_samples, torch=_torch_max_pool2d_grad,
    doc="The gradient of max_pool2d: each gy element goes to the argmax of its window in x (on ties, "
        "the first maximum in row-major window order, as torch's CPU kernel picks). It has no vjp "
        "(vjp=None): second derivatives through max pooling are not supported.")


def _avg_counts(in_hw, kernel, stride, padding, count_include_pad):
    """The divisor of each output cell, shape [Ho, Wo]."""
    out_hw = tuple(conv_out_len(*a) for a in zip(in_hw, kernel, stride, padding))
    if count_include_pad:
        return np.full(out_hw, float(kernel[0] * kernel[1]))
    per_axis = []
    for n, k, s, p, m in zip(in_hw, kernel, stride, padding, out_hw):
        start = np.arange(m) * s - p
        per_axis.append((np.minimum(start + k, n) - np.maximum(start, 0)).astype(np.float64))
    return per_axis[0][:, None] * per_axis[1][None, :]


def _avg_pool2d_infer(x, kernel, stride, padding, count_include_pad):
    ho, wo = _pool_geometry("avg_pool2d", x, kernel, stride, padding)
    return TensorType(x.shape[:2] + (ho, wo), x.dtype)


def _avg_pool2d_grad_infer(gy, kernel, stride, padding, count_include_pad, input_shape):
    if len(input_shape) != 4:
        raise ShapeError(f"avg_pool2d_grad: input_shape must have 4 dims, got {input_shape}")
    x = TensorType(tuple(input_shape), gy.dtype)
    ho, wo = _pool_geometry("avg_pool2d_grad", x, kernel, stride, padding)
    expect = x.shape[:2] + (ho, wo)
    if tuple(gy.shape) != expect:
        raise ShapeError(f"avg_pool2d_grad: gy {gy.shape} is not the pooled shape {expect} of an "
                         f"input of shape {tuple(input_shape)}")
    return x


def _avg_pool2d_ref(x, kernel, stride, padding, count_include_pad):
    cnt = _avg_counts(x.shape[2:], kernel, stride, padding, count_include_pad)
    xp = _pad_hw(x, padding)
    out = np.zeros(x.shape[:2] + cnt.shape, dtype=x.dtype)
    for _, rows, cols in _taps(kernel, stride, cnt.shape):
        out += xp[:, :, rows, cols]
    return out / cnt.astype(x.dtype)


def _avg_pool2d_grad_ref(gy, kernel, stride, padding, count_include_pad, input_shape):
    cnt = _avg_counts(input_shape[2:], kernel, stride, padding, count_include_pad)
    share = gy / cnt.astype(gy.dtype)
    ph, pw = padding
    gxp = np.zeros(tuple(input_shape[:2]) + (input_shape[2] + 2 * ph, input_shape[3] + 2 * pw), gy.dtype)
    for _, rows, cols in _taps(kernel, stride, cnt.shape):
        gxp[:, :, rows, cols] += share
    return gxp[:, :, ph:ph + input_shape[2], pw:pw + input_shape[3]]


def _avg_pool2d_vjp(g, y, x, kernel, stride, padding, count_include_pad):
    return (avg_pool2d_grad(g, kernel=kernel, stride=stride, padding=padding,
                            count_include_pad=count_include_pad, input_shape=tuple(x.shape)),)


def _avg_pool2d_grad_vjp(g, y, gy, kernel, stride, padding, count_include_pad, input_shape):
    return (avg_pool2d(g, kernel=kernel, stride=stride, padding=padding,
                       count_include_pad=count_include_pad),)


def _avg_pool2d_samples(rng):
    return [Sample([R.rng_float(rng, xs)], {"kernel": k, "stride": s, "padding": p, "count_include_pad": c})
            for (xs, k, s, p), c in zip(_pool_cases() + _pool_cases()[1:], (True, True, True, False, False))]


def _avg_pool2d_grad_samples(rng):
    out = []
    for s in _avg_pool2d_samples(rng):
        a = s.attrs
        xs = s.inputs[0].shape
        ho, wo = (conv_out_len(*v) for v in zip(xs[2:], a["kernel"], a["stride"], a["padding"]))
        out.append(Sample([R.rng_float(rng, xs[:2] + (ho, wo))], {**a, "input_shape": xs}))
    return out


def _torch_avg_pool2d(torch, x, kernel, stride, padding, count_include_pad):
    return torch.nn.functional.avg_pool2d(x, kernel, stride, padding, count_include_pad=count_include_pad)


def _torch_avg_pool2d_grad(torch, gy, kernel, stride, padding, count_include_pad, input_shape):
    x = torch.zeros(input_shape, dtype=gy.dtype)
    return torch.ops.aten.avg_pool2d_backward(gy, x, kernel, stride, padding, False, count_include_pad, None)


_AVG_ATTRS = {**_POOL_ATTRS, "count_include_pad": True}

avg_pool2d = defop(
    "avg_pool2d", infer=_avg_pool2d_infer, reference=_avg_pool2d_ref, vjp=_avg_pool2d_vjp,
    fusion=OUT_FUSABLE, attrs=_AVG_ATTRS, samples=_avg_pool2d_samples, torch=_torch_avg_pool2d,
    doc="Mean over each kernel window; padded zeros count in the divisor iff count_include_pad.")

avg_pool2d_grad = defop(
    "avg_pool2d_grad", infer=_avg_pool2d_grad_infer, reference=_avg_pool2d_grad_ref,
    vjp=_avg_pool2d_grad_vjp, fusion=OUT_FUSABLE, attrs={**_AVG_ATTRS, "input_shape": REQUIRED},
    samples=_avg_pool2d_grad_samples, torch=_torch_avg_pool2d_grad,
    doc="The adjoint of avg_pool2d: each gy element spread evenly over its window (vjp: avg_pool2d).")
