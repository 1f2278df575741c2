"""Native lowerings of the detection ops (lucid.ops.detection), registered into the
tables of lucid.codegen.lowering.

Elemental: box_iou, box_encode, box_decode and clip_boxes compute one output element
from a handful of input elements (a box component picks its axis and its side of the box
from its position along the last axis, branch-free). The arithmetic follows the numpy
references operation by operation, with no contraction into FMAs, so float32 results
agree to the last bit (exp and log aside).

Whole kernels:
- `nms`: a stable radix sort of the scores, then the greedy pass over the boxes gathered
  into score order; the suppression loop over the later boxes is branch-free and
  vectorises. One thread (the greedy pass is sequential).
- `roi_align`: the features transposed to NHWC in a scratch buffer, then each RoI (in
  parallel) accumulates its samples' four taps as contiguous channel runs. Gathering
  from NCHW instead touches a cache line per channel per tap, and was 5-20x slower.
- `roi_align_grad`: the same taps scattered into a zeroed NHWC accumulator by bands of
  image rows (each thread owns its rows: no races, and every position receives its terms
  in one fixed order whatever the thread count), then transposed into NCHW.
The sample geometry (`_Roi`, `_sample_axis`) is torchvision's, in the reference's order
of operations, shared by both RoI kernels.
"""
import llvmlite.ir as ir

from ..ops.detection import strict_threshold
from . import irutil as U
from .checks import record as record_index_error
from .elemental import Elemental, float_suffix
from .lowering import KERNELS, elemental
from . import lowering_sort as sort  # its names are read when a kernel is built (import cycle)


def _fmax(E, dt, a, c):
    """numpy's maximum (NaN propagates), as the references use it."""
    return E.call_intrinsic(f"llvm.maximum.{float_suffix(dt)}", U.value_type(dt), a, c)


def _fmin(E, dt, a, c):
    return E.call_intrinsic(f"llvm.minimum.{float_suffix(dt)}", U.value_type(dt), a, c)


def _component(E, node, k, idx, j):
    """Input k of `node` at the output index `idx` with its last index replaced by j."""
    return E.operand(node, k, idx[:-1] + (j if isinstance(j, ir.Value) else U.i64(j),))


def _axis_and_side(E, comp):
    """For a box component (0..3): its axis (0 for x, 1 for y) and whether it is the far side."""
    b = E.b
    return b.and_(comp, U.i64(1)), b.icmp_unsigned(">=", comp, U.i64(2))


def _by_axis(E, axis, dt, for_x, for_y):
    return E.b.select(E.b.icmp_unsigned("==", axis, U.i64(1)), U.const(dt, for_y), U.const(dt, for_x))


# ---- box geometry ------------------------------------------------------------------------

@elemental("box_iou")
def _box_iou(E, node, idx):
    a, c = node.inputs
    b, dt = E.b, node.type.dtype
    n, m = idx
    ax1, ay1, ax2, ay2 = (E.value(a, (n, U.i64(j))) for j in range(4))
    bx1, by1, bx2, by2 = (E.value(c, (m, U.i64(j))) for j in range(4))
    zero = U.const(dt, 0)
    w = _fmax(E, dt, b.fsub(_fmin(E, dt, ax2, bx2), _fmax(E, dt, ax1, bx1)), zero)
    h = _fmax(E, dt, b.fsub(_fmin(E, dt, ay2, by2), _fmax(E, dt, ay1, by1)), zero)
    inter = b.fmul(w, h)
    area_a = b.fmul(b.fsub(ax2, ax1), b.fsub(ay2, ay1))
    area_b = b.fmul(b.fsub(bx2, bx1), b.fsub(by2, by1))
    return b.fdiv(inter, b.fsub(b.fadd(area_a, area_b), inter))


@elemental("box_encode")
def _box_encode(E, node, idx):
    from .mathlib_glue import call_math

    b, dt = E.b, node.type.dtype
    wx, wy, ww, wh = node.attrs["weights"]
    axis, far = _axis_and_side(E, idx[-1])
    half = U.const(dt, 0.5)
    a_lo, a_hi = _component(E, node, 1, idx, axis), _component(E, node, 1, idx, b.add(axis, U.i64(2)))
    g_lo, g_hi = _component(E, node, 0, idx, axis), _component(E, node, 0, idx, b.add(axis, U.i64(2)))
    ew, gw = b.fsub(a_hi, a_lo), b.fsub(g_hi, g_lo)
    ec, gc = b.fadd(a_lo, b.fmul(half, ew)), b.fadd(g_lo, b.fmul(half, gw))
    center = b.fdiv(b.fmul(_by_axis(E, axis, dt, wx, wy), b.fsub(gc, ec)), ew)
    size = b.fmul(_by_axis(E, axis, dt, ww, wh), call_math(E, "log", dt, b.fdiv(gw, ew)))
    return b.select(far, size, center)


