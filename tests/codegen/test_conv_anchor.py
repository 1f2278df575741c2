"""Convolutions on the gemm path (lucid/codegen/anchors.py) against a float64 numpy reference.

Covers the im2col spans (padding wider than the kernel reach, strides, dilation, odd
sizes), the 1x1 paths (stride 1 reads the image in place, stride 2 gathers), the fused
epilogues (relu, residual add), small-spatial outputs (N = 49 columns), batches (images
in parallel, or one after another) and 1 vs 2 threads.
"""
import numpy as np
import pytest

import lucid
import lucid.nn.functional as F
from lucid.codegen import runtime


def _ref_conv(x, w, stride, padding, dilation):
    """Direct float64 convolution (cross-correlation), NCHW / OIHW."""
    x, w = x.astype(np.float64), w.astype(np.float64)
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((n, o, oh, ow))
    for ky in range(kh):
        for kx in range(kw):
            patch = xp[:, :, ky * dh: ky * dh + sh * (oh - 1) + 1: sh, kx * dw: kx * dw + sw * (ow - 1) + 1: sw]
            out += np.einsum("nchw,oc->nohw", patch, w[:, :, ky, kx])
    return out


def _check(got, x, w, ref):
    k = w.shape[1] * w.shape[2] * w.shape[3]
    tol = 8 * k * np.finfo(np.float32).eps * (np.abs(ref).max() + 1)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got.astype(np.float64), ref, rtol=0, atol=tol)


CASES = [  # (n, c, h, w, o, kh, kw, stride, padding, dilation)
    (1, 3, 17, 19, 8, 7, 7, (2, 2), (3, 3), (1, 1)),     # a stem: 7x7/2, odd sizes
    (2, 5, 9, 8, 7, 3, 3, (1, 1), (1, 1), (1, 1)),
    (1, 4, 6, 7, 5, 3, 3, (1, 1), (4, 2), (1, 1)),       # padding wider than the kernel reach
    (1, 3, 11, 10, 6, 3, 2, (3, 2), (1, 0), (2, 1)),     # strides, dilation, kh != kw
    (1, 6, 5, 5, 3, 5, 5, (1, 1), (0, 0), (1, 1)),       # one output pixel
    (2, 16, 14, 14, 24, 1, 1, (2, 2), (0, 0), (1, 1)),   # 1x1 stride 2 (downsample)
    (1, 8, 13, 13, 40, 1, 1, (2, 2), (0, 0), (1, 1)),    # 1x1 stride 2, odd size
    (1, 9, 7, 7, 33, 1, 1, (1, 1), (0, 0), (1, 1)),      # 1x1 in place, N = 49
    (1, 32, 7, 7, 70, 3, 3, (1, 1), (1, 1), (1, 1)),     # N = 49, M not a multiple of 6
    (1, 2, 4, 4, 3, 1, 1, (1, 1), (1, 1), (1, 1)),       # 1x1 with padding
    (3, 4, 10, 10, 6, 3, 3, (1, 1), (1, 1), (1, 1)),     # batch 3: uneven over 2 threads, serial images
    (8, 3, 9, 9, 5, 3, 3, (2, 2), (1, 1), (1, 1)),       # batch 8: images in parallel
    (8, 6, 5, 5, 7, 1, 1, (1, 1), (0, 0), (1, 1)),       # batch 8, 1x1 in place
]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[:5])) + f"_k{c[5]}{c[6]}_s{c[7][0]}")
def test_conv_matches_reference(case, threads):
    n, c, h, wd, o, kh, kw, stride, padding, dilation = case
    rng = np.random.default_rng(hash(case) % 2 ** 32)
    x = rng.standard_normal((n, c, h, wd)).astype(np.float32)
    w = rng.standard_normal((o, c, kh, kw)).astype(np.float32)
    f = lucid.compile(lambda a, b: F.conv2d(a, b, stride=stride, padding=padding, dilation=dilation),
                      threads=threads)
    got = f(lucid.tensor(x), lucid.tensor(w)).numpy()
    _check(got, x, w, _ref_conv(x, w, stride, padding, dilation))


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape", [(1, 16, 56 // 4, 56 // 4, 64), (1, 64, 7, 7, 96), (2, 24, 9, 9, 30),
                                   (8, 16, 7, 7, 20)])
