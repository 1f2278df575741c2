"""float32 matrix multiply as LLVM IR: packed panels, a 6x16 register-blocked micro-kernel,
and a fused epilogue applied once per output element after the whole K reduction.

Why this shape (the BLIS / oneDNN recipe): a naive triple loop is memory bound; blocking
the three loops so each operand is reused from the cache level it lives in makes it
compute bound, and packing the blocks into contiguous, aligned panels makes the innermost
loop two aligned vector loads of B, six broadcasts of A and twelve FMAs per step of k.

    for jc in 0..N step NC:                 B block  KC x NC  (packed, shared, L3)
      for pc in 0..K step KC:
        pack B[pc:pc+kc, jc:jc+nc]           parallel over 16-column panels
        for ic in 0..M step MC:              parallel over 6-row panels (or column panels)
          pack A[ic:ic+mc, pc:pc+kc]         A block  MC x KC  (per thread, on its stack, L2)
          for jr in 0..nc step NR:           B micro-panel  KC x 16  (L1)
            for ir in 0..mc step MR:         C tile 6 x 16 in 12 ymm accumulators
              micro_kernel(kc, ...)          C (+)= A_panel @ B_panel, epilogue when pc is last

Block sizes for this CPU (AMD EPYC / znver1, 2 cores: L1d 32 KiB 8-way, L2 512 KiB private,
L3 8 MiB shared; AVX2 + FMA, 16 ymm registers):
- MR x NR = 6 x 16: 12 accumulators + 2 B vectors + 1 broadcast = 15 of the 16 ymm registers;
  per k 12 FMAs against 8 loads, inside the two-loads-per-cycle budget.
- KC = 256: one B micro-panel (256 x 16 x 4 B = 16 KiB) plus one A micro-panel
  (256 x 6 x 4 B = 6 KiB) stay in the 32 KiB L1 while the kernel runs; the C tile is read
  and written once per 256 steps of k.
- MC = 144 (a multiple of MR): the packed A block is 144 x 256 x 4 B = 144 KiB, under a
  third of the 512 KiB L2, leaving room for the B micro-panels streaming through.
- NC = 4080 (a multiple of NR): the packed B block is at most 256 x 4080 x 4 B ~ 4 MiB,
  half of the shared 8 MiB L3, which both cores read.

Whole mode (N <= NC and the packed B at most WHOLE_B_BYTES = 2 MiB: most of a ResNet's
convolutions, all of those at 14x14 and 7x7): all of B is packed at once (parallel over K blocks x column
panels), then ONE parallel pass over C runs the pc loop inside each claim (for ic: for pc:
pack A, for jr, for ir). Two fork-joins per product instead of two per K block (a 3x3
convolution at 7x7 has 18 K blocks), and a claim's C rows are final when it ends, so a
block epilogue can run on them at once (BlockEpilogue).

Edge panels: a panel of at most 8 columns runs a 6x8 kernel (half the FMAs of the 6x16
one), a panel of one column a 6x1 kernel (one FMA per k over the six rows): 7x7 feature
maps have 49 = 3*16 + 1 columns. A is packed 8 steps of k at a time (six row vectors
transposed in registers) rather than element by element.

Few rows (M <= DIRECT_M = 6, e.g. a batch-1 `x @ W`): no packing and no 6x16 tile (which
would waste most of its FMAs); B is streamed row by row instead, each element read once
(see `row_kernel`), with claims of column chunks spread over the threads.

Small products (< PARALLEL_MIN_FLOPS) run in the calling thread: a fork-join costs more.

Scratch memory: each thread packs its A block into a 144 KiB, 64-byte aligned buffer on its
own stack (alloca in the task function): no allocation, and the pages stay resident, so no
page-fault churn. The packed B block lives in a buffer owned by the module (B_BUFFERS
private globals, each grown with aligned_alloc to the largest block seen, at most ~4 MiB,
never freed); a call claims the first free one with a compare-and-swap, so gemms running at
once on the pool's threads (a batch's images in parallel) each reuse one, and only a call
that finds all of them claimed allocates and frees its own (a fresh mapping per call costs
page faults and, when unmapped, a TLB shootdown of every core).

Threading: with `parallel=True` the module declares the runtime's `lucid_parallel_for` and
`lucid_available_threads` (defined once in the engine, see runtime.py). B is packed in
parallel over its 16-column panels (claimed about PACK_CLAIMS at a time from a shared
counter, so a thread the OS preempts holds up the others by one piece, not by half the
panels); the macro-kernel is split over 6-row panels of C, claimed in ranges (about eight
per thread) by the threads (each thread packs its own A rows), or, when C has too few row
panels for an even split (fewer than 4 per thread, and fewer than its column panels), or
when A fits one MC block and C has many column panels (16 per thread or more), over
16-column panels (each thread then packs the few rows of A itself, so there is one claim
per thread, and, A being one MC block, packs each B panel it computes into an L1 buffer
just before its micro-kernels run: no packing pass, and no packed B written to memory and
read back). The packing pass, when it runs on several threads, writes its panels with
streaming stores (irutil.stream_store): on two cores, ordinary stores would first take
each line of the buffer from the other core, which read it in the previous call. A call
that runs serially (nested in a parallel loop: `lucid_available_threads` is then 1) makes
one claim. The pool runs a nested call serially, so a gemm called from inside a parallel
loop is simply single-threaded.
`parallel=False` calls the same task functions directly over [0, n): such a module needs
no runtime at all.

Entry points of the module built by `gemm_ir(name, epilogue, parallel, trans_a, trans_b)`
(pointers are float*, strides in elements; matrices row-major with unit column stride,
except that with trans_a / trans_b the operand is passed as its transpose: A as a K x M,
B as an N x K row-major matrix, e.g. a linear layer's weight for `x @ W.T`):

    void @name(i64 M, i64 N, i64 K, float* A, i64 lda, float* B, i64 ldb,
               float* C, i64 ldc, float* bias_or_null, <epilogue params>...)
        C[M x N] = epilogue(A[M x K] @ B[K x N]); K = 0 gives epilogue(0).
        `bias` is read only by epilogues that use it (it may be null otherwise).
        With a BlockEpilogue the epilogue params are (tile_fn, tile_ctx): a native callback
        run on each finished block of C (see BlockEpilogue; lucid_sgemm, the gemm compiled
        graphs call, is built this way).
    void @name.packed_a / @name.packed_b / @name.packed_ab(<the same arguments>)
        The same product with A given in `pack_a`'s panel layout (lda unused; trans_a
        does not apply) and / or B in `pack_b`'s (ldb unused; 64-byte aligned): each block
        is read where it lies instead of being packed by the call, and the few-rows path
        is not taken. Compiled programs pass convolutions' constant weights packed once, at
        build time, and write their patch matrices in the packed-B layout directly
        (lucid.codegen.anchors).
    void @name.batched(i64 batch, i64 M, i64 N, i64 K, float* A, i64 strideA, i64 lda,
                       float* B, i64 strideB, i64 ldb, float* C, i64 strideC, i64 ldc,
                       float* bias_or_null, <epilogue params>...)
        The same for `batch` matrices at the given batch strides (0 broadcasts an operand).
        Epilogue arguments are shared by every matrix of the batch; when they differ per
        matrix (a batched residual), the caller loops over @name instead. Small products
        (< SMALL_BATCH_FLOPS) run one matrix per thread (parallel over the batch); larger
        ones one after another, each parallel inside.
"""
import ctypes

import llvmlite.ir as ir
import numpy as np

from ..errors import CompileError, DTypeError, ShapeError
from .irutil import claims, splat, stream_fence, stream_store

MR, NR = 6, 16
KC, MC, NC = 256, 144, 4080
VW = 8                       # floats per ymm vector
ALIGN = 64                   # bytes, for packed panels
UNROLL = 4                   # k steps per trip of the micro-kernel's main loop
SMALL_BATCH_FLOPS = 2 * 96 ** 3   # below this per matrix, a batch is split across threads
PARALLEL_MIN_FLOPS = 2 * 64 ** 3  # below this a product runs in the calling thread
DIRECT_M = MR                     # up to this many rows: no packing (see row_kernel)
ROW_GROUP, ROW_CHUNK = 64, 512    # columns: unit of work and largest claim of row_kernel
WHOLE_B_BYTES = 2 << 20           # a packed B up to this size is packed whole (see driver)
EPI_BLOCK_BYTES = 192 << 10       # C rows a claim covers when a BlockEpilogue follows it
PACK_CLAIMS = 16                  # B panels are packed in about this many claimed pieces
B_BUFFERS = 4                     # packed-B buffers a module keeps for concurrent calls
PACKED_ENTRIES = ((".packed_a", 1, 0), (".packed_b", 0, 1), (".packed_ab", 1, 1))  # (suffix, A, B)

F32 = ir.FloatType()
I1 = ir.IntType(1)
I8 = ir.IntType(8)
I32 = ir.IntType(32)
I64 = ir.IntType(64)
VOID = ir.VoidType()
F32P = F32.as_pointer()
I8P = I8.as_pointer()
V8 = ir.VectorType(F32, VW)
V8P = V8.as_pointer()
TASK = ir.FunctionType(VOID, [I8P, I64, I64])

_BASE_PARAMS = (("M", I64), ("N", I64), ("K", I64), ("A", F32P), ("lda", I64),
                ("B", F32P), ("ldb", I64), ("C", F32P), ("ldc", I64), ("bias", F32P))


def _declare(module, name, ret, args):
    """The function `name` of the module, declared with this signature if it is new."""
    try:
        return module.get_global(name)
    except KeyError:
        return ir.Function(module, ir.FunctionType(ret, args), name)


def _i64(n):
    return n if isinstance(n, ir.Value) else ir.Constant(I64, int(n))


# ----------------------------------------------------------------------------- epilogues

