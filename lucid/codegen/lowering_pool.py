"""Pooling lowerings: max_pool2d, avg_pool2d and their gradients as elemental rules, and
max_pool2d_grad over windows that tile the input (kernel = stride, no padding, no
dilation: the usual 2x2 / stride 2) as a whole kernel, a loop over windows rather than
over inputs.

Why the window loop: the elemental max_pool2d_grad rule computes each input element alone,
so every element finds its window by division and re-reads the window's taps; LLVM turns
those data-dependent addresses into gathers, about 5 ns per element, a fifth of a small
CNN's training step. Here each window is read once, its first maximum found, and each of
its taps written: consecutive windows' taps are strided (interleaved) loads and stores,
which the loop vectoriser widens. The first-maximum rule is the reference's: the first
tap starts, only a strictly greater value takes over (a NaN first tap keeps it, a NaN
elsewhere never wins). Inputs no window covers (the last rows / columns when the size is
not a multiple of the stride) get zero. Other geometries, and a max_pool2d_grad with fused
epilogues, keep the elemental rule (the kernel returns None).
"""
import math

import llvmlite.ir as ir

from . import irutil as U
from .elemental import float_suffix
from .lowering import KERNELS, _mac, _spatial, elemental


# ---- pooling ------------------------------------------------------------------------------------

@elemental("max_pool2d")
def _max_pool2d(E, node, idx):
    x = node.inputs[0]
    b, dt = E.b, node.type.dtype
    n, c, y, xo = idx
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (node.attrs["kernel"], node.attrs["stride"],
                                              node.attrs["padding"], node.attrs["dilation"])
    H, W = x.type.shape[2:]
    ninf = U.const(dt, -math.inf)

    def body(r):
        ky, kx = r
        iny, yy = _spatial(E, y, ky, sh, dh, ph, H)
        inx, xx = _spatial(E, xo, kx, sw, dw, pw, W)
        return b.select(b.and_(iny, inx), E.value(x, (n, c, yy, xx)), ninf)

    fname = f"llvm.maximum.{float_suffix(dt)}"

    def combine(a, v):
        return E.call_intrinsic(fname, U.value_type(dt), a, v)

    if kh * kw <= 16:  # small static window: straight-line code, which vectorises
        acc = ninf
        for ky in range(kh):
            for kx in range(kw):
                acc = combine(acc, body((U.i64(ky), U.i64(kx))))
        return acc
    return E.reduce([kh, kw], ninf, dt, body, combine)


def _windows_over(E, pos, k, s, d, p, out_len):
    """For input position `pos`: (ok, window index) of kernel tap k's window, if any."""
    b = E.b
    t = b.sub(b.add(pos, U.i64(p)), b.mul(k, U.i64(d)))
    q = b.sdiv(t, U.i64(s))
    ok = b.and_(b.icmp_signed(">=", t, U.i64(0)), b.icmp_signed("==", b.srem(t, U.i64(s)), U.i64(0)))
    return b.and_(ok, E.in_range(q, out_len)), E.clamp(q, out_len)


def _first_max_tap(E, x, n, c, oy, ox, node):
    """The tap (wy * kw + wx) of window (oy, ox)'s first maximum, scanned in row-major order
    as the reference does: the first tap (padding reads as -inf) starts, and only a strictly
    greater value takes over, so a NaN first tap keeps it and NaN elsewhere never wins.
    Unrolled in Python: the window is small and static, and straight-line selects
    vectorise where a loop with memory would not."""
    b, dt = E.b, node.type.dtype
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (node.attrs["kernel"], node.attrs["stride"],
                                              node.attrs["padding"], node.attrs["dilation"])
    H, W = x.type.shape[2:]
    best, first = None, U.i64(0)
    for wy in range(kh):
        iny, yy = _spatial(E, oy, U.i64(wy), sh, dh, ph, H)
        for wx in range(kw):
            inx, xx = _spatial(E, ox, U.i64(wx), sw, dw, pw, W)
            v = b.select(b.and_(iny, inx), E.value(x, (n, c, yy, xx)), U.const(dt, -math.inf))
            if best is None:
                best = v
                continue
            better = b.fcmp_ordered(">", v, best)
            best = b.select(better, v, best)
            first = b.select(better, U.i64(wy * kw + wx), first)
    return first


