"""Convolution and matmul kernels on the packed gemm, with their fused epilogues.

A fused group whose first op is a float32 `matmul`, or a `conv2d`, `conv2d_weight_grad`
or `conv_transpose2d` with groups=1, is emitted as:

1. the anchor into the kernel's output buffer, through `lucid_sgemm` (lucid.codegen.gemm's
   packed, register-blocked micro-kernels, parallel on the thread pool), with the data
   rearranged into the program's scratch buffer by parallel loops around it:
   - matmul: directly (batched over its leading dims);
   - conv2d, per image: W[O, C*kh*kw] @ cols[C*kh*kw, OH*OW], `cols` the image's patches
     (im2col; a 1x1, stride-1, unpadded convolution reads the image itself);
   - conv2d_weight_grad, for the whole batch at once: GY[O, N*S] @ COLS_T[N*S, C*kh*kw];
   - conv_transpose2d (a convolution's input gradient), per image: col2im of
     W_T[Co*kh*kw, Ci] @ x[Ci, H*W], col2im summing the taps that land on each pixel;
2. the epilogue (bias, activation, residual add, ...), if any, as one elemental pass over
   the output that reads the anchor's value back from the same buffer and overwrites it:
   each element is read, then written, at the same index.

Anything else in those ops (float64, grouped convolutions, an epilogue that changes the
shape or dtype) keeps the generic elemental lowering.
"""
import llvmlite.ir as ir
import numpy as np

from ..dtypes import float32
from . import irutil as U
from .elemental import Elemental

SGEMM = "lucid_sgemm"
GEMM_OPS = ("conv2d", "matmul", "conv2d_weight_grad", "conv_transpose2d")
_SGEMM_TYPE = ir.FunctionType(U.VOID, [U.I64, U.I64, U.I64, U.F32.as_pointer(), U.I64, U.F32.as_pointer(),
                                       U.I64, U.F32.as_pointer(), U.I64, U.F32.as_pointer()])


_gemm_loaded = []


def ensure_gemm():
    """Load the shared gemm into the engine once per process (kernels call it by name),
    from the disk cache when it is there."""
    if _gemm_loaded:
        return
    from . import cache
    from .gemm import gemm_ir
    from .llvm import jit, load_object

    key = cache.program_key(f"shared gemm {SGEMM}")
    data = cache.load(key)
    if data is not None:
        load_object(data, "lucid-sgemm")
    else:
        cache.store(key, jit(gemm_ir(SGEMM), "lucid-sgemm").object)
    _gemm_loaded.append(True)


def anchor_of(fn):
    """The conv2d/matmul node that heads `fn`, when the gemm path applies; else None."""
    nodes = fn.compute_nodes
    if not nodes:
        return None
    head = nodes[0]
    out = fn.outputs[0]
    if head.op not in GEMM_OPS or head.type != out.type or head.type.dtype != float32:
        return None  # the output buffer holds the anchor's result before the epilogue runs
    if any(i.op != "input" for i in head.inputs):
        return None
    if head.op != "matmul" and head.attrs["groups"] != 1:
        return None
    if head.op == "matmul" and head.inputs[1].type.ndim > 2 and head.inputs[0].type.shape[:-2] != \
            head.inputs[1].type.shape[:-2]:
        return None  # broadcast batches: the generic lowering handles them
    return head


def scratch_floats(fn):
    """How many floats of scratch the kernel of `fn` needs (patch matrices, transposes)."""
    head = anchor_of(fn)
    if head is None or head.op == "matmul":
        return 0
    if head.op == "conv2d":
        if _is_pointwise_conv(head):
            return 0
        _, c, kh, kw = head.inputs[1].type.shape
        oh, ow = head.type.shape[2:]
        return c * kh * kw * oh * ow
    if head.op == "conv2d_weight_grad":
        x, gy = head.inputs
        n, o = gy.type.shape[:2]
        spatial = gy.type.shape[2] * gy.type.shape[3]
        o, c, kh, kw = head.type.shape
        return n * spatial * (o + c * kh * kw)
    x, w = head.inputs  # conv_transpose2d
    ci, co, kh, kw = w.type.shape
    return co * kh * kw * (ci + x.type.shape[2] * x.type.shape[3])


