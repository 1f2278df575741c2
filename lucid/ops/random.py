"""Random numbers as a pure function of a key: the counter-based generator Philox-4x32-10.

A stateful generator (numpy's) cannot live in a static graph: whatever it draws while
tracing becomes a constant, so a compiled training step would reuse one dropout mask
forever. Here, as in JAX, random numbers are a pure function of an explicit key, so the
key can be a graph input and the graph gives fresh numbers whenever it is given a fresh
key (lucid.random keeps the stateful API on top: it feeds and advances a global key).

Primitive:

- `random_uniform(key){shape, dtype}`: uniform floats on [0, 1). `key` is an int64[2]
  tensor: key[0] is the 64-bit Philox key (the seed), key[1] a 64-bit stream number (how
  many draws came before). Block b of the output is Philox-4x32-10 (Salmon, Moraes, Dror
  & Shaw, "Parallel random numbers: as easy as 1, 2, 3", SC 2011; the generator of
  Random123, cuRAND and PyTorch's CUDA streams) applied to the 128-bit counter
  (b mod 2^32, b div 2^32, stream mod 2^32, stream div 2^32) under the key (seed mod 2^32,
  seed div 2^32) (all words unsigned; negative int64 values are read as two's
  complement): four 32-bit words w0..w3. In float32, row-major element 4b + j is the top
  24 bits of w_j times 2^-24; in float64, element 2b + j is the 53 bits
  (w_2j << 21) | (w_2j+1 >> 11) times 2^-53. Every step is integer arithmetic mod 2^32
  followed by an exact conversion, so the numpy reference, the interpreter and native
  code agree bit for bit. (Native code computes an element's whole block and picks its
  word(s): the same cost per element as using one word, while the numpy reference, which
  pays per array operation, does a quarter of the work.)

  Why Philox: it is a published, well-studied counter-based generator (its authors
  report TestU01's BigCrush passing on sequential and structured counters and keys,
  with 7 of the 10 rounds already enough), consecutive counters being exactly how it
  is meant to be used; it needs only 32-bit multiplies, xors and adds (cheap in numpy,
  vectorisable in LLVM), and Random123's known-answer vectors make the implementation
  checkable. No gradient: the output does not depend continuously on anything.

Composite: `random_normal(key, shape, dtype)` by Box-Muller on a uniform draw of shape
(2, *shape): z = sqrt(-2 log(1 - u0)) cos(2 pi u1). Its log/sqrt/cos run as lucid ops, so
native results match eager ones to rounding (not bit for bit, unlike the uniforms).
"""
import math

import numpy as np

from .. import dtypes as _dt
from ..errors import DTypeError, ShapeError
from ..ir.types import TensorType
from .registry import OUT_FUSABLE, REQUIRED, Sample, defop

__all__ = ["random_uniform", "random_normal", "philox4x32", "words_per_element", "PHILOX_ROUNDS"]

PHILOX_M = (0xD2511F53, 0xCD9E8D57)  # the round multipliers
PHILOX_W = (0x9E3779B9, 0xBB67AE85)  # the key schedule's increments (golden ratio, sqrt(3) - 1)
PHILOX_ROUNDS = 10
_MASK = np.uint64(0xFFFFFFFF)


def philox4x32(counter, key, rounds=PHILOX_ROUNDS):
    """Philox-4x32 on numpy arrays: `counter` is four arrays of 32-bit words (held in
    uint64), `key` two; returns the four output words (uint64 arrays below 2^32)."""
    c0, c1, c2, c3 = (np.asarray(c, dtype=np.uint64) for c in counter)
    k0, k1 = (np.asarray(k, dtype=np.uint64) for k in key)
    m0, m1 = np.uint64(PHILOX_M[0]), np.uint64(PHILOX_M[1])
    w0, w1 = np.uint64(PHILOX_W[0]), np.uint64(PHILOX_W[1])
    for r in range(rounds):
        if r:
            k0, k1 = (k0 + w0) & _MASK, (k1 + w1) & _MASK
        p0, p1 = m0 * c0, m1 * c2  # 32 x 32 -> 64 bits: exact in uint64
        c0, c1, c2, c3 = ((p1 >> np.uint64(32)) ^ c1 ^ k0, p1 & _MASK,
                          (p0 >> np.uint64(32)) ^ c3 ^ k1, p0 & _MASK)
    return c0, c1, c2, c3


def _words(value):
    """An int64 as its two unsigned 32-bit halves (low, high)."""
    u = np.asarray(value, dtype=np.int64).view(np.uint64)
    return u & _MASK, u >> np.uint64(32)


def words_per_element(dtype):
    """Output words of one Philox block per element: 1 for float32, 2 for float64."""
    return 1 if _dt.as_dtype(dtype) is _dt.float32 else 2