class EpilogueContext:
    """What an epilogue's emitter sees: the builder, the kernel's arguments and the width.

    `width` is 8 when the value is a `<8 x float>` holding columns col..col+7 of one row,
    and 1 when it is a single float (edge tiles); `load(ptr, index)` reads a value of the
    same width from `ptr + index` (index in elements), `splat(x)` widens a float."""

    def __init__(self, builder, args, width):
        self.b = builder
        self.args = args
        self.width = width

    @property
    def module(self):
        return self.b.module

    @property
    def type(self):
        return F32 if self.width == 1 else ir.VectorType(F32, self.width)

    def arg(self, name):
        return self.args[name]

    def const(self, x):
        c = ir.Constant(F32, float(x))
        return c if self.width == 1 else ir.Constant(self.type, [float(x)] * self.width)

    def splat(self, x):
        if self.width == 1:
            return x
        v = self.b.insert_element(ir.Constant(self.type, ir.Undefined), x, ir.Constant(I32, 0))
        return self.b.shuffle_vector(v, ir.Constant(self.type, ir.Undefined),
                                     ir.Constant(ir.VectorType(I32, self.width), [0] * self.width))

    def columns(self, col):
        """The columns of the value's elements: col (width 1) or <col, col+1, ...> (i64s)."""
        if self.width == 1:
            return col
        vt = ir.VectorType(I64, self.width)
        v = self.b.insert_element(ir.Constant(vt, ir.Undefined), col, ir.Constant(I32, 0))
        v = self.b.shuffle_vector(v, ir.Constant(vt, ir.Undefined),
                                  ir.Constant(ir.VectorType(I32, self.width), [0] * self.width))
        return self.b.add(v, ir.Constant(vt, list(range(self.width))))

    def load(self, ptr, index):
        p = self.b.gep(ptr, [index], inbounds=True)
        if self.width == 1:
            return self.b.load(p, align=4)
        return self.b.load(self.b.bitcast(p, self.type.as_pointer()), align=4)

    def intrinsic(self, name, nargs=1):
        """An overloaded float intrinsic (llvm.maxnum, llvm.fabs, ...) at this width."""
        suffix = "f32" if self.width == 1 else f"v{self.width}f32"
        return _declare(self.module, f"{name}.{suffix}", self.type, [self.type] * nargs)

    def function(self, name, nargs=1):
        """Declare `float name(float...)` at this width (e.g. a mathlib function in `prelude`)."""
        return _declare(self.module, name, self.type, [self.type] * nargs)


class Epilogue:
    """`value, row, col -> value` applied to every output element after the K reduction.

    `emit(ctx, value, row, col)` builds the new value with `ctx.b` (an llvmlite IRBuilder)
    and returns it; row and col are i64 (col is the first of the vector's columns). `params`
    are extra arguments of the generated functions after `bias`, as (name, llvmlite type),
    reachable through `ctx.arg(name)`. `prelude` is IR text appended to the module (helper
    functions such as mathlib's, which the emitter may call after declaring them with the
    same name: the declaration is dropped in favour of the definition)."""

    def __init__(self, name, emit=None, params=(), prelude=""):
        self.name = name
        self._emit = emit
        self.params = tuple(params)
        self.prelude = prelude

    def apply(self, ctx, value, row, col):
        return value if self._emit is None else self._emit(ctx, value, row, col)

    def __repr__(self):
        return f"Epilogue({self.name!r})"


def elementwise(name, fn, prelude=""):
    """An epilogue that depends on the value only: fn(ctx, value) -> value."""
    return Epilogue(name, lambda c, v, row, col: fn(c, v), prelude=prelude)


def chain(*epilogues, name=None):
    """Apply epilogues in order (their params are concatenated; names must not clash)."""
    params, seen = [], set()
    for e in epilogues:
        for p in e.params:
            if p[0] in seen:
                raise CompileError(f"gemm.chain: parameter {p[0]!r} is declared by two epilogues")
            seen.add(p[0])
            params.append(p)

    def emit(c, v, row, col):
        for e in epilogues:
            v = e.apply(c, v, row, col)
        return v

    return Epilogue(name or "+".join(e.name for e in epilogues), emit, params,
                    "\n".join(e.prelude for e in epilogues if e.prelude))


def _relu(c, v):
    """max(v, 0) with numpy's NaN propagation (NaN > 0 is "unordered", so NaN stays)."""
    return c.b.select(c.b.fcmp_unordered(">", v, c.const(0.0)), v, c.const(0.0))


def _add_bias(c, v, row, col):
    return c.b.fadd(v, c.load(c.arg("bias"), col))


def _add_residual(c, v, row, col):
    idx = c.b.add(c.b.mul(row, c.arg("ldr")), col)
    return c.b.fadd(v, c.load(c.arg("res"), idx))


class BlockEpilogue(Epilogue):
    """An epilogue the caller supplies as native code, applied to whole blocks of C.

    The generated functions take two extra arguments, `tile_fn` (a pointer to
    `void fn(i8* tile_ctx, i64 row0, i64 row1, i64 col0, i64 col1)`, or null for none) and
    `tile_ctx`; once the K reduction of a block of C is complete -- the rows a thread
    claimed (at most MC of them) by the columns of the current B block -- the thread that
    computed it calls tile_fn on it, while the block is still in its caches. The callback
    rewrites C[row0:row1, col0:col1] in place (bias, activation, residual add, ...); it
    runs on any thread of the pool, once per element of C, so it must be elementwise.
    This is how compiled graphs fuse their epilogues into the gemm's store (anchors.py):
    one pass over the output instead of two, and no fork-join of its own."""

    def __init__(self, name="block"):
        super().__init__(name, None, params=(("tile_fn", TILE_FN.as_pointer()), ("tile_ctx", I8P)))


TILE_FN = ir.FunctionType(VOID, [I8P, I64, I64, I64, I64])
NONE = Epilogue("none")
BLOCK = BlockEpilogue()
BIAS = Epilogue("bias", _add_bias)
RELU = elementwise("relu", _relu)
BIAS_RELU = chain(BIAS, RELU, name="bias_relu")
# + res[row, col] with res a float* of row stride ldr (elements): the residual add.
RESIDUAL = Epilogue("residual", _add_residual, params=(("res", F32P), ("ldr", I64)))


# ----------------------------------------------------------------------------- IR pieces

class _Loop:
    """`for i in range(start, stop, step)` with a phi; use as a context manager."""

    def __init__(self, b, start, stop, step=1, name="i"):
        self.b, self.start, self.stop, self.step, self.name = b, start, stop, step, name

    def __enter__(self):
        b = self.b
        pre = b.block
        self.head = b.append_basic_block(self.name + ".head")
        body = b.append_basic_block(self.name + ".body")
        self.done = b.append_basic_block(self.name + ".done")
        b.branch(self.head)
        b.position_at_end(self.head)
        self.i = b.phi(I64, name=self.name)
        self.i.add_incoming(self.start, pre)
        b.cbranch(b.icmp_signed("<", self.i, self.stop), body, self.done)
        b.position_at_end(body)
        return self.i

    def __exit__(self, *exc):
        if exc[0] is None:
            b = self.b
            nxt = b.add(self.i, _i64(self.step), flags=["nsw"])
            self.i.add_incoming(nxt, b.block)
            b.branch(self.head)
            b.position_at_end(self.done)
        return False


def _min(b, x, y):
    return b.select(b.icmp_signed("<", x, y), x, y)


def _ceil_div(b, x, d):
    return b.sdiv(b.add(x, _i64(d - 1)), _i64(d))


def _splat(b, x):
    """VW copies of x (a float or an i64)."""
    return splat(b, x, VW)


def _vload(b, ptr, offset, align):
    return b.load(b.bitcast(b.gep(ptr, [_i64(offset)] if isinstance(offset, int) else [offset],
                                  inbounds=True), V8P), align=align)


def _vstore(b, value, ptr, offset, align, stream=False):
    """`stream`: bypass the caches (irutil.stream_store)."""
    idx = [_i64(offset)] if isinstance(offset, int) else [offset]
    at = b.bitcast(b.gep(ptr, idx, inbounds=True), V8P)
    if stream:
        stream_store(b, value, at, align)
    else:
        b.store(value, at, align=align)


def _transpose_6x8(b, vs):
    """Six <8 x float> rows r_i -> one <48 x float> w with w[6k + i] = r_i[k]."""
    def cat(x, y):
        n = x.type.count + y.type.count
        return b.shuffle_vector(x, y, ir.Constant(ir.VectorType(I32, n), list(range(n))))

    def pad(x, n):  # widen to n lanes (the extra ones undefined) so two shuffles can meet
        m = x.type.count
        idx = list(range(m)) + [m] * (n - m)
        return b.shuffle_vector(x, ir.Constant(x.type, ir.Undefined), ir.Constant(ir.VectorType(I32, n), idx))

    w = cat(cat(cat(vs[0], vs[1]), cat(vs[2], vs[3])), pad(cat(vs[4], vs[5]), 32))  # 64 lanes, 48 used
    order = [i * VW + k for k in range(VW) for i in range(MR)]
    return b.shuffle_vector(w, ir.Constant(w.type, ir.Undefined), ir.Constant(ir.VectorType(I32, MR * VW), order))


def _vstore48(b, value, ptr):
    """Store a <48 x float> as six <8 x float> (ptr 4-byte aligned: a panel starts at q*6*kc)."""
    for q in range(MR):
        part = b.shuffle_vector(value, ir.Constant(value.type, ir.Undefined),
                                ir.Constant(ir.VectorType(I32, VW), list(range(q * VW, q * VW + VW))))
        _vstore(b, part, ptr, q * VW, 4)


def _fn(module, name, params, ret=VOID, linkage="internal"):
    f = ir.Function(module, ir.FunctionType(ret, [t for _, t in params]), name)
    if linkage:
        f.linkage = linkage
    for a, (n, _) in zip(f.args, params):
        a.name = n
    return f, {n: a for a, (n, _) in zip(f.args, params)}


