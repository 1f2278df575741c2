"""Native lowerings, keyed by op name: how to compute one output element of each op.

`ELEMENTAL[op](emitter, node, idx)` returns the LLVM value of `node` at index `idx`,
asking the emitter for the input values it needs. Elementwise, broadcast, injective and
reduction ops are naturally elemental; so are the opaque ops here (matmul, convolutions,
cumsum, scatters; pooling and its gradients in lucid.codegen.lowering_pool), written as
reductions over the inputs an output element depends on. Ops that are not elemental at
all (argsort) have a whole-kernel lowering in `KERNELS`; a KERNELS entry may also decline
(return None) for shapes where the op's elemental rule serves (max_pool2d_grad's window
loop takes only tiling windows). A test checks that every op has one or the other.
"""
import math

import numpy as np

from ..dtypes import bool_
from ..errors import CompileError
from . import irutil as U
from . import mathlib
from .checks import record as record_index_error
from .elemental import float_suffix

ELEMENTAL = {}
KERNELS = {}


def elemental(*names):
    def deco(fn):
        for n in names:
            ELEMENTAL[n] = fn
        return fn

    return deco


def has_lowering(op_name):
    return op_name in ELEMENTAL or op_name in KERNELS


# ---- elementwise ------------------------------------------------------------------------------

def _unary_float(intrinsic_name):
    def rule(E, node, idx):
        x = E.operand(node, 0, idx)
        dt = node.type.dtype
        return E.call_intrinsic(f"llvm.{intrinsic_name}.{float_suffix(dt)}", U.value_type(dt), x)

    return rule


for _op, _intr in [("sqrt", "sqrt"), ("floor", "floor"), ("ceil", "ceil"), ("round", "roundeven"),
                   ("sin", "sin"), ("cos", "cos")]:
    ELEMENTAL[_op] = _unary_float(_intr)


def _math(name):
    """exp, log, tanh, sigmoid, erf, gelu: the vectorisable versions from lucid.codegen.mathlib."""

    def rule(E, node, idx):
        from .mathlib_glue import call_math

        return call_math(E, name, node.type.dtype, E.operand(node, 0, idx))

    return rule


MATH_OPS = mathlib.KINDS  # also what makes a loop body a long dependency chain
for _op in MATH_OPS:
    ELEMENTAL[_op] = _math(_op)


def _icmp(E, dt, op, a, c):
    """An integer comparison: bools (i1) compare unsigned (True is 1, not -1), ints signed."""
    return E.b.icmp_unsigned(op, a, c) if dt is bool_ else E.b.icmp_signed(op, a, c)


def _int_add(E, a, c, dt):
    """Integer addition; bools add as numpy does, saturating at True (logical or, not xor)."""
    return E.b.or_(a, c) if dt is bool_ else E.b.add(a, c)


@elemental("neg")
def _neg(E, node, idx):
    x = E.operand(node, 0, idx)
    return E.b.fneg(x) if node.type.dtype.is_float else E.b.neg(x)


@elemental("abs")
def _abs(E, node, idx):
    x = E.operand(node, 0, idx)
    dt = node.type.dtype
    if dt.is_float:
        return E.call_intrinsic(f"llvm.fabs.{float_suffix(dt)}", U.value_type(dt), x)
    return E.b.select(E.b.icmp_signed("<", x, U.const(dt, 0)), E.b.neg(x), x)


@elemental("relu")
def _relu(E, node, idx):
    x = E.operand(node, 0, idx)
    zero = U.const(node.type.dtype, 0)
    return E.b.select(E.b.fcmp_ordered("<", x, zero), zero, x)  # NaN stays NaN, as numpy


@elemental("sign")
def _sign(E, node, idx):
    b, x, dt = E.b, E.operand(node, 0, idx), node.type.dtype
    one, minus = U.const(dt, 1), U.const(dt, -1)
    if dt.is_float:
        pos, negv = b.fcmp_ordered(">", x, U.const(dt, 0)), b.fcmp_ordered("<", x, U.const(dt, 0))
    else:
        pos, negv = b.icmp_signed(">", x, U.const(dt, 0)), b.icmp_signed("<", x, U.const(dt, 0))
    return b.select(pos, one, b.select(negv, minus, x))


