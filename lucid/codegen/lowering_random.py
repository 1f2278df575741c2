"""Native lowering of `random_uniform` (lucid.ops.random), registered into the tables of
lucid.codegen.lowering.

Each output element computes the Philox-4x32-10 block it belongs to (its row-major index
divided by 4 in float32, by 2 in float64) and picks its word(s), so the op is elemental:
the key's two int64 words are loop-invariant loads (hoisted by LLVM), and the ten rounds
are 32-bit xors, adds and 32 x 32 -> 64-bit multiplies, which the loop vectoriser turns
into vpmuludq. The float conversion is the reference's, exact (an integer of at most
24 or 53 bits times a power of two), so native output equals the numpy reference bit for
bit.
"""
import llvmlite.ir as ir

from ..dtypes import float32
from ..ops.random import PHILOX_M, PHILOX_ROUNDS, PHILOX_W
from . import irutil as U
from .lowering import elemental


def _i32(n):
    return ir.Constant(U.I32, n & 0xFFFFFFFF)


def _halves(b, v):
    """An i64 as two i32 words (low, high)."""
    return b.trunc(v, U.I32), b.trunc(b.lshr(v, U.i64(32)), U.I32)


def _mulhilo(b, m, c):
    p = b.mul(ir.Constant(U.I64, m), b.zext(c, U.I64))
    return b.trunc(b.lshr(p, U.i64(32)), U.I32), b.trunc(p, U.I32)


def philox(b, counter, key):
    """Philox-4x32-10 on i32 values: four counter words and two key words in, four words out."""
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for r in range(PHILOX_ROUNDS):
        if r:
            k0, k1 = b.add(k0, _i32(PHILOX_W[0])), b.add(k1, _i32(PHILOX_W[1]))
        hi0, lo0 = _mulhilo(b, PHILOX_M[0], c0)
        hi1, lo1 = _mulhilo(b, PHILOX_M[1], c2)
        c0, c1, c2, c3 = b.xor(b.xor(hi1, c1), k0), lo1, b.xor(b.xor(hi0, c3), k1), lo0
    return c0, c1, c2, c3


@elemental("random_uniform")
def _random_uniform(E, node, idx):
    b, dt = E.b, node.type.dtype
    key = node.inputs[0]
    seed, stream = E.value(key, (U.i64(0),)), E.value(key, (U.i64(1),))
    i = E.linear(idx, node.type.shape)
    shift = 2 if dt is float32 else 1  # 4 float32 or 2 float64 elements per block
    block, j = b.lshr(i, U.i64(shift)), b.and_(i, U.i64((1 << shift) - 1))
    x = philox(b, _halves(b, block) + _halves(b, stream), _halves(b, seed))
    if dt is float32:
        word = x[3]
        for k in (2, 1, 0):
            word = b.select(b.icmp_unsigned("==", j, U.i64(k)), x[k], word)
        return b.fmul(b.uitofp(b.lshr(word, _i32(8)), U.F32), ir.Constant(U.F32, 2.0 ** -24))
    first = b.icmp_unsigned("==", j, U.i64(0))
    hi, lo = b.select(first, x[0], x[2]), b.select(first, x[1], x[3])
    wide = b.or_(b.shl(b.zext(hi, U.I64), U.i64(21)), b.zext(b.lshr(lo, _i32(11)), U.I64))
    return b.fmul(b.uitofp(wide, U.F64), ir.Constant(U.F64, 2.0 ** -53))