def _uniform_ref(key, shape, dtype):
    dtype = _dt.as_dtype(dtype)
    n = int(np.prod(shape, dtype=np.int64))
    per_block = 4 // words_per_element(dtype)
    key = np.ascontiguousarray(key, dtype=np.int64)
    b = np.arange(-(-n // per_block), dtype=np.uint64)
    x = philox4x32((b & _MASK, b >> np.uint64(32), *_words(key[1])), _words(key[0]))
    if dtype is _dt.float32:
        w = np.stack(x, axis=1).reshape(-1)[:n]  # element 4b + j is word j of block b
        out = (w >> np.uint64(8)).astype(np.float32) * np.float32(2.0 ** -24)
    else:
        hi = np.stack((x[0], x[2]), axis=1).reshape(-1)[:n]  # element 2b + j: words 2j, 2j + 1
        lo = np.stack((x[1], x[3]), axis=1).reshape(-1)[:n]
        out = ((hi << np.uint64(21)) | (lo >> np.uint64(11))).astype(np.float64) * (2.0 ** -53)
    return out.reshape(shape)


def _uniform_infer(key, shape, dtype):
    if key.dtype is not _dt.int64 or tuple(key.shape) != (2,):
        err = DTypeError if key.dtype is not _dt.int64 else ShapeError
        raise err(f"random_uniform: the key must be an int64 tensor of shape (2,) (seed, stream), "
                  f"got {key.dtype}{list(key.shape)}")
    if not (isinstance(shape, tuple) and all(isinstance(s, (int, np.integer)) and s >= 0 for s in shape)):
        raise ShapeError(f"random_uniform: shape must be a tuple of non-negative ints, got {shape!r}")
    dtype = _dt.as_dtype(dtype)
    if not dtype.is_float:
        raise DTypeError(f"random_uniform: dtype must be floating, got {dtype}")
    return TensorType(tuple(int(s) for s in shape), dtype)


def _torch_uniform(torch, key, shape, dtype):
    """The same generator written independently in torch's int64 arithmetic (16-bit limbs
    for the 32 x 32-bit products, so nothing overflows): a test oracle."""
    low = 0xFFFFFFFF

    def mulhilo(m, c):
        mh, ml = m >> 16, m & 0xFFFF
        ch, cl = c >> 16, c & 0xFFFF
        mid = mh * cl + ml * ch
        t = ml * cl + ((mid & 0xFFFF) << 16)
        return mh * ch + (mid >> 16) + (t >> 32), t & low

    n = int(np.prod(shape, dtype=np.int64))
    per_block = 4 // words_per_element(dtype)
    i = torch.arange(n, dtype=torch.int64)
    block, j = i // per_block, i % per_block
    seed, stream = key[0], key[1]
    c = [block & low, (block >> 32) & low, (stream & low).expand(n), ((stream >> 32) & low).expand(n)]
    k = [seed & low, (seed >> 32) & low]
    for r in range(PHILOX_ROUNDS):
        if r:
            k = [(k[0] + PHILOX_W[0]) & low, (k[1] + PHILOX_W[1]) & low]
        hi0, lo0 = mulhilo(PHILOX_M[0], c[0])
        hi1, lo1 = mulhilo(PHILOX_M[1], c[2])
        c = [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0]
    words = torch.stack(c, dim=1)  # [n, 4]: each element's whole block
    if per_block == 4:
        out = (words.gather(1, j[:, None])[:, 0] >> 8).to(torch.float32) * (2.0 ** -24)
    else:
        hi, lo = words.gather(1, 2 * j[:, None])[:, 0], words.gather(1, 2 * j[:, None] + 1)[:, 0]
        out = ((hi << 21) | (lo >> 11)).to(torch.float64) * (2.0 ** -53)
    return out.reshape(shape)


def _uniform_samples(rng):
    big = int(rng.integers(-2 ** 63, 2 ** 63 - 1))
    return [
        Sample([np.array([0, 0], dtype=np.int64)], {"shape": (3, 4), "dtype": _dt.float32}, grad=False),
        Sample([np.array([big, 7], dtype=np.int64)], {"shape": (2, 3, 5), "dtype": _dt.float64}, grad=False),
        Sample([np.array([-1, -1], dtype=np.int64)], {"shape": (), "dtype": _dt.float32}, grad=False),
        Sample([np.array([12345, 2 ** 40 + 3], dtype=np.int64)], {"shape": (1, 70), "dtype": _dt.float32},
               grad=False),
    ]


random_uniform = defop(
    "random_uniform", infer=_uniform_infer, reference=_uniform_ref, vjp=None, fusion=OUT_FUSABLE,
    attrs={"shape": REQUIRED, "dtype": _dt.float32}, nondiff=(0,), samples=_uniform_samples,
    torch=_torch_uniform, doc="Uniform [0, 1) floats, a pure function of an int64[2] key (Philox-4x32-10).")


def random_normal(key, shape, dtype=_dt.float32):
    """Standard normal floats from `key` (Box-Muller on `random_uniform(key, (2, *shape))`).

    1 - u0 lies in (0, 1], so the log is finite; in float32 the tails are cut at
    sqrt(-2 log 2^-24) = 5.77 standard deviations (probability 8e-9)."""
    from .elementwise import cos, log, sqrt

    shape = tuple(int(s) for s in shape)
    u = random_uniform(key, shape=(2,) + shape, dtype=_dt.as_dtype(dtype))
    radius = sqrt(log(1.0 - u[0]) * -2.0)
    return radius * cos(u[1] * (2.0 * math.pi))