@elemental("logical_not")
def _not(E, node, idx):
    return E.b.xor(E.operand(node, 0, idx), U.const(bool_, 1))


@elemental("cast")
def _cast(E, node, idx):
    b, x = E.b, E.operand(node, 0, idx)
    src, dst = node.inputs[0].type.dtype, node.type.dtype
    if src == dst:
        return x
    t = U.value_type(dst)
    if dst is bool_:
        return b.fcmp_unordered("!=", x, U.const(src, 0)) if src.is_float else b.icmp_signed("!=", x, U.const(src, 0))
    if src is bool_:
        return b.uitofp(x, t) if dst.is_float else b.zext(x, t)
    if src.is_float and dst.is_float:
        return b.fpext(x, t) if dst.itemsize > src.itemsize else b.fptrunc(x, t)
    if src.is_float:
        return b.fptosi(x, t)
    if dst.is_float:
        return b.sitofp(x, t)
    return b.sext(x, t) if dst.itemsize > src.itemsize else b.trunc(x, t)


def _binary(float_fn, int_fn):
    def rule(E, node, idx):
        a, c = E.operand(node, 0, idx), E.operand(node, 1, idx)
        dt = node.inputs[0].type.dtype
        return float_fn(E, a, c, dt) if dt.is_float else int_fn(E, a, c, dt)

    return rule


# `contract`: a product feeding a sum may become one fma (x*w + b is one instruction, and
# rounding instead of two; results differ from the interpreter by float32 rounding only).
_CONTRACT = ["contract"]
ELEMENTAL["add"] = _binary(lambda E, a, c, dt: E.b.fadd(a, c, flags=_CONTRACT), _int_add)
ELEMENTAL["sub"] = _binary(lambda E, a, c, dt: E.b.fsub(a, c, flags=_CONTRACT), lambda E, a, c, dt: E.b.sub(a, c))
ELEMENTAL["mul"] = _binary(lambda E, a, c, dt: E.b.fmul(a, c, flags=_CONTRACT), lambda E, a, c, dt: E.b.mul(a, c))


def _int_div(E, a, c, dt):
    # numpy's true division then a cast back (truncation towards zero); x/0 gives 0 here.
    b = E.b
    safe = b.select(b.icmp_signed("==", c, U.const(dt, 0)), U.const(dt, 1), c)
    q = b.sdiv(a, safe)
    return b.select(b.icmp_signed("==", c, U.const(dt, 0)), U.const(dt, 0), q)


ELEMENTAL["div"] = _binary(lambda E, a, c, dt: E.b.fdiv(a, c), _int_div)


def _pow_float(E, a, c, dt):
    return E.call_intrinsic(f"llvm.pow.{float_suffix(dt)}", U.value_type(dt), a, c)


def _pow_int(E, a, c, dt):
    fa, fc = E.b.sitofp(a, U.F64), E.b.sitofp(c, U.F64)
    return E.b.fptosi(E.call_intrinsic("llvm.pow.f64", U.F64, fa, fc), U.value_type(dt))


ELEMENTAL["pow"] = _binary(_pow_float, _pow_int)


def _extreme(fname, signed_cmp):
    def float_fn(E, a, c, dt):  # llvm.maximum/minimum propagate NaN, as numpy does
        return E.call_intrinsic(f"llvm.{fname}.{float_suffix(dt)}", U.value_type(dt), a, c)

    def int_fn(E, a, c, dt):
        return E.b.select(_icmp(E, dt, signed_cmp, a, c), a, c)

    return _binary(float_fn, int_fn)


ELEMENTAL["maximum"] = _extreme("maximum", ">")
ELEMENTAL["minimum"] = _extreme("minimum", "<")


def _compare(op):
    def rule(E, node, idx):
        a, c = E.operand(node, 0, idx), E.operand(node, 1, idx)
        dt = node.inputs[0].type.dtype
        if dt.is_float:
            return E.b.fcmp_unordered(op, a, c) if op == "!=" else E.b.fcmp_ordered(op, a, c)
        return _icmp(E, dt, op, a, c)

    return rule


