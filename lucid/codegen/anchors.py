"""Convolution and matmul kernels on the packed gemm, with their fused epilogues.

A fused group whose first op is a float32 `matmul`, or a `conv2d`, `conv2d_weight_grad`
or `conv_transpose2d` with groups=1, is emitted as:

1. the anchor into the kernel's output buffer, through `lucid_sgemm` (lucid.codegen.gemm's
   packed, register-blocked micro-kernels, parallel on the thread pool), with the data
   rearranged into the program's scratch buffer by parallel loops around it:
   - matmul: directly (batched over its leading dims);
   - conv2d, per image: W[O, C*kh*kw] @ cols[C*kh*kw, OH*OW], `cols` the image's patches
     (im2col, written as zero spans and strided copies straight into the gemm's packed-B
     layout; a 1x1, stride-1, unpadded convolution reads the image itself); a weight the
     program never updates comes packed once, at build time (`prepacked_input`,
     `pack_weight`); a batch that splits evenly over the threads runs whole images in
     parallel instead (see `_conv`);
   - conv2d_weight_grad, for the whole batch at once: GY[O, N*S] @ COLS_T[N*S, C*kh*kw];
   - conv_transpose2d (a convolution's input gradient), per image: col2im of
     W_T[Co*kh*kw, Ci] @ x[Ci, H*W], col2im summing the taps that land on each pixel;
2. the epilogue (bias, activation, residual add, ...), if any:
   - conv2d and matmul: inside the gemm's store. lucid_sgemm is built with a
     BlockEpilogue: the thread that finishes a block of C (its claimed rows by the columns
     of the B block, sized to stay in L2) calls the kernel's `.tile` function on it, which
     evaluates the fused epilogue elementally over that block, reading the anchor's value
     back from the output buffer and overwriting it: one pass over the output while it is
     in cache, and no fork-join of its own;
   - conv2d_weight_grad and conv_transpose2d: one elemental pass over the output after the
     anchor, reading and writing each element at the same index.

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
_TILE_FN = ir.FunctionType(U.VOID, [U.I8P, U.I64, U.I64, U.I64, U.I64])
_SGEMM_TYPE = ir.FunctionType(U.VOID, [U.I64, U.I64, U.I64, U.F32.as_pointer(), U.I64, U.F32.as_pointer(),
                                       U.I64, U.F32.as_pointer(), U.I64, U.F32.as_pointer(),
                                       _TILE_FN.as_pointer(), U.I8P])
# what a tile callback receives: the kernel's argument table and the image / batch index
_TILE_CTX = ir.LiteralStructType([U.I8P.as_pointer(), U.I64])
_FUSED_STORE = ("conv2d", "matmul")  # anchors whose epilogue runs inside the gemm's store
FLAT_BELOW = 16  # conv outputs narrower than this run their tile epilogue over flat columns


_gemm_loaded = []


def gemm_module_ir():
    """The IR of the shared gemm module that kernels call by name (`lucid_sgemm`): loaded
    into the JIT by `ensure_gemm`, linked into AOT libraries by lucid.codegen.aot."""
    from .gemm import BLOCK, gemm_ir

    return gemm_ir(SGEMM, BLOCK)


def ensure_gemm():
    """Load the shared gemm into the engine once per process, from the disk cache when it
    is there.

    The cache entry is named by the gemm's generator rather than by its IR text: the key
    already hashes the code generator's source and the target (cache.program_key), and
    the text is a function of those and of llvmlite, whose version is named too. Building
    the 350 KB of text only to hash it took 0.15 s of a ResNet-50 compile from the cache."""
    if _gemm_loaded:
        return
    import llvmlite

    from . import cache
    from .llvm import load_object, object_code

    name = f"shared gemm {SGEMM}, llvmlite {llvmlite.__version__}"
    load_object(cache.cached(name, lambda: object_code(gemm_module_ir(), "lucid-sgemm")), "lucid-sgemm")
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


def prepacked_input(fn):
    """The position of the input of `fn` a compiled program may give pre-packed: a conv2d
    anchor's weight (the gemm's A, W[O, C*kh*kw]), laid out once by `pack_weight` instead
    of by the gemm on every call. None for other kernels."""
    head = anchor_of(fn)
    if head is None or head.op != "conv2d":
        return None
    w = head.inputs[1]
    if head.inputs[0] is w or any(w in n.inputs for n in fn.compute_nodes if n is not head):
        return None  # the same buffer is read as a plain array too
    return fn.inputs.index(w)


def pack_weight(w):
    """A conv2d weight (O, C, kh, kw) in the gemm's packed-A layout (gemm.pack_a)."""
    from .gemm import pack_a

    w = np.asarray(w, dtype=np.float32)
    return pack_a(w.reshape(w.shape[0], -1))


