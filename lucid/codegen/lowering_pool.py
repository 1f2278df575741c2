"""max_pool2d_grad over windows that tile the input (kernel = stride, no padding, no
dilation: the usual 2x2 / stride 2), as a loop over windows rather than over inputs.

Why: the elemental rule (lucid.codegen.lowering) computes each input element on its own,
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
import llvmlite.ir as ir

from . import irutil as U
from .lowering import KERNELS


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