for _op, _cmp in [("eq", "=="), ("ne", "!="), ("lt", "<"), ("le", "<="), ("gt", ">"), ("ge", ">=")]:
    ELEMENTAL[_op] = _compare(_cmp)

ELEMENTAL["logical_and"] = lambda E, node, idx: E.b.and_(E.operand(node, 0, idx), E.operand(node, 1, idx))
ELEMENTAL["logical_or"] = lambda E, node, idx: E.b.or_(E.operand(node, 0, idx), E.operand(node, 1, idx))


@elemental("where")
def _where(E, node, idx):
    return E.b.select(E.operand(node, 0, idx), E.operand(node, 1, idx), E.operand(node, 2, idx))


# ---- injective --------------------------------------------------------------------------------

@elemental("broadcast_to")
def _broadcast_to(E, node, idx):
    return E.operand(node, 0, idx)


@elemental("reshape")
def _reshape(E, node, idx):
    src = node.inputs[0]
    out_shape, in_shape = node.type.shape, src.type.shape
    squeezed_out = [(i, n) for i, n in zip(idx, out_shape) if n != 1]
    if [n for _, n in squeezed_out] == [n for n in in_shape if n != 1]:
        it = iter(i for i, _ in squeezed_out)  # only size-1 dims added or removed
        return E.value(src, tuple(U.i64(0) if n == 1 else next(it) for n in in_shape))
    return E.value(src, E.delinearize(E.linear(idx, out_shape), in_shape))


@elemental("transpose")
def _transpose(E, node, idx):
    perm = node.attrs["perm"]
    src_idx = [None] * len(perm)
    for k, p in enumerate(perm):
        src_idx[p] = idx[k]
    return E.value(node.inputs[0], tuple(src_idx))


@elemental("slice")
def _slice(E, node, idx):
    b = E.b
    src_idx = tuple(i if (s == 1 and o == 0) else b.add(U.i64(o), b.mul(i, U.i64(s)))
                    for i, o, s in zip(idx, node.attrs["begin"], node.attrs["step"]))
    return E.value(node.inputs[0], src_idx)


@elemental("flip")
def _flip(E, node, idx):
    axes = node.attrs["axes"]
    shape = node.type.shape
    src_idx = tuple(E.b.sub(U.i64(shape[k] - 1), i) if k in axes else i for k, i in enumerate(idx))
    return E.value(node.inputs[0], src_idx)


@elemental("pad")
def _pad(E, node, idx):
    b, src = E.b, node.inputs[0]
    inside = None
    src_idx = []
    for i, (lo, _), n in zip(idx, node.attrs["pad_width"], src.type.shape):
        j = b.sub(i, U.i64(lo)) if lo else i
        ok = E.in_range(j, n)
        inside = ok if inside is None else b.and_(inside, ok)
        src_idx.append(E.clamp(j, n))
    v = E.value(src, tuple(src_idx))
    if inside is None:
        return v
    return b.select(inside, v, U.const(node.type.dtype, node.attrs["value"]))


@elemental("concatenate")
def _concatenate(E, node, idx):
    b, axis = E.b, node.attrs["axis"]
    out = None
    start = 0
    pieces = []
    for src in node.inputs:
        n = src.type.shape[axis]
        local = E.clamp(b.sub(idx[axis], U.i64(start)), n)
        src_idx = idx[:axis] + (local,) + idx[axis + 1:]
        pieces.append((start + n, E.value(src, src_idx)))
        start += n
    out = pieces[-1][1]
    for end, v in reversed(pieces[:-1]):
        out = b.select(b.icmp_signed("<", idx[axis], U.i64(end)), v, out)
    return out


@elemental("slice_scatter")
def _slice_scatter(E, node, idx):
    b, g = E.b, node.inputs[0]
    inside = None
    src_idx = []
    for i, o, s, n in zip(idx, node.attrs["begin"], node.attrs["step"], g.type.shape):
        d = b.sub(i, U.i64(o))
        q = b.sdiv(d, U.i64(s))
        ok = b.and_(b.icmp_signed("==", b.srem(d, U.i64(s)), U.i64(0)), E.in_range(q, n))
        inside = ok if inside is None else b.and_(inside, ok)
        src_idx.append(E.clamp(q, n))
    v = E.value(g, tuple(src_idx))
    return b.select(inside, v, U.const(node.type.dtype, 0)) if inside is not None else v