@elemental("box_decode")
def _box_decode(E, node, idx):
    from .mathlib_glue import call_math

    b, dt = E.b, node.type.dtype
    wx, wy, ww, wh = node.attrs["weights"]
    axis, far = _axis_and_side(E, idx[-1])
    half = U.const(dt, 0.5)
    lo, hi = _component(E, node, 1, idx, axis), _component(E, node, 1, idx, b.add(axis, U.i64(2)))
    d_c, d_s = _component(E, node, 0, idx, axis), _component(E, node, 0, idx, b.add(axis, U.i64(2)))
    size = b.fsub(hi, lo)
    ctr = b.fadd(lo, b.fmul(half, size))
    shift = b.fdiv(d_c, _by_axis(E, axis, dt, wx, wy))
    scale = _fmin(E, dt, b.fdiv(d_s, _by_axis(E, axis, dt, ww, wh)), U.const(dt, node.attrs["clip"]))
    pc = b.fadd(b.fmul(shift, size), ctr)
    ps = b.fmul(half, b.fmul(call_math(E, "exp", dt, scale), size))
    return b.select(far, b.fadd(pc, ps), b.fsub(pc, ps))


@elemental("clip_boxes")
def _clip_boxes(E, node, idx):
    b, dt = E.b, node.type.dtype
    axis, _ = _axis_and_side(E, idx[-1])
    bound = _by_axis(E, axis, dt, node.attrs["width"], node.attrs["height"])
    return _fmin(E, dt, _fmax(E, dt, E.operand(node, 0, idx), U.const(dt, 0)), bound)


# ---- roi_align ---------------------------------------------------------------------------

class _Roi:
    """The geometry of RoI k shared by roi_align and its adjoint: the batch index (clamped;
    `ok` says whether it was in range, which the kernels record: lucid.codegen.checks),
    the top-left corner and the bin sizes."""

    def __init__(self, E, rois, k, attrs, n, dt):
        b = E.b
        oh, ow = attrs["output_size"]
        bf = E.value(rois, (k, U.i64(0)))
        # Truncation towards zero lands in [0, n) exactly when -1 < bf < n (NaN: neither).
        self.ok = b.and_(b.fcmp_ordered(">", bf, U.const(dt, -1)), b.fcmp_ordered("<", bf, U.const(dt, n)))
        self.batch = b.fptosi(b.select(self.ok, bf, U.const(dt, 0)), U.I64)
        scale, off = U.const(dt, attrs["spatial_scale"]), U.const(dt, 0.5 if attrs["aligned"] else 0.0)
        x1, y1, x2, y2 = (b.fsub(b.fmul(E.value(rois, (k, U.i64(j))), scale), off) for j in range(1, 5))
        rw, rh = b.fsub(x2, x1), b.fsub(y2, y1)
        if not attrs["aligned"]:
            rw, rh = _fmax(E, dt, rw, U.const(dt, 1)), _fmax(E, dt, rh, U.const(dt, 1))
        self.x1, self.y1 = x1, y1
        self.bin_w, self.bin_h = b.fdiv(rw, U.const(dt, ow)), b.fdiv(rh, U.const(dt, oh))


def _sample_axis(E, start, bin_size, p, i, grid, size, dt):
    """Bilinear taps of sample i of bin p along one axis: (valid, low, high, frac low, frac high),
    in the reference's order of operations (see lucid.ops.detection._axis_samples)."""
    b = E.b
    t = U.value_type(dt)
    pos = b.fadd(b.fadd(start, b.fmul(b.sitofp(p, t), bin_size)),
                 b.fdiv(b.fmul(b.fadd(b.sitofp(i, t), U.const(dt, 0.5)), bin_size), U.const(dt, grid)))
    valid = b.and_(b.fcmp_ordered(">=", pos, U.const(dt, -1)), b.fcmp_ordered("<=", pos, U.const(dt, size)))
    pos = b.select(b.and_(valid, b.fcmp_ordered(">", pos, U.const(dt, 0))), pos, U.const(dt, 0))
    low = b.fptosi(pos, U.I64)
    end = b.icmp_signed(">=", low, U.i64(size - 1))
    last = U.i64(size - 1)
    high = b.select(end, last, b.add(low, U.i64(1)))
    low = b.select(end, last, low)
    frac = b.select(end, U.const(dt, 0), b.fsub(pos, b.sitofp(low, t)))
    return valid, low, high, b.fsub(U.const(dt, 1), frac), frac