class _Gen:
    """Builds one gemm module (one epilogue, parallel or serial)."""

    def __init__(self, name, epilogue, parallel, triple, layout, trans_a=False, trans_b=False):
        self.name = name
        self.trans_a, self.trans_b = bool(trans_a), bool(trans_b)
        self.epi = epilogue or NONE
        self.parallel = parallel
        self.m = ir.Module(name=name)
        if triple:
            self.m.triple = triple
        if layout:
            self.m.data_layout = layout
        self.params = _BASE_PARAMS + self.epi.params
        self.epi_names = ["bias"] + [n for n, _ in self.epi.params]
        # ctx struct: base params, then the per-block state, then the epilogue params
        self.fields = [n for n, _ in _BASE_PARAMS[:-1]] \
            + ["Bp", "jc", "nc", "pc", "kc", "by_rows", "units", "grain", "next", "whole", "apacked", "bown", "stream"] \
            + self.epi_names
        types = [t for _, t in _BASE_PARAMS[:-1]] + [F32P] + [I64] * 12 \
            + [F32P] + [t for _, t in self.epi.params]
        self.ctx_t = ir.LiteralStructType(types)
        self.fma = _declare(self.m, "llvm.fma.v8f32", V8, [V8, V8, V8])
        self.prefetch = _declare(self.m, "llvm.prefetch.p0", VOID, [I8P, I32, I32, I32])
        self.aligned_alloc = ir.Function(self.m, ir.FunctionType(I8P, [I64, I64]), "aligned_alloc")
        self.free = ir.Function(self.m, ir.FunctionType(VOID, [I8P]), "free")
        if parallel:
            self.pfor = ir.Function(self.m, ir.FunctionType(VOID, [TASK.as_pointer(), I8P, I64]),
                                    "lucid_parallel_for")
            self.nthreads = ir.Function(self.m, ir.FunctionType(I32, []), "lucid_available_threads")

    # -- the micro-kernels ---------------------------------------------------------------
    def kernel(self, nv=2):
        """C tile (+)= Ap panel @ Bp panel over packed operands; the epilogue when `last`.

        `nv` vectors of 8 columns per row: 2 is the 6x16 kernel; 1 a 6x8 kernel for edge
        panels of at most 8 columns (a 7x7 map's 49 = 3*16 + 1), half the FMAs of the
        6x16 one, which would compute 16 columns to keep one."""
        params = (("kc", I64), ("Ap", F32P), ("Bp", F32P), ("C", F32P), ("ldc", I64), ("mr", I64),
                  ("nr", I64), ("row", I64), ("col", I64), ("first", I1), ("last", I1)) \
            + (("bias", F32P),) + self.epi.params
        f, a = _fn(self.m, self.name + (".kernel" if nv == 2 else ".kernel8"), params)
        f.attributes.add("noinline")
        f.attributes.add("nounwind")
        for n in ("Ap", "Bp", "C"):
            a[n].add_attribute("noalias")
        b = ir.IRBuilder(f.append_basic_block("entry"))
        self._prefetch_c(b, a)

        def step(b, ptrs, u):
            ap, bp = ptrs
            bv = tuple(_vload(b, bp, u * NR + h * VW, 32) for h in range(nv))
            av = [b.load(b.gep(ap, [_i64(u * MR + r)], inbounds=True), align=4) for r in range(MR)]
            return av, bv

        acc = self._kloops(b, a["kc"], [a["Ap"], a["Bp"]], [_i64(MR), _i64(NR)], step, nv)
        self._store_tile(b, f, a, acc, nv)
        b.ret_void()
        return f

    def kernel1(self):
        """The C column tile (6 x 1) for an edge panel of one column (a 7x7 map's 49th):
        per step of k one FMA of the A panel's 6 rows (a vector read 2 floats past them:
        the A buffer has room) by the broadcast B element, four steps in flight."""
        params = (("kc", I64), ("Ap", F32P), ("Bp", F32P), ("C", F32P), ("ldc", I64), ("mr", I64),
                  ("nr", I64), ("row", I64), ("col", I64), ("first", I1), ("last", I1)) \
            + (("bias", F32P),) + self.epi.params
        f, a = _fn(self.m, self.name + ".kernel1", params)
        f.attributes.add("noinline")
        f.attributes.add("nounwind")
        b = ir.IRBuilder(f.append_basic_block("entry"))
        zero = ir.Constant(V8, [0.0] * VW)
        accs = []
        for j in range(UNROLL):
            slot = b.alloca(V8, name=f"acc{j}")
            b.store(zero, slot)
            accs.append(slot)

        def step(k, j):
            av = _vload(b, a["Ap"], b.mul(k, _i64(MR)), 4)
            bv = _splat(b, b.load(b.gep(a["Bp"], [b.mul(k, _i64(NR))], inbounds=True), align=4))
            b.store(b.call(self.fma, [av, bv, b.load(accs[j])]), accs[j])

        kmain = b.mul(b.sdiv(a["kc"], _i64(UNROLL)), _i64(UNROLL))
        with _Loop(b, _i64(0), kmain, UNROLL, name="k4") as k:
            for j in range(UNROLL):
                step(b.add(k, _i64(j)), j)
        with _Loop(b, kmain, a["kc"], name="k1") as k:
            step(k, 0)
        total = b.load(accs[0])
        for j in range(1, UNROLL):
            total = b.fadd(total, b.load(accs[j]))
        with b.goto_entry_block():
            tile = b.alloca(ir.ArrayType(F32, MR * NR), name="tile")
        tp = b.bitcast(tile, F32P)
        for r in range(MR):
            b.store(b.extract_element(total, ir.Constant(I32, r)), b.gep(tp, [_i64(r * NR)], inbounds=True))
        self._store_edge(b, a, tp)
        b.ret_void()
        return f

    def _prefetch_c(self, b, a):
        """Touch the C tile early: it is needed only after the k loop."""
        for i in range(MR):
            rowp = b.gep(a["C"], [b.mul(_i64(i), a["ldc"])])
            for off in (0, NR - 1):
                p = b.bitcast(b.gep(rowp, [_i64(off)]), I8P)
                b.call(self.prefetch, [p, ir.Constant(I32, 1), ir.Constant(I32, 3), ir.Constant(I32, 1)])

    def _kloops(self, b, kc, ptrs, strides, step, nv=2):
        """kc steps of acc[r][h] += splat(a_r) * b_h, UNROLL at a time, then the rest.

        `step(b, ptrs, u)` returns ([a_0..a_5], (b_0, b_1)) for step u of the current trip;
        pointer i advances by strides[i] elements per step; `nv` vectors per row."""
        acc = [ir.Constant(V8, [0.0] * VW)] * (nv * MR)
        acc, ptrs = self._kloop(b, b.sdiv(kc, _i64(UNROLL)), acc, ptrs, strides, step, UNROLL, "k4", nv)
        acc, ptrs = self._kloop(b, b.srem(kc, _i64(UNROLL)), acc, ptrs, strides, step, 1, "k1", nv)
        return acc

    def _kloop(self, b, trips, acc, ptrs, strides, step, unroll, name, nv=2):
        pre = b.block
        head = b.append_basic_block(name + ".head")
        body = b.append_basic_block(name + ".body")
        done = b.append_basic_block(name + ".done")
        b.branch(head)
        b.position_at_end(head)
        i = b.phi(I64, name=name)
        i.add_incoming(_i64(0), pre)
        accp = []
        for j, v in enumerate(acc):
            p = b.phi(V8, name=f"c{j // nv}{j % nv}")
            p.add_incoming(v, pre)
            accp.append(p)
        ptrp = []
        for v in ptrs:
            p = b.phi(F32P)
            p.add_incoming(v, pre)
            ptrp.append(p)
        b.cbranch(b.icmp_signed("<", i, trips), body, done)
        b.position_at_end(body)
        cur = list(accp)
        for u in range(unroll):
            av, bv = step(b, ptrp, u)
            for r in range(MR):
                x = _splat(b, av[r])
                for h in range(nv):
                    cur[nv * r + h] = b.call(self.fma, [x, bv[h], cur[nv * r + h]])
        nxt = [b.gep(p, [b.mul(st, _i64(unroll))], inbounds=True) for p, st in zip(ptrp, strides)]
        latch = b.block
        i.add_incoming(b.add(i, _i64(1), flags=["nsw"]), latch)
        for p, v in zip(accp, cur):
            p.add_incoming(v, latch)
        for p, v in zip(ptrp, nxt):
            p.add_incoming(v, latch)
        b.branch(head)
        b.position_at_end(done)
        return accp, ptrp

    def _epi_args(self, a):
        return {n: a[n] for n in self.epi_names}

    def _store_tile(self, b, f, a, acc, nv=2):
        full = b.and_(b.icmp_signed("==", a["mr"], _i64(MR)), b.icmp_signed("==", a["nr"], _i64(nv * VW)))
        with b.if_else(full) as (then, otherwise):
            with then:
                # C is valid memory: reading it on the first K block and discarding is
                # harmless, so only `last` (the epilogue) needs a second copy of the stores
                with b.if_else(a["last"]) as (final, partial):
                    for apply_epi, branch in ((True, final), (False, partial)):
                        with branch:
                            for r in range(MR):
                                rowp = b.gep(a["C"], [b.mul(_i64(r), a["ldc"])], inbounds=True)
                                for h in range(nv):
                                    v = acc[nv * r + h]
                                    v = b.select(a["first"], v, b.fadd(v, _vload(b, rowp, h * VW, 4)))
                                    if apply_epi:
                                        ctx = EpilogueContext(b, self._epi_args(a), VW)
                                        v = self.epi.apply(ctx, v, b.add(a["row"], _i64(r)),
                                                           b.add(a["col"], _i64(h * VW)))
                                    _vstore(b, v, rowp, h * VW, 4)
            with otherwise:
                with b.goto_entry_block():
                    tile = b.alloca(ir.ArrayType(F32, MR * NR), name="tile")
                    tile.align = 32
                tp = b.bitcast(tile, F32P)
                for j, v in enumerate(acc):
                    _vstore(b, v, tp, (j // nv) * NR + (j % nv) * VW, 32)
                self._store_edge(b, a, tp)

    def _store_edge(self, b, a, tp):
        """C[0:mr, 0:nr] (+)= tile (row stride NR), element by element, epilogue when last."""
        with _Loop(b, _i64(0), a["mr"], name="er") as r:
            rowp = b.gep(a["C"], [b.mul(r, a["ldc"])], inbounds=True)
            with _Loop(b, _i64(0), a["nr"], name="ec") as c:
                v = b.load(b.gep(tp, [b.add(b.mul(r, _i64(NR)), c)], inbounds=True), align=4)
                cp = b.gep(rowp, [c], inbounds=True)
                # C is valid memory: reading it when `first` and discarding is harmless
                val = b.select(a["first"], v, b.fadd(v, b.load(cp, align=4)))
                with b.if_else(a["last"]) as (t3, o3):
                    with t3:
                        ctx = EpilogueContext(b, self._epi_args(a), 1)
                        e = self.epi.apply(ctx, val, b.add(a["row"], r), b.add(a["col"], c))
                        b.store(e, cp, align=4)
                    with o3:
                        b.store(val, cp, align=4)

    # -- packing and the parallel tasks -------------------------------------------------
    def _ctx(self, b, raw, names):
        ctx = b.bitcast(raw, self.ctx_t.as_pointer())
        out = {}
        for n in names:
            k = self.fields.index(n)
            out[n] = b.load(b.gep(ctx, [ir.Constant(I32, 0), ir.Constant(I32, k)], inbounds=True))
        return out

    def _a_strides(self, lda):
        """(row step, k step) of A in elements: A[i, k] is at A + i*rs + k*ks."""
        return (_i64(1), lda) if self.trans_a else (lda, _i64(1))

    def _b_strides(self, ldb):
        """(k step, column step) of B in elements: B[k, j] is at B + k*ks + j*js."""
        return (_i64(1), ldb) if self.trans_b else (ldb, _i64(1))

    def pack_b(self):
        """Task over 16-column panels p: Bp[p*16*kc + k*16 + j] = B[pc + k, jc + 16p + j].

        In `whole` mode the task covers every K block at once (units: block x panel), the
        block at pc starting at Bp + pc * (16 * panels)."""
        f, a = _fn(self.m, self.name + ".pack_b", (("ctx", I8P), ("begin", I64), ("end", I64)))
        b = ir.IRBuilder(f.append_basic_block("entry"))
        c = self._ctx(b, a["ctx"], ["K", "B", "ldb", "Bp", "jc", "nc", "pc", "kc", "whole", "stream"])
        stream = b.icmp_signed("!=", c["stream"], _i64(0))
        ks, js = self._b_strides(c["ldb"])
        whole = b.icmp_signed("!=", c["whole"], _i64(0))
        npan = _ceil_div(b, c["nc"], NR)
        # units are claimed from the counter `next` a piece at a time (begin / end unused),
        # so a preempted thread holds up the others by one piece, not by a fixed half
        total = b.select(whole, b.mul(_ceil_div(b, c["K"], KC), npan), npan)
        grain = _ceil_div(b, total, PACK_CLAIMS)
        nextp = b.gep(b.bitcast(a["ctx"], self.ctx_t.as_pointer()),
                      [ir.Constant(I32, 0), ir.Constant(I32, self.fields.index("next"))], inbounds=True)
        with claims(b, nextp, grain, total) as (start, stop, _), _Loop(b, start, stop, name="u") as u:
            # unit u: panel u of the current K block, or (whole) panel u % npan of block u / npan
            p = b.select(whole, b.srem(u, npan), u)
            pc = b.select(whole, b.mul(b.sdiv(u, npan), _i64(KC)), c["pc"])
            kc = b.select(whole, _min(b, _i64(KC), b.sub(c["K"], pc)), c["kc"])
            base = b.select(whole, b.gep(c["Bp"], [b.mul(pc, b.mul(npan, _i64(NR)))], inbounds=True), c["Bp"])
            col0 = b.mul(p, _i64(NR))
            ncols = _min(b, _i64(NR), b.sub(c["nc"], col0))
            dst = b.gep(base, [b.mul(col0, kc)], inbounds=True)
            src = b.gep(c["B"], [b.add(b.mul(pc, ks), b.mul(b.add(c["jc"], col0), js))], inbounds=True)
            with b.if_else(stream) as (shared, alone):
                with shared:
                    self._pack_b_panel(b, dst, src, ks, js, ncols, kc, streaming=True)
                with alone:
                    self._pack_b_panel(b, dst, src, ks, js, ncols, kc, streaming=False)
        with b.if_then(stream):
            stream_fence(b)
        b.ret_void()

    def _pack_b_panel(self, b, dst, src, ks, js, ncols, kc, streaming):
        """dst[k*16 + j] = src[k*ks + j*js] for k < kc, j < ncols (columns past ncols zero):
        one 16-column panel. `streaming`: full panels bypass the caches (stream_store)."""
        with b.if_else(b.icmp_signed("==", ncols, _i64(NR))) as (full, edge):
            with full:
                if self.trans_b:  # 16 rows of B^T, each contiguous in k
                    rows = [b.gep(src, [b.mul(_i64(j), js)], inbounds=True) for j in range(NR)]
                with _Loop(b, _i64(0), kc, name="k") as k:
                    d = b.gep(dst, [b.mul(k, _i64(NR))], inbounds=True)
                    if self.trans_b:
                        for h in range(2):
                            v = ir.Constant(V8, ir.Undefined)
                            for l in range(VW):
                                x = b.load(b.gep(rows[h * VW + l], [k], inbounds=True), align=4)
                                v = b.insert_element(v, x, ir.Constant(I32, l))
                            _vstore(b, v, d, h * VW, 32, streaming)
                    else:
                        srow = b.gep(src, [b.mul(k, ks)], inbounds=True)
                        for h in range(2):
                            _vstore(b, _vload(b, srow, h * VW, 4), d, h * VW, 32, streaming)
            with edge:
                zero = ir.Constant(V8, [0.0] * VW)
                with _Loop(b, _i64(0), kc, name="kz") as k:
                    srow = b.gep(src, [b.mul(k, ks)], inbounds=True)
                    d = b.gep(dst, [b.mul(k, _i64(NR))], inbounds=True)
                    for h in range(2):
                        _vstore(b, zero, d, h * VW, 32)
                    with _Loop(b, _i64(0), ncols, name="j") as j:
                        b.store(b.load(b.gep(srow, [b.mul(j, js)], inbounds=True), align=4),
                                b.gep(d, [j], inbounds=True), align=4)

    def _pack_a(self, b, dst, src, lda, mc, kc):
        """Ap[q*6*kc + k*6 + i] = A[6q + i, k] for the mc x kc block at src (zero rows past mc)."""
        rs, ks = self._a_strides(lda)
        with _Loop(b, _i64(0), _ceil_div(b, mc, MR), name="q") as q:
            r0 = b.mul(q, _i64(MR))
            nrows = _min(b, _i64(MR), b.sub(mc, r0))
            d0 = b.gep(dst, [b.mul(r0, kc)], inbounds=True)
            s0 = b.gep(src, [b.mul(r0, rs)], inbounds=True)
            rows = [b.gep(s0, [b.mul(_i64(i), rs)], inbounds=True) for i in range(MR)]
            with b.if_else(b.icmp_signed("==", nrows, _i64(MR))) as (full, edge):
                with full:
                    k0 = _i64(0)
                    if not self.trans_a:  # 8 steps of k at a time: 6 row vectors, transposed
                        k0 = b.mul(b.sdiv(kc, _i64(VW)), _i64(VW))
                        with _Loop(b, _i64(0), k0, VW, name="kv") as k:
                            vs = [_vload(b, rows[i], k, 4) for i in range(MR)]
                            _vstore48(b, _transpose_6x8(b, vs), b.gep(d0, [b.mul(k, _i64(MR))], inbounds=True))
                    with _Loop(b, k0, kc, name="ka") as k:
                        d = b.gep(d0, [b.mul(k, _i64(MR))], inbounds=True)
                        kk = b.mul(k, ks)
                        for i in range(MR):
                            v = b.load(b.gep(rows[i], [kk], inbounds=True), align=4)
                            b.store(v, b.gep(d, [_i64(i)], inbounds=True), align=4)
                with edge:
                    with _Loop(b, _i64(0), kc, name="kae") as k:
                        d = b.gep(d0, [b.mul(k, _i64(MR))], inbounds=True)
                        for i in range(MR):
                            b.store(ir.Constant(F32, 0.0), b.gep(d, [_i64(i)], inbounds=True), align=4)
                        with _Loop(b, _i64(0), nrows, name="ia") as i:
                            e = b.gep(s0, [b.add(b.mul(i, rs), b.mul(k, ks))], inbounds=True)
                            b.store(b.load(e, align=4), b.gep(d, [i], inbounds=True), align=4)

    def compute(self, kernel, kernel8, kernel1):
        """Task claiming `grain` units at a time from the shared counter `next` until all
        `units` are done: 6-row panels of C (by_rows) or 16-column panels of the B block.
        Claiming (rather than a fixed split) keeps both cores busy when one is slowed."""
        f, a = _fn(self.m, self.name + ".compute", (("ctx", I8P), ("begin", I64), ("end", I64)))
        b = ir.IRBuilder(f.append_basic_block("entry"))
        abuf = b.alloca(ir.ArrayType(F32, MC * KC + VW), name="abuf")  # + VW: kernel1 reads past
        abuf.align = ALIGN
        ap0 = b.bitcast(abuf, F32P)
        bbuf = b.alloca(ir.ArrayType(F32, KC * NR), name="bbuf")  # a B panel packed by this claim
        bbuf.align = ALIGN
        bp0 = b.bitcast(bbuf, F32P)
        c = self._ctx(b, a["ctx"], ["M", "K", "A", "lda", "B", "ldb", "C", "ldc", "Bp", "jc", "nc", "pc", "kc",
                                    "by_rows", "units", "grain", "whole", "apacked", "bown"] + self.epi_names)
        bown = b.icmp_signed("!=", c["bown"], _i64(0))
        bks, bjs = self._b_strides(c["ldb"])
        nextp = b.gep(b.bitcast(a["ctx"], self.ctx_t.as_pointer()),
                      [ir.Constant(I32, 0), ir.Constant(I32, self.fields.index("next"))], inbounds=True)
        by_rows = b.icmp_signed("!=", c["by_rows"], _i64(0))
        npan = _ceil_div(b, c["nc"], NR)
        whole = b.icmp_signed("!=", c["whole"], _i64(0))
        apacked = b.icmp_signed("!=", c["apacked"], _i64(0))
        mp = b.mul(_ceil_div(b, c["M"], MR), _i64(MR))  # rows of a pre-packed A, padded to panels
        # the K blocks this task runs: all of them (whole), else the driver's current one
        pc_start = b.select(whole, _i64(0), c["pc"])
        pc_stop = b.select(whole, c["K"], b.add(c["pc"], _i64(1)))
        epi = [c[n] for n in self.epi_names]
        pieces = claims(b, nextp, c["grain"], c["units"])
        start, stop, _ = pieces.__enter__()
        r0 = b.select(by_rows, b.mul(start, _i64(MR)), _i64(0))
        r1 = b.select(by_rows, _min(b, b.mul(stop, _i64(MR)), c["M"]), c["M"])
        p0 = b.select(by_rows, _i64(0), start)
        p1 = b.select(by_rows, npan, stop)
        ic_loop = _Loop(b, r0, r1, MC, name="ic")
        ic = ic_loop.__enter__()
        with _Loop(b, pc_start, pc_stop, KC, name="pcb") as pc:
            kc = b.select(whole, _min(b, _i64(KC), b.sub(c["K"], pc)), c["kc"])
            first = b.icmp_signed("==", pc, _i64(0))
            last = b.icmp_signed(">=", b.add(pc, kc), c["K"])
            bblock = b.select(whole, b.gep(c["Bp"], [b.mul(pc, b.mul(npan, _i64(NR)))], inbounds=True), c["Bp"])
            mc = _min(b, _i64(MC), b.sub(r1, ic))
            with b.if_else(apacked) as (given, pack):
                with given:  # pre-packed (pack_a): the K block at pc * Mp, its rows' panels at ic * kc
                    pre = b.gep(c["A"], [b.add(b.mul(pc, mp), b.mul(ic, kc))], inbounds=True)
                    given_block = b.block
                with pack:
                    ars, aks = self._a_strides(c["lda"])
                    asrc = b.gep(c["A"], [b.add(b.mul(ic, ars), b.mul(pc, aks))], inbounds=True)
                    self._pack_a(b, ap0, asrc, c["lda"], mc, kc)
                    pack_block = b.block
            ablock = b.phi(F32P, name="ablock")
            ablock.add_incoming(pre, given_block)
            ablock.add_incoming(ap0, pack_block)
            with _Loop(b, p0, p1, name="jp") as jp:
                jr = b.mul(jp, _i64(NR))
                nr = _min(b, _i64(NR), b.sub(c["nc"], jr))
                with b.if_then(bown):  # split by columns: the claim packs its own panels
                    bsrc = b.gep(c["B"], [b.add(b.mul(pc, bks), b.mul(b.add(c["jc"], jr), bjs))], inbounds=True)
                    self._pack_b_panel(b, bp0, bsrc, bks, bjs, nr, kc, streaming=False)
                bpanel = b.select(bown, bp0, b.gep(bblock, [b.mul(jr, kc)], inbounds=True))
                col = b.add(c["jc"], jr)
                with _Loop(b, _i64(0), mc, MR, name="ir") as ir_:
                    mr = _min(b, _i64(MR), b.sub(mc, ir_))
                    row = b.add(ic, ir_)
                    cp = b.gep(c["C"], [b.add(b.mul(row, c["ldc"]), col)], inbounds=True)
                    apanel = b.gep(ablock, [b.mul(ir_, kc)], inbounds=True)
                    kargs = [kc, apanel, bpanel, cp, c["ldc"], mr, nr, row, col, first, last] + epi
                    with b.if_else(b.icmp_signed(">", nr, _i64(VW))) as (wide, narrow):
                        with wide:
                            b.call(kernel, kargs)
                        with narrow:
                            with b.if_else(b.icmp_signed("==", nr, _i64(1))) as (one, few):
                                with one:
                                    b.call(kernel1, kargs)
                                with few:
                                    b.call(kernel8, kargs)
        if isinstance(self.epi, BlockEpilogue):  # the block is final: its epilogue, while hot
            done_k = b.or_(whole, b.icmp_signed(">=", b.add(c["pc"], c["kc"]), c["K"]))
            has_fn = b.icmp_unsigned("!=", b.ptrtoint(c["tile_fn"], I64), _i64(0))
            with b.if_then(b.and_(done_k, has_fn)):
                col0 = b.add(c["jc"], b.mul(p0, _i64(NR)))
                col1 = b.add(c["jc"], _min(b, b.mul(p1, _i64(NR)), c["nc"]))
                b.call(c["tile_fn"], [c["tile_ctx"], ic, b.add(ic, _min(b, _i64(MC), b.sub(r1, ic))), col0, col1])
        ic_loop.__exit__(None, None, None)
        pieces.__exit__(None, None, None)
        b.ret_void()

    # -- few rows: stream B row by row ----------------------------------------------------
    def row_kernel(self, m):
        """C[0:m, j0:j1] = epilogue(A[0:m, :] @ B[:, j0:j1]) for a fixed m <= DIRECT_M.

        With so few rows, packing would cost more than the product and a 6x16 tile would
        waste most of its FMAs. Instead B is streamed row by row (contiguous, prefetcher and
        TLB friendly; each element read once), `ku` rows of B per pass over the C rows, which
        stay in L1 (a claim covers at most ROW_CHUNK columns): per vector of C columns, m*ku
        FMAs against m loads and m stores of C."""
        params = (("K", I64), ("A", F32P), ("lda", I64), ("B", F32P), ("ldb", I64), ("C", F32P),
                  ("ldc", I64), ("j0", I64), ("j1", I64), ("bias", F32P)) + self.epi.params
        f, a = _fn(self.m, f"{self.name}.rows{m}", params)
        f.attributes.add("noinline")
        f.attributes.add("nounwind")
        b = ir.IRBuilder(f.append_basic_block("entry"))
        ku = min(4, 12 // m)  # k steps per pass: m*ku broadcasts + ku B vectors in registers
        w = b.sub(a["j1"], a["j0"])
        nfull = b.sdiv(w, _i64(VW))
        rem = b.srem(w, _i64(VW))
        tail = b.icmp_signed(">", rem, _i64(0))
        mask = b.icmp_signed("<", ir.Constant(ir.VectorType(I64, VW), list(range(VW))), _splat(b, rem))
        mload = _declare(self.m, "llvm.masked.load.v8f32.p0", V8, [V8P, I32, mask.type, V8])
        mstore = _declare(self.m, "llvm.masked.store.v8f32.p0", VOID, [V8, V8P, I32, mask.type])
        zero = ir.Constant(V8, [0.0] * VW)
        crow = [b.gep(a["C"], [b.add(b.mul(_i64(i), a["ldc"]), a["j0"])], inbounds=True) for i in range(m)]
        ars, aks = self._a_strides(a["lda"])
        arow = [b.gep(a["A"], [b.mul(_i64(i), ars)], inbounds=True) for i in range(m)]
        b0 = b.gep(a["B"], [a["j0"]], inbounds=True)

        def vec(p, off):
            return b.bitcast(b.gep(p, [off], inbounds=True), V8P)

        def columns(fn):
            """fn(off, masked) for each full vector of the claim, then the masked tail."""
            with _Loop(b, _i64(0), nfull, name="v") as v:
                fn(b.mul(v, _i64(VW)), False)
            with b.if_then(tail):
                fn(b.mul(nfull, _i64(VW)), True)

        def clear(off, masked):
            for i in range(m):
                if masked:
                    b.call(mstore, [zero, vec(crow[i], off), ir.Constant(I32, 4), mask])
                else:
                    b.store(zero, vec(crow[i], off), align=4)

        columns(clear)

        def k_pass(k, n):
            av = [[_splat(b, b.load(b.gep(arow[i], [b.mul(b.add(k, _i64(q)), aks)], inbounds=True), align=4))
                   for q in range(n)] for i in range(m)]
            brow = [b.gep(b0, [b.mul(b.add(k, _i64(q)), a["ldb"])], inbounds=True) for q in range(n)]

            def update(off, masked):
                if masked:
                    bv = [b.call(mload, [vec(r, off), ir.Constant(I32, 4), mask, zero]) for r in brow]
                else:
                    bv = [b.load(vec(r, off), align=4) for r in brow]
                for i in range(m):
                    cp = vec(crow[i], off)
                    c = b.call(mload, [cp, ir.Constant(I32, 4), mask, zero]) if masked else b.load(cp, align=4)
                    for q in range(n):
                        c = b.call(self.fma, [av[i][q], bv[q], c])
                    if masked:
                        b.call(mstore, [c, cp, ir.Constant(I32, 4), mask])
                    else:
                        b.store(c, cp, align=4)

            columns(update)

        kmain = b.mul(b.sdiv(a["K"], _i64(ku)), _i64(ku))
        with _Loop(b, _i64(0), kmain, ku, name="k") as k:
            k_pass(k, ku)
        if ku > 1:
            with _Loop(b, kmain, a["K"], name="kr") as k:
                k_pass(k, 1)
        if self.epi_rows is not None:
            b.call(self.epi_rows, [a["C"], a["ldc"], _i64(m), a["j0"], a["j1"]]
                   + [a[n] for n in self.epi_names])
        b.ret_void()
        return f

    def epilogue_rows(self):
        """C[i, j] = epilogue(C[i, j], i, j) for i < m, j0 <= j < j1 (after row_kernel)."""
        params = (("C", F32P), ("ldc", I64), ("m", I64), ("j0", I64), ("j1", I64), ("bias", F32P)) \
            + self.epi.params
        f, a = _fn(self.m, f"{self.name}.epilogue_rows", params)
        f.attributes.add("noinline")
        b = ir.IRBuilder(f.append_basic_block("entry"))
        args = self._epi_args(a)
        w = b.sub(a["j1"], a["j0"])
        nfull = b.sdiv(w, _i64(VW))
        with _Loop(b, _i64(0), a["m"], name="i") as i:
            crow = b.gep(a["C"], [b.add(b.mul(i, a["ldc"]), a["j0"])], inbounds=True)
            with _Loop(b, _i64(0), nfull, name="ev") as v:
                off = b.mul(v, _i64(VW))
                cp = b.bitcast(b.gep(crow, [off], inbounds=True), V8P)
                ctx = EpilogueContext(b, args, VW)
                b.store(self.epi.apply(ctx, b.load(cp, align=4), i, b.add(a["j0"], off)), cp, align=4)
            with _Loop(b, b.mul(nfull, _i64(VW)), w, name="et") as j:
                cp = b.gep(crow, [j], inbounds=True)
                ctx = EpilogueContext(b, args, 1)
                b.store(self.epi.apply(ctx, b.load(cp, align=4), i, b.add(a["j0"], j)), cp, align=4)
        b.ret_void()
        return f

    def rows_task(self, kernels):
        """Task for M <= DIRECT_M: claims chunks of ROW_GROUP columns, runs rows{M} on them."""
        f, a = _fn(self.m, self.name + ".rows", (("ctx", I8P), ("begin", I64), ("end", I64)))
        b = ir.IRBuilder(f.append_basic_block("entry"))
        c = self._ctx(b, a["ctx"], ["M", "N", "K", "A", "lda", "B", "ldb", "C", "ldc", "units", "grain"]
                      + self.epi_names)
        nextp = b.gep(b.bitcast(a["ctx"], self.ctx_t.as_pointer()),
                      [ir.Constant(I32, 0), ir.Constant(I32, self.fields.index("next"))], inbounds=True)
        pieces = claims(b, nextp, c["grain"], c["units"])
        start, _, claim = pieces.__enter__()
        j0 = b.mul(start, _i64(ROW_GROUP))
        j1 = _min(b, b.mul(b.add(start, c["grain"]), _i64(ROW_GROUP)), c["N"])
        args = [c["K"], c["A"], c["lda"], c["B"], c["ldb"], c["C"], c["ldc"], j0, j1] + [c[n] for n in self.epi_names]
        cases = [f.append_basic_block(f"m{m}") for m in range(1, DIRECT_M + 1)]
        sw = b.switch(c["M"], claim)
        for m, blk in enumerate(cases, 1):
            sw.add_case(_i64(m), blk)
            b.position_at_end(blk)
            b.call(kernels[m - 1], args)
            if isinstance(self.epi, BlockEpilogue):
                has_fn = b.icmp_unsigned("!=", b.ptrtoint(c["tile_fn"], I64), _i64(0))
                with b.if_then(has_fn):
                    b.call(c["tile_fn"], [c["tile_ctx"], _i64(0), c["M"], j0, j1])
            b.branch(claim)
        pieces.__exit__(None, None, None)  # every path already went back to claim
        b.ret_void()
        return f

    # -- the entry points ---------------------------------------------------------------
    def _run(self, b, task, raw, n, par):
        """task(ctx, 0, n) on the pool when `par` (an i1), else in this thread."""
        if not self.parallel:
            b.call(task, [raw, _i64(0), n])
            return
        with b.if_else(par) as (yes, no):
            with yes:
                b.call(self.pfor, [task, raw, n])
            with no:
                b.call(task, [raw, _i64(0), n])

    def driver(self, name, pack_b, compute, direct):
        """@name.drive(<params>, i64 apacked, i64 bpacked): the whole product; A and B
        pre-packed (pack_a, pack_b) when the flags say so."""
        f, a = _fn(self.m, name + ".drive", self.params + (("apacked", I64), ("bpacked", I64)))
        f.attributes.add("nounwind")
        f.attributes.add("noinline")
        b = ir.IRBuilder(f.append_basic_block("entry"))
        M, N, K = a["M"], a["N"], a["K"]
        with b.if_then(b.or_(b.icmp_signed("<=", M, _i64(0)), b.icmp_signed("<=", N, _i64(0)))):
            b.ret_void()
        ctxp = b.alloca(self.ctx_t, name="ctx")
        raw = b.bitcast(ctxp, I8P)

        def put(field, value):
            k = self.fields.index(field)
            b.store(value, b.gep(ctxp, [ir.Constant(I32, 0), ir.Constant(I32, k)], inbounds=True))

        for n, _ in _BASE_PARAMS[:-1]:
            put(n, a[n])
        for n in self.epi_names:
            put(n, a[n])
        put("next", _i64(0))
        put("apacked", a["apacked"])
        # threads: the pool's count for products big enough to repay a fork-join, else one
        if self.parallel:
            flops = b.mul(b.mul(M, N), b.mul(b.select(b.icmp_signed(">", K, _i64(1)), K, _i64(1)), _i64(2)))
            par = b.icmp_signed(">=", flops, _i64(PARALLEL_MIN_FLOPS))
            nt = b.select(par, b.sext(b.call(self.nthreads, []), I64), _i64(1))
        else:
            par, nt = ir.Constant(I1, 0), _i64(1)
        # about four claims per thread; one when the call runs serially (nested in a parallel
        # loop, e.g. a batch's images in parallel): with columns split, every claim packs
        # all of A again
        many = b.icmp_signed(">", nt, _i64(1))
        claims = b.select(many, b.mul(nt, _i64(4)), _i64(1))
        # rows are split finer, about eight claims per thread: with four, a 256-row C (43
        # panels, grain 6) split 24 : 19 panels between two threads; ResNet-50's 1x1 and
        # 3x3 convolutions at 14x14 (M = 256, N = 196) ran 7% and 6% faster on 2 threads
        row_claims = b.select(many, b.mul(nt, _i64(8)), _i64(1))

        def grain_for(units, parts=claims):
            return b.sdiv(b.add(units, b.sub(parts, _i64(1))), parts)

        if direct is not None:  # few rows: no packing, one pass over B (rows contiguous)
            plain = b.icmp_signed("==", b.or_(a["apacked"], a["bpacked"]), _i64(0))
            few = b.and_(b.icmp_signed("<=", M, _i64(DIRECT_M)), plain)
            with b.if_then(few):
                units = _ceil_div(b, N, ROW_GROUP)
                put("units", units)
                put("grain", _min(b, grain_for(units), _i64(ROW_CHUNK // ROW_GROUP)))
                self._run(b, direct, raw, nt, par)
                b.ret_void()
        mpan = _ceil_div(b, M, MR)
        # Split rows across threads when there are enough 6-row panels for an even split,
        # else split the 16-column panels (each thread then packs all of the few rows of A).
        # A that fits one MC block is also split by columns when there are many of them
        # (a 3x3 convolution's 64 x 3136 output): every claim then packs the small A once
        # and runs each B micro-panel over all the rows while it is in L1, instead of
        # fetching it again for every claim of a few rows.
        npan_all = _ceil_div(b, _min(b, N, _i64(NC)), NR)
        by_rows = b.or_(b.icmp_signed(">=", mpan, claims), b.icmp_signed(">=", mpan, npan_all))
        wide = b.and_(b.icmp_signed("<=", M, _i64(MC)), b.icmp_signed(">=", npan_all, b.mul(claims, _i64(4))))
        by_rows = b.and_(by_rows, b.not_(wide))
        put("by_rows", b.zext(by_rows, I64))
        # Split by columns, with A in one MC block, each B panel is read by one claim only:
        # that claim packs it into an L1 buffer just before its micro-kernels run, instead
        # of a parallel packing pass before them (a fork-join, and the packed B written
        # to memory and read back; ResNet-50's 1x1 convolutions of 64-128 channels)
        bown = b.and_(b.not_(by_rows), b.icmp_signed("<=", M, _i64(MC)))
        bown = b.and_(bown, b.icmp_signed("==", a["bpacked"], _i64(0)))
        put("bown", b.zext(bown, I64))
        # packed B goes around the caches when several threads pack it (irutil.stream_store);
        # one thread that packs it reads it back from its own cache
        put("stream", b.zext(b.and_(many, par), I64))
        # the packed-B buffer: claim the module's cached one, or allocate our own
        kcmax = _min(b, b.select(b.icmp_signed(">", K, _i64(0)), K, _i64(1)), _i64(KC))
        ncmax = b.mul(_ceil_div(b, _min(b, N, _i64(NC)), NR), _i64(NR))
        # whole mode: all of B packed at once, then one parallel pass over C with the K
        # blocks inside it: two fork-joins per product instead of two per K block
        whole_bytes = b.mul(b.mul(K, ncmax), _i64(4))
        whole = b.and_(b.and_(b.icmp_signed("<=", N, _i64(NC)), b.icmp_signed(">", K, _i64(0))),
                       b.icmp_signed("<=", whole_bytes, _i64(WHOLE_B_BYTES)))
        # B pre-packed (pack_b's layout: whole mode over all N columns): no buffer, no jc blocks
        bpacked = b.icmp_signed("!=", a["bpacked"], _i64(0))
        whole = b.or_(whole, b.and_(bpacked, b.icmp_signed(">", K, _i64(0))))
        put("whole", b.zext(whole, I64))
        nbytes = b.select(whole, whole_bytes, b.mul(b.mul(kcmax, ncmax), _i64(4)))
        nbytes = b.select(b.or_(bpacked, bown), _i64(ALIGN), nbytes)
        # the first free one of the module's B_BUFFERS cached buffers (gemms running at
        # once on several threads: a batch's images in parallel), else a fresh one
        have = b.append_basic_block("bbuf.have")
        incoming = []
        for k in range(B_BUFFERS):
            got = b.append_basic_block(f"bbuf.got{k}")
            nxt = b.append_basic_block(f"bbuf.try{k + 1}")
            busy_k = b.gep(self.busy, [_i64(0), _i64(k)], inbounds=True)
            won = b.extract_value(b.cmpxchg(busy_k, ir.Constant(I32, 0), ir.Constant(I32, 1),
                                            "acquire", "monotonic"), 1)
            b.cbranch(won, got, nxt)
            b.position_at_end(got)
            bufp = b.gep(self.bbuf, [_i64(0), _i64(k)], inbounds=True)
            capp = b.gep(self.bcap, [_i64(0), _i64(k)], inbounds=True)
            with b.if_then(b.icmp_signed("<", b.load(capp), nbytes)):
                b.call(self.free, [b.load(bufp)])
                b.store(b.call(self.aligned_alloc, [_i64(ALIGN), nbytes]), bufp)
                b.store(nbytes, capp)
            incoming.append((b.load(bufp), _i64(k), b.block))
            b.branch(have)
            b.position_at_end(nxt)
        fresh = b.call(self.aligned_alloc, [_i64(ALIGN), nbytes])
        incoming.append((fresh, _i64(-1), b.block))
        b.branch(have)
        b.position_at_end(have)
        buf = b.phi(I8P)
        slot = b.phi(I64)
        for v, k, blk in incoming:
            buf.add_incoming(v, blk)
            slot.add_incoming(k, blk)
        own = b.icmp_signed(">=", slot, _i64(0))
        put("Bp", b.select(bpacked, a["B"], b.bitcast(buf, F32P)))
        ncap = b.select(bpacked, N, _i64(NC))
        with _Loop(b, _i64(0), N, ncap, name="jc") as jc:
            nc = _min(b, ncap, b.sub(N, jc))
            put("jc", jc)
            put("nc", nc)
            npan = _ceil_div(b, nc, NR)
            units = b.select(by_rows, mpan, npan)
            put("units", units)
            # a row claim is at most one MC block
            row_grain = _min(b, grain_for(units, row_claims), _i64(MC // MR))
            if isinstance(self.epi, BlockEpilogue):
                # the callback should find its block in L2: at most EPI_BLOCK_BYTES of C rows
                cap = b.sdiv(_i64(EPI_BLOCK_BYTES // (4 * MR)), nc)
                cap = b.select(b.icmp_signed("<", cap, _i64(1)), _i64(1), cap)
                has_fn = b.icmp_unsigned("!=", b.ptrtoint(a["tile_fn"], I64), _i64(0))
                row_grain = b.select(has_fn, _min(b, row_grain, cap), row_grain)
            # split by columns, every claim packs all of A (its few rows, every K block):
            # one claim per thread (a ResNet-50 layer2 3x3 convolution at batch 1, 128 x 784
            # x 1152, took 4.6 ms on 2 threads with four claims a thread, 4.0 ms with one)
            col_grain = grain_for(units, nt)
            put("grain", b.select(by_rows, row_grain, col_grain))
            with b.if_else(whole) as (all_k, per_block):
                with all_k:
                    put("pc", _i64(0))
                    put("kc", kcmax)
                    with b.if_then(b.not_(b.or_(bpacked, bown))):
                        put("next", _i64(0))
                        self._run(b, pack_b, raw, b.mul(_ceil_div(b, K, KC), npan), par)
                    put("next", _i64(0))
                    self._run(b, compute, raw, nt, par)
                with per_block:
                    # do { ... } while (pc < K): K = 0 still runs one block, writing epilogue(0)
                    pre = b.block
                    body = b.append_basic_block("pc.body")
                    done = b.append_basic_block("pc.done")
                    b.branch(body)
                    b.position_at_end(body)
                    pc = b.phi(I64, name="pc")
                    pc.add_incoming(_i64(0), pre)
                    kc = _min(b, _i64(KC), b.sub(K, pc))
                    kc = b.select(b.icmp_signed("<", kc, _i64(0)), _i64(0), kc)
                    put("pc", pc)
                    put("kc", kc)
                    with b.if_then(b.and_(b.icmp_signed(">", kc, _i64(0)), b.not_(bown))):
                        put("next", _i64(0))
                        self._run(b, pack_b, raw, npan, par)
                    put("next", _i64(0))
                    self._run(b, compute, raw, nt, par)
                    nxt = b.add(pc, _i64(KC))
                    pc.add_incoming(nxt, b.block)
                    b.cbranch(b.icmp_signed("<", nxt, K), body, done)
                    b.position_at_end(done)
        with b.if_else(own) as (mine, other):
            with mine:
                b.store_atomic(ir.Constant(I32, 0), b.gep(self.busy, [_i64(0), slot], inbounds=True), "release", 4)
            with other:
                b.call(self.free, [buf])
        b.ret_void()
        return f

    def entry(self, name, drive, apacked, bpacked):
        """A public @name: the driver with A and B given as matrices (0) or pre-packed (1)."""
        f, a = _fn(self.m, name, self.params, linkage=None)
        b = ir.IRBuilder(f.append_basic_block("entry"))
        b.call(drive, [a[n] for n, _ in self.params] + [_i64(apacked), _i64(bpacked)])
        b.ret_void()
        return f

    def batched(self, one):
        bp = (("batch", I64), ("M", I64), ("N", I64), ("K", I64), ("A", F32P), ("sA", I64), ("lda", I64),
              ("B", F32P), ("sB", I64), ("ldb", I64), ("C", F32P), ("sC", I64), ("ldc", I64),
              ("bias", F32P)) + self.epi.params
        f, a = _fn(self.m, self.name + ".batched", bp, linkage=None)
        b = ir.IRBuilder(f.append_basic_block("entry"))

        def call_one(bld, i, args):
            off = lambda n: bld.gep(args[n], [bld.mul(i, args["s" + n])], inbounds=True)
            bld.call(one, [args["M"], args["N"], args["K"], off("A"), args["lda"], off("B"), args["ldb"],
                           off("C"), args["ldc"], args["bias"]] + [args[n] for n, _ in self.epi.params])

        if self.parallel:
            # a batch of small products runs one matrix per task; the pool runs the nested
            # parallel loops of each product serially in its thread
            st = ir.LiteralStructType([t for _, t in bp])
            task, ta = _fn(self.m, self.name + ".batch_task", (("ctx", I8P), ("begin", I64), ("end", I64)))
            tb = ir.IRBuilder(task.append_basic_block("entry"))
            sp = tb.bitcast(ta["ctx"], st.as_pointer())
            args = {n: tb.load(tb.gep(sp, [ir.Constant(I32, 0), ir.Constant(I32, k)], inbounds=True))
                    for k, (n, _) in enumerate(bp)}
            with _Loop(tb, ta["begin"], ta["end"], name="bt") as i:
                call_one(tb, i, args)
            tb.ret_void()
            flops = b.mul(b.mul(a["M"], a["N"]), b.mul(a["K"], _i64(2)))
            small = b.and_(b.icmp_signed("<", flops, _i64(SMALL_BATCH_FLOPS)), b.icmp_signed(">", a["batch"], _i64(1)))
            with b.if_then(small):
                sptr = b.alloca(st)
                for k, (n, _) in enumerate(bp):
                    b.store(a[n], b.gep(sptr, [ir.Constant(I32, 0), ir.Constant(I32, k)], inbounds=True))
                b.call(self.pfor, [task, b.bitcast(sptr, I8P), a["batch"]])
                b.ret_void()
        with _Loop(b, _i64(0), a["batch"], name="bi") as i:
            call_one(b, i, a)
        b.ret_void()

    def build(self):
        def glob(name, typ, init):
            g = ir.GlobalVariable(self.m, typ, f"{self.name}.{name}")
            g.linkage = "internal"
            g.initializer = ir.Constant(typ, init)
            return g

        self.bbuf = glob("bbuf", ir.ArrayType(I8P, B_BUFFERS), [None] * B_BUFFERS)
        self.bcap = glob("bcap", ir.ArrayType(I64, B_BUFFERS), [0] * B_BUFFERS)
        self.busy = glob("busy", ir.ArrayType(I32, B_BUFFERS), [0] * B_BUFFERS)
        kernel = self.kernel()
        kernel8 = self.kernel(nv=1)
        kernel1 = self.kernel1()
        self.pack_b()
        pack_b = self.m.get_global(self.name + ".pack_b")
        self.compute(kernel, kernel8, kernel1)
        compute = self.m.get_global(self.name + ".compute")
        self.epi_rows = None if self.epi._emit is None or self.trans_b else self.epilogue_rows()
        direct = None if self.trans_b else self.rows_task([self.row_kernel(m) for m in range(1, DIRECT_M + 1)])
        drive = self.driver(self.name, pack_b, compute, direct)
        one = self.entry(self.name, drive, 0, 0)
        for suffix, ap, bp in PACKED_ENTRIES:
            self.entry(self.name + suffix, drive, ap, bp)
        self.batched(one)
        return self.m


def gemm_ir(name, epilogue=None, parallel=True, trans_a=False, trans_b=False, triple=None, data_layout=None):
    """IR text of a module defining @name and @name.batched (see the module docstring).

    `parallel=False` makes a module that does not need the runtime's thread pool.
    `trans_a` / `trans_b`: the operand is given transposed, as a row-major K x M (A) or
    N x K (B) matrix of leading dimension lda / ldb; C = A^T @ B, A @ B^T, A^T @ B^T (the
    `x @ W.T` of a linear layer needs no copy of W)."""
    if triple is None or data_layout is None:
        try:
            from .llvm import llvm_target
            triple, data_layout = llvm_target()
        except ImportError:
            pass
    epilogue = epilogue or NONE
    text = str(_Gen(name, epilogue, parallel, triple, data_layout, trans_a, trans_b).build())
    if epilogue.prelude:
        defined = set()
        for line in epilogue.prelude.splitlines():
            if line.startswith("define"):
                defined.add(line.split("@", 1)[1].split("(", 1)[0].strip().strip('"'))
        keep = [ln for ln in text.splitlines()
                if not (ln.startswith("declare") and
                        ln.split("@", 1)[1].split("(", 1)[0].strip().strip('"') in defined)]
        text = "\n".join(keep) + "\n" + epilogue.prelude + "\n"
    return text


# ----------------------------------------------------------------------------- Python wrapper

_CTYPE = {"ptr": ctypes.c_void_p, "i64": ctypes.c_int64, "i32": ctypes.c_int32,
          "float": ctypes.c_float, "double": ctypes.c_double}
_compiled = {}


def _ctype(t):
    return _CTYPE["ptr" if isinstance(t, ir.PointerType) else str(t)]


def compiled(epilogue=None, parallel=True, trans_a=False, trans_b=False):
    """(single, batched, {(A packed, B packed): entry}) ctypes functions of the gemm for
    `epilogue`, JIT-compiled once."""
    epilogue = epilogue or NONE
    key = (id(epilogue), bool(parallel), bool(trans_a), bool(trans_b))
    hit = _compiled.get(key)
    if hit is None or hit[0] is not epilogue:
        from .llvm import jit

        name = f"lucid_gemm_{len(_compiled)}_{''.join(ch if ch.isalnum() else '_' for ch in epilogue.name)}"
        mod = jit(gemm_ir(name, epilogue, parallel, trans_a, trans_b), name)
        extra = [_ctype(t) for _, t in epilogue.params]
        P, L = ctypes.c_void_p, ctypes.c_int64
        one = ctypes.CFUNCTYPE(None, L, L, L, P, L, P, L, P, L, P, *extra)(mod.address(name))
        many = ctypes.CFUNCTYPE(None, L, L, L, L, P, L, L, P, L, L, P, L, L, P, *extra)(
            mod.address(name + ".batched"))
        sig = ctypes.CFUNCTYPE(None, L, L, L, P, L, P, L, P, L, P, *extra)
        packed = {(ap, bp): sig(mod.address(name + suffix)) for suffix, ap, bp in PACKED_ENTRIES}
        hit = _compiled[key] = (epilogue, mod, one, many, packed)
    return hit[2:]


def _check(x, what):
    x = np.asarray(x)
    if x.dtype != np.float32:
        raise DTypeError(f"gemm.matmul: {what} must be float32, got {x.dtype}")
    if x.ndim < 2:
        raise ShapeError(f"gemm.matmul: {what} must have at least 2 dimensions, got shape {x.shape}")
    return x


def _operand(x):
    """(x, leading dimension, transposed): rows or columns contiguous, else a copy."""
    (R, C), (r, c) = x.shape[-2:], x.strides[-2:]
    if all(s % 4 == 0 for s in x.strides):
        if (c == 4 or C <= 1) and (R <= 1 or r >= 4 * C):
            return x, (r // 4 if R > 1 else max(1, C)), False
        if (r == 4 or R <= 1) and (C <= 1 or c >= 4 * R):
            return x, (c // 4 if C > 1 else max(1, R)), True
    return np.ascontiguousarray(x), max(1, C), False


def _batch3(x, batch):
    """x broadcast to `batch` and flattened to (prod(batch), rows, cols), as a view if possible."""
    return np.broadcast_to(x, batch + x.shape[-2:]).reshape((-1,) + x.shape[-2:])


def aligned_empty(n):
    """An uninitialised float32 array of n values at a 64-byte aligned address (the
    micro-kernel reads packed B with aligned vector loads)."""
    raw = np.empty(n + ALIGN // 4, np.float32)
    skip = (-raw.ctypes.data % ALIGN) // 4
    return raw[skip:skip + n]


def _panels(x, width, what, tail=0):
    """x (K x N, any strides) as K blocks of KC rows one after another; in each, panels of
    `width` columns (columns past N zero), each k-major: block pc holds
    out[pc*Np + p*width*kc + k*width + j] = x[pc + k, width*p + j], Np = N rounded up to
    `width`; `tail` zeros after. 64-byte aligned. Each block is one strided copy into
    place (packing all of ResNet-50's weights takes 0.04-0.06 s)."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ShapeError(f"gemm.{what}: the operand must be a matrix, got shape {x.shape}")
    k, n = x.shape
    full, rest = divmod(n, width)
    npad = (full + (rest > 0)) * width
    out = aligned_empty(k * npad + tail)
    out[k * npad:] = 0
    for pc in range(0, k, KC):
        kc = min(KC, k - pc)
        dst = out[pc * npad:(pc + kc) * npad].reshape(npad // width, kc, width)
        dst[:full] = x[pc:pc + kc, :full * width].reshape(kc, full, width).transpose(1, 0, 2)
        if rest:
            dst[full, :, rest:] = 0
            dst[full, :, :rest] = x[pc:pc + kc, full * width:]
    return out


def pack_a_floats(m, k):
    """The size of `pack_a`'s result for an m x k matrix (without packing it)."""
    return -(-m // MR) * MR * k + VW


def pack_a(a):
    """A (M x K, float32) laid out as the gemm's packed-A entries read it: K blocks of KC
    columns one after another; in each, 6-row panels (rows past M zero), each k-major:
    block pc holds Ap[pc*Mp + q*6*kc + k*6 + i] = A[6q + i, pc + k], Mp = M rounded up
    to 6. The layout the micro-kernel would otherwise pack per call (`_pack_a`); a
    constant weight packed once (lucid.codegen.program) skips that work. VW zeros follow
    the last panel (the one-column kernel reads 8 floats of a 6-float step)."""
    a = np.asarray(a, dtype=np.float32)
    return _panels(a.T if a.ndim == 2 else a, MR, "pack_a", tail=VW)


def pack_b(b):
    """B (K x N, float32) laid out as the gemm's packed-B entries read it: the whole-mode
    block layout over all N columns. K blocks of KC rows one after another; in each,
    16-column panels (columns past N zero), each k-major: block pc holds
    Bp[pc*Np + p*16*kc + k*16 + j] = B[pc + k, 16p + j], Np = N rounded up to 16.
    A convolution's patch matrix is written this way directly (lucid.codegen.anchors),
    so the gemm does not pack it again. The array is 64-byte aligned, as the packed
    entries require of B."""
    return _panels(b, NR, "pack_b")


def matmul(a, b, bias=None, epilogue=None, args=(), out=None, parallel=True, prepack_a=False, prepack_b=False):
    """epilogue(a @ b) for float32 arrays through the JIT-compiled kernel (tests, benchmarks).

    a is (..., M, K), b is (..., K, N) with broadcastable batch dimensions. Operands whose
    rows or columns are contiguous (strided slices, transposed views such as `w.T`) are
    used in place (the latter through the trans_a / trans_b kernels), others are copied.
    `bias` (N,) is passed to the epilogue (BIAS and BIAS_RELU read it); `args` are the
    epilogue's extra params (numpy arrays are passed by address). `prepack_a` / `prepack_b`
    (2-d operands only) pack A / B first (`pack_a`, `pack_b`) and call the packed entry, as
    compiled graphs do for constant weights and convolution patches."""
    a, b = _check(a, "a"), _check(b, "b")
    M, K = a.shape[-2:]
    K2, N = b.shape[-2:]
    if K != K2:
        raise ShapeError(f"gemm.matmul: shapes {a.shape} and {b.shape} are not aligned")
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    if out is None:
        out = np.empty(batch + (M, N), np.float32)
    elif out.shape != batch + (M, N) or out.dtype != np.float32:
        raise ShapeError(f"gemm.matmul: out must be float32 of shape {batch + (M, N)}")
    if bias is not None:
        bias = np.ascontiguousarray(bias, np.float32)
        if bias.shape != (N,):
            raise ShapeError(f"gemm.matmul: bias must have shape ({N},), got {bias.shape}")
    extra, keep = [], [bias]
    for x in args:
        keep.append(x)
        extra.append(x.ctypes.data if isinstance(x, np.ndarray) else x)
    bptr = None if bias is None else bias.ctypes.data
    if batch:
        a, b, c = _batch3(a, batch), _batch3(b, batch), out.reshape((-1, M, N))
    else:
        c = out
    a, lda, ta = _operand(a)
    b, ldb, tb = _operand(b)
    cw, ldc, tc = _operand(c)
    in_place = not tc and cw is c and np.may_share_memory(c, out)
    if not in_place:  # `out` has no unit column stride: compute into a temporary
        cw, ldc = np.empty(c.shape, np.float32), max(1, N)
    one, many, packed = compiled(epilogue, parallel, ta, tb)
    if prepack_a or prepack_b:
        if batch:
            raise ShapeError(f"gemm.matmul: prepacked operands are matrices, got shapes {a.shape}, {b.shape}")
        ap = pack_a(a) if prepack_a else a
        bp = pack_b(b) if prepack_b else b
        packed[bool(prepack_a), bool(prepack_b)](M, N, K, ap.ctypes.data, lda, bp.ctypes.data, ldb,
                                                 cw.ctypes.data, ldc, bptr, *extra)
    elif not batch:
        one(M, N, K, a.ctypes.data, lda, b.ctypes.data, ldb, cw.ctypes.data, ldc, bptr, *extra)
    else:
        stride = lambda x: x.strides[0] // 4 if x.shape[0] > 1 else 0
        many(c.shape[0], M, N, K, a.ctypes.data, stride(a), lda, b.ctypes.data, stride(b), ldb,
             cw.ctypes.data, stride(cw), ldc, bptr, *extra)
    if not in_place:
        out[...] = cw.reshape(out.shape)
    return out