def _is_pointwise_conv(node):
    w = node.inputs[1]
    return (w.type.shape[2:] == (1, 1) and node.attrs["stride"] == (1, 1) and node.attrs["padding"] == (0, 0))


def emit(mb, name, fn, scratch_index):
    """Define the kernel @name(i8** args) for an anchored group; returns nothing."""
    head = anchor_of(fn)
    module = mb.module
    sgemm = module.globals.get(SGEMM) or ir.Function(module, _SGEMM_TYPE, SGEMM)
    kernel = ir.Function(module, ir.FunctionType(U.VOID, [U.I8P.as_pointer()]), name)
    kernel.linkage = "internal"
    b = ir.IRBuilder(kernel.append_basic_block("entry"))
    ctx = b.bitcast(kernel.args[0], U.I8P)
    leaves, outp = mb.pointers(b, ctx, fn)
    fptr = U.F32.as_pointer()
    if head.op == "matmul":
        _matmul(b, sgemm, head, leaves, outp)
    else:
        scratch = b.bitcast(b.load(b.gep(kernel.args[0], [U.i64(scratch_index)])), fptr)
        {"conv2d": _conv, "conv2d_weight_grad": _weight_grad,
         "conv_transpose2d": _conv_transpose}[head.op](mb, b, name, sgemm, head, leaves, outp, scratch)
    b.ret_void()
    if fn.outputs[0] is not head:
        _epilogue(mb, name, fn, head)
        b.position_before(b.block.instructions[-1])
        b.call(module.globals[f"{name}.epilogue"], [kernel.args[0]])


def _matmul(b, sgemm, head, leaves, outp):
    a, w = head.inputs
    m, k = a.type.shape[-2:]
    n = w.type.shape[-1]
    batch = int(np.prod(head.type.shape[:-2], dtype=np.int64)) if head.type.ndim > 2 else 1
    a_stride = m * k if a.type.ndim > 2 else 0
    w_stride = k * n if w.type.ndim > 2 else 0
    pa, pw = leaves[a], leaves[w]
    null = ir.Constant(U.F32.as_pointer(), None)
    with U.loop(b, U.i64(batch), name="batch") as i:
        ap = b.gep(pa, [b.mul(i, U.i64(a_stride))])
        wp = b.gep(pw, [b.mul(i, U.i64(w_stride))])
        cp = b.gep(outp, [b.mul(i, U.i64(m * n))])
        b.call(sgemm, [U.i64(m), U.i64(n), U.i64(k), ap, U.i64(k), wp, U.i64(n), cp, U.i64(n), null])


def _conv(mb, b, name, sgemm, head, leaves, outp, scratch):
    x, w = head.inputs
    n_img, c, h, wd = x.type.shape
    o, _, kh, kw = w.type.shape
    oh, ow = head.type.shape[2:]
    ckk, spatial = c * kh * kw, oh * ow
    null = ir.Constant(U.F32.as_pointer(), None)
    gather = None if _is_pointwise_conv(head) else _im2col(mb, name, head)
    with U.loop(b, U.i64(n_img), name="img") as i:
        image = b.gep(leaves[x], [b.mul(i, U.i64(c * h * wd))])
        if gather is None:
            cols = image
        else:
            b.call(gather, [image, scratch])
            cols = scratch
        cp = b.gep(outp, [b.mul(i, U.i64(o * spatial))])
        b.call(sgemm, [U.i64(o), U.i64(spatial), U.i64(ckk), leaves[w], U.i64(ckk), cols, U.i64(spatial),
                       cp, U.i64(spatial), null])