def _wrapped(E, j, n, node):
    """Index j of `node` (numpy's range [-n, n)) as a position in [0, n): clamped, so the
    access stays inside the buffer, and an out-of-range j recorded, so the call raises
    as eager mode does (lucid.codegen.checks)."""
    b = E.b
    if j.type != U.I64:
        j = b.sext(j, U.I64)
    j = b.select(b.icmp_signed("<", j, U.i64(0)), b.add(j, U.i64(n)), j)
    bad = b.icmp_unsigned(">=", j, U.i64(n))  # j < 0 is a huge unsigned number
    record_index_error(E, node, bad)
    return b.select(bad, U.i64(0), j)  # any position in range will do: the call raises


def _nothing_to_index(E, node):
    """An index into an empty axis: always out of range, and no element to load."""
    record_index_error(E, node, U.const(bool_, 1))
    return U.const(node.type.dtype, 0)


@elemental("take")
def _take(E, node, idx):
    x, ind = node.inputs
    axis = node.attrs["axis"]
    k = ind.type.ndim
    if x.type.shape[axis] == 0:
        return _nothing_to_index(E, node)
    j = _wrapped(E, E.value(ind, idx[axis:axis + k]), x.type.shape[axis], node)
    return E.value(x, idx[:axis] + (j,) + idx[axis + k:])


@elemental("gather")
def _gather(E, node, idx):
    x, ind = node.inputs
    axis = node.attrs["axis"]
    if x.type.shape[axis] == 0:
        return _nothing_to_index(E, node)
    j = _wrapped(E, E.value(ind, idx), x.type.shape[axis], node)
    return E.value(x, idx[:axis] + (j,) + idx[axis + 1:])


# ---- reductions -------------------------------------------------------------------------------

def _reduce_parts(node, idx, axes):
    """(extents of the reduced axes, a function from their indices to the input index)."""
    src = node.inputs[0]
    shape = src.type.shape
    keep = node.attrs.get("keepdims", False)
    outer = iter(idx)
    fixed = []
    for k in range(len(shape)):
        if k in axes:
            if keep:
                next(outer)
            fixed.append(None)
        else:
            fixed.append(next(outer))
    extents = [shape[k] for k in axes]

    def full(red):
        it = iter(red)
        return tuple(next(it) if f is None else f for f in fixed)

    return extents, full


def _merged_runs(shape, axes):
    """Runs of adjacent reduced axes as (extent, row-major stride of the run's last axis):
    a sum over (0, 2, 3) of an (N, C, H, W) buffer is one over N and one over H*W."""
    runs, last = [], None
    for k in sorted(axes):
        stride = int(np.prod(shape[k + 1:], dtype=np.int64))
        if last is not None and k == last + 1:
            runs[-1] = (runs[-1][0] * shape[k], stride)
        else:
            runs.append((shape[k], stride))
        last = k
    return runs


def _reducer(init_fn, combine_fn):
    def rule(E, node, idx):
        axes = tuple(node.attrs["axes"])
        dt = node.type.dtype
        extents, full = _reduce_parts(node, idx, axes)
        src = node.inputs[0]
        combine = lambda acc, v: combine_fn(E, acc, v, dt)  # noqa: E731
        runs = _merged_runs(src.type.shape, axes)
        if src in E.leaves and len(runs) < len(axes):
            # A buffer read over adjacent reduced axes is read over their merged run: the
            # inner loop is then long and contiguous (a bias gradient's sum over H*W rather
            # than over W alone), which the vectoriser widens.
            b = E.b
            base = E.linear(full([U.i64(0)] * len(axes)), src.type.shape)

            def body(r):
                off = base
                for i, (_, stride) in zip(r, runs):
                    off = b.add(off, i if stride == 1 else b.mul(i, U.i64(stride)))
                return U.load_elem(b, b.gep(E.leaves[src], [off], inbounds=True), src.type.dtype)

            return E.reduce([n for n, _ in runs], init_fn(dt), dt, body, combine)
        return E.reduce(extents, init_fn(dt), dt, lambda r: E.value(src, full(r)), combine)

    return rule


