"""Native sorting: the argsort kernel, and the stable radix sort it shares with nms.

Every value becomes an unsigned integer key whose ascending order is the sort order the
reference (`np.argsort(kind="stable")`, lucid.ops.indexing) produces:
- floats: the bits of x, with -0.0 read as +0.0 (numpy compares them equal, so they must
  tie and keep their index order) and every NaN as the largest key (numpy puts NaNs last,
  all tied whatever their sign and payload); a negative float's bits are inverted, a
  positive one gets its sign bit set, so the keys order like the floats;
- ints: the sign bit flipped; bools: 0 and 1.
Descending order inverts every key: larger values first, NaN first of all, ties still in
index order, which is exactly the reference's flip-argsort-flip.

A stable LSD radix sort of (key, index) pairs then costs O(n) per row (`radix_sort`).
Rows of at most SMALL elements rank each element by counting the elements before it
instead (O(n^2), branch-free, vectorised): the radix sort's 256-bucket histograms would
cost more than the row. Rows run in parallel on the thread pool when the op is big.
Scratch: each chunk of rows mallocs its keys and index arrays once and reuses them row
after row, as nms does; the program's preallocated scratch buffer is only handed to the
anchored (gemm) kernels (lucid.codegen.program), not to whole-kernel lowerings.
"""
import llvmlite.ir as ir
import numpy as np

from ..dtypes import bool_
from . import irutil as U
from .elemental import Elemental
from .lowering import KERNELS

SMALL = 48  # rows this short are ranked directly (measured crossover, float32)
DIGIT = 8  # bits a radix pass sorts by
BUCKETS = 1 << DIGIT


def key_type(dt):
    """The unsigned integer type of the sort keys of `dt` (the width of its values)."""
    return ir.IntType(8 if dt is bool_ else 8 * dt.itemsize)


def sort_key(b, dt, x, descending):
    """The key of value `x` (of dtype `dt`): comparing keys unsigned gives the reference's
    order of the values (see the module docstring). Integer arithmetic only, so neither
    fast-math flags nor the FPU's denormal mode can change a key."""
    it = key_type(dt)
    if dt is bool_:
        key = b.zext(x, it)
    elif dt.is_float:
        sign = ir.Constant(it, 1 << (it.width - 1))
        u = b.bitcast(x, it)
        u = b.select(b.icmp_unsigned("==", u, sign), ir.Constant(it, 0), u)  # -0.0 is +0.0
        exp_mask = (1 << (it.width - 1)) - (1 << (23 if it.width == 32 else 52))
        nan = b.icmp_unsigned(">", b.and_(u, ir.Constant(it, (1 << (it.width - 1)) - 1)),
                              ir.Constant(it, exp_mask))
        ordered = b.select(b.icmp_unsigned(">=", u, sign), b.not_(u), b.or_(u, sign))
        key = b.select(nan, ir.Constant(it, (1 << it.width) - 1), ordered)  # +inf's key is less
    else:
        key = b.xor(x, ir.Constant(it, 1 << (it.width - 1)))
    return b.not_(key) if descending else key