def _own_window(E, pos, k, s, d, p, out_len):
    """Non-overlapping windows (extent <= stride): (ok, window, tap) of the one window
    input position `pos` can belong to."""
    b = E.b
    t = b.add(pos, U.i64(p))
    q = b.sdiv(t, U.i64(s))
    r = b.sub(t, b.mul(q, U.i64(s)))
    tap = b.sdiv(r, U.i64(d))
    ok = b.and_(b.icmp_signed("==", b.srem(r, U.i64(d)), U.i64(0)), b.icmp_signed("<", tap, U.i64(k)))
    return b.and_(ok, E.in_range(q, out_len)), E.clamp(q, out_len), tap


@elemental("max_pool2d_grad")
def _max_pool2d_grad(E, node, idx):
    """Each input element collects the gradient of every window whose first maximum it is.
    When windows do not overlap (the usual 2x2 / stride 2) that is at most one window,
    found by division; otherwise every tap's window is visited."""
    x, gy = node.inputs
    b, dt = E.b, node.type.dtype
    n, c, iy, ix = idx
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (node.attrs["kernel"], node.attrs["stride"],
                                              node.attrs["padding"], node.attrs["dilation"])
    HO, WO = gy.type.shape[2:]
    zero = U.const(dt, 0)
    if (kh - 1) * dh + 1 <= sh and (kw - 1) * dw + 1 <= sw:
        oky, oy, ty = _own_window(E, iy, kh, sh, dh, ph, HO)
        okx, ox, tx = _own_window(E, ix, kw, sw, dw, pw, WO)
        mine = b.icmp_signed("==", _first_max_tap(E, x, n, c, oy, ox, node), b.add(b.mul(ty, U.i64(kw)), tx))
        return b.select(b.and_(b.and_(oky, okx), mine), E.value(gy, (n, c, oy, ox)), zero)

    def body(r):
        ky, kx = r
        oky, oy = _windows_over(E, iy, ky, sh, dh, ph, HO)
        okx, ox = _windows_over(E, ix, kx, sw, dw, pw, WO)
        mine = b.icmp_signed("==", _first_max_tap(E, x, n, c, oy, ox, node), b.add(b.mul(ky, U.i64(kw)), kx))
        return b.select(b.and_(b.and_(oky, okx), mine), E.value(gy, (n, c, oy, ox)), zero)

    return E.reduce([kh, kw], zero, dt, body, _mac(E, dt))


def _avg_divisor(E, oy, ox, node, in_hw, dt):
    b = E.b
    (kh, kw), (sh, sw), (ph, pw) = node.attrs["kernel"], node.attrs["stride"], node.attrs["padding"]
    if node.attrs["count_include_pad"]:
        return U.const(dt, kh * kw)

    def count(o, k, s, p, n):
        start = b.sub(b.mul(o, U.i64(s)), U.i64(p))
        end = b.add(start, U.i64(k))
        end = b.select(b.icmp_signed(">", end, U.i64(n)), U.i64(n), end)
        start = b.select(b.icmp_signed("<", start, U.i64(0)), U.i64(0), start)
        return b.sub(end, start)

    cnt = b.mul(count(oy, kh, sh, ph, in_hw[0]), count(ox, kw, sw, pw, in_hw[1]))
    return b.sitofp(cnt, U.value_type(dt))


@elemental("avg_pool2d")
def _avg_pool2d(E, node, idx):
    x = node.inputs[0]
    b, dt = E.b, node.type.dtype
    n, c, y, xo = idx
    (kh, kw), (sh, sw), (ph, pw) = node.attrs["kernel"], node.attrs["stride"], node.attrs["padding"]
    H, W = x.type.shape[2:]

    def body(r):
        ky, kx = r
        iny, yy = _spatial(E, y, ky, sh, 1, ph, H)
        inx, xx = _spatial(E, xo, kx, sw, 1, pw, W)
        return b.select(b.and_(iny, inx), E.value(x, (n, c, yy, xx)), U.const(dt, 0))

    total = E.reduce([kh, kw], U.const(dt, 0), dt, body, _mac(E, dt))
    return b.fdiv(total, _avg_divisor(E, y, xo, node, (H, W), dt))


