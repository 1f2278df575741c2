"""The counter-based generator op `random_uniform` (Philox-4x32-10) and `random_normal`:
known-answer vectors, native code == numpy reference bit for bit, and statistical sanity
on fixed keys (deterministic, so not flaky)."""
import numpy as np
import pytest

import lucid
from lucid.codegen.program import NativeProgram
from lucid.errors import DTypeError, ShapeError
from lucid.ir.passes import PassManager, pipeline
from lucid.ops.random import philox4x32, random_normal, random_uniform
from lucid.tensor import Tensor

# Random123's tests/kat_vectors, the three "philox4x32 10" lines: counter[4] key[2] -> out[4].
KAT = [
    ("00000000 00000000 00000000 00000000 00000000 00000000", "6627e8d5 e169c58d bc57ac4c 9b00dbd8"),
    ("ffffffff ffffffff ffffffff ffffffff ffffffff ffffffff", "408f276d 41c83b0e a20bc7c6 6d5451fd"),
    ("243f6a88 85a308d3 13198a2e 03707344 a4093822 299f31d0", "d16cfe09 94fdcceb 5001e420 24126ea1"),
]


def _hex(text):
    return [int(w, 16) for w in text.split()]


@pytest.mark.parametrize("given, want", KAT)
def test_philox_known_answers(given, want):
    words = _hex(given)
    out = philox4x32(words[:4], words[4:])
    assert [int(o) for o in out] == _hex(want)


def _key(seed, stream):
    return np.array([seed, stream], dtype=np.int64)