def _rows_fn(mb, name, rows, cost, emit_row):
    """@name(float* p0, float* p1, ...) running `emit_row(builder, row, pointers)` for every
    row in [0, rows), split over the thread pool when the work (`cost` elements) is big."""
    module = mb.module
    fptr = U.F32.as_pointer()
    arity = getattr(emit_row, "arity", 2)
    body = ir.Function(module, ir.FunctionType(U.VOID, [U.I8P, U.I64, U.I64]), f"{name}.rows")
    body.linkage = "internal"
    b = ir.IRBuilder(body.append_basic_block("entry"))
    ctx, begin, end = body.args
    pp = b.bitcast(ctx, fptr.as_pointer())
    ptrs = [b.load(b.gep(pp, [U.i64(k)])) for k in range(arity)]
    with U.loop(b, end, start=begin, name="row") as r:
        emit_row(b, r, ptrs)
    b.ret_void()
    fn = ir.Function(module, ir.FunctionType(U.VOID, [fptr] * arity), name)
    fn.linkage = "internal"
    gb = ir.IRBuilder(fn.append_basic_block("entry"))
    table = U.entry_alloca(gb, ir.ArrayType(fptr, arity), "ptrs")
    for k in range(arity):
        gb.store(fn.args[k], gb.gep(table, [U.i64(0), U.i64(k)]))
    ctx = gb.bitcast(table, U.I8P)
    if cost >= (1 << 14) and rows > 1:
        gb.call(mb.runtime_parallel_for(), [body, ctx, U.i64(rows)])
    else:
        gb.call(body, [ctx, U.i64(0), U.i64(rows)])
    gb.ret_void()
    return fn


def _arity(n):
    def deco(f):
        f.arity = n
        return f

    return deco


def _tap(b, E, out_pos, k, stride, dilation, pad, size):
    """Input coordinate of output `out_pos` at kernel tap `k`: (inside?, clamped)."""
    p = b.sub(b.add(b.mul(out_pos, U.i64(stride)), b.mul(k, U.i64(dilation))), U.i64(pad))
    return E.in_range(p, size), E.clamp(p, size)


def _im2col(mb, name, head):
    """@name.im2col(float* image, float* cols): cols[(c,ky,kx), (y,x)] = padded image taps."""
    x, w = head.inputs
    _, c, h, wd = x.type.shape
    _, _, kh, kw = w.type.shape
    oh, ow = head.type.shape[2:]
    (sh, sw), (ph, pw), (dh, dw) = head.attrs["stride"], head.attrs["padding"], head.attrs["dilation"]
    zero = U.const(float32, 0)

    @_arity(2)
    def row(b, r, ptrs):
        image, cols = ptrs
        E = Elemental(b, mb.module, {})
        ch, ky, kx = E.delinearize(r, (c, kh, kw))
        with U.loop(b, U.i64(oh), name="y") as y:
            row_ok, iyc = _tap(b, E, y, ky, sh, dh, ph, h)
            src_row = b.mul(b.add(b.mul(ch, U.i64(h)), iyc), U.i64(wd))
            dst_row = b.mul(b.add(b.mul(r, U.i64(oh)), y), U.i64(ow))
            with U.loop(b, U.i64(ow), name="x") as xo:
                ok, ixc = _tap(b, E, xo, kx, sw, dw, pw, wd)
                v = b.load(b.gep(image, [b.add(src_row, ixc)], inbounds=True))
                b.store(b.select(b.and_(row_ok, ok), v, zero), b.gep(cols, [b.add(dst_row, xo)], inbounds=True))

    return _rows_fn(mb, f"{name}.im2col", c * kh * kw, c * kh * kw * oh * ow, row)