def test_conv_residual_relu_epilogue(shape, threads):
    """relu(conv(x) + bias + residual): the bottleneck's last conv with its fused epilogue."""
    n, c, h, wd, o = shape
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, c, h, wd)).astype(np.float32)
    w = rng.standard_normal((o, c, 1, 1)).astype(np.float32)
    bias = rng.standard_normal(o).astype(np.float32)
    res = rng.standard_normal((n, o, h, wd)).astype(np.float32)
    f = lucid.compile(lambda a, b, bb, r: F.relu(F.conv2d(a, b, bb) + r), threads=threads)
    got = f(*map(lucid.tensor, (x, w, bias, res))).numpy()
    ref = np.maximum(_ref_conv(x, w, (1, 1), (0, 0), (1, 1)) + bias[:, None, None] + res, 0)
    _check(got, x, w, ref)


def test_threads_agree():
    """1 and 2 threads give the same result within float32 reassociation."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 32, 15, 15)).astype(np.float32)
    w = rng.standard_normal((48, 32, 3, 3)).astype(np.float32)
    r = rng.standard_normal((2, 48, 8, 8)).astype(np.float32)
    fn = lambda a, b, c: F.relu(F.conv2d(a, b, stride=2, padding=1) + c)
    outs = []
    for t in (1, 2):
        outs.append(lucid.compile(fn, threads=t)(*map(lucid.tensor, (x, w, r))).numpy())
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-5, atol=1e-4)
    assert runtime.get_num_threads() >= 1


def _conv_module(case, rng):
    n, c, h, wd, o, kh, kw, stride, padding, dilation = case
    conv = lucid.nn.Conv2d(c, o, (kh, kw), stride=stride, padding=padding, dilation=dilation, bias=False)
    conv.weight.data = rng.standard_normal((o, c, kh, kw)).astype(np.float32)
    return conv, rng.standard_normal((n, c, h, wd)).astype(np.float32)


@pytest.mark.parametrize("case", CASES[::2], ids=lambda c: "x".join(map(str, c[:5])) + f"_k{c[5]}{c[6]}")
def test_frozen_weight_is_prepacked(case):
    """A module's frozen conv weight is packed once when the program is built (the gemm's
    packed entry reads it), and gives the reference's numbers, on 1 and 2 threads."""
    rng = np.random.default_rng(7)
    conv, x = _conv_module(case, rng)
    stride, padding, dilation = case[7:]
    ref = _ref_conv(x, conv.weight.numpy(), stride, padding, dilation)
    for threads in (1, 2):
        f = lucid.compile(conv, threads=threads)
        _check(f(lucid.tensor(x)).numpy(), x, conv.weight.numpy(), ref)
        program = f.builds[0].program
        assert program.packed == ("weight",)


def test_prepacked_weight_follows_a_new_array():
    """A call with another array for the packed param packs that one (the program keys its
    packed copy by the array it was made from); the old copy is not read again."""
    rng = np.random.default_rng(3)
    conv, x = _conv_module((2, 5, 9, 8, 7, 3, 3, (1, 1), (1, 1), (1, 1)), rng)
    program = lucid.compile(conv)
    program(lucid.tensor(x))
    native = program.builds[0].program
    w2 = rng.standard_normal(conv.weight.shape).astype(np.float32)
    got = native.run([x], {"weight": w2})[0]
    _check(got, x, w2, _ref_conv(x, w2, (1, 1), (1, 1), (1, 1)))
    got = native.run([x], {"weight": conv.weight.numpy()})[0]
    _check(got, x, conv.weight.numpy(), _ref_conv(x, conv.weight.numpy(), (1, 1), (1, 1), (1, 1)))


def test_trained_weight_is_not_prepacked():
    """A training step updates its conv weights every call: they stay plain arrays."""
    rng = np.random.default_rng(5)
    conv, x = _conv_module((2, 3, 8, 8, 4, 3, 3, (1, 1), (1, 1), (1, 1)), rng)
    opt = lucid.optim.SGD(conv.parameters(), lr=0.1)

    def step(t):
        opt.zero_grad()
        loss = (conv(t) ** 2).mean()
        loss.backward()
        opt.step()
        return loss

    f = lucid.compile(step)
    f(lucid.tensor(x))
    assert f.builds[-1].program.packed == ()