def _fast(E, op, acc, v):
    return getattr(E.b, op)(acc, v, flags=["reassoc", "contract"])


ELEMENTAL["sum"] = _reducer(lambda dt: U.const(dt, 0),
                            lambda E, a, v, dt: _fast(E, "fadd", a, v) if dt.is_float else _int_add(E, a, v, dt))
ELEMENTAL["prod"] = _reducer(lambda dt: U.const(dt, 1),
                             lambda E, a, v, dt: _fast(E, "fmul", a, v) if dt.is_float else E.b.mul(a, v))


def _extreme_init(dt, sign):
    if dt.is_float:
        return U.const(dt, sign * math.inf)
    if dt is bool_:
        return U.const(dt, 0 if sign < 0 else 1)
    bits = 8 * dt.itemsize - 1
    return U.const(dt, -(2 ** bits) if sign < 0 else 2 ** bits - 1)


def _extreme_combine(fname, cmp):
    def combine(E, a, v, dt):
        if dt.is_float:
            return E.call_intrinsic(f"llvm.{fname}.{float_suffix(dt)}", U.value_type(dt), a, v)
        return E.b.select(_icmp(E, dt, cmp, v, a), v, a)

    return combine


ELEMENTAL["max"] = _reducer(lambda dt: _extreme_init(dt, -1), _extreme_combine("maximum", ">"))
ELEMENTAL["min"] = _reducer(lambda dt: _extreme_init(dt, +1), _extreme_combine("minimum", "<"))


def _arg_extreme(better):
    def rule(E, node, idx):
        b = E.b
        src = node.inputs[0]
        axis = node.attrs["axis"]
        keep = node.attrs["keepdims"]
        shape = src.type.shape
        if not shape:
            return U.i64(0)
        outer = list(idx)
        if keep:
            outer.pop(axis)
        fixed = outer[:axis] + [None] + outer[axis:]
        dt = src.type.dtype
        best_slot = U.entry_alloca(b, U.value_type(dt), "best")
        arg_slot = U.entry_alloca(b, U.I64, "arg")
        b.store(E.value(src, tuple(U.i64(0) if f is None else f for f in fixed)), best_slot)
        b.store(U.i64(0), arg_slot)
        with U.loop(b, U.i64(shape[axis]), start=U.i64(1), name="a") as i:
            with E.scoped():
                v = E.value(src, tuple(i if f is None else f for f in fixed))
                best = b.load(best_slot)
                if dt.is_float:  # the first NaN wins, as numpy's argmax/argmin
                    take = b.and_(b.fcmp_ordered("==", best, best),
                                  b.or_(b.fcmp_unordered("!=", v, v), b.fcmp_ordered(better, v, best)))
                else:
                    take = _icmp(E, dt, better, v, best)
                b.store(b.select(take, v, best), best_slot)
                b.store(b.select(take, i, b.load(arg_slot)), arg_slot)
        return b.load(arg_slot)

    return rule


ELEMENTAL["argmax"] = _arg_extreme(">")
ELEMENTAL["argmin"] = _arg_extreme("<")


@elemental("cumsum")
def _cumsum(E, node, idx):
    src = node.inputs[0]
    if not src.type.shape:
        return E.value(src, idx)
    axis = node.attrs["axis"]
    b, dt = E.b, node.type.dtype
    slot = U.entry_alloca(b, U.value_type(dt))
    b.store(U.const(dt, 0), slot)
    with U.loop(b, b.add(idx[axis], U.i64(1)), name="c") as j:
        with E.scoped():
            v = E.value(src, idx[:axis] + (j,) + idx[axis + 1:])
            b.store(b.fadd(b.load(slot), v) if dt.is_float else _int_add(E, b.load(slot), v, dt), slot)
    return b.load(slot)


# ---- linear algebra and convolutions ------------------------------------------------------------