def _weight_grad(mb, b, name, sgemm, head, leaves, outp, scratch):
    """dW[O, C*kh*kw] = GY[O, N*S] @ COLS_T[N*S, C*kh*kw]: one gemm over the whole batch."""
    x, gy = head.inputs
    n_img, c, h, wd = x.type.shape
    o, _, kh, kw = head.type.shape
    oh, ow = gy.type.shape[2:]
    s_sp, ckk = oh * ow, c * kh * kw
    (sh, sw), (ph, pw), (dh, dw) = head.attrs["stride"], head.attrs["padding"], head.attrs["dilation"]
    zero = U.const(float32, 0)
    gy_t = scratch
    cols_t = b.gep(scratch, [U.i64(o * n_img * s_sp)])

    @_arity(2)
    def gather_gy(bb, r, ptrs):  # row r = (o, n): GY[o, n*S : (n+1)*S] = gy[n, o, :]
        src, dst = ptrs
        oo, nn = bb.udiv(r, U.i64(n_img)), bb.urem(r, U.i64(n_img))
        s_base = bb.mul(bb.add(bb.mul(nn, U.i64(o)), oo), U.i64(s_sp))
        d_base = bb.mul(bb.add(bb.mul(oo, U.i64(n_img)), nn), U.i64(s_sp))
        with U.loop(bb, U.i64(s_sp), name="s") as sp:
            v = bb.load(bb.gep(src, [bb.add(s_base, sp)], inbounds=True))
            bb.store(v, bb.gep(dst, [bb.add(d_base, sp)], inbounds=True))

    @_arity(2)
    def gather_cols(bb, r, ptrs):  # row r = (n, y, x): COLS_T[r, (c, ky, kx)]
        image, dst = ptrs
        E = Elemental(bb, mb.module, {})
        nn, y, xo = E.delinearize(r, (n_img, oh, ow))
        base = bb.mul(r, U.i64(ckk))
        with U.loop(bb, U.i64(c), name="c") as ch:
            plane = bb.mul(bb.add(bb.mul(nn, U.i64(c)), ch), U.i64(h * wd))
            with U.loop(bb, U.i64(kh), name="ky") as ky:
                row_ok, iyc = _tap(bb, E, y, ky, sh, dh, ph, h)
                with U.loop(bb, U.i64(kw), name="kx") as kx:
                    ok, ixc = _tap(bb, E, xo, kx, sw, dw, pw, wd)
                    v = bb.load(bb.gep(image, [bb.add(plane, bb.add(bb.mul(iyc, U.i64(wd)), ixc))], inbounds=True))
                    at = bb.add(base, bb.add(bb.mul(bb.add(bb.mul(ch, U.i64(kh)), ky), U.i64(kw)), kx))
                    bb.store(bb.select(bb.and_(row_ok, ok), v, zero), bb.gep(dst, [at], inbounds=True))

    fgy = _rows_fn(mb, f"{name}.gy", o * n_img, o * n_img * s_sp, gather_gy)
    fcols = _rows_fn(mb, f"{name}.cols", n_img * s_sp, n_img * s_sp * ckk, gather_cols)
    b.call(fgy, [leaves[gy], gy_t])
    b.call(fcols, [leaves[x], cols_t])
    null = ir.Constant(U.F32.as_pointer(), None)
    b.call(sgemm, [U.i64(o), U.i64(ckk), U.i64(n_img * s_sp), gy_t, U.i64(n_img * s_sp), cols_t, U.i64(ckk),
                   outp, U.i64(ckk), null])


