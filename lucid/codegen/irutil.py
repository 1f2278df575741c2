"""Small helpers over llvmlite.ir: lucid dtypes as LLVM types, constants, counted loops.

Kernels are built with llvmlite's IR builder and printed as text; llvmlite's typed
pointers (`float*`) are read by the bundled LLVM as opaque `ptr`, which is all we need.
"""
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
def loop(b, count, start=None, name="i"):
    """`for i in range(start or 0, count)`: yields i (an i64); the builder ends after the loop.

    A canonical counted loop (phi in the header, one latch), the shape LLVM's loop
    vectoriser expects."""
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
    b.branch(header)
    b.position_at_end(done)


def entry_alloca(b, typ, name="acc"):
    """A stack slot in the function's entry block (where mem2reg turns it into SSA)."""
    with b.goto_entry_block():
        slot = b.alloca(typ, name=name)
    return slot


def intrinsic(module, name, ret, args):
    """Declare (once) and return an LLVM intrinsic or external function."""
    fn = module.globals.get(name)
    if fn is None:
        fn = ir.Function(module, ir.FunctionType(ret, args), name)
    return fn