@pytest.mark.parametrize("dtype", [lucid.float32, lucid.float64], ids=["f32", "f64"])
def test_uniform_elements_are_words_of_philox_blocks(dtype):
    """Block b is Philox of counter (b lo, b hi, stream lo, stream hi) under the seed's halves;
    float32 element 4b + j is word j's top 24 bits, float64 element 2b + j words 2j and 2j + 1."""
    key = _key(-2, 2 ** 33 + 5)  # seed 0xffff...fffe, stream (5, 2)
    got = random_uniform(Tensor(key), shape=(7,), dtype=dtype).numpy()
    per = 4 if dtype is lucid.float32 else 2
    for i in range(7):
        w = [int(v) for v in philox4x32([i // per, 0, 5, 2], [0xFFFFFFFE, 0xFFFFFFFF])]
        if dtype is lucid.float32:
            want = np.float32((w[i % 4] >> 8) * 2.0 ** -24)
        else:
            j = i % 2
            want = ((w[2 * j] << 21) | (w[2 * j + 1] >> 11)) * 2.0 ** -53
        assert got[i] == want


def _native(fn, key, opt_level=2):
    g = lucid.trace(fn, Tensor(key))
    prog = NativeProgram(PassManager(pipeline(opt_level)).run(g))
    return prog.run([key], g.params)[0], lucid.ir.interpret(g, key)


@pytest.mark.parametrize("dtype", [lucid.float32, lucid.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("seed, stream, shape", [(0, 0, (1001,)), (-7, 3, (5, 33, 17)),
                                                 (2 ** 62 + 11, 2 ** 40, (2, 1, 300)), (123, -1, ())])
def test_native_is_bit_identical_to_reference(seed, stream, shape, dtype):
    key = _key(seed, stream)
    got, want = _native(lambda k: random_uniform(k, shape=shape, dtype=dtype), key)
    assert got.dtype == want.dtype == dtype.np and got.shape == shape
    np.testing.assert_array_equal(got, want)
    eager = random_uniform(Tensor(key), shape=shape, dtype=dtype).numpy()
    np.testing.assert_array_equal(eager, want)


def test_native_bits_survive_fusion_with_an_epilogue():
    """The op heads a fused kernel (a dropout-like mask): still exact."""
    key = _key(99, 1)

    def fn(k):
        return lucid.where(random_uniform(k, shape=(64, 129)) >= 0.3, 2.0, 0.0)

    for level in (0, 2):
        got, want = _native(fn, key, level)
        np.testing.assert_array_equal(got, want)


def test_uniform_values_are_in_range_and_use_their_bits():
    u32 = random_uniform(Tensor(_key(1, 0)), shape=(100_000,), dtype=lucid.float32).numpy()
    u64 = random_uniform(Tensor(_key(1, 0)), shape=(100_000,), dtype=lucid.float64).numpy()
    for u in (u32, u64):
        assert u.min() >= 0.0 and u.max() < 1.0
    assert np.all(u32 * 2 ** 24 == np.floor(u32 * 2 ** 24))
    low_bits = (u64 * 2 ** 53).astype(np.int64) & 0x7FF  # the 11 bits that come from word 1
    assert len(np.unique(low_bits)) == 2048


def _chi_square(u, buckets):
    counts = np.bincount((u * buckets).astype(np.int64), minlength=buckets)
    expected = len(u) / buckets
    return float(((counts - expected) ** 2 / expected).sum())


def test_uniform_chi_square_and_independence():
    n = 1_000_000
    u = random_uniform(Tensor(_key(2024, 0)), shape=(n,), dtype=lucid.float64).numpy()
    # 1000 buckets: chi-square has mean 999, sd ~45; a broken generator is far outside.
    assert _chi_square(u, 1000) < 999 + 5 * 45
    # pairs of neighbours fill a 32x32 grid evenly (serial test)
    pairs = (u[0::2] * 32).astype(np.int64) * 32 + (u[1::2] * 32).astype(np.int64)
    counts = np.bincount(pairs, minlength=1024)
    e = len(pairs) / 1024
    assert ((counts - e) ** 2 / e).sum() < 1023 + 5 * 46
    bound = 5 / np.sqrt(n)
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < bound
    # next stream, next seed: uncorrelated with this one
    for key in (_key(2024, 1), _key(2025, 0)):
        v = random_uniform(Tensor(key), shape=(n,), dtype=lucid.float64).numpy()
        assert abs(np.corrcoef(u, v)[0, 1]) < bound
        assert not np.any(u[:1000] == v[:1000])


def test_normal_moments():
    n = 1_000_000
    for dtype in (lucid.float32, lucid.float64):
        z = random_normal(Tensor(_key(7, 3)), (n,), dtype).numpy().astype(np.float64)
        assert abs(z.mean()) < 5 / np.sqrt(n)
        assert abs(z.var() - 1) < 5 * np.sqrt(2 / n)
        assert abs(np.mean(z ** 4) - 3) < 0.05  # kurtosis of a normal
        assert abs(np.mean(np.abs(z) < 1) - 0.682689) < 0.003
        assert abs(np.mean(np.abs(z) < 2) - 0.954500) < 0.002


def test_normal_native_matches_eager_to_rounding():
    key = _key(5, 0)
    got, want = _native(lambda k: random_normal(k, (4, 257)), key)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)


def test_shape_rule_errors_name_the_op():
    with pytest.raises(DTypeError, match="random_uniform: the key must be an int64"):
        random_uniform(Tensor(np.zeros(2, np.int32)), shape=(3,))
    with pytest.raises(ShapeError, match=r"random_uniform: the key .*int64\[3\]"):
        random_uniform(Tensor(np.zeros(3, np.int64)), shape=(3,))
    with pytest.raises(ShapeError, match="random_uniform: shape"):
        random_uniform(Tensor(_key(0, 0)), shape=(3, -1))
    with pytest.raises(DTypeError, match="random_uniform: dtype must be floating"):
        random_uniform(Tensor(_key(0, 0)), shape=(3,), dtype=lucid.int64)


def test_no_gradient_flows_through_the_draw():
    u = random_uniform(Tensor(_key(0, 0)), shape=(3,))
    assert not u.requires_grad
    assert not lucid.ops.get_op("random_uniform").differentiable
