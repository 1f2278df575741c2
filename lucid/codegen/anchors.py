"""Convolution and matmul kernels on the packed gemm, with their fused epilogues.

A fused group whose first op is a float32 `conv2d` (groups=1) or `matmul` is emitted as:

1. the anchor into the kernel's output buffer, through `lucid_sgemm` (lucid.codegen.gemm's
   packed, register-blocked micro-kernels, parallel on the thread pool): a matmul
   directly (batched over its leading dims); a convolution per image as
   W[O, C*kh*kw] @ cols[C*kh*kw, OH*OW], where `cols` is the image's patches gathered into
   the program's scratch buffer by a vectorised elemental loop (a 1x1, stride-1,
   unpadded convolution reads the image itself: no gather);
2. the epilogue (bias, activation, residual add, ...), if any, as one elemental pass over
   the output that reads the anchor's value back from the same buffer and overwrites it:
   each element is read, then written, at the same index.

Anything else in those ops (float64, grouped convolutions, an epilogue that changes the
shape) keeps the generic elemental lowering.
"""
import llvmlite.ir as ir
import numpy as np

from ..dtypes import float32
from . import irutil as U
from .elemental import Elemental

SGEMM = "lucid_sgemm"
_SGEMM_TYPE = ir.FunctionType(U.VOID, [U.I64, U.I64, U.I64, U.F32.as_pointer(), U.I64, U.F32.as_pointer(),
                                       U.I64, U.F32.as_pointer(), U.I64, U.F32.as_pointer()])


def ensure_gemm():
    """JIT the shared gemm into the engine once per process (kernels call it by name)."""
    from .gemm import gemm_ir
    from .llvm import jit

    jit(gemm_ir(SGEMM), "lucid-sgemm")


def anchor_of(fn):
    """The conv2d/matmul node that heads `fn`, when the gemm path applies; else None."""
    nodes = fn.compute_nodes
    if not nodes:
        return None
    head = nodes[0]
    out = fn.outputs[0]
    if head.op not in ("conv2d", "matmul") or head.type.dtype != float32 or head.type.shape != out.type.shape:
        return None
    if any(i.op != "input" for i in head.inputs):
        return None
    if head.op == "conv2d" and head.attrs["groups"] != 1:
        return None
    if head.op == "matmul" and head.inputs[1].type.ndim > 2 and head.inputs[0].type.shape[:-2] != \
            head.inputs[1].type.shape[:-2]:
        return None  # broadcast batches: the generic lowering handles them
    return head


def scratch_floats(fn):
    """How many floats of scratch the kernel of `fn` needs (patch matrices)."""
    head = anchor_of(fn)
    if head is None or head.op != "conv2d" or _is_pointwise_conv(head):
        return 0
    x, w = head.inputs
    _, c, kh, kw = w.type.shape
    oh, ow = head.type.shape[2:]
    return c * kh * kw * oh * ow


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
        _conv(mb, b, name, sgemm, head, leaves, outp, scratch)
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


def _im2col(mb, name, head):
    """@name.im2col(float* image, float* cols): cols[(c,ky,kx), (y,x)] = padded image taps."""
    module = mb.module
    x, w = head.inputs
    _, c, h, wd = x.type.shape
    _, _, kh, kw = w.type.shape
    oh, ow = head.type.shape[2:]
    (sh, sw), (ph, pw), (dh, dw) = head.attrs["stride"], head.attrs["padding"], head.attrs["dilation"]
    fptr = U.F32.as_pointer()
    rows = c * kh * kw
    body = ir.Function(module, ir.FunctionType(U.VOID, [U.I8P, U.I64, U.I64]), f"{name}.im2col.rows")
    body.linkage = "internal"
    bb = ir.IRBuilder(body.append_basic_block("entry"))
    ctx, begin, end = body.args
    pp = bb.bitcast(ctx, fptr.as_pointer())
    image, cols = bb.load(bb.gep(pp, [U.i64(0)])), bb.load(bb.gep(pp, [U.i64(1)]))
    E = Elemental(bb, module, {})
    with U.loop(bb, end, start=begin, name="r") as r:
        ch, ky, kx = E.delinearize(r, (c, kh, kw))
        with U.loop(bb, U.i64(oh), name="y") as y:
            iy = bb.sub(bb.add(bb.mul(y, U.i64(sh)), bb.mul(ky, U.i64(dh))), U.i64(ph))
            row_ok = E.in_range(iy, h)
            iyc = E.clamp(iy, h)
            src_row = bb.mul(bb.add(bb.mul(ch, U.i64(h)), iyc), U.i64(wd))
            dst_row = bb.mul(bb.add(bb.mul(r, U.i64(oh)), y), U.i64(ow))
            with U.loop(bb, U.i64(ow), name="x") as xo:
                ix = bb.sub(bb.add(bb.mul(xo, U.i64(sw)), bb.mul(kx, U.i64(dw))), U.i64(pw))
                ok = bb.and_(row_ok, E.in_range(ix, wd))
                v = bb.load(bb.gep(image, [bb.add(src_row, E.clamp(ix, wd))], inbounds=True))
                bb.store(bb.select(ok, v, U.const(float32, 0)), bb.gep(cols, [bb.add(dst_row, xo)], inbounds=True))
    bb.ret_void()
    gather = ir.Function(module, ir.FunctionType(U.VOID, [fptr, fptr]), f"{name}.im2col")
    gather.linkage = "internal"
    gb = ir.IRBuilder(gather.append_basic_block("entry"))
    pair = U.entry_alloca(gb, ir.ArrayType(fptr, 2), "pair")
    gb.store(gather.args[0], gb.gep(pair, [U.i64(0), U.i64(0)]))
    gb.store(gather.args[1], gb.gep(pair, [U.i64(0), U.i64(1)]))
    ctx = gb.bitcast(pair, U.I8P)
    if rows * oh * ow >= (1 << 14) and rows > 1:
        gb.call(mb.runtime_parallel_for(), [body, ctx, U.i64(rows)])
    else:
        gb.call(body, [ctx, U.i64(0), U.i64(rows)])
    gb.ret_void()
    return gather


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