def _conv_transpose(mb, b, name, sgemm, head, leaves, outp, scratch):
    """out[n] = col2im(W_T[Co*kh*kw, Ci] @ x[n][Ci, H*W]), the adjoint of im2col + gemm."""
    x, w = head.inputs
    n_img, ci, h, wd = x.type.shape
    _, co, kh, kw = w.type.shape
    oh, ow = head.type.shape[2:]
    rows, s_in = co * kh * kw, h * wd
    (sh, sw), (ph, pw), (dh, dw) = head.attrs["stride"], head.attrs["padding"], head.attrs["dilation"]
    w_t = scratch
    cols = b.gep(scratch, [U.i64(rows * ci)])

    @_arity(2)
    def transpose_w(bb, r, ptrs):  # W_T[r, ci] = w[ci, r]
        src, dst = ptrs
        with U.loop(bb, U.i64(ci), name="ci") as k:
            v = bb.load(bb.gep(src, [bb.add(bb.mul(k, U.i64(rows)), r)], inbounds=True))
            bb.store(v, bb.gep(dst, [bb.add(bb.mul(r, U.i64(ci)), k)], inbounds=True))

    @_arity(2)
    def col2im(bb, r, ptrs):  # row r = (co, y) of one image: sum the taps that land there
        src, dst = ptrs
        E = Elemental(bb, mb.module, {})
        ch, y = bb.udiv(r, U.i64(oh)), bb.urem(r, U.i64(oh))
        acc = U.entry_alloca(bb, U.F32, "acc")
        with U.loop(bb, U.i64(ow), name="x") as xo:
            bb.store(U.const(float32, 0), acc)
            with U.loop(bb, U.i64(kh), name="ky") as ky:
                ty = bb.sub(bb.add(y, U.i64(ph)), bb.mul(ky, U.i64(dh)))
                qy = bb.sdiv(ty, U.i64(sh))
                oky = bb.and_(bb.and_(bb.icmp_signed(">=", ty, U.i64(0)),
                                      bb.icmp_signed("==", bb.srem(ty, U.i64(sh)), U.i64(0))), E.in_range(qy, h))
                with U.loop(bb, U.i64(kw), name="kx") as kx:
                    tx = bb.sub(bb.add(xo, U.i64(pw)), bb.mul(kx, U.i64(dw)))
                    qx = bb.sdiv(tx, U.i64(sw))
                    okx = bb.and_(bb.and_(bb.icmp_signed(">=", tx, U.i64(0)),
                                          bb.icmp_signed("==", bb.srem(tx, U.i64(sw)), U.i64(0))), E.in_range(qx, wd))
                    row_of = bb.add(bb.mul(bb.add(bb.mul(ch, U.i64(kh)), ky), U.i64(kw)), kx)
                    at = bb.add(bb.mul(row_of, U.i64(s_in)), bb.add(bb.mul(E.clamp(qy, h), U.i64(wd)), E.clamp(qx, wd)))
                    v = bb.load(bb.gep(src, [at], inbounds=True))
                    v = bb.select(bb.and_(oky, okx), v, U.const(float32, 0))
                    bb.store(bb.fadd(bb.load(acc), v), acc)
            bb.store(bb.load(acc), bb.gep(dst, [bb.add(bb.mul(r, U.i64(ow)), xo)], inbounds=True))

    ftr = _rows_fn(mb, f"{name}.wt", rows, rows * ci, transpose_w)
    fc2i = _rows_fn(mb, f"{name}.col2im", co * oh, co * oh * ow * kh * kw, col2im)
    b.call(ftr, [leaves[w], w_t])
    null = ir.Constant(U.F32.as_pointer(), None)
    with U.loop(b, U.i64(n_img), name="img") as i:
        image = b.gep(leaves[x], [b.mul(i, U.i64(ci * s_in))])
        b.call(sgemm, [U.i64(rows), U.i64(s_in), U.i64(ci), w_t, U.i64(ci), image, U.i64(s_in), cols,
                       U.i64(s_in), null])
        b.call(fc2i, [cols, b.gep(outp, [b.mul(i, U.i64(co * oh * ow))])])


def _epilogue(mb, name, fn, head):
    """@name.epilogue(i8** args): out = epilogue(out), elementwise, reading the anchor from out."""
    from .program import elemental_rows

    out = fn.outputs[0]

    def leaves_for(b, ctx):
        leaves, outp = mb.pointers(b, ctx, fn)
        leaves[head] = outp  # the anchor's value is what step 1 left in the output buffer
        return leaves, outp

    rows, body = elemental_rows(mb, f"{name}.epi", fn, out, leaves_for)
    mb.dispatch(f"{name}.epilogue", body, rows, out.type.size)