def _mac(E, dt):
    def combine(acc, v):
        return E.b.fadd(acc, v, flags=["reassoc", "contract"]) if dt.is_float else _int_add(E, acc, v, dt)

    return combine


def _mul(E, a, c, dt):
    return E.b.fmul(a, c, flags=["contract"]) if dt.is_float else E.b.mul(a, c)


@elemental("matmul")
def _matmul(E, node, idx):
    a, c = node.inputs
    dt = node.type.dtype
    out_shape = node.type.shape
    batch = idx[:-2]
    i, j = idx[-2], idx[-1]
    a_batch = E.broadcast_index(batch, out_shape[:-2], a.type.shape[:-2])
    c_batch = E.broadcast_index(batch, out_shape[:-2], c.type.shape[:-2])
    k = a.type.shape[-1]
    return E.reduce([k], U.const(dt, 0), dt,
                    lambda r: _mul(E, E.value(a, a_batch + (i, r[0])), E.value(c, c_batch + (r[0], j)), dt),
                    _mac(E, dt))


def _spatial(E, out_pos, kpos, stride, dilation, padding, size):
    """Input position out*stride + k*dilation - padding, whether it is inside, clamped."""
    b = E.b
    p = b.sub(b.add(b.mul(out_pos, U.i64(stride)), b.mul(kpos, U.i64(dilation))), U.i64(padding))
    return E.in_range(p, size), E.clamp(p, size)


@elemental("conv2d")
def _conv2d(E, node, idx):
    x, w = node.inputs
    b, dt = E.b, node.type.dtype
    n, o, y, xo = idx
    (sh, sw), (ph, pw), (dh, dw), groups = (node.attrs["stride"], node.attrs["padding"],
                                            node.attrs["dilation"], node.attrs["groups"])
    cg, kh, kw = w.type.shape[1:]
    og = node.type.shape[1] // groups
    H, W = x.type.shape[2:]
    base = b.mul(b.udiv(o, U.i64(og)), U.i64(cg))

    def body(r):
        c, ky, kx = r
        iny, yy = _spatial(E, y, ky, sh, dh, ph, H)
        inx, xx = _spatial(E, xo, kx, sw, dw, pw, W)
        v = _mul(E, E.value(x, (n, b.add(base, c), yy, xx)), E.value(w, (o, c, ky, kx)), dt)
        return b.select(b.and_(iny, inx), v, U.const(dt, 0))

    return E.reduce([cg, kh, kw], U.const(dt, 0), dt, body, _mac(E, dt))


@elemental("conv_transpose2d")
def _conv_transpose2d(E, node, idx):
    x, w = node.inputs
    b, dt = E.b, node.type.dtype
    n, o, y, xo = idx
    (sh, sw), (ph, pw), (dh, dw), groups = (node.attrs["stride"], node.attrs["padding"],
                                            node.attrs["dilation"], node.attrs["groups"])
    cin = x.type.shape[1]
    cing = cin // groups
    coutg, kh, kw = w.type.shape[1:]
    H, W = x.type.shape[2:]
    g = b.udiv(o, U.i64(coutg))
    oo = b.urem(o, U.i64(coutg))
    base = b.mul(g, U.i64(cing))

    def axis_pos(out_pos, k, s, d, p, size):
        t = b.sub(b.add(out_pos, U.i64(p)), b.mul(k, U.i64(d)))
        q = b.sdiv(t, U.i64(s))
        ok = b.and_(b.icmp_signed("==", b.srem(t, U.i64(s)), U.i64(0)), E.in_range(q, size))
        ok = b.and_(ok, b.icmp_signed(">=", t, U.i64(0)))
        return ok, E.clamp(q, size)

    def body(r):
        c, ky, kx = r
        oky, iy = axis_pos(y, ky, sh, dh, ph, H)
        okx, ix = axis_pos(xo, kx, sw, dw, pw, W)
        cc = b.add(base, c)
        v = _mul(E, E.value(x, (n, cc, iy, ix)), E.value(w, (cc, oo, ky, kx)), dt)
        return b.select(b.and_(oky, okx), v, U.const(dt, 0))

    return E.reduce([cing, kh, kw], U.const(dt, 0), dt, body, _mac(E, dt))