def _rows_function(mb, name):
    body = ir.Function(mb.module, ir.FunctionType(U.VOID, [U.I8P, U.I64, U.I64]), f"{name}.rows")
    body.linkage = "internal"
    return body, ir.IRBuilder(body.append_basic_block("entry"))


class _Phases:
    """A kernel that runs in phases over an NHWC scratch buffer: its rows function runs on
    the calling thread, allocates the scratch, runs each phase (an internal function
    (ctx, begin, end) over its own rows, on the thread pool when the op is big) and frees
    the scratch. A phase's ctx points at {kernel args, scratch}."""

    def __init__(self, mb, name, fn, scratch_bytes, zeroed=False):
        from .program import PARALLEL_MIN_ELEMENTS

        self.mb, self.name, self.fn = mb, name, fn
        self.parallel = fn.outputs[0].type.size >= PARALLEL_MIN_ELEMENTS
        self.body, b = _rows_function(mb, name)
        self.b = b
        if zeroed:  # calloc: fresh pages are zero already, no pass over the buffer
            calloc = U.intrinsic(mb.module, "calloc", U.I8P, [U.I64, U.I64])
            self.scratch = b.call(calloc, [U.i64(max(scratch_bytes, 1)), U.i64(1)])
        else:
            malloc = U.intrinsic(mb.module, "malloc", U.I8P, [U.I64])
            self.scratch = b.call(malloc, [U.i64(max(scratch_bytes, 1))])
        pair = U.entry_alloca(b, ir.ArrayType(U.I8P, 2), "pair")
        b.store(self.body.args[0], b.gep(pair, [U.i64(0), U.i64(0)]))
        b.store(self.scratch, b.gep(pair, [U.i64(0), U.i64(1)]))
        self.ctx = b.bitcast(pair, U.I8P)
        self.count = 0

    def run(self, rows, build):
        """Add a phase over `rows` rows: build(b, E, leaves, out, scratch, row) emits one row."""
        f = ir.Function(self.mb.module, ir.FunctionType(U.VOID, [U.I8P, U.I64, U.I64]),
                        f"{self.name}.phase{self.count}")
        f.linkage = "internal"
        self.count += 1
        b = ir.IRBuilder(f.append_basic_block("entry"))
        pair = b.bitcast(f.args[0], U.I8P.as_pointer())
        leaves, outp = self.mb.pointers(b, b.load(b.gep(pair, [U.i64(0)])), self.fn)
        scratch = b.load(b.gep(pair, [U.i64(1)]))
        E = Elemental(b, self.mb.module, leaves)
        with U.loop(b, f.args[2], start=f.args[1], name="row") as r:
            with E.scoped():
                build(b, E, leaves, outp, scratch, r)
        b.ret_void()
        if self.parallel and rows > 1:
            self.b.call(self.mb.runtime_parallel_for(), [f, self.ctx, U.i64(rows)])
        else:
            self.b.call(f, [self.ctx, U.i64(0), U.i64(rows)])

    def finish(self):
        free = U.intrinsic(self.mb.module, "free", U.VOID, [U.I8P])
        self.b.call(free, [self.scratch])
        self.b.ret_void()
        return 1, self.body


def _nhwc(b, scratch, dt):
    return b.bitcast(scratch, U.memory_type(dt).as_pointer())


def _at(b, ptr, index):
    return b.gep(ptr, [index], inbounds=True)