def radix_scratch_bytes(n, it):
    """Bytes `radix_sort` needs for n pairs with keys of type `it` (see `radix_arrays`)."""
    return 2 * n * 8 + (it.width // DIGIT) * BUCKETS * 8 + 2 * n * (it.width // 8)


def radix_arrays(b, scratch, n, it):
    """Carve (keys, tmp_keys, idx, tmp_idx, counts) out of `radix_scratch_bytes` at
    `scratch` (an i8*): the i64 arrays first, so every array is aligned for its type."""
    idx = b.bitcast(scratch, U.I64.as_pointer())
    tmp_idx = b.gep(idx, [U.i64(n)], inbounds=True)
    counts = b.gep(idx, [U.i64(2 * n)], inbounds=True)
    keys = b.bitcast(b.gep(counts, [U.i64((it.width // DIGIT) * BUCKETS)], inbounds=True), it.as_pointer())
    return keys, b.gep(keys, [U.i64(n)], inbounds=True), idx, tmp_idx, counts


def radix_sort(b, n, keys, tmp_keys, idx, tmp_idx, counts, it):
    """Stable LSD radix sort of the n >= 1 (keys[i], idx[i]) pairs by key, DIGIT bits a
    pass. One sweep counts the digits of every pass (`counts`: passes x BUCKETS i64); a
    pass whose digit is the same for all n keys (the high bytes of small ints, of floats
    of one sign and magnitude) is skipped. The arrays swap roles after each pass run, so
    the result is in one pair or the other: returns the (keys, idx) pointers holding it."""
    passes = it.width // DIGIT
    count = U.i64(n)

    def digit(key, p):
        return b.zext(b.trunc(b.lshr(key, ir.Constant(it, DIGIT * p)), ir.IntType(DIGIT)), U.I64)

    def bucket(p, d):
        return b.gep(counts, [b.add(d, U.i64(p * BUCKETS))], inbounds=True)

    with U.loop(b, U.i64(passes * BUCKETS), name="zero") as d:
        b.store(U.i64(0), b.gep(counts, [d], inbounds=True))
    with U.loop(b, count, name="hist") as r:
        key = b.load(b.gep(keys, [r], inbounds=True))
        for p in range(passes):
            ptr = bucket(p, digit(key, p))
            b.store(b.add(b.load(ptr), U.i64(1)), ptr)
    slots = []
    for role, init in (("src_k", keys), ("dst_k", tmp_keys), ("src_i", idx), ("dst_i", tmp_idx)):
        slot = U.entry_alloca(b, init.type, role)
        b.store(init, slot)
        slots.append(slot)
    total = U.entry_alloca(b, U.I64, "total")
    first = b.load(keys)  # digit counts do not depend on the order: any key tells
    for p in range(passes):
        whole = b.icmp_unsigned("==", b.load(bucket(p, digit(first, p))), count)
        with b.if_then(b.not_(whole)):
            b.store(U.i64(0), total)
            with U.loop(b, U.i64(BUCKETS), name="scan") as d:  # counts -> first positions
                ptr = bucket(p, d)
                c = b.load(ptr)
                b.store(b.load(total), ptr)
                b.store(b.add(b.load(total), c), total)
            src_k, dst_k, src_i, dst_i = (b.load(s) for s in slots)
            with U.loop(b, count, name="scatter") as r:
                key = b.load(b.gep(src_k, [r], inbounds=True))
                ptr = bucket(p, digit(key, p))
                at = b.load(ptr)
                b.store(b.add(at, U.i64(1)), ptr)
                b.store(key, b.gep(dst_k, [at], inbounds=True))
                b.store(b.load(b.gep(src_i, [r], inbounds=True)), b.gep(dst_i, [at], inbounds=True))
            for slot, v in zip(slots, (dst_k, src_k, dst_i, src_i)):
                b.store(v, slot)
    return b.load(slots[0]), b.load(slots[2])


# ---- argsort -----------------------------------------------------------------------------

def _argsort_kernel(mb, name, fn):
    """argsort over each row along `axis` (rows: the other axes' positions): keys into
    scratch, then a radix sort (or ranking, for short rows), indices out along the axis."""
    node = fn.compute_nodes[0]
    src = node.inputs[0]
    axis, descending = node.attrs["axis"], node.attrs["descending"]
    shape, dt = src.type.shape, src.type.dtype
    n = shape[axis]  # argsort takes tensors of rank >= 1
    lead = shape[:axis] + shape[axis + 1:]
    stride = int(np.prod(shape[axis + 1:], dtype=np.int64))
    it = key_type(dt)
    body = ir.Function(mb.module, ir.FunctionType(U.VOID, [U.I8P, U.I64, U.I64]), f"{name}.rows")
    body.linkage = "internal"
    b = ir.IRBuilder(body.append_basic_block("entry"))
    ctx, begin, end = body.args
    leaves, outp = mb.pointers(b, ctx, fn)
    E = Elemental(b, mb.module, leaves)
    rows = int(np.prod(lead, dtype=np.int64))
    if n == 0 or rows == 0:
        b.ret_void()
        return rows, body

    def at(fixed, i):
        return tuple(fixed[:axis] + [i] + fixed[axis:])

    def out_ptr(base, pos):
        return b.gep(outp, [b.add(base, b.mul(pos, U.i64(stride)))], inbounds=True)

    if n <= SMALL:
        keys = b.gep(U.entry_alloca(b, ir.ArrayType(it, n), "keys"), [U.i64(0), U.i64(0)])
        rank = U.entry_alloca(b, U.I32, "rank")  # i32 counts: 8 lanes a vector
        scratch = None
    else:
        malloc = U.intrinsic(mb.module, "malloc", U.I8P, [U.I64])
        scratch = b.call(malloc, [U.i64(radix_scratch_bytes(n, it))])
        keys, tmp_keys, idx, tmp_idx, counts = radix_arrays(b, scratch, n, it)
    with U.loop(b, end, start=begin, name="row") as r:
        with E.scoped():
            fixed = list(E.delinearize(r, lead))
            base = E.linear(at(fixed, U.i64(0)), shape)
            with U.loop(b, U.i64(n), name="key") as i:
                with E.scoped():
                    b.store(sort_key(b, dt, E.value(src, at(fixed, i)), descending),
                            b.gep(keys, [i], inbounds=True))
                    if scratch is not None:
                        b.store(i, b.gep(idx, [i], inbounds=True))
            if scratch is None:
                # element i goes to #{j : key[j] < key[i], or key[j] == key[i] and j < i}
                with U.loop(b, U.i64(n), name="i") as i:
                    ki = b.load(b.gep(keys, [i], inbounds=True))
                    b.store(ir.Constant(U.I32, 0), rank)
                    with U.loop(b, U.i64(n), name="j") as j:
                        kj = b.load(b.gep(keys, [j], inbounds=True))
                        before = b.or_(b.icmp_unsigned("<", kj, ki),
                                       b.and_(b.icmp_unsigned("==", kj, ki), b.icmp_signed("<", j, i)))
                        b.store(b.add(b.load(rank), b.zext(before, U.I32)), rank)
                    b.store(i, out_ptr(base, b.zext(b.load(rank), U.I64)))
            else:
                _, order = radix_sort(b, n, keys, tmp_keys, idx, tmp_idx, counts, it)
                with U.loop(b, U.i64(n), name="out") as i:
                    b.store(b.load(b.gep(order, [i], inbounds=True)), out_ptr(base, i))
    if scratch is not None:
        free = U.intrinsic(mb.module, "free", U.VOID, [U.I8P])
        b.call(free, [scratch])
    b.ret_void()
    return rows, body


KERNELS["argsort"] = _argsort_kernel