def packed_weight_floats(shape):
    """The size of `pack_weight`'s result for a weight of this shape."""
    from .gemm import pack_a_floats

    return pack_a_floats(shape[0], int(np.prod(shape[1:])))


def scratch_floats(fn):
    """How many floats of scratch the kernel of `fn` needs (patch matrices, transposes)."""
    head = anchor_of(fn)
    if head is None or head.op == "matmul":
        return 0
    if head.op == "conv2d":
        if _is_pointwise_conv(head):
            return 0
        return _patch_floats(head) * min(head.type.shape[0], IMAGE_SLOTS)
    if head.op == "conv2d_weight_grad":
        x, gy = head.inputs
        n, o = gy.type.shape[:2]
        spatial = gy.type.shape[2] * gy.type.shape[3]
        o, c, kh, kw = head.type.shape
        return n * spatial * (o + c * kh * kw)
    x, w = head.inputs  # conv_transpose2d
    ci, co, kh, kw = w.type.shape
    return co * kh * kw * (ci + x.type.shape[2] * x.type.shape[3])


def _patch_floats(head):
    """Floats of one image's patch matrix in the packed-B layout: C*kh*kw rows of the
    output's pixels rounded up to whole 16-column panels (a multiple of 16 floats, so
    every image's slot of the scratch stays 64-byte aligned)."""
    from .gemm import NR

    _, c, kh, kw = head.inputs[1].type.shape
    oh, ow = head.type.shape[2:]
    return c * kh * kw * (-(-oh * ow // NR) * NR)


def _is_pointwise_conv(node):
    w = node.inputs[1]
    return (w.type.shape[2:] == (1, 1) and node.attrs["stride"] == (1, 1) and node.attrs["padding"] == (0, 0))


def sgemm_entries():
    """The names of the shared gemm's entry points (kernels call them; AOT links them)."""
    from .gemm import PACKED_ENTRIES

    return (SGEMM,) + tuple(SGEMM + sfx for sfx, _, _ in PACKED_ENTRIES)


def _sgemm_entry(module, a_packed, b_packed):
    """lucid_sgemm, or its entry taking A and / or B in the packed layouts (gemm.pack_a,
    gemm.pack_b)."""
    from .gemm import PACKED_ENTRIES

    suffix = next((sfx for sfx, ap, bp in PACKED_ENTRIES if (ap, bp) == (a_packed, b_packed)), "")
    return module.globals.get(SGEMM + suffix) or ir.Function(module, _SGEMM_TYPE, SGEMM + suffix)


def emit(mb, name, fn, scratch_index):
    """Define the kernel @name(i8** args) for an anchored group; returns nothing."""
    head = anchor_of(fn)
    module = mb.module
    # a conv2d reads its weight packed once at build time (pack_weight) when the program
    # gives it so, and its patches as the im2col writes them, packed (unless it reads the
    # image itself): the gemm packs neither again
    conv = head.op == "conv2d"
    sgemm = _sgemm_entry(module, int(conv and head.inputs[1] in mb.packed_inputs),
                         int(conv and not _is_pointwise_conv(head)))
    kernel = ir.Function(module, ir.FunctionType(U.VOID, [U.I8P.as_pointer()]), name)
    kernel.linkage = "internal"
    b = ir.IRBuilder(kernel.append_basic_block("entry"))
    ctx = b.bitcast(kernel.args[0], U.I8P)
    leaves, outp = mb.pointers(b, ctx, fn)
    fptr = U.F32.as_pointer()
    fused = fn.outputs[0] is not head and head.op in _FUSED_STORE
    tile = _Tile(b, kernel.args[0], _tile_fn(mb, name, fn, head) if fused else None)
    tile.fused_fn = fn
    if head.op == "matmul":
        _matmul(b, sgemm, head, leaves, outp, tile)
    else:
        scratch = b.bitcast(b.load(b.gep(kernel.args[0], [U.i64(scratch_index)])), fptr)
        {"conv2d": _conv, "conv2d_weight_grad": _weight_grad,
         "conv_transpose2d": _conv_transpose}[head.op](mb, b, name, sgemm, head, leaves, outp, scratch, tile)
    b.ret_void()
    if fn.outputs[0] is not head and not fused:
        _epilogue(mb, name, fn, head)
        b.position_before(b.block.instructions[-1])
        b.call(module.globals[f"{name}.epilogue"], [kernel.args[0]])


class _Tile:
    """The last two arguments of a lucid_sgemm call: the epilogue callback and its context
    (the kernel's argument table and the index of the image / matrix being computed), or
    two nulls when the anchor has no fused epilogue."""

    def __init__(self, b, args, fn):
        self.b, self.fn, self.table = b, fn, args
        if fn is not None:
            self.ctx = U.entry_alloca(b, _TILE_CTX, "tile_ctx")
            b.store(args, b.gep(self.ctx, [U.i64(0), ir.Constant(U.I32, 0)], inbounds=True))

    def args(self, index):
        """The call arguments while the gemm computes image / matrix `index` (an i64)."""
        if self.fn is None:
            return [ir.Constant(_TILE_FN.as_pointer(), None), ir.Constant(U.I8P, None)]
        self.b.store(index, self.b.gep(self.ctx, [U.i64(0), ir.Constant(U.I32, 1)], inbounds=True))
        return [self.fn, self.b.bitcast(self.ctx, U.I8P)]


def _tile_fn(mb, name, fn, head):
    """@name.tile(ctx, r0, r1, c0, c1): the fused epilogue over the block [r0, r1) x [c0, c1)
    of the gemm's C for one image (conv2d: C is [O, OH*OW]) or matrix (matmul: [M, N]),
    reading the anchor's value back from the output buffer and overwriting it in place.
    The innermost loop runs along an output row (x), which LLVM vectorises."""
    out = fn.outputs[0]
    f = ir.Function(mb.module, _TILE_FN, f"{name}.tile")
    f.linkage = "internal"
    b = ir.IRBuilder(f.append_basic_block("entry"))
    raw, r0, r1, c0, c1 = f.args
    sp = b.bitcast(raw, _TILE_CTX.as_pointer())
    table = b.load(b.gep(sp, [U.i64(0), ir.Constant(U.I32, 0)], inbounds=True))
    index = b.load(b.gep(sp, [U.i64(0), ir.Constant(U.I32, 1)], inbounds=True))
    leaves, outp = mb.pointers(b, b.bitcast(table, U.I8P), fn)
    leaves[head] = outp
    E = Elemental(b, mb.module, leaves)
    dtype = out.type.dtype

    def put(idx, flat):
        with E.scoped():
            U.store_elem(b, E.value(out, idx), b.gep(outp, [flat], inbounds=True), dtype)

    with b.if_then(b.icmp_signed("<", c0, c1)):
        if head.op == "conv2d" and out.type.shape[3] < FLAT_BELOW:
            # a narrow map (7x7): one loop over the flat spatial columns, long enough to
            # vectorise (LLVM folds (s / ow) * ow + s % ow back to s in the addresses)
            _, o_n, oh, ow = out.type.shape
            with U.loop(b, r1, start=r0, name="o") as o, E.scoped():
                base = b.mul(b.add(b.mul(index, U.i64(o_n)), o), U.i64(oh * ow))
                with U.loop(b, c1, start=c0, name="s") as sp:
                    put((index, o, b.udiv(sp, U.i64(ow)), b.urem(sp, U.i64(ow))), b.add(base, sp))
        elif head.op == "conv2d":
            _, o_n, oh, ow = out.type.shape
            y0, y1 = b.udiv(c0, U.i64(ow)), b.udiv(b.sub(c1, U.i64(1)), U.i64(ow))
            with U.loop(b, r1, start=r0, name="o") as o, E.scoped():
                with U.loop(b, b.add(y1, U.i64(1)), start=y0, name="y") as y, E.scoped():
                    xa = b.select(b.icmp_signed("==", y, y0), b.sub(c0, b.mul(y0, U.i64(ow))), U.i64(0))
                    xb = b.select(b.icmp_signed("==", y, y1), b.sub(c1, b.mul(y1, U.i64(ow))), U.i64(ow))
                    base = b.mul(b.add(b.mul(b.add(b.mul(index, U.i64(o_n)), o), U.i64(oh)), y), U.i64(ow))
                    with U.loop(b, xb, start=xa, name="x") as x:
                        put((index, o, y, x), b.add(base, x))
        else:
            m, n = out.type.shape[-2:]
            lead = E.delinearize(index, out.type.shape[:-2]) if out.type.ndim > 2 else ()
            with U.loop(b, r1, start=r0, name="r") as r, E.scoped():
                base = b.mul(b.add(b.mul(index, U.i64(m)), r), U.i64(n))
                with U.loop(b, c1, start=c0, name="c") as col:
                    put(tuple(lead) + (r, col), b.add(base, col))
    b.ret_void()
    return f


def _matmul(b, sgemm, head, leaves, outp, tile):
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
        b.call(sgemm, [U.i64(m), U.i64(n), U.i64(k), ap, U.i64(k), wp, U.i64(n), cp, U.i64(n), null]
               + tile.args(i))


IMAGE_SLOTS = 4  # images of a batch computed at once (each with its own im2col scratch)
_IMAGES_CTX = ir.LiteralStructType([U.I8P.as_pointer(), U.F32.as_pointer(), U.I64, U.I64])


def _conv(mb, b, name, sgemm, head, leaves, outp, scratch, tile):
    """Per image: im2col (unless 1x1 / stride 1) into the gemm's packed-B layout, then the
    gemm with the fused epilogue.

    A batch whose images split evenly over the threads (or has at least four per thread)
    runs whole images in parallel, each thread claiming images one at a time and running
    its im2col and gemm alone (the pool runs their nested parallel loops serially): one
    fork-join per convolution instead of three per image, and no split of small gemms.
    Otherwise images go one after another, each gemm parallel inside."""
    x, w = head.inputs
    n_img, c, h, wd = x.type.shape
    o, _, kh, kw = w.type.shape
    oh, ow = head.type.shape[2:]
    ckk, spatial = c * kh * kw, oh * ow
    per_image = 0 if _is_pointwise_conv(head) else _patch_floats(head)
    null = ir.Constant(U.F32.as_pointer(), None)
    gather = None if _is_pointwise_conv(head) else _im2col(mb, name, head)

    def one_image(bb, i, xp, wp, op, scratch_ptr, tl):
        image = bb.gep(xp, [bb.mul(i, U.i64(c * h * wd))])
        if gather is None:
            cols = image
        else:
            bb.call(gather, [image, scratch_ptr])
            cols = scratch_ptr
        cp = bb.gep(op, [bb.mul(i, U.i64(o * spatial))])
        bb.call(sgemm, [U.i64(o), U.i64(spatial), U.i64(ckk), wp, U.i64(ckk), cols, U.i64(spatial),
                        cp, U.i64(spatial), null] + tl.args(i))

    def serial():
        with U.loop(b, U.i64(n_img), name="img") as i:
            one_image(b, i, leaves[x], leaves[w], outp, scratch, tile)

    if n_img < 2:
        serial()
        return
    images = _images_fn(mb, name, head, tile, n_img, per_image, one_image)
    nt = b.sext(b.call(U.intrinsic(mb.module, "lucid_get_num_threads", U.I32, []), []), U.I64)
    even = b.icmp_signed("==", b.urem(U.i64(n_img), nt), U.i64(0))
    many = b.icmp_signed(">=", U.i64(n_img), b.mul(nt, U.i64(4)))
    by_image = b.and_(b.icmp_signed(">", nt, U.i64(1)), b.or_(even, many))
    with b.if_else(by_image) as (par, ser):
        with par:
            ctx = U.entry_alloca(b, _IMAGES_CTX, "images")
            for k, v in enumerate((tile.table, scratch, U.i64(0), U.i64(0))):
                b.store(v, b.gep(ctx, [U.i64(0), ir.Constant(U.I32, k)], inbounds=True))
            b.call(mb.runtime_parallel_for(), [images, b.bitcast(ctx, U.I8P), U.i64(n_img)])
        with ser:
            serial()


def _images_fn(mb, name, head, tile, n_img, per_image, one_image):
    """@name.images(ctx, begin, end): a pool task that takes a scratch slot (a task past the
    IMAGE_SLOTS-th returns at once), then claims images until none is left."""
    fn = tile.fused_fn
    f = ir.Function(mb.module, ir.FunctionType(U.VOID, [U.I8P, U.I64, U.I64]), f"{name}.images")
    f.linkage = "internal"
    b = ir.IRBuilder(f.append_basic_block("entry"))
    ctx = b.bitcast(f.args[0], _IMAGES_CTX.as_pointer())
    field = lambda k: b.gep(ctx, [U.i64(0), ir.Constant(U.I32, k)], inbounds=True)
    table = b.load(field(0))
    leaves, outp = mb.pointers(b, b.bitcast(table, U.I8P), fn)
    x, w = head.inputs
    tl = _Tile(b, table, tile.fn)
    slot = b.atomic_rmw("add", field(3), U.i64(1), "monotonic")
    with b.if_then(b.icmp_signed(">=", slot, U.i64(min(n_img, IMAGE_SLOTS)))):
        b.ret_void()
    scratch = b.gep(b.load(field(1)), [b.mul(slot, U.i64(per_image))])
    claim = f.append_basic_block("claim")
    work = f.append_basic_block("work")
    out = f.append_basic_block("out")
    b.branch(claim)
    b.position_at_end(claim)
    i = b.atomic_rmw("add", field(2), U.i64(1), "monotonic")
    b.cbranch(b.icmp_signed(">=", i, U.i64(n_img)), out, work)
    b.position_at_end(work)
    one_image(b, i, leaves[x], leaves[w], outp, scratch, tl)
    b.branch(claim)
    b.position_at_end(out)
    b.ret_void()
    return f


CLAIMS = 32  # rows of a parallel gather are claimed in about this many pieces


def _rows_fn(mb, name, rows, cost, emit_row, streaming=False):
    """@name(float* p0, float* p1, ...) running `emit_row(builder, row, pointers)` for every
    row in [0, rows), split over the thread pool when the work (`cost` elements) is big.

    Threads claim rows a piece at a time from a shared counter (as the gemm's tasks do)
    rather than taking fixed halves: a thread the OS preempts -- other processes on the
    machine -- then delays the others by one piece, not by its whole share.

    `streaming`: the rows fill a buffer that a parallel pass reads next. When the rows are
    split over threads, `emit_row(builder, row, pointers, True)` stores with streaming
    stores (irutil.stream_store) and each task ends with a fence; when one thread writes
    them all (a small job, or nested in the images of a batch run in parallel), it gets
    False: that thread reads the buffer back itself, from its own cache."""
    module = mb.module
    fptr = U.F32.as_pointer()
    arity = getattr(emit_row, "arity", 2)
    ctx_t = ir.LiteralStructType([ir.ArrayType(fptr, arity), U.I64, U.I64])
    grain = max(1, -(-rows // CLAIMS))
    body = ir.Function(module, ir.FunctionType(U.VOID, [U.I8P, U.I64, U.I64]), f"{name}.rows")
    body.linkage = "internal"
    b = ir.IRBuilder(body.append_basic_block("entry"))
    ctx = b.bitcast(body.args[0], ctx_t.as_pointer())
    ptrs = [b.load(b.gep(ctx, [U.i64(0), ir.Constant(U.I32, 0), U.i64(k)])) for k in range(arity)]
    counter = b.gep(ctx, [U.i64(0), ir.Constant(U.I32, 1)])

    def all_rows(*stream):
        with U.claims(b, counter, U.i64(grain), U.i64(rows)) as (start, stop, _):
            with U.loop(b, stop, start=start, name="row") as r:
                emit_row(b, r, ptrs, *stream)

    if streaming:
        split = b.load(b.gep(ctx, [U.i64(0), ir.Constant(U.I32, 2)]))
        with b.if_else(b.icmp_signed("!=", split, U.i64(0))) as (shared, alone):
            with shared:
                all_rows(True)
                U.stream_fence(b)
            with alone:
                all_rows(False)
    else:
        all_rows()
    b.ret_void()
    fn = ir.Function(module, ir.FunctionType(U.VOID, [fptr] * arity), name)
    fn.linkage = "internal"
    gb = ir.IRBuilder(fn.append_basic_block("entry"))
    table = U.entry_alloca(gb, ctx_t, "ptrs")
    for k in range(arity):
        gb.store(fn.args[k], gb.gep(table, [U.i64(0), ir.Constant(U.I32, 0), U.i64(k)]))
    gb.store(U.i64(0), gb.gep(table, [U.i64(0), ir.Constant(U.I32, 1)]))
    raw = gb.bitcast(table, U.I8P)
    parallel = cost >= (1 << 14) and rows > 1
    if streaming:
        split = U.i64(0)
        if parallel:
            threads = gb.call(U.intrinsic(module, "lucid_available_threads", U.I32, []), [])
            split = gb.zext(gb.icmp_signed(">", threads, ir.Constant(U.I32, 1)), U.I64)
        gb.store(split, gb.gep(table, [U.i64(0), ir.Constant(U.I32, 2)]))
    if parallel:
        gb.call(mb.runtime_parallel_for(), [body, raw, U.i64(rows)])
    else:
        gb.call(body, [raw, U.i64(0), U.i64(rows)])
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


def _span(b, k, stride, dilation, pad, size, out_size):
    """[lo, hi): the outputs o in [0, out_size) whose input o*stride + k*dilation - pad is
    inside [0, size), for the kernel tap k (an i64): the taps that read the image rather
    than the zero padding. Empty spans come out as lo == hi."""
    def ceil_div(n):  # ceil(n / stride) for a signed n (sdiv truncates towards zero)
        up = b.sdiv(b.add(n, U.i64(stride - 1)), U.i64(stride))
        return b.select(b.icmp_signed(">", n, U.i64(0)), up, b.sdiv(n, U.i64(stride)))

    def clip(v):
        v = b.select(b.icmp_signed("<", v, U.i64(0)), U.i64(0), v)
        return b.select(b.icmp_signed(">", v, U.i64(out_size)), U.i64(out_size), v)

    shift = b.sub(b.mul(k, U.i64(dilation)), U.i64(pad))  # input of output 0
    lo = clip(ceil_div(b.sub(U.i64(0), shift)))
    hi = clip(ceil_div(b.sub(U.i64(size), shift)))
    hi = b.select(b.icmp_signed("<", hi, lo), lo, hi)
    return lo, hi, shift


def _fill(b, dst, start, stop, value, name):
    with U.loop(b, stop, start=start, name=name) as i:
        b.store(value, b.gep(dst, [i], inbounds=True))


def _im2col(mb, name, head):
    """@name.im2col(float* image, float* cols): the patch matrix B[(c,ky,kx), (y,x)] (the
    padded image's taps) written in the gemm's packed-B layout (gemm.pack_b), so the gemm
    reads it as it lies instead of packing it again: one pass over memory instead of three.

    Each (c, ky, kx) row is first written to a row buffer on the thread's stack as spans:
    the rows y and columns x whose tap falls in the padding are zero-filled, the rest is a
    copy with the convolution's stride (a contiguous, vectorised copy at stride 1); the
    spans come from the tap's offset alone, so the inner loops carry no bounds tests. The
    row, still in L1, is then copied out 16 columns at a time to its place in each panel."""
    from .gemm import KC, NR

    x, w = head.inputs
    _, c, h, wd = x.type.shape
    _, _, kh, kw = w.type.shape
    oh, ow = head.type.shape[2:]
    (sh, sw), (ph, pw), (dh, dw) = head.attrs["stride"], head.attrs["padding"], head.attrs["dilation"]
    zero = U.const(float32, 0)
    rows, npan = c * kh * kw, -(-oh * ow // NR)
    panel_t = ir.VectorType(U.F32, NR)

    @_arity(2)
    def row(b, r, ptrs, stream):
        image, cols = ptrs
        E = Elemental(b, mb.module, {})
        ch, ky, kx = E.delinearize(r, (c, kh, kw))
        y_lo, y_hi, y_shift = _span(b, ky, sh, dh, ph, h, oh)
        x_lo, x_hi, x_shift = _span(b, kx, sw, dw, pw, wd, ow)
        buf = U.entry_alloca(b, ir.ArrayType(U.F32, npan * NR), "row")
        buf.align = 64
        out = b.bitcast(buf, U.F32.as_pointer())
        _fill(b, out, U.i64(oh * ow), U.i64(npan * NR), zero, "zp")  # the last panel's padding
        _fill(b, out, U.i64(0), b.mul(y_lo, U.i64(ow)), zero, "zt")
        plane = b.gep(image, [b.mul(ch, U.i64(h * wd))], inbounds=True)
        with U.loop(b, y_hi, start=y_lo, name="y") as y:
            iy = b.add(b.mul(y, U.i64(sh)), y_shift)
            src = b.gep(plane, [b.add(b.mul(iy, U.i64(wd)), x_shift)])  # + x*sw stays inside
            dst = b.gep(out, [b.mul(y, U.i64(ow))], inbounds=True)
            _fill(b, dst, U.i64(0), x_lo, zero, "zl")
            with U.loop(b, x_hi, start=x_lo, name="x") as xo:
                v = b.load(b.gep(src, [b.mul(xo, U.i64(sw))]))
                b.store(v, b.gep(dst, [xo], inbounds=True))
            _fill(b, dst, x_hi, U.i64(ow), zero, "zr")
        _fill(b, out, b.mul(y_hi, U.i64(ow)), U.i64(oh * ow), zero, "zb")
        # row r of K block pc: at cols + pc*Np + (r - pc)*16 in every panel of 16*kc floats
        pc = b.mul(b.udiv(r, U.i64(KC)), U.i64(KC))
        kc = b.sub(U.i64(rows), pc)
        kc = b.select(b.icmp_signed(">", kc, U.i64(KC)), U.i64(KC), kc)
        dst = b.gep(cols, [b.add(b.mul(pc, U.i64(npan * NR)), b.mul(b.sub(r, pc), U.i64(NR)))], inbounds=True)
        src = b.bitcast(out, panel_t.as_pointer())
        with U.loop(b, U.i64(npan), name="pan") as p:
            v = b.load(b.gep(src, [p], inbounds=True), align=64)
            d = b.bitcast(b.gep(dst, [b.mul(p, b.mul(kc, U.i64(NR)))], inbounds=True), panel_t.as_pointer())
            if stream:
                U.stream_store(b, v, d, 64)
            else:
                b.store(v, d, align=64)

    return _rows_fn(mb, f"{name}.im2col", rows, rows * oh * ow, row, streaming=True)


def _weight_grad(mb, b, name, sgemm, head, leaves, outp, scratch, tile):
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
                   outp, U.i64(ckk), null] + tile.args(U.i64(0)))


def _conv_transpose(mb, b, name, sgemm, head, leaves, outp, scratch, tile):
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
                       U.i64(s_in), null] + tile.args(i))
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