def _roi_align_kernel(mb, name, fn):
    """The features are transposed to NHWC in the scratch buffer (rows: image rows), then
    each RoI (rows: RoIs) accumulates every bin's samples over a channel vector: the four
    taps of a sample are contiguous runs of C values, so the channel loop vectorises and
    every cache line read is used whole. torchvision's order of additions per sample."""
    node = fn.compute_nodes[0]
    x, rois = node.inputs
    dt = node.type.dtype
    n, channels, height, width = x.type.shape
    oh, ow = node.attrs["output_size"]
    grid = node.attrs["sampling_ratio"]
    ph_ = _Phases(mb, name, fn, n * height * width * channels * dt.itemsize)

    def transpose(b, E, leaves, outp, scratch, r):
        dst, src = _nhwc(b, scratch, dt), leaves[x]
        img, y = b.udiv(r, U.i64(height)), b.urem(r, U.i64(height))
        first = b.add(b.mul(b.mul(img, U.i64(channels)), U.i64(height * width)), b.mul(y, U.i64(width)))
        with U.loop(b, U.i64(width), name="x") as xx:
            out = b.mul(b.add(b.mul(r, U.i64(width)), xx), U.i64(channels))
            with U.loop(b, U.i64(channels), name="c") as c:
                b.store(b.load(_at(b, src, b.add(b.add(first, xx), b.mul(c, U.i64(height * width))))),
                        _at(b, dst, b.add(out, c)))

    def pool(b, E, leaves, outp, scratch, k):
        feats = _nhwc(b, scratch, dt)
        acc = b.gep(U.entry_alloca(b, ir.ArrayType(U.value_type(dt), channels), "accv"), [U.i64(0), U.i64(0)])
        roi = _Roi(E, rois, k, node.attrs, n, dt)
        record_index_error(E, node, b.not_(roi.ok))
        image = b.mul(roi.batch, U.i64(height))
        zero = U.const(dt, 0)
        with U.loop(b, U.i64(oh), name="ph") as ph:
            with U.loop(b, U.i64(ow), name="pw") as pw:
                with U.loop(b, U.i64(channels), name="z") as c:
                    b.store(zero, _at(b, acc, c))
                with U.loop(b, U.i64(grid), name="iy") as iy:
                    vy, yl, yh, hy, ly = _sample_axis(E, roi.y1, roi.bin_h, ph, iy, grid, height, dt)
                    with U.loop(b, U.i64(grid), name="ix") as ix:
                        vx, xl, xh, hx, lx = _sample_axis(E, roi.x1, roi.bin_w, pw, ix, grid, width, dt)
                        valid = b.and_(vy, vx)
                        taps = []
                        for yy, xx, wy, wx in ((yl, xl, hy, hx), (yl, xh, hy, lx), (yh, xl, ly, hx), (yh, xh, ly, lx)):
                            base = b.mul(b.add(b.mul(b.add(image, yy), U.i64(width)), xx), U.i64(channels))
                            taps.append((b.select(valid, b.fmul(wy, wx), zero), base))
                        with U.loop(b, U.i64(channels), name="c") as c:
                            v = None
                            for w, base in taps:
                                term = b.fmul(w, b.load(_at(b, feats, b.add(base, c))))
                                v = term if v is None else b.fadd(v, term)
                            ptr = _at(b, acc, c)
                            b.store(b.fadd(b.load(ptr), v), ptr)
                count = U.const(dt, grid * grid)
                with U.loop(b, U.i64(channels), name="w") as c:
                    at = b.add(b.mul(b.add(b.mul(b.add(b.mul(k, U.i64(channels)), c), U.i64(oh)), ph), U.i64(ow)), pw)
                    v = b.select(roi.ok, b.fdiv(b.load(_at(b, acc, c)), count), zero)
                    b.store(v, _at(b, outp, at))

    ph_.run(n * height, transpose)
    ph_.run(rois.type.shape[0], pool)
    return ph_.finish()


KERNELS["roi_align"] = _roi_align_kernel


_BAND = 16  # image rows per work unit of roi_align_grad