@elemental("avg_pool2d_grad")
def _avg_pool2d_grad(E, node, idx):
    gy = node.inputs[0]
    b, dt = E.b, node.type.dtype
    n, c, iy, ix = idx
    (kh, kw), (sh, sw), (ph, pw) = node.attrs["kernel"], node.attrs["stride"], node.attrs["padding"]
    H, W = node.type.shape[2:]
    HO, WO = gy.type.shape[2:]

    def body(r):
        ky, kx = r
        oky, oy = _windows_over(E, iy, ky, sh, 1, ph, HO)
        okx, ox = _windows_over(E, ix, kx, sw, 1, pw, WO)
        share = b.fdiv(E.value(gy, (n, c, oy, ox)), _avg_divisor(E, oy, ox, node, (H, W), dt))
        return b.select(b.and_(oky, okx), share, U.const(dt, 0))

    return E.reduce([kh, kw], U.const(dt, 0), dt, body, _mac(E, dt))


# ---- max_pool2d_grad over tiling windows --------------------------------------------------------


def _tiled(node):
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (node.attrs["kernel"], node.attrs["stride"],
                                              node.attrs["padding"], node.attrs["dilation"])
    return (kh, kw) == (sh, sw) and (ph, pw) == (0, 0) and (dh, dw) == (1, 1)


def _max_pool2d_grad_kernel(mb, name, fn):
    if len(fn.compute_nodes) != 1 or not _tiled(fn.compute_nodes[0]):
        return None
    node = fn.compute_nodes[0]
    x, gy = node.inputs
    kh, kw = node.attrs["kernel"]
    n, c, h, w = x.type.shape
    ho, wo = gy.type.shape[2:]
    if node.type.size == 0 or ho * wo == 0:
        return None
    dt = node.type.dtype
    rows = n * c * ho  # a work unit: one row of windows (kh input rows)
    body = ir.Function(mb.module, ir.FunctionType(U.VOID, [U.I8P, U.I64, U.I64]), f"{name}.rows")
    body.linkage = "internal"
    b = ir.IRBuilder(body.append_basic_block("entry"))
    ctx, begin, end = body.args
    leaves, outp = mb.pointers(b, ctx, fn)
    xp, gp = leaves[x], leaves[gy]
    zero = U.const(dt, 0)

    def at(ptr, offset):
        return b.gep(ptr, [offset], inbounds=True)

    def zero_span(start, count):
        with U.loop(b, U.i64(count), name="z") as i:
            b.store(zero, at(outp, b.add(start, i)))

    with U.loop(b, end, start=begin, name="wrow") as r:
        plane, oy = b.udiv(r, U.i64(ho)), b.urem(r, U.i64(ho))
        top = b.add(b.mul(plane, U.i64(h * w)), b.mul(oy, U.i64(kh * w)))  # first input row
        grow = b.mul(r, U.i64(wo))
        with U.loop(b, U.i64(wo), name="ox") as ox:
            col = b.add(top, b.mul(ox, U.i64(kw)))
            taps = [b.add(col, U.i64(wy * w + wx)) for wy in range(kh) for wx in range(kw)]
            best, first = b.load(at(xp, taps[0])), ir.Constant(U.I32, 0)
            for t in range(1, len(taps)):
                v = b.load(at(xp, taps[t]))
                better = b.fcmp_ordered(">", v, best)
                best = b.select(better, v, best)
                first = b.select(better, ir.Constant(U.I32, t), first)
            g = b.load(at(gp, b.add(grow, ox)))
            for t, off in enumerate(taps):
                mine = b.icmp_signed("==", first, ir.Constant(U.I32, t))
                b.store(b.select(mine, g, zero), at(outp, off))
        if w > wo * kw:  # columns right of the last window
            for wy in range(kh):
                zero_span(b.add(top, U.i64(wy * w + wo * kw)), w - wo * kw)
        if h > ho * kh:  # rows below the last window row, written by that row's unit
            with b.if_then(b.icmp_signed("==", oy, U.i64(ho - 1))):
                zero_span(b.add(b.mul(plane, U.i64(h * w)), U.i64(ho * kh * w)), (h - ho * kh) * w)
    b.ret_void()
    return rows, body


KERNELS["max_pool2d_grad"] = _max_pool2d_grad_kernel
