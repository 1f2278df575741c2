"""Small helpers over llvmlite.ir: lucid dtypes as LLVM types, constants, counted loops.

Kernels are built with llvmlite's IR builder and printed as text; llvmlite's typed
pointers (`float*`) are read by the bundled LLVM as opaque `ptr`, which is all we need.
"""
import re
from contextlib import contextmanager

import llvmlite.ir as ir

from ..dtypes import bool_, float32, float64, int32, int64

I1 = ir.IntType(1)
I8 = ir.IntType(8)
I32 = ir.IntType(32)
I64 = ir.IntType(64)
F32 = ir.FloatType()
F64 = ir.DoubleType()
VOID = ir.VoidType()
I8P = I8.as_pointer()

_VALUE = {float32: F32, float64: F64, int32: I32, int64: I64, bool_: I1}
_MEMORY = {float32: F32, float64: F64, int32: I32, int64: I64, bool_: I8}


def value_type(dtype):
    """The LLVM type a value of `dtype` has in registers (bool is i1)."""
    return _VALUE[dtype]


def memory_type(dtype):
    """The LLVM type an element of `dtype` has in memory (bool is a byte)."""
    return _MEMORY[dtype]


def const(dtype, value):
    t = value_type(dtype)
    if dtype.is_float:
        return ir.Constant(t, float(value))
    return ir.Constant(t, int(bool(value)) if dtype is bool_ else int(value))


def i64(n):
    return ir.Constant(I64, int(n))


def load_elem(b, ptr, dtype):
    v = b.load(ptr)
    return b.trunc(v, I1) if dtype is bool_ else v


def store_elem(b, value, ptr, dtype):
    if dtype is bool_:
        value = b.zext(value, I8)
    b.store(value, ptr)


@contextmanager
def loop(b, count, start=None, name="i", hint=None):
    """`for i in range(start or 0, count)`: yields i (an i64); the builder ends after the loop.

    A canonical counted loop (phi in the header, one latch), the shape LLVM's loop
    vectoriser expects. `hint`: loop metadata for the latch (see `interleave_hint`)."""
    start = start if start is not None else i64(0)
    pre = b.block
    header = b.append_basic_block(f"{name}.head")
    body = b.append_basic_block(f"{name}.body")
    done = b.append_basic_block(f"{name}.done")
    b.branch(header)
    b.position_at_end(header)
    i = b.phi(I64, name=name)
    i.add_incoming(start, pre)
    b.cbranch(b.icmp_signed("<", i, count), body, done)
    b.position_at_end(body)
    yield i
    nxt = b.add(i, i64(1), flags=["nsw"])
    i.add_incoming(nxt, b.block)
    latch = b.branch(header)
    if hint is not None:
        latch.set_metadata("llvm.loop", hint)
    b.position_at_end(done)


@contextmanager
def claims(b, counter, grain, total, name="claim"):
    """Pieces [start, stop) of [0, total), `grain` units each, claimed from the shared i64
    `counter` (an atomic add) until none is left: yields (start, stop, the claim block)
    with the builder in the piece's body. After the body the builder goes back to claim
    (unless the body ended its block itself) and continues after the loop.

    Why claims rather than fixed shares: on a shared machine a thread the OS preempts then
    holds the others up by one piece, not by its whole share."""
    f = b.function
    claim = f.append_basic_block(name)
    work = f.append_basic_block(f"{name}.work")
    out = f.append_basic_block(f"{name}.out")
    b.branch(claim)
    b.position_at_end(claim)
    start = b.atomic_rmw("add", counter, grain, "monotonic")
    b.cbranch(b.icmp_signed(">=", start, total), out, work)
    b.position_at_end(work)
    stop = b.add(start, grain)
    stop = b.select(b.icmp_signed(">", stop, total), total, stop)
    yield start, stop, claim
    if not b.block.is_terminated:
        b.branch(claim)
    b.position_at_end(out)


_LOOP_ID = "lucid.loop.id"


def interleave_hint(module, count):
    """Loop metadata asking LLVM's vectoriser to interleave `count` vector iterations.

    Why: a loop body of long dependency chains (a transcendental is 20-40 dependent vector
    operations) is latency-bound when one vector is in flight: the out-of-order window of
    a core holds too few operations to overlap the next iteration's chain by itself.
    LLVM's cost model does not interleave big bodies; this asks it to. A loop ID must be
    a distinct node whose first operand is itself, which llvmlite cannot build: the node
    is tagged here and `finish_loop_ids` rewrites it in the module's text."""
    count = module.add_metadata([ir.MetaDataString(module, "llvm.loop.interleave.count"),
                                 ir.Constant(I32, int(count))])
    return module.add_metadata([ir.MetaDataString(module, _LOOP_ID), count])


def finish_loop_ids(text):
    """The module text with every `interleave_hint` node made a self-referencing loop ID."""
    return re.sub(r'^(!\d+) = !\{ !"' + re.escape(_LOOP_ID) + '", ', r"\1 = distinct !{ \1, ", text,
                  flags=re.M)


def entry_alloca(b, typ, name="acc"):
    """A stack slot in the function's entry block (where mem2reg turns it into SSA)."""
    with b.goto_entry_block():
        slot = b.alloca(typ, name=name)
    return slot


def splat(b, x, lanes):
    """A vector of `lanes` copies of the scalar x."""
    vt = ir.VectorType(x.type, lanes)
    v = b.insert_element(ir.Constant(vt, ir.Undefined), x, ir.Constant(I32, 0))
    return b.shuffle_vector(v, ir.Constant(vt, ir.Undefined), ir.Constant(ir.VectorType(I32, lanes), [0] * lanes))


def stream_store(b, value, ptr, align):
    """A store that bypasses the caches (`!nontemporal`): for buffers written whole and
    read by a later parallel pass, such as patch matrices and packed panels.

    Why: on two cores, a buffer every thread read in the previous call is in both caches,
    and an ordinary store must first take each line from the other core; ResNet-50's
    patch writes cost 3x as much on two threads as on one that way. A streaming store
    writes the whole line without fetching it. The writer must `stream_fence` before
    another thread reads the data."""
    st = b.store(value, ptr, align=align)
    st.set_metadata("nontemporal", b.module.add_metadata([ir.Constant(I32, 1)]))
    return st


def stream_fence(b):
    """Order this thread's streaming stores before its later stores (the pool's hand-over
    to the next parallel pass): x86 does not order non-temporal stores by itself."""
    b.fence("seq_cst")


def intrinsic(module, name, ret, args):
    """Declare (once) and return an LLVM intrinsic or external function."""
    fn = module.globals.get(name)
    if fn is None:
        fn = ir.Function(module, ir.FunctionType(ret, args), name)
    return fn