@elemental("conv2d_weight_grad")
def _conv2d_weight_grad(E, node, idx):
    x, gy = node.inputs
    b, dt = E.b, node.type.dtype
    o, c, ky, kx = idx
    (sh, sw), (ph, pw), (dh, dw), groups = (node.attrs["stride"], node.attrs["padding"],
                                            node.attrs["dilation"], node.attrs["groups"])
    cg = node.type.shape[1]
    og = node.type.shape[0] // groups
    N, _, HO, WO = gy.type.shape
    H, W = x.type.shape[2:]
    cc = b.add(b.mul(b.udiv(o, U.i64(og)), U.i64(cg)), c)

    def body(r):
        n, y, xo = r
        iny, yy = _spatial(E, y, ky, sh, dh, ph, H)
        inx, xx = _spatial(E, xo, kx, sw, dw, pw, W)
        v = _mul(E, E.value(gy, (n, o, y, xo)), E.value(x, (n, cc, yy, xx)), dt)
        return b.select(b.and_(iny, inx), v, U.const(dt, 0))

    return E.reduce([N, HO, WO], U.const(dt, 0), dt, body, _mac(E, dt))


# ---- scatters -----------------------------------------------------------------------------------

@elemental("take_add")
def _take_add(E, node, idx):
    g, ind = node.inputs
    b, dt = E.b, node.type.dtype
    axis, size = node.attrs["axis"], node.attrs["size"]
    k = ind.type.ndim

    def body(r):
        j = _wrapped(E, E.value(ind, tuple(r)), size, node)
        v = E.value(g, idx[:axis] + tuple(r) + idx[axis + 1:])
        return b.select(b.icmp_signed("==", j, idx[axis]), v, U.const(dt, 0))

    return E.reduce(list(ind.type.shape), U.const(dt, 0), dt, body, _mac(E, dt)) if k else \
        b.select(b.icmp_signed("==", _wrapped(E, E.value(ind, ()), size, node), idx[axis]),
                 E.value(g, idx[:axis] + idx[axis + 1:]), U.const(dt, 0))


@elemental("scatter_add")
def _scatter_add(E, node, idx):
    base, ind, src = node.inputs
    b, dt = E.b, node.type.dtype
    axis = node.attrs["axis"]
    n = base.type.shape[axis]
    inside = None
    for k, (i, m) in enumerate(zip(idx, ind.type.shape)):
        if k != axis and m < node.type.shape[k]:
            ok = b.icmp_signed("<", i, U.i64(m))
            inside = ok if inside is None else b.and_(inside, ok)
    pos = tuple(idx[k] if k != axis else None for k in range(len(idx)))
    clamped = tuple(E.clamp(i, m) if p is not None else None for k, (i, m, p) in
                    enumerate(zip(idx, ind.type.shape, pos)))

    def body(r):
        at = tuple(r[0] if c is None else c for c in clamped)
        j = _wrapped(E, E.value(ind, at), n, node)
        return b.select(b.icmp_signed("==", j, idx[axis]), E.value(src, at), U.const(dt, 0))

    added = E.reduce([ind.type.shape[axis]], U.const(dt, 0), dt, body, _mac(E, dt))
    if inside is not None:
        added = b.select(inside, added, U.const(dt, 0))
    v = E.value(base, idx)
    return b.fadd(v, added) if dt.is_float else b.add(v, added)


REDUCTIONS = frozenset({"sum", "prod", "max", "min", "argmax", "argmin"})


def row_reductions(fn):
    """The reductions in function graph `fn`: values a row loop hoists and computes once
    per row (see Elemental.scoped), which splitting a row into blocks would repeat."""
    return [n for n in fn.compute_nodes if n.op in REDUCTIONS]


def lowering_for(node):
    if node.op in ELEMENTAL or node.op in KERNELS:
        return True
    raise CompileError(f"no native lowering for op {node.op!r}")


from . import lowering_detection  # noqa: E402,F401
from . import lowering_pool  # noqa: E402,F401  (pooling and its gradients)
from . import lowering_random  # noqa: E402,F401
from . import lowering_sort  # noqa: E402,F401