def _roi_align_grad_kernel(mb, name, fn):
    """The adjoint, in phases over a zeroed (calloc'ed) NHWC accumulator:

    1. g / count, transposed to [K, oh, ow, C] (rows: RoIs), so a bin's share of every
       channel is one contiguous run;
    2. the spread (rows: bands of _BAND image rows): a band visits every RoI's samples in
       order and adds the taps that fall in its rows, a whole channel run per tap. Each
       band writes its own rows only: no races, and every position receives its terms in
       the same order whatever the thread count;
    3. the accumulator transposed into the NCHW output (rows: image rows)."""
    node = fn.compute_nodes[0]
    g, rois = node.inputs
    dt = node.type.dtype
    n, channels, height, width = node.type.shape
    k_rois = rois.type.shape[0]
    oh, ow = node.attrs["output_size"]
    grid = node.attrs["sampling_ratio"]
    bands = -(-height // _BAND)
    acc_size = n * height * width * channels
    ph_ = _Phases(mb, name, fn, (acc_size + k_rois * oh * ow * channels) * dt.itemsize, zeroed=True)
    zero = U.const(dt, 0)

    def shares(b, E, leaves, outp, scratch, k):
        dst = b.gep(_nhwc(b, scratch, dt), [U.i64(acc_size)], inbounds=True)
        roi = _Roi(E, rois, k, node.attrs, n, dt)
        record_index_error(E, node, b.not_(roi.ok))
        with U.loop(b, U.i64(oh * ow), name="bin") as q:
            ph, pw = b.udiv(q, U.i64(ow)), b.urem(q, U.i64(ow))
            base = b.mul(b.add(b.mul(k, U.i64(oh * ow)), q), U.i64(channels))
            with U.loop(b, U.i64(channels), name="c") as c:
                with E.scoped():
                    v = b.fdiv(E.value(g, (k, c, ph, pw)), U.const(dt, grid * grid))
                    b.store(b.select(roi.ok, v, zero), _at(b, dst, b.add(base, c)))

    def spread(b, E, leaves, outp, scratch, unit):
        acc = _nhwc(b, scratch, dt)
        share = b.gep(acc, [U.i64(acc_size)], inbounds=True)
        image, band = b.udiv(unit, U.i64(bands)), b.urem(unit, U.i64(bands))
        y0 = b.mul(band, U.i64(_BAND))
        y1 = b.add(y0, U.i64(_BAND))

        def in_band(yy):
            return b.and_(b.icmp_signed(">=", yy, y0), b.icmp_signed("<", yy, y1))

        with U.loop(b, U.i64(k_rois), name="roi") as k:
            with E.scoped():
                roi = _Roi(E, rois, k, node.attrs, n, dt)
                with b.if_then(b.icmp_signed("==", roi.batch, image)):
                    row0 = b.mul(roi.batch, U.i64(height))
                    with U.loop(b, U.i64(oh), name="ph") as ph:
                        with U.loop(b, U.i64(grid), name="iy") as iy:
                            vy, yl, yh, hy, ly = _sample_axis(E, roi.y1, roi.bin_h, ph, iy, grid, height, dt)
                            with b.if_then(b.and_(vy, b.or_(in_band(yl), in_band(yh)))):
                                with U.loop(b, U.i64(ow), name="pw") as pw:
                                    src = b.mul(b.add(b.mul(b.add(b.mul(k, U.i64(oh)), ph), U.i64(ow)), pw),
                                                U.i64(channels))
                                    with U.loop(b, U.i64(grid), name="ix") as ix:
                                        vx, xl, xh, hx, lx = _sample_axis(E, roi.x1, roi.bin_w, pw, ix, grid,
                                                                          width, dt)
                                        for yy, wy in ((yl, hy), (yh, ly)):
                                            with b.if_then(b.and_(vx, in_band(yy))):
                                                for xx, wx in ((xl, hx), (xh, lx)):
                                                    w = b.fmul(wy, wx)
                                                    dst = b.mul(b.add(b.mul(b.add(row0, yy), U.i64(width)), xx),
                                                                U.i64(channels))
                                                    with U.loop(b, U.i64(channels), name="c") as c:
                                                        ptr = _at(b, acc, b.add(dst, c))
                                                        term = b.fmul(b.load(_at(b, share, b.add(src, c))), w)
                                                        b.store(b.fadd(b.load(ptr), term), ptr)

    def transpose(b, E, leaves, outp, scratch, r):
        acc = _nhwc(b, scratch, dt)
        img, y = b.udiv(r, U.i64(height)), b.urem(r, U.i64(height))
        first = b.add(b.mul(b.mul(img, U.i64(channels)), U.i64(height * width)), b.mul(y, U.i64(width)))
        with U.loop(b, U.i64(width), name="x") as xx:
            src = b.mul(b.add(b.mul(r, U.i64(width)), xx), U.i64(channels))
            with U.loop(b, U.i64(channels), name="c") as c:
                b.store(b.load(_at(b, acc, b.add(src, c))),
                        _at(b, outp, b.add(b.add(first, xx), b.mul(c, U.i64(height * width)))))

    ph_.run(k_rois, shares)
    ph_.run(n * bands, spread)
    ph_.run(n * height, transpose)
    return ph_.finish()


KERNELS["roi_align_grad"] = _roi_align_grad_kernel


# ---- nms ---------------------------------------------------------------------------------

def _nms_kernel(mb, name, fn):
    """Greedy NMS in one thread: radix-sort the scores (stable, O(n)), gather the boxes in
    score order into column arrays (malloc'ed), then for each box not yet dropped: keep
    it and drop every later box whose IoU with it exceeds the threshold (a branch-free,
    vectorised loop over the later boxes). The output starts as all -1."""
    node = fn.compute_nodes[0]
    boxes, scores = node.inputs
    dt = boxes.type.dtype
    t = U.value_type(dt)
    n, m = boxes.type.shape[0], node.type.shape[0]
    body, b = _rows_function(mb, name)
    ctx = body.args[0]
    leaves, outp = mb.pointers(b, ctx, fn)
    E = Elemental(b, mb.module, leaves)
    with U.loop(b, U.i64(m), name="init") as r:
        b.store(U.i64(-1), b.gep(outp, [r], inbounds=True))
    if n == 0 or m == 0:
        b.ret_void()
        return 1, body
    malloc = U.intrinsic(mb.module, "malloc", U.I8P, [U.I64])
    free = U.intrinsic(mb.module, "free", U.VOID, [U.I8P])
    size = dt.itemsize
    key_t = sort.key_type(dt)
    raw = [b.call(malloc, [U.i64(n * s)]) for s in (1, size, size, size, size, size)]
    raw.append(b.call(malloc, [U.i64(sort.radix_scratch_bytes(n, key_t))]))
    dropped = raw[0]
    x1s, y1s, x2s, y2s, areas = (b.bitcast(p, t.as_pointer()) for p in raw[1:6])

    # 1. the score order: argsort's stable radix sort of its descending keys (lowering_sort)
    keys, tmp_keys, start, tmp_order, counts = sort.radix_arrays(b, raw[6], n, key_t)
    with U.loop(b, U.i64(n), name="key") as i:
        with E.scoped():
            b.store(sort.sort_key(b, dt, E.value(scores, (i,)), True), b.gep(keys, [i], inbounds=True))
            b.store(i, b.gep(start, [i], inbounds=True))
    _, order = sort.radix_sort(b, n, keys, tmp_keys, start, tmp_order, counts, key_t)

    # 2. the boxes in score order, as columns, with their areas
    with U.loop(b, U.i64(n), name="g") as r:
        with E.scoped():
            src = b.load(b.gep(order, [r], inbounds=True))
            cols = [E.value(boxes, (src, U.i64(k))) for k in range(4)]
            for ptr, v in zip((x1s, y1s, x2s, y2s), cols):
                b.store(v, b.gep(ptr, [r], inbounds=True))
            area = b.fmul(b.fsub(cols[2], cols[0]), b.fsub(cols[3], cols[1]))
            b.store(area, b.gep(areas, [r], inbounds=True))
            b.store(ir.Constant(U.I8, 0), b.gep(dropped, [r], inbounds=True))

    # 3. the greedy pass
    thr = U.const(dt, float(strict_threshold(node.attrs["iou_threshold"], dt.np)))
    zero = U.const(dt, 0)
    kept = U.entry_alloca(b, U.I64, "kept")
    b.store(U.i64(0), kept)

    def col(ptr, r):
        return b.load(b.gep(ptr, [r], inbounds=True))

    with U.loop(b, U.i64(n), name="box") as i:
        alive = b.icmp_unsigned("==", col(dropped, i), ir.Constant(U.I8, 0))
        room = b.icmp_signed("<", b.load(kept), U.i64(m))
        with b.if_then(b.and_(alive, room)):
            count = b.load(kept)
            b.store(col(order, i), b.gep(outp, [count], inbounds=True))
            b.store(b.add(count, U.i64(1)), kept)
            ix1, iy1, ix2, iy2, ia = (col(p, i) for p in (x1s, y1s, x2s, y2s, areas))
            with U.loop(b, U.i64(n), start=b.add(i, U.i64(1)), name="later") as j:
                w = _fmax(E, dt, b.fsub(_fmin(E, dt, ix2, col(x2s, j)), _fmax(E, dt, ix1, col(x1s, j))), zero)
                h = _fmax(E, dt, b.fsub(_fmin(E, dt, iy2, col(y2s, j)), _fmax(E, dt, iy1, col(y1s, j))), zero)
                inter = b.fmul(w, h)
                iou = b.fdiv(inter, b.fsub(b.fadd(ia, col(areas, j)), inter))
                hit = b.zext(b.fcmp_ordered(">", iou, thr), U.I8)
                ptr = b.gep(dropped, [j], inbounds=True)
                b.store(b.or_(b.load(ptr), hit), ptr)
    for p in raw:
        b.call(free, [p])
    b.ret_void()
    return 1, body


KERNELS["nms"] = _nms_kernel
